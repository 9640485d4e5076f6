"""`deploy` and `diff` through the CLI against a local moto server.

The lifecycle runs on a config with a known set of stages (network, storage, ingestion with its
consumer), so it does not change meaning as other stages are switched on; the bundled default
pipeline, whatever it enables, is created and deleted by its own test.

moto does not model every resource type: the support layer (moto_support.py) stands a placeholder
in for each missing one, and MOTO_PLACEHOLDERS documents which they are for this config. The
assertions below look at resources moto really creates (buckets, stream, function, key, VPC).
"""

import copy
import re
from pathlib import Path

import pytest

from mlops_cfn import config, pipeline
from mlops_cfn.render import render_files
from mlops_cfn.wheel import tool_wheel

from . import moto_support
from .conftest import BUCKET, run, write_config
from tests.helpers import LATER_STAGES

RENDERED = Path(__file__).resolve().parents[2] / "templates" / "dev"

pytestmark = pytest.mark.slow

STACK = "pipeline"
# What moto 5.2 does not model in the network, storage and ingestion stages: created as
# placeholders (deterministic ids, nothing behind them).
MOTO_PLACEHOLDERS = {
    "AWS::S3::BucketPolicy",
    "AWS::KinesisFirehose::DeliveryStream",
    "AWS::Logs::LogStream",
}


def known_stages(**changes) -> dict:
    from tests.helpers import _merge, default_data

    data = default_data()
    _merge(data, {"stages": {name: {"enabled": False} for name in LATER_STAGES}})
    _merge(data, {"stages": {"ingestion": {"consumer": {"enabled": True}}}})
    _merge(data, copy.deepcopy(changes))
    return data


@pytest.fixture
def pipeline_file(tmp_path):
    return write_config(tmp_path / "pipeline.yaml", known_stages())


def deploy(config_file, *extra, env="dev", input=None):
    return run("deploy", "--config", config_file, "--env", env, "--stack-name", STACK,
               "--bucket", BUCKET, "--no-validate", *extra, input=input)


def outputs(stack: dict) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def parameters(stack: dict) -> dict[str, str]:
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters") or []}


def pending_change_sets(aws) -> list[str]:
    """Change sets not executed (moto lists executed ones too; CloudFormation drops them)."""
    return [c["ChangeSetName"] for c in aws.cfn.list_change_sets(StackName=STACK)["Summaries"]
            if c.get("ExecutionStatus") != "EXECUTE_COMPLETE"]


