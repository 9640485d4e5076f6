"""`mlops_cfn.validate`: cfn-lint, CloudFormation quotas and checkov over rendered templates.

Fixture templates live in tests/fixtures/validate/: good/ (clean, beside a parameters.json and a
YAML file that is not a template), bad/ (cfn-lint errors), nested/ and nested_bad/ (a root with a
relative TemplateURL to its child), security/ (checkov: a failed check and a justified skip).
"""

import json
import os
import stat
import sys
from pathlib import Path

import pytest

import cfnlint.runner

from mlops_cfn.errors import UserError
from mlops_cfn.validate import (
    LIMITS, Finding, Report, Skip, TemplateFile, check_limits, find_checkov,
    parse_checkov_output, validate,
)

FIXTURES = Path(__file__).parent / "fixtures" / "validate"
LOCAL_CHECKOV = Path("/tmp/checkov-venv/bin/checkov")


def of_tool(report: Report, tool: str) -> list[Finding]:
    return [f for f in report.findings if f.tool == tool]


def by_rule(findings: list[Finding]) -> dict[str, Finding]:
    return {f.rule: f for f in findings}


# --- finding templates -----------------------------------------------------------------------

def test_a_clean_template_is_ok():
    report = validate([FIXTURES / "good"], security=False)

    assert report.ok
    assert report.findings == ()


def test_a_directory_is_searched_for_templates_only():
    report = validate([FIXTURES / "good"], security=False)

    # parameters.json and not_a_template.yaml have no Resources section
    assert report.files == (FIXTURES / "good" / "secure_bucket.yaml",)


def test_a_named_file_that_is_not_a_template_is_a_user_error():
    with pytest.raises(UserError, match=r"parameters.json: not a CloudFormation template"):
        validate([FIXTURES / "good" / "parameters.json"], security=False)


def test_a_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"nowhere: no such file or directory"):
        validate([tmp_path / "nowhere"], security=False)


def test_a_directory_without_templates_is_a_user_error(tmp_path):
    (tmp_path / "parameters.json").write_text("[]")

    with pytest.raises(UserError, match=r"no CloudFormation templates found"):
        validate([tmp_path], security=False)


def test_a_file_that_does_not_parse_is_reported_not_passed_over(tmp_path):
    (tmp_path / "broken.yaml").write_text("Resources: [\n  Bucket: {\n")

    report = validate([tmp_path], security=False)

    assert not report.ok
    [finding] = report.findings
    assert (finding.tool, finding.rule, finding.file) == ("cfn-lint", "E0000",
                                                          tmp_path / "broken.yaml")
    # It counts among the files checked, as its finding does.
    assert report.summary().startswith("1 file: cfn-lint 1 error")


# --- cfn-lint --------------------------------------------------------------------------------

def test_an_unknown_property_is_a_cfn_lint_error_naming_file_resource_and_line():
    template = FIXTURES / "bad" / "invalid_property.yaml"

    report = validate([template], security=False)

    assert not report.ok
    [finding] = report.findings
    assert (finding.tool, finding.severity, finding.rule) == ("cfn-lint", "error", "E3002")
    assert (finding.file, finding.resource, finding.line) == (template, "LogsBucket", 7)
    assert "BucketEncryptionTypo" in finding.message


def test_a_wrong_typed_property_is_a_cfn_lint_error():
    template = FIXTURES / "bad" / "wrong_type.yaml"

    report = validate([template], security=False)

    [finding] = report.findings
    assert (finding.rule, finding.file, finding.resource) == ("E3012", template, "EventStream")
    assert "'a week' is not of type 'integer'" in finding.message


def test_cfn_lint_rules_are_loaded_once_per_run(monkeypatch):
    runners = []
    real_runner = cfnlint.runner.Runner
    monkeypatch.setattr(cfnlint.runner, "Runner",
                        lambda config: runners.append(config) or real_runner(config))

    validate([FIXTURES / "bad"], security=False)

    assert len(runners) == 1


# A cfn-lint rule of one's own: every resource named Forbidden is an error.
CUSTOM_RULE = """
from cfnlint.rules import CloudFormationLintRule, RuleMatch


class NoForbidden(CloudFormationLintRule):
    id = "E9901"
    shortdesc = "No resource named Forbidden"
    description = "A test rule"
    tags = ["test"]

    def match(self, cfn):
        return [RuleMatch(["Resources", name], "{message}")
                for name in cfn.template.get("Resources", {}) if name == "Forbidden"]
"""


