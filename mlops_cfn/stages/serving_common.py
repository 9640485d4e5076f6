"""Pieces the serving stage's parts share: names, conditions, content hashes."""

import hashlib
import json
from typing import Any

from troposphere import Equals, Not, Ref, encode_to_dict

from .. import naming
from ..stage import StageBuilder

# The endpoint's one production variant. Blue/green deployments need the same variant name in
# the old and the new endpoint config, so it never changes.
VARIANT = "AllTraffic"

# CloudFormation conditions: the parts that exist only once there is something to run.
MODEL_SUPPLIED = "ModelSupplied"
IMAGE_SUPPLIED = "ImageSupplied"

HTTPS = 443
HTTP = 80
ANYWHERE = "0.0.0.0/0"

# Names of services naming.py has no rule for.
SCHEDULE = naming.NameRule("EventBridge Scheduler schedule", 64)
API_NAME = naming.NameRule("API Gateway API", 128)
# A transform job is named <prefix>-<uuid> (36 characters) within SageMaker's 63.
TRANSFORM_JOB_PREFIX = naming.NameRule("SageMaker transform job prefix", 63 - 37)

# Scaling reacts fast to load and slowly to its absence, so a short dip does not drop capacity
# a moment before it is needed again.
SCALE_OUT_COOLDOWN_SECONDS = 60
SCALE_IN_COOLDOWN_SECONDS = 300


def content_hash(value: Any, length: int = 8) -> str:
    """A short, stable hash of a template fragment (troposphere objects or plain data).

    Parameters stay `Ref`s in the fragment, so the hash follows the template's structure and
    not the values an environment gives them.
    """
    text = json.dumps(encode_to_dict(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length].upper()


def name_pattern(b: StageBuilder, rule: naming.NameRule, *purpose: str) -> str:
    """The `Fn::Sub` text of a physical name, for use inside a longer Sub (an ARN, a resource
    id) where `b.physical_name` would give a whole Sub."""
    b.environment  # declares EnvironmentName, which the pattern refers to
    return naming.physical_name(rule, b.project, *purpose)


def not_empty(parameter: Ref) -> Not:
    return Not(Equals(parameter, ""))