def test_create_update_diff_and_delete(aws, pipeline_file):
    aws.bucket()

    # create
    created = deploy(pipeline_file, "--yes")
    assert created.exit_code == 0, created.output
    assert f"{STACK} (new stack)" in created.output
    for stage in ("NetworkStack", "StorageStack", "IngestionStack"):
        assert f"Add    │ {stage}" in created.output, "the change set table lists each stack"
    assert f"{STACK}: CREATE_COMPLETE" in created.output
    root = aws.cfn.describe_stacks(StackName=STACK)["Stacks"][0]
    assert root["StackStatus"] == "CREATE_COMPLETE"
    nested = aws.nested(STACK)
    assert set(nested) == {"NetworkStack", "StorageStack", "IngestionStack", "BoundaryStack"}
    assert {s["StackStatus"] for s in nested.values()} == {"CREATE_COMPLETE"}
    # every role is created under the boundary the boundary stack made
    boundary_arn = outputs(nested["BoundaryStack"])["PermissionsBoundaryArn"]
    iam = aws.client("iam")
    roles = iam.list_roles()["Roles"]
    assert roles
    for role in roles:
        described = iam.get_role(RoleName=role["RoleName"])["Role"]
        assert described["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary_arn

    # tags from config on the stack
    tags = {t["Key"]: t["Value"] for t in root["Tags"]}
    assert tags == {"mlops-cfn:project": "mlops-demo", "mlops-cfn:environment": "dev",
                    "team": "ml-platform", "cost-center": "ml-0001"}

    # outputs flow from producer stacks into consumer stacks and up to the root
    storage, network, ingestion = (nested[n] for n in ("StorageStack", "NetworkStack",
                                                       "IngestionStack"))
    assert parameters(ingestion)["RawBucketArn"] == outputs(storage)["RawBucketArn"]
    assert parameters(ingestion)["DataKeyArn"] == outputs(storage)["DataKeyArn"]
    assert parameters(ingestion)["VpcId"] == outputs(network)["VpcId"]
    assert parameters(network)["DataKeyArn"] == outputs(storage)["DataKeyArn"]
    assert outputs(root)["RawBucketName"] == outputs(storage)["RawBucketName"]
    assert outputs(root)["IngestStreamName"] == outputs(ingestion)["IngestStreamName"]

    # what moto really created, and what it only stood in for
    s3 = aws.s3
    for name in ("RawBucketName", "ProcessedBucketName", "ArtifactsBucketName",
                 "AccessLogsBucketName"):
        s3.head_bucket(Bucket=outputs(storage)[name])
    stream = aws.client("kinesis").describe_stream_summary(
        StreamName=outputs(ingestion)["IngestStreamName"])["StreamDescriptionSummary"]
    assert stream["RetentionPeriodHours"] == 24
    function = aws.client("lambda").get_function(
        FunctionName=outputs(ingestion)["ConsumerFunctionName"])["Configuration"]
    assert function["VpcConfig"]["SubnetIds"] == outputs(network)["PrivateSubnetIds"].split(",")
    # (DescribeKey answers 500 for a key moto created from a template: it keeps the policy as
    # a mapping. The alias shows the key exists and is the one the stacks were given.)
    aliases = {a["AliasName"]: a.get("TargetKeyId")
               for a in aws.client("kms").list_aliases()["Aliases"]}
    assert aliases[outputs(storage)["DataKeyAlias"]] == \
        outputs(storage)["DataKeyArn"].rsplit("/", 1)[1]
    subnets = aws.client("ec2").describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [outputs(network)["VpcId"]]}])["Subnets"]
    assert sorted(s["CidrBlock"] for s in subnets) == \
        ["10.40.0.0/20", "10.40.16.0/20", "10.40.32.0/20"]
    assert {p.resource_type for p in aws.placeholders} == MOTO_PLACEHOLDERS
    assert moto_support.unmodelled_types(MOTO_PLACEHOLDERS) == sorted(MOTO_PLACEHOLDERS)

    # diff right after: nothing to change, nothing left behind
    diff = run("diff", "--config", pipeline_file, "--stack-name", STACK, "--bucket", BUCKET,
               "--no-validate")
    assert diff.exit_code == 0, diff.output
    assert f"no changes: {STACK} is up to date" in diff.output
    assert pending_change_sets(aws) == []

    # change a setting and deploy again: an update through a change set
    write_config(pipeline_file, known_stages(stages={"ingestion": {"retention_hours": 48}}))
    updated = deploy(pipeline_file, "--yes")
    assert updated.exit_code == 0, updated.output
    assert f"{STACK} (update)" in updated.output and f"{STACK}: UPDATE_COMPLETE" in updated.output
    after = aws.nested(STACK)
    assert after["IngestionStack"]["StackId"] == ingestion["StackId"], "updated in place"
    assert parameters(after["IngestionStack"])["StreamRetentionHours"] == "48"
    stream = aws.client("kinesis").describe_stream_summary(
        StreamName=outputs(ingestion)["IngestStreamName"])["StreamDescriptionSummary"]
    assert stream["RetentionPeriodHours"] == 48
    again = deploy(pipeline_file, "--yes")
    assert again.exit_code == 0 and f"no changes: {STACK} is up to date" in again.output

    # delete: the nested stacks go with the root, the data buckets are retained
    aws.cfn.delete_stack(StackName=STACK)
    assert STACK not in aws.stacks()
    assert not [name for name in aws.stacks() if name.startswith(f"{STACK}-")]
    s3.head_bucket(Bucket=outputs(storage)["RawBucketName"])