def test_rule_directories_in_the_lint_settings_are_loaded_and_their_changes_relint(
        tmp_path, monkeypatch):
    import mlops_cfn.validate.lint as lint

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "no_forbidden.py").write_text(CUSTOM_RULE.replace("{message}", "forbidden"))
    template = tmp_path / "t.yaml"
    template.write_text((FIXTURES / "good" / "secure_bucket.yaml").read_text()
                        .replace("DataBucket", "Forbidden"))
    settings = lint.lint_settings
    monkeypatch.setattr(lint, "lint_settings",
                        lambda regions=lint.DEFAULT_REGIONS: {**settings(regions),
                                                              "append_rules": [str(rules)]})
    cache = tmp_path / "cache"

    first = validate([template], security=False, cache_dir=cache)
    (rules / "no_forbidden.py").write_text(CUSTOM_RULE.replace("{message}", "changed"))
    second = validate([template], security=False, cache_dir=cache)

    assert [(f.rule, f.resource, f.message) for f in first.findings] == [
        ("E9901", "Forbidden", "forbidden")]
    assert [f.message for f in second.findings] == ["changed"]  # not the cached result


def test_a_root_with_a_relative_template_url_lints_clean_from_any_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the child is found beside the root, not in the cwd

    report = validate([FIXTURES / "nested" / "root.yaml"], security=False)

    # no W3002 "may only work with package": the rendered tree is meant to be packaged
    assert report.findings == ()


def test_a_root_out_of_step_with_its_child_is_caught():
    root = FIXTURES / "nested_bad" / "root.yaml"

    report = validate([root], security=False)

    messages = [f.message for f in report.findings if f.rule == "E3043"]
    assert {f.resource for f in report.findings} == {"StorageStack"}
    assert any('"Retention" doesn\'t exist in nested stack' in m for m in messages)
    assert any('"TopicKeyId" is not specified' in m for m in messages)


def test_a_template_url_naming_a_missing_file_is_an_error(tmp_path):
    root = tmp_path / "root.yaml"
    root.write_text((FIXTURES / "nested" / "root.yaml").read_text())  # without storage.yaml

    report = validate([root], security=False)

    assert not report.ok
    [finding] = report.findings
    assert (finding.rule, finding.severity, finding.resource) == ("local-template", "error",
                                                                  "StorageStack")
    assert "TemplateURL: storage.yaml does not exist beside root.yaml" in finding.message


def test_a_missing_child_is_caught_even_where_the_root_ignores_w3002(tmp_path):
    text = (FIXTURES / "nested" / "root.yaml").read_text()
    root = tmp_path / "root.yaml"
    root.write_text("Metadata:\n  cfn-lint:\n    config:\n      ignore_checks: [W3002]\n" + text)
    [finding] = validate([root], security=False).findings
    assert finding.rule == "local-template"


# --- CloudFormation quotas -------------------------------------------------------------------

def oversized_template() -> dict:
    long_name = "Output" + "X" * 250  # 256 characters
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "d" * 1025,
        "Parameters": {f"Param{i}": {"Type": "String", "Default": "x"} for i in range(201)},
        "Mappings": {f"Map{i}": {"Key": {"Value": "x"}} for i in range(201)},
        "Resources": {f"Handle{i}": {"Type": "AWS::CloudFormation::WaitConditionHandle"}
                      for i in range(501)},
        "Outputs": {**{f"Out{i}": {"Value": "x"} for i in range(200)},
                    long_name: {"Value": "x"}},
    }


def test_an_oversized_template_breaches_the_limits_it_names(tmp_path):
    template = tmp_path / "huge.json"
    template.write_text(json.dumps(oversized_template(), indent=1))

    report = validate([template], security=False)

    assert not report.ok
    breaches = by_rule([f for f in of_tool(report, "limits") if f.severity == "error"])
    assert set(breaches) == {"resources", "parameters", "mappings", "outputs", "name-length",
                             "description"}
    assert "501 resources, over the limit of 500 (resources per template)" in \
        breaches["resources"].message
    for rule, finding in breaches.items():
        assert LIMITS[rule].quota in finding.message
        assert f"{LIMITS[rule].maximum:,}" in finding.message
        assert finding.severity == "error"
    assert breaches["resources"].line == template.read_text().splitlines().index(
        ' "Resources": {') + 1


