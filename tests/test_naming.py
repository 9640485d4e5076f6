"""Physical names stay valid for every environment name the parameter accepts."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_cfn import naming
from mlops_cfn.config import ENVIRONMENT_MAX_LENGTH, PROJECT_PATTERN

RULES = [value for value in vars(naming).values() if isinstance(value, naming.NameRule)]
# What each service accepts, checked on the name with its tokens at their longest.
CHARSETS = {
    "S3 bucket": r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$",
    "Glue database/table": r"^[a-z0-9_]+$",
    "CloudWatch log group": r"^[a-zA-Z0-9_./#-]+$",
}
DEFAULT_CHARSET = r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$"

projects = st.from_regex(PROJECT_PATTERN, fullmatch=True)


def longest_substitution(pattern: str) -> str:
    return (pattern.replace(naming.ENVIRONMENT, "e" * ENVIRONMENT_MAX_LENGTH)
            .replace(naming.ACCOUNT, "1" * 12).replace(naming.REGION, "us-isof-south-1"))


def test_the_rules_checked_below_are_every_service_naming_py_names():
    # RULES is read from the module, so the test below cannot silently check none.
    assert len(RULES) >= 16 and naming.S3_BUCKET in RULES


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.service)
@given(project=projects)
def test_every_name_fits_the_service_limit_and_charset(rule, project):
    pattern = naming.physical_name(rule, project, "processed")
    name = longest_substitution(pattern)
    assert len(name) <= rule.max_length
    assert naming.max_length(pattern) == len(name)
    assert re.match(CHARSETS.get(rule.service, DEFAULT_CHARSET), name), name


def test_short_projects_are_kept_whole():
    assert naming.physical_name(naming.S3_BUCKET, "churn", "raw") == \
        "churn-${EnvironmentName}-raw-${AWS::AccountId}-${AWS::Region}"


def test_a_cut_project_keeps_a_hash_so_shared_prefixes_do_not_collide():
    a = naming.physical_name(naming.S3_BUCKET, "customer-churn-prediction-alpha", "processed")
    b = naming.physical_name(naming.S3_BUCKET, "customer-churn-prediction-omega", "processed")
    assert a != b
    assert a.startswith("customer-") and b.startswith("customer-")


def test_names_are_deterministic():
    first = naming.physical_name(naming.SAGEMAKER, "a-very-long-project-name-for-sm", "endpoint")
    assert first == naming.physical_name(naming.SAGEMAKER, "a-very-long-project-name-for-sm",
                                         "endpoint")


def test_glue_names_use_underscores():
    assert naming.physical_name(naming.GLUE, "mlops-demo", "raw") == \
        "mlops_demo_${EnvironmentName}_raw"


def test_log_groups_read_like_paths():
    assert naming.log_group_name("mlops-demo", "flow-logs") == \
        "/mlops/mlops-demo/${EnvironmentName}/flow-logs"