def test_a_protected_environment_gets_termination_protection(aws, pipeline_file):
    aws.bucket()
    result = deploy(pipeline_file, "--yes", env="prod")
    assert result.exit_code == 0, result.output
    assert "termination protection on" in result.output
    root = aws.cfn.describe_stacks(StackName=STACK)["Stacks"][0]
    assert root["EnableTerminationProtection"] is True
    with pytest.raises(Exception, match="TerminationProtection is enabled"):
        aws.cfn.delete_stack(StackName=STACK)
    assert {t["Key"]: t["Value"] for t in root["Tags"]}["mlops-cfn:environment"] == "prod"
    assert parameters(root)["EnvironmentName"] == "prod"


def test_an_unprotected_environment_is_not_protected(aws, pipeline_file):
    aws.bucket()
    assert deploy(pipeline_file, "--yes").exit_code == 0
    assert aws.cfn.describe_stacks(StackName=STACK)["Stacks"][0][
        "EnableTerminationProtection"] is False


def test_parameter_overrides_reach_the_stack(aws, pipeline_file):
    aws.bucket()
    result = deploy(pipeline_file, "--yes", "--parameter", "StreamRetentionHours=72",
                    "-p", "ConsumerMemoryMiB=512")
    assert result.exit_code == 0, result.output
    ingestion = aws.nested(STACK)["IngestionStack"]
    assert parameters(ingestion)["StreamRetentionHours"] == "72"
    assert parameters(ingestion)["ConsumerMemoryMiB"] == "512"


def test_with_cicd_the_stack_must_have_the_name_the_pipeline_deploys(aws, tmp_path):
    aws.bucket()
    data = known_stages(stages={"cicd": {"enabled": True}})
    result = run("deploy", "--config", write_config(tmp_path / "p.yaml", data), "--env", "dev",
                 "--stack-name", "my-own-name", "--bucket", BUCKET, "--no-validate", "--yes")
    assert result.exit_code == 2
    assert ("--stack-name my-own-name: with stages.cicd enabled the pipeline deploys this "
            "environment as stack mlops-demo-dev") in result.output
    assert aws.stacks() == {}


def test_an_update_names_each_root_parameter_it_changes_with_both_values(aws, pipeline_file):
    aws.bucket()
    assert deploy(pipeline_file, "--yes").exit_code == 0
    preview = run("diff", "--config", pipeline_file, "--env", "dev", "--stack-name", STACK,
                  "--bucket", BUCKET, "--no-validate", "-p", "StreamRetentionHours=72")
    assert preview.exit_code == 0, preview.output
    assert "parameter StreamRetentionHours: 24 -> 72" in preview.output
    assert [line for line in preview.output.splitlines() if line.startswith("parameter ")] == [
        "parameter StreamRetentionHours: 24 -> 72"], "only what changes"
    assert f"{STACK} (update)" in preview.output


@pytest.mark.parametrize("override, message", [
    ("NoSuchParameter=1", "--parameter NoSuchParameter: the root template has no such "
                          "parameter (it has: "),
    ("StreamRetentionHours", "--parameter 'StreamRetentionHours': expected KEY=VALUE"),
    ("AssetsBucket=x", "--parameter AssetsBucket: set by packaging; use --bucket and --prefix "
                       "instead"),
    ("AssetsPrefix=x/", "--parameter AssetsPrefix: set by packaging"),
    # Values the root template's own constraints refuse, said before anything is uploaded.
    ("LogRetentionDays=2", "--parameter LogRetentionDays=2: must be one of 1, 3, 5"),
    ("StreamRetentionHours=many", "--parameter StreamRetentionHours=many: must be a number"),
    ("StreamRetentionHours=10", "--parameter StreamRetentionHours=10: must be >= 24"),
    ("EnvironmentName=BAD_ENV", "--parameter EnvironmentName=BAD_ENV: must match "),
    # A range the subnets cannot be cut from: the pattern follows from the subnet size.
    ("VpcCidr=10.0.0.0/24", "--parameter VpcCidr=10.0.0.0/24: must match ^"),
])
def test_bad_parameter_overrides_are_refused_before_anything_happens(aws, pipeline_file,
                                                                     override, message):
    aws.bucket()
    result = deploy(pipeline_file, "--yes", "-p", override)
    assert result.exit_code == 2
    assert message in result.output
    assert aws.keys() == [] and aws.stacks() == {}