def test_a_body_over_51200_bytes_is_only_information():
    # Templates reach CloudFormation through S3 (package), where the limit is 1 MB.
    template = TemplateFile(Path("big.yaml"), {"Resources": {}}, size=51_201)

    [finding] = check_limits(template)

    assert (finding.rule, finding.severity) == ("body-size-request", "info")
    assert "51,201 bytes, over the limit of 51,200 (template body size in a request)" in \
        finding.message
    assert Report(files=(template.path,), findings=(finding,)).ok


def test_a_body_over_1_mb_is_an_error():
    template = TemplateFile(Path("huge.yaml"), {"Resources": {}}, size=1_000_001)

    [finding] = check_limits(template)

    assert (finding.rule, finding.severity) == ("body-size-s3", "error")
    assert "(template body size in an S3 object)" in finding.message


def test_a_template_within_every_limit_has_no_limit_findings():
    template = TemplateFile(Path("t.yaml"), {"Description": "d" * 1024,
                                             "Resources": {"R" * 255: {}}}, size=51_200)

    assert check_limits(template) == []


# --- the report ------------------------------------------------------------------------------

def test_the_report_lists_findings_by_file_then_a_summary():
    a, b = Path("t/a.yaml"), Path("t/b.yaml")
    report = Report(
        files=(a, b, Path("t/c.yaml")),
        findings=(
            Finding("checkov", "error", b, "Topic", "CKV_AWS_26", "Ensure SNS is encrypted", 4),
            Finding("cfn-lint", "error", a, "Bucket", "E3002", "Additional properties", 7),
            Finding("limits", "info", a, "", "body-size-request", "the template body: ...", None),
            Finding("cfn-lint", "warning", a, "Bucket", "W3005", "Obsolete DependsOn", 5),
        ),
        skips=(Skip(b, "Logs", "CKV_AWS_18", "logs bucket cannot log to itself", 9),),
    )

    assert report.render() == "\n".join([
        "t/a.yaml: [limits body-size-request] the template body: ...",
        "t/a.yaml:5: [cfn-lint W3005] Bucket: Obsolete DependsOn",
        "t/a.yaml:7: [cfn-lint E3002] Bucket: Additional properties",
        "",
        "t/b.yaml:4: [checkov CKV_AWS_26] Topic: Ensure SNS is encrypted",
        "t/b.yaml:9: [checkov CKV_AWS_18 skipped] Logs: logs bucket cannot log to itself",
        "",
        "3 files: cfn-lint 1 error 1 warning, limits 0 (1 informational), "
        "checkov 1 failed (1 skipped with reasons)",
    ])


def test_informational_findings_are_shown_but_do_not_fail():
    note = Finding("cfn-lint", "info", Path("a.yaml"), "Bucket", "I3011", "a note", 3)

    report = Report(files=(Path("a.yaml"),), findings=(note,))

    assert report.ok
    assert "a.yaml:3: [cfn-lint I3011] Bucket: a note" in report.render()


def test_without_security_the_summary_says_checkov_did_not_run():
    report = validate([FIXTURES / "good"], security=False)

    assert report.render() == ("1 file: cfn-lint 0 errors 0 warnings, limits 0, "
                               "checkov not run")


# --- checkov: finding it and running it -----------------------------------------------------

