"""CloudFormation quotas checked before upload."""

from __future__ import annotations

from dataclasses import dataclass

from .discovery import TemplateFile
from .report import Finding, Severity

@dataclass(frozen=True)
class Limit:
    rule: str
    quota: str  # the quota's name as the CloudFormation quotas page gives it
    maximum: int
    unit: str
    severity: Severity = "error"


# CloudFormation quotas checked before upload (AWS CloudFormation User Guide, "Quotas").
# The 51,200-byte body applies only to a template passed in the request itself; ours are
# uploaded to S3 by `package`, so exceeding it is information, not a failure.
LIMITS: dict[str, Limit] = {limit.rule: limit for limit in (
    Limit("body-size-s3", "template body size in an S3 object", 1_000_000, "bytes"),
    Limit("body-size-request", "template body size in a request", 51_200, "bytes", "info"),
    Limit("resources", "resources per template", 500, "resources"),
    Limit("parameters", "parameters per template", 200, "parameters"),
    Limit("outputs", "outputs per template", 200, "outputs"),
    Limit("mappings", "mappings per template", 200, "mappings"),
    Limit("name-length", "logical ID, parameter, mapping and output name length", 255,
          "characters"),
    Limit("description", "template description size", 1024, "bytes"),
)}

_COUNTED_SECTIONS = {"Resources": "resources", "Parameters": "parameters",
                     "Outputs": "outputs", "Mappings": "mappings"}
_SECTION_NAMES = {"Resources": "logical ID", "Parameters": "parameter name",
                  "Outputs": "output name", "Mappings": "mapping name"}


def check_limits(template: TemplateFile) -> list[Finding]:
    """Breaches of the CloudFormation quotas in LIMITS, each message naming its quota."""
    data = template.data

    def breach(rule: str, what: str, value: int, line: int | None = None,
               resource: str = "") -> Finding:
        limit = LIMITS[rule]
        advice = "; upload it to S3 (mlops-cfn package does)" if limit.severity == "info" else ""
        message = (f"{what}: {value:,} {limit.unit}, over the limit of {limit.maximum:,} "
                   f"({limit.quota}){advice}")
        return Finding("limits", limit.severity, template.path, resource, rule, message, line)

    findings = []
    for rule in ("body-size-s3", "body-size-request"):
        if template.size > LIMITS[rule].maximum:
            findings.append(breach(rule, "the template body", template.size))
            break  # over the S3 limit says all there is to say
    for section, rule in _COUNTED_SECTIONS.items():
        entries = data.get(section)
        if isinstance(entries, dict) and len(entries) > LIMITS[rule].maximum:
            findings.append(breach(rule, section, len(entries), _key_line(data, section)))
    for section, kind in _SECTION_NAMES.items():
        entries = data.get(section)
        for name in entries if isinstance(entries, dict) else ():
            if len(name) > LIMITS["name-length"].maximum:
                shown = f"{kind} {name[:40]}..."  # the whole name would fill the screen
                findings.append(breach("name-length", shown, len(name), _key_line(entries, name),
                                       name if section == "Resources" else ""))
    description = data.get("Description")
    if isinstance(description, str):
        size = len(description.encode("utf-8"))
        if size > LIMITS["description"].maximum:
            findings.append(breach("description", "Description", size,
                                   _key_line(data, "Description")))
    return findings


def _key_line(mapping: dict, key: str) -> int | None:
    """1-based line of `key` in a mapping decoded by cfnlint.decode, when it kept the mark."""
    for candidate in mapping:
        if candidate == key:
            mark = getattr(candidate, "start_mark", None)
            return mark.line + 1 if mark is not None else None
    return None