def test_declining_the_confirmation_deploys_nothing(aws, pipeline_file):
    aws.bucket()
    result = deploy(pipeline_file, input="n\n")
    assert result.exit_code == 1
    assert f"Execute these changes on {STACK}?" in result.output
    assert "cancelled: nothing deployed" in result.output
    assert aws.stacks() == {}, "the new stack's empty shell is deleted with its change set"


def test_no_answer_at_the_prompt_deploys_nothing_and_leaves_nothing(aws, pipeline_file):
    # Input closed (a pipe, CI without --yes) or Ctrl-C at the prompt: a no, cleaned up as one.
    aws.bucket()
    result = deploy(pipeline_file, input="")
    assert result.exit_code == 1
    assert "cancelled: nothing deployed" in result.output
    assert aws.stacks() == {}, "no change set or empty stack left behind"


def test_an_endpoint_or_region_that_is_not_one_is_refused_before_any_call(aws, pipeline_file,
                                                                           monkeypatch):
    no_scheme = deploy(pipeline_file, "--yes", "--endpoint-url", "127.0.0.1:5000")
    assert no_scheme.exit_code == 2
    assert "error: --endpoint-url: '127.0.0.1:5000' is not a URL" in no_scheme.output
    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:5000")
    from_environment = run("package", RENDERED, "--bucket", BUCKET)
    assert from_environment.exit_code == 2
    assert "error: AWS_ENDPOINT_URL: 'localhost:5000' is not a URL" in from_environment.output
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    region = deploy(pipeline_file, "--yes", "--region", "bad region!")
    assert region.exit_code == 2
    assert "error: --region: 'bad region!' is not a region name" in region.output
    for result in (no_scheme, from_environment, region):
        assert "Traceback" not in result.output
    assert aws.stacks() == {}


def test_a_bucket_name_s3_would_refuse_is_said_to_be_one(aws, tmp_path):
    result = run("package", RENDERED, "--bucket", "BAD_Bucket")
    assert result.exit_code == 2
    assert "bucket 'BAD_Bucket': not a valid bucket name" in result.output


def test_accepting_the_confirmation_deploys(aws, pipeline_file):
    aws.bucket()
    result = deploy(pipeline_file, input="y\n")
    assert result.exit_code == 0, result.output
    assert aws.stacks()[STACK]["StackStatus"] == "CREATE_COMPLETE"


def test_diff_of_a_new_stack_shows_the_changes_and_leaves_nothing(aws, pipeline_file):
    aws.bucket()
    result = run("diff", "--config", pipeline_file, "--stack-name", STACK, "--bucket", BUCKET,
                 "--no-validate")
    assert result.exit_code == 0, result.output
    # network, storage, ingestion and the permissions boundary of their roles
    assert f"{STACK} (new stack): 4 changes" in result.output
    assert "nothing executed; the change set was deleted" in result.output
    assert aws.stacks() == {}


def test_a_failed_execution_exits_1_with_the_reason(aws, pipeline_file):
    aws.bucket()
    taken = "mlops-demo-dev-raw-123456789012-us-east-1"
    aws.s3.create_bucket(Bucket=taken)
    result = deploy(pipeline_file, "--yes")
    assert result.exit_code == 1
    # moto creates synchronously, so it refuses the execution itself; CloudFormation reports the
    # same failure as events, which test_events.py covers.
    assert "error: executing the change set for pipeline: BucketAlreadyExists" in result.output


