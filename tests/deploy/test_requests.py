"""What deploy asks CloudFormation for: parameter values, the change set's type, and how a failure
is told. Plain functions, no server."""

from datetime import datetime, timezone

import pytest

from mlops_cfn import config, pipeline
from mlops_cfn.deploy import (change_set_name, change_set_type, failure_message,
                              override_problems, parse_overrides, stack_parameters)
from mlops_cfn.errors import UserError
from mlops_cfn.events import Event, Outcome

ROOT_PARAMETERS = ["EnvironmentName", "StreamRetentionHours", "AssetsBucket"]


def test_overrides_are_key_value_pairs_the_last_one_winning():
    assert parse_overrides(["A=1", "B=x=y", "A=2", "C="]) == {"A": "2", "B": "x=y", "C": ""}
    for bad in ("A", "=1", " =1"):
        with pytest.raises(UserError, match="expected KEY=VALUE"):
            parse_overrides([bad])


def test_stack_parameters_are_the_environment_values_then_the_overrides():
    values = {"EnvironmentName": "dev", "StreamRetentionHours": "24", "Unused": "1"}
    assert stack_parameters(ROOT_PARAMETERS, values, {"StreamRetentionHours": "48"}) == \
        {"EnvironmentName": "dev", "StreamRetentionHours": "48"}


def test_assets_bucket_is_left_to_the_packaged_default():
    assert "AssetsBucket" not in stack_parameters(ROOT_PARAMETERS, {"EnvironmentName": "dev"}, {})
    with pytest.raises(UserError, match="use --bucket and --prefix instead"):
        stack_parameters(ROOT_PARAMETERS, {}, {"AssetsBucket": "other"})


def test_an_unknown_override_names_the_parameters_there_are():
    with pytest.raises(UserError) as raised:
        stack_parameters(ROOT_PARAMETERS, {}, {"Typo": "1"})
    assert str(raised.value) == ("--parameter Typo: the root template has no such parameter "
                                 "(it has: EnvironmentName, StreamRetentionHours)")


def test_a_vpc_range_the_subnets_cannot_be_cut_from_is_refused_by_the_root_template():
    # Finding 11: the bundled default cuts three /20 subnets, so a /24 cannot hold them.
    root = pipeline.build(config.load()).root
    [problem] = override_problems(root.parameters, {"VpcCidr": "10.0.0.0/24"})
    assert problem.startswith("--parameter VpcCidr=10.0.0.0/24: must match ^")
    assert problem.endswith("(an IPv4 range from /16 to /18 with no host bits set, such as "
                            "10.0.0.0/16: 3 subnets of /20 are cut from it)")
    assert override_problems(root.parameters, {"VpcCidr": "10.1.0.0/17"}) == []


@pytest.mark.parametrize("status, kind", [
    (None, "CREATE"), ("REVIEW_IN_PROGRESS", "CREATE"), ("CREATE_COMPLETE", "UPDATE"),
    ("UPDATE_COMPLETE", "UPDATE"), ("UPDATE_ROLLBACK_COMPLETE", "UPDATE"),
    ("IMPORT_COMPLETE", "UPDATE"),
])
def test_change_set_type_follows_the_stack(status, kind):
    assert change_set_type(status, "s") == kind


@pytest.mark.parametrize("status", ["ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"])
def test_a_failed_create_must_be_deleted_first(status):
    with pytest.raises(UserError, match=f"stack s is {status} after a failed create.*"
                                        f"delete-stack --stack-name s"):
        change_set_type(status, "s")


@pytest.mark.parametrize("status", ["UPDATE_IN_PROGRESS", "CREATE_IN_PROGRESS",
                                    "UPDATE_ROLLBACK_IN_PROGRESS", "DELETE_IN_PROGRESS"])
def test_a_busy_stack_is_refused(status):
    with pytest.raises(UserError, match=f"busy \\({status}\\)"):
        change_set_type(status, "s")


def test_change_set_names_are_valid_and_unique():
    first, second = change_set_name(), change_set_name()
    assert first != second
    assert first[0].isalpha() and len(first) <= 128
    assert all(c.isalnum() or c == "-" for c in first)


def test_a_failure_names_the_stack_resource_and_reason():
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    failed = Event("StorageStack", "arn", "RawBucket", "AWS::S3::Bucket", "CREATE_FAILED",
                   "name already exists", when, "1")
    assert failure_message(Outcome("ROLLBACK_COMPLETE", [failed])) == (
        "deployment failed at StorageStack/RawBucket (AWS::S3::Bucket): name already exists; "
        "the stack is ROLLBACK_COMPLETE")
    assert failure_message(Outcome("UPDATE_ROLLBACK_COMPLETE", [])) == \
        "deployment failed: the stack is UPDATE_ROLLBACK_COMPLETE"