@pytest.fixture
def no_checkov_anywhere(monkeypatch, tmp_path):
    """No MLOPS_CFN_CHECKOV, no checkov on PATH, no .tools/ in the current directory."""
    monkeypatch.delenv("MLOPS_CFN_CHECKOV", raising=False)
    monkeypatch.delenv("MLOPS_CFN_TOOLS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fake_checkov(path: Path, stdout: str, exit_status: int = 0) -> Path:
    """An executable that records its arguments beside itself and prints `stdout`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n"
                    "import json, sys, pathlib\n"
                    f"log = pathlib.Path({str(path)!r} + '.calls')\n"
                    "calls = json.loads(log.read_text()) if log.exists() else []\n"
                    "log.write_text(json.dumps(calls + [sys.argv[1:]]))\n"
                    f"sys.stdout.write({stdout!r})\n"
                    "sys.stderr.write('checkov: something broke\\n')\n"
                    f"sys.exit({exit_status})\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls_of(fake: Path) -> list[list[str]]:
    return json.loads(Path(f"{fake}.calls").read_text())


EMPTY_CHECKOV_REPORT = json.dumps({"check_type": "cloudformation",
                                   "results": {"failed_checks": []}, "summary": {}})


def test_missing_checkov_is_a_user_error_with_the_install_hint(no_checkov_anywhere):
    with pytest.raises(UserError) as raised:
        validate([FIXTURES / "good"])

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("checkov not found")
    for hint in ("pipx install checkov", "scripts/install-checkov", "MLOPS_CFN_CHECKOV",
                 "PATH", ".tools/checkov/bin/checkov"):
        assert hint in message


def test_a_checkov_path_that_does_not_exist_is_a_user_error(no_checkov_anywhere, monkeypatch):
    monkeypatch.setenv("MLOPS_CFN_CHECKOV", str(no_checkov_anywhere / "nonexistent"))

    with pytest.raises(UserError, match=r"MLOPS_CFN_CHECKOV=.*nonexistent is not an executable"
                                        r".*pipx install checkov"):
        validate([FIXTURES / "good"])


def test_checkov_is_found_under_tools_in_the_current_directory(no_checkov_anywhere):
    installed = fake_checkov(no_checkov_anywhere / ".tools" / "checkov" / "bin" / "checkov", "")

    assert Path(find_checkov()).resolve() == installed


def test_without_security_checkov_is_not_needed(no_checkov_anywhere):
    assert validate([FIXTURES / "good"], security=False).ok


def test_checkov_runs_once_over_every_template_and_nothing_else(monkeypatch, tmp_path):
    fake = fake_checkov(tmp_path / "checkov", EMPTY_CHECKOV_REPORT)
    monkeypatch.setenv("MLOPS_CFN_CHECKOV", str(fake))

    report = validate([FIXTURES / "good", FIXTURES / "nested"])

    assert report.ok
    [arguments] = calls_of(fake)
    assert arguments[:5] == ["--framework", "cloudformation", "--skip-download", "--output",
                             "json"]
    scanned = arguments[arguments.index("--file") + 1:]
    assert scanned == [str(f.resolve()) for f in report.files]
    assert not any(name.endswith("parameters.json") for name in arguments)


def test_a_checkov_that_crashes_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_CFN_CHECKOV", str(fake_checkov(tmp_path / "checkov", "", 2)))

    with pytest.raises(UserError, match=r"checkov failed \(exit status 2.*something broke"):
        validate([FIXTURES / "good"])


def test_checkov_reports_of_several_frameworks_are_all_read():
    file = Path("a.yaml")
    failed = {"check_id": "CKV_AWS_26", "check_name": "SNS encrypted", "resource":
              "AWS::SNS::Topic.Alerts", "file_abs_path": str(file.resolve()),
              "file_line_range": [3, 6]}
    skipped = {**failed, "check_id": "CKV_AWS_18", "check_result": {"suppress_comment": "why"}}
    output = [{"check_type": "cloudformation", "results": {"failed_checks": [failed]}},
              {"check_type": "secrets", "results": {"skipped_checks": [skipped]}}]

    findings, skips = parse_checkov_output(output, {file.resolve(): file})

    assert findings == [Finding("checkov", "error", file, "Alerts", "CKV_AWS_26",
                                "SNS encrypted", 3)]
    assert skips == [Skip(file, "Alerts", "CKV_AWS_18", "why", 3)]


# --- checkov: real runs (slow: one run serves all these tests) -------------------------------

@pytest.fixture(scope="module")
def checkov_executable():
    """The checkov under test: $MLOPS_CFN_CHECKOV if set, else the local venv if present."""
    patch = pytest.MonkeyPatch()
    if not os.environ.get("MLOPS_CFN_CHECKOV") and LOCAL_CHECKOV.exists():
        patch.setenv("MLOPS_CFN_CHECKOV", str(LOCAL_CHECKOV))
    yield
    patch.undo()


UNEXPLAINED_SKIP = """\
Resources:
  Alerts:
    Type: AWS::SNS::Topic
    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_26
"""


@pytest.fixture(scope="module")
def checkov_report(checkov_executable, tmp_path_factory):
    unexplained = tmp_path_factory.mktemp("unexplained") / "topic.yaml"
    unexplained.write_text(UNEXPLAINED_SKIP)
    return validate([FIXTURES / "good", FIXTURES / "nested", FIXTURES / "security",
                     unexplained])


@pytest.mark.slow
def test_checkov_passes_secure_templates(checkov_report):
    clean = {FIXTURES / "good" / "secure_bucket.yaml", FIXTURES / "nested" / "root.yaml",
             FIXTURES / "nested" / "storage.yaml"}

    assert clean <= set(checkov_report.files)
    assert [f for f in checkov_report.findings if f.file in clean] == []


@pytest.mark.slow
def test_an_unencrypted_topic_fails_a_named_checkov_check(checkov_report):
    template = FIXTURES / "security" / "unencrypted_topic.yaml"

    failed = [f for f in of_tool(checkov_report, "checkov") if f.file == template]

    assert [(f.rule, f.resource, f.line) for f in failed] == [("CKV_AWS_26", "AlertsTopic", 4)]
    assert "SNS" in failed[0].message
    assert not checkov_report.ok


@pytest.mark.slow
def test_a_skip_with_a_reason_is_counted_not_failed(checkov_report):
    template = FIXTURES / "security" / "justified_skip.yaml"

    assert checkov_report.skips == (
        Skip(template, "AccessLogsBucket", "CKV_AWS_18",
             "This bucket receives the access logs; logging it to itself would loop.", 4),
    )
    assert [f for f in checkov_report.findings if f.file == template] == []
    assert "(1 skipped with reasons)" in checkov_report.render()


@pytest.mark.slow
def test_a_skip_without_a_reason_fails(checkov_report):
    # (mlops-cfn's E9001 reports the unencrypted topic too, as cfn-lint)
    [finding] = [f for f in of_tool(checkov_report, "checkov") if f.file.name == "topic.yaml"]

    assert (finding.rule, finding.resource, finding.severity) == ("CKV_AWS_26", "Alerts",
                                                                  "error")
    assert "skipped without a reason" in finding.message


# --- speed: one lint per distinct template, cached results, parallel workers ---------------

def copy_fixture_tree(tmp_path, copies=3):
    """`copies` identical directories holding the nested root + child fixtures."""
    for index in range(copies):
        target = tmp_path / f"env{index}"
        target.mkdir()
        for name in ("root.yaml", "storage.yaml"):
            (target / name).write_text((FIXTURES / "nested" / name).read_text())
    return [tmp_path / f"env{index}" for index in range(copies)]


def count_checks(monkeypatch):
    import mlops_cfn.validate.lint as module
    checked = []
    original = module._check_file
    monkeypatch.setattr(module, "_check_file", lambda path: checked.append(path) or original(path))
    return checked


def test_byte_identical_templates_are_linted_once_per_run(tmp_path, monkeypatch):
    trees = copy_fixture_tree(tmp_path)
    checked = count_checks(monkeypatch)
    report = validate(trees, security=False)
    assert len(report.files) == 6
    assert len(checked) == 2  # one root, one child, whatever the number of copies
    assert report.ok


def test_unchanged_templates_come_from_the_cache(tmp_path, monkeypatch):
    trees = copy_fixture_tree(tmp_path, copies=1)
    cache = tmp_path / "cache"
    first = validate(trees, security=False, cache_dir=cache)
    checked = count_checks(monkeypatch)
    second = validate(trees, security=False, cache_dir=cache)
    assert checked == []
    assert second == first
    assert (cache / ".gitignore").read_text().endswith("*\n")


def test_editing_a_child_inside_relints_the_child_alone(tmp_path, monkeypatch):
    [tree] = copy_fixture_tree(tmp_path, copies=1)
    cache = tmp_path / "cache"
    validate([tree], security=False, cache_dir=cache)
    child = tree / "storage.yaml"
    child.write_text(child.read_text().replace("-events", "-alerts") + "\n# edited\n")
    checked = count_checks(monkeypatch)
    report = validate([tree], security=False, cache_dir=cache)
    assert [p.name for p in checked] == ["storage.yaml"]
    assert report.ok


def test_a_child_that_gains_a_required_parameter_relints_its_root(tmp_path, monkeypatch):
    [tree] = copy_fixture_tree(tmp_path, copies=1)
    cache = tmp_path / "cache"
    validate([tree], security=False, cache_dir=cache)
    child = tree / "storage.yaml"
    child.write_text(child.read_text().replace(
        "Parameters:\n", "Parameters:\n  Retention:\n    Type: String\n", 1))
    checked = count_checks(monkeypatch)
    report = validate([tree], security=False, cache_dir=cache)
    assert sorted(p.name for p in checked) == ["root.yaml", "storage.yaml"]
    assert [f.rule for f in report.findings if f.file.name == "root.yaml"] == ["E3043"]


def test_a_child_that_drops_an_output_its_root_reads_relints_the_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # cfn-lint reads a child's outputs only under the working dir
    [tree] = copy_fixture_tree(tmp_path, copies=1)
    cache = tmp_path / "cache"
    validate([tree], security=False, cache_dir=cache)
    child = tree / "storage.yaml"
    child.write_text(child.read_text().replace("  TopicArn:", "  TopicName:"))
    checked = count_checks(monkeypatch)
    report = validate([tree], security=False, cache_dir=cache)
    assert sorted(p.name for p in checked) == ["root.yaml", "storage.yaml"]
    [finding] = [f for f in report.findings if f.file.name == "root.yaml"]
    assert finding.fails and "TopicArn" in finding.message


def test_cfn_lint_reads_nested_templates_only_where_the_interface_key_assumes():
    """The interface key assumes cfn-lint reads a child's parameters (E3043) and output names
    (the GetAtt context) and nothing else; a release that reads nested templates anywhere new
    fails here, so the assumption is looked at again before it can give a stale result."""
    import cfnlint
    package = Path(cfnlint.__file__).parent
    readers = {str(path.relative_to(package)) for path in package.rglob("*.py")
               if "TemplateURL" in path.read_text(encoding="utf-8", errors="replace")}
    assert readers <= {
        "helpers.py",  # only the list of package-only properties (W3002)
        "rules/resources/cloudformation/NestedStackParameters.py",  # E3043: parameters
        "context/context.py",  # GetAtt Outputs.X: output names
    }, readers


def test_a_tab_indented_json_child_that_gains_a_parameter_relints_its_root(tmp_path):
    import json

    from cfnlint.decode import decode
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("root", "storage"):
        data, _ = decode(str(FIXTURES / "nested" / f"{name}.yaml"))
        text = json.dumps(json.loads(json.dumps(data)), indent="\t")
        (tree / f"{name}.json").write_text(text.replace('"storage.yaml"', '"storage.json"'))
    cache = tmp_path / "cache"
    assert validate([tree], security=False, cache_dir=cache).ok
    child = json.loads((tree / "storage.json").read_text())
    child["Parameters"]["Retention"] = {"Type": "String"}
    (tree / "storage.json").write_text(json.dumps(child, indent="\t"))
    report = validate([tree], security=False, cache_dir=cache)
    assert [f.rule for f in report.findings if f.file.name == "root.json"] == ["E3043"]


def test_a_child_whose_interface_cannot_be_read_counts_whole(tmp_path, monkeypatch):
    [tree] = copy_fixture_tree(tmp_path, copies=1)
    cache = tmp_path / "cache"
    child = tree / "storage.yaml"
    child.write_text("Parameters: [not closed\n")
    validate([tree], security=False, cache_dir=cache)
    child.write_text("Parameters: {not: closed\n")
    checked = count_checks(monkeypatch)
    validate([tree], security=False, cache_dir=cache)
    assert sorted(p.name for p in checked) == ["root.yaml", "storage.yaml"]


def test_a_child_given_a_key_twice_relints_its_root_as_cfn_lint_reads_it_no_more(tmp_path,
                                                                                 monkeypatch):
    [tree] = copy_fixture_tree(tmp_path, copies=1)
    cache = tmp_path / "cache"
    validate([tree], security=False, cache_dir=cache)
    child = tree / "storage.yaml"
    child.write_text(child.read_text().replace(
        "Description: Environment name.", "Description: Environment name.\n    Type: String"))
    checked = count_checks(monkeypatch)
    validate([tree], security=False, cache_dir=cache)
    assert sorted(p.name for p in checked) == ["root.yaml", "storage.yaml"]


def test_a_root_result_is_not_reused_across_working_directories_that_change_it(tmp_path,
                                                                               monkeypatch):
    [tree] = copy_fixture_tree(tmp_path, copies=1)
    child = tree / "storage.yaml"
    child.write_text(child.read_text().replace("  TopicArn:", "  TopicName:"))
    cache = tmp_path / "cache"
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    # Recent cfn-lint reads a child's outputs only under the working directory.
    for working_directory in (elsewhere, tmp_path):
        monkeypatch.chdir(working_directory)
        fresh = validate([tree], security=False)
        assert validate([tree], security=False, cache_dir=cache) == fresh
    assert not fresh.ok


def test_findings_are_cached_too(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((FIXTURES / "bad" / "invalid_property.yaml").read_text())
    cache = tmp_path / "cache"
    first = validate([bad], security=False, cache_dir=cache)
    second = validate([bad], security=False, cache_dir=cache)
    assert not second.ok and second.findings == first.findings


def test_a_warm_run_imports_neither_cfn_lint_nor_checkov(tmp_path):
    trees = copy_fixture_tree(tmp_path, copies=1)
    cache = tmp_path / "cache"
    validate(trees, security=False, cache_dir=cache)
    probe = (
        "import sys; from pathlib import Path; from mlops_cfn.validate import validate; "
        f"r = validate([Path({str(trees[0])!r})], security=False, cache_dir=Path({str(cache)!r})); "
        "print(r.ok, any(m.startswith('cfnlint') for m in sys.modules))")
    import subprocess
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["True", "False"]


def test_progress_hears_of_the_slow_steps_and_a_warm_run_has_none(tmp_path, monkeypatch):
    fake = fake_checkov(tmp_path / "bin" / "checkov", EMPTY_CHECKOV_REPORT, 0)
    monkeypatch.setenv("MLOPS_CFN_CHECKOV", str(fake))
    trees = copy_fixture_tree(tmp_path, copies=2)
    cache = tmp_path / "cache"
    steps: list[str] = []
    validate(trees, cache_dir=cache, jobs=2, progress=steps.append)
    assert steps == ["cfn-lint: 2 files, 2 workers", "checkov: 2 templates"]
    steps.clear()
    validate(trees, cache_dir=cache, jobs=2, progress=steps.append)
    assert steps == []


def test_parallel_workers_find_what_one_worker_finds(tmp_path):
    for name in ("invalid_property.yaml", "wrong_type.yaml"):
        (tmp_path / name).write_text((FIXTURES / "bad" / name).read_text())
    (tmp_path / "good.yaml").write_text((FIXTURES / "good" / "secure_bucket.yaml").read_text())
    serial = validate([tmp_path], security=False, jobs=1)
    parallel = validate([tmp_path], security=False, jobs=3)
    assert parallel == serial
    assert not parallel.ok


def test_checkov_results_are_cached_per_content(monkeypatch, tmp_path):
    fake = fake_checkov(tmp_path / "bin" / "checkov", EMPTY_CHECKOV_REPORT, 0)
    monkeypatch.setenv("MLOPS_CFN_CHECKOV", str(fake))
    trees = copy_fixture_tree(tmp_path, copies=2)
    cache = tmp_path / "cache"
    validate(trees, cache_dir=cache)
    validate(trees, cache_dir=cache)
    [run] = calls_of(fake)
    scanned = run[run.index("--file") + 1:]
    assert sorted(Path(f).name for f in scanned) == ["root.yaml", "storage.yaml"]


def test_the_install_script_pins_the_checkov_release_the_package_names():
    from mlops_cfn import CHECKOV_VERSION
    script = (Path(__file__).resolve().parents[1] / "scripts" / "install-checkov").read_text()
    assert f'CHECKOV_VERSION="{CHECKOV_VERSION}"' in script