def test_the_default_bucket_is_named_by_account_and_region(aws, pipeline_file):
    args = ("deploy", "--config", pipeline_file, "--stack-name", STACK, "--no-validate", "--yes")
    missing = run(*args)
    assert missing.exit_code == 2
    assert "bucket 'mlops-cfn-123456789012-us-east-1' does not exist" in missing.output
    aws.bucket("mlops-cfn-123456789012-us-east-1")
    assert run(*args).exit_code == 0
    assert aws.keys("mlops-cfn-123456789012-us-east-1")


def test_the_endpoint_option_wins_over_the_environment(aws, pipeline_file, monkeypatch):
    aws.bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    result = deploy(pipeline_file, "--yes", "--endpoint-url", aws.url)
    assert result.exit_code == 0, result.output


def test_region_and_profile_come_from_the_options(aws, pipeline_file, tmp_path, monkeypatch):
    aws.bucket("mlops-cfn-ireland", region="eu-west-1")
    result = run("deploy", "--config", pipeline_file, "--stack-name", STACK, "--no-validate",
                 "--yes", "--bucket", "mlops-cfn-ireland", "--region", "eu-west-1")
    assert result.exit_code == 0, result.output
    assert aws.client("cloudformation", "eu-west-1").describe_stacks(StackName=STACK)
    assert aws.stacks() == {}, "nothing in the default region"
    unknown = run("deploy", "--config", pipeline_file, "--profile", "nobody", "--no-validate")
    assert unknown.exit_code == 2
    assert "error: --profile: The config profile (nobody) could not be found" in unknown.output


def test_a_bucket_in_another_region_is_refused_when_lambda_code_is_an_asset(aws, tmp_path):
    aws.bucket("mlops-cfn-ireland", region="eu-west-1")
    data = known_stages(stages={"etl": {"enabled": True}})
    built = pipeline.build(config.load_data(data, "pipeline.yaml"))
    # The refusal needs an asset to upload: the ETL job's script is one.
    assert any(stage.assets for stage in built.stages), "the etl stage ships no asset"
    result = run("deploy", "--config", write_config(tmp_path / "p.yaml", data),
                 "--no-validate", "--yes", "--bucket", "mlops-cfn-ireland")
    assert result.exit_code == 2
    assert "--bucket mlops-cfn-ireland: is in eu-west-1, the stack deploys to us-east-1" in \
        result.output


# --- validation before packaging -------------------------------------------------------------

def test_deploy_validates_before_uploading(aws, pipeline_file):
    aws.bucket()
    result = run("deploy", "--config", pipeline_file, "--stack-name", STACK, "--bucket", BUCKET,
                 "--no-security", "--yes")
    assert result.exit_code == 0, result.output
    assert "cfn-lint 0 errors 0 warnings" in result.output


def test_findings_stop_the_deploy_before_anything_is_uploaded(aws, pipeline_file,
                                                              monkeypatch):
    from pathlib import Path

    import mlops_cfn.validate as validate_module
    from mlops_cfn.validate import Finding, Report

    def failing(paths, security=True, **kwargs):
        file = Path(paths[0]) / "storage.yaml"
        return Report(files=(file,), findings=(Finding("cfn-lint", "error", file, "RawBucket",
                                                       "E3001", "broken on purpose"),),
                      security=security)

    monkeypatch.setattr(validate_module, "validate", failing)
    aws.bucket()
    result = run("deploy", "--config", pipeline_file, "--stack-name", STACK, "--bucket", BUCKET,
                 "--no-security", "--yes")
    assert result.exit_code == 1
    assert "broken on purpose" in result.output and "validation failed" in result.output
    assert aws.keys() == [] and aws.stacks() == {}


# --- the bundled default pipeline ------------------------------------------------------------

# Stages of the bundled default left out of its moto deployment, each with the reason. Empty it
# when the reason is gone: the test then deploys the default exactly as bundled.
# Stages the moto run leaves out, each with the reason (empty: every stage deploys).
LEFT_OUT_ON_MOTO: dict[str, str] = {}


def test_the_default_pipeline_deploys_whatever_it_enables(aws, tmp_path):
    """Create and delete the bundled default, every stage it enables; moto's gaps are listed."""
    from tests.helpers import _merge, default_data

    data = default_data()
    _merge(data, {"stages": {name: {"enabled": False} for name in LEFT_OUT_ON_MOTO}})
    aws.bucket()
    result = run("deploy", "--config", write_config(tmp_path / "default.yaml", data),
                 "--bucket", BUCKET, "--no-validate", "--yes")
    assert result.exit_code == 0, result.output
    built = pipeline.build(config.load_data(data, "default.yaml"))
    # With the cicd stage on, the stack has the name its pipeline deploys.
    stack = "mlops-demo-dev"
    nested = aws.nested(stack)
    assert set(nested) == {stage.logical_id for stage in built.stages}
    assert {s["StackStatus"] for s in nested.values()} == {"CREATE_COMPLETE"}
    # Every asset once, and (the cicd stage being on) the wheel its delivery build installs.
    assets = sorted([name for name in render_files(built) if name.startswith("assets/")]
                    + [tool_wheel().key])
    assert [k for k in aws.keys() if k.startswith("assets/")] == assets, "every asset, once"
    skipped = sorted({p.resource_type for p in aws.placeholders})
    assert moto_support.unmodelled_types(skipped) == skipped
    print("moto placeholders for the default pipeline:", ", ".join(skipped))
    print("attributes moto lacks:", sorted(moto_support.MISSING_ATTRIBUTES))

    # every wire: the consumer stack's parameter holds the producer stack's output
    by_stage = {stage.logical_id: stage for stage in built.stages}
    offered = {wire.name: outputs(nested[stage.logical_id])
               for stage in built.stages for wire in stage.outputs}
    wired = 0
    for logical_id, stage in by_stage.items():
        given = parameters(nested[logical_id])
        for wire in stage.inputs:
            produced = offered[wire.name].get(wire.name)
            if produced is None:  # moto leaves some placeholder outputs empty
                continue
            if wire.type.startswith("List<"):
                # moto shows a list parameter as Python's repr of the list
                assert re.findall(r"[\w-]+", given[wire.name]) == produced.split(","), wire.name
            else:
                assert given[wire.name] == produced, (logical_id, wire.name)
            wired += 1
    assert wired >= 40, "most wires carry a real value on moto"

    # nothing to change right after the deploy
    assert run("diff", "--config", write_config(tmp_path / "default.yaml", data),
               "--stack-name", stack, "--bucket", BUCKET, "--no-validate").exit_code == 0

    # a value-only change updates the stacks in place through a change set
    _merge(data, {"environments": {"dev": {"stages": {"ingestion": {"retention_hours": 48}}}}})
    updated = run("deploy", "--config", write_config(tmp_path / "default.yaml", data),
                  "--bucket", BUCKET, "--no-validate", "--yes")
    assert updated.exit_code == 0, updated.output
    ingestion = aws.nested(stack)["IngestionStack"]
    assert parameters(ingestion)["StreamRetentionHours"] == "48"
    aws.cfn.delete_stack(StackName=stack)
    assert not [name for name in aws.stacks() if name.startswith(stack)]


def test_latest_approved_model_serves_the_newest_approved_package(aws, tmp_path):
    data = known_stages(stages={"serving": {"enabled": True, "target": "sagemaker"},
                                "training": {"enabled": False}})
    config_file = write_config(tmp_path / "serving.yaml", data)
    aws.bucket()
    group = "mlops-demo-dev-models"
    sagemaker = aws.client("sagemaker")

    refused = run("diff", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
                  "--no-validate", "--latest-approved-model")
    assert refused.exit_code == 2
    assert f"no approved model package in {group} yet" in refused.output

    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    spec = {"Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}],
            "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]}
    for status in ("Approved", "Approved", "PendingManualApproval"):
        newest = sagemaker.create_model_package(
            ModelPackageGroupName=group, ModelApprovalStatus=status,
            InferenceSpecification=spec)["ModelPackageArn"]
        if status == "Approved":
            approved = newest
    result = run("diff", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
                 "--no-validate", "--latest-approved-model")
    assert result.exit_code == 0, result.output
    assert f"serving {approved} (approved last in {group})" in result.output


# --- what the account and region would refuse, said before any upload ------------------------

def test_a_region_without_the_pipelines_images_is_refused_before_anything_is_uploaded(
        aws, tmp_path):
    from tests.helpers import default_data

    aws.bucket()
    bundled = write_config(tmp_path / "pipeline.yaml", default_data())
    result = run("deploy", "--config", bundled, "--env", "dev", "--bucket", BUCKET,
                 "--no-validate", "--yes", "--region", "ap-southeast-5")
    assert result.exit_code == 2, result.output
    errors = sorted(line for line in result.output.splitlines() if line.startswith("error: "))
    assert [e.split(" (it has in ")[0] for e in errors] == [
        "error: region ap-southeast-5: SageMaker's Model Monitor analyzer image has no "
        "documented account in this region",
        "error: region ap-southeast-5: SageMaker's built-in XGBoost image has no documented "
        "account in this region"]
    assert aws.keys() == [] and aws.stacks() == {}


def stubbed_lambda(account_limit: int, unreserved: int, held: dict[str, int]):
    """A Lambda client answering GetAccountSettings and GetFunctionConcurrency as an account
    would (moto 5.2 does not implement GetAccountSettings: a botocore Stubber stands in)."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.add_response("get_account_settings", {"AccountLimit": {
        "ConcurrentExecutions": account_limit, "UnreservedConcurrentExecutions": unreserved,
        "TotalCodeSize": 1, "CodeSizeUnzipped": 1, "CodeSizeZipped": 1}})
    for name, reserved in held.items():
        if reserved is None:
            stubber.add_client_error("get_function_concurrency", "ResourceNotFoundException",
                                     expected_params={"FunctionName": name})
        else:
            stubber.add_response("get_function_concurrency",
                                 {"ReservedConcurrentExecutions": reserved},
                                 {"FunctionName": name})
    stubber.activate()
    return client


def test_reserved_concurrency_a_new_account_cannot_grant_is_refused_before_any_upload(
        aws, pipeline_file, monkeypatch):
    # A new account's concurrency quota may be 10 ("Lambda quotas"), where no function may
    # reserve any: Lambda keeps 100 unreserved.
    from mlops_cfn.deploy import Aws

    aws.bucket()
    lambda_client = stubbed_lambda(10, 10, {"mlops-demo-dev-consumer": None})
    real_client = Aws.client
    monkeypatch.setattr(Aws, "client", lambda self, service: lambda_client
                        if service == "lambda" else real_client(self, service))
    result = deploy(pipeline_file, "--yes")
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert line.startswith(
        "error: Lambda reserved concurrency in us-east-1: the stack reserves 10 (10 for "
        "mlops-demo-dev-consumer (stages.ingestion.consumer.reserved_concurrency)), but of the "
        "account's quota of 10 concurrent executions 10 are unreserved")
    assert aws.keys() == [] and aws.stacks() == {}


def test_an_account_whose_lambda_settings_cannot_be_read_is_deployed_with_a_note(
        aws, pipeline_file):
    # moto answers GetAccountSettings with 404 "Not yet implemented", as an account where the
    # deployer may not read them would answer AccessDenied.
    aws.bucket()
    result = deploy(pipeline_file, "--yes")
    assert result.exit_code == 0, result.output
    assert ("note: Lambda account settings not readable (404): reserved concurrency (10) not "
            "checked against the quota") in result.output
