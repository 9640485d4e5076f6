"""The cicd stage: one delivery pipeline that checks, tests and packages the repository, deploys
every environment through change sets (approval before protected ones), retrains when the
training code changes, with scoped roles and encryption throughout."""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import cfnlint.api
import pytest
import yaml

from mlops_cfn import outputs, permissions, pipeline, render
from mlops_cfn.config.cicd import BuildConfig
from mlops_cfn.errors import UserError
from mlops_cfn.stages import cicd
from mlops_cfn.stages import cicd_buildspec as spec
from mlops_cfn.stages.cicd import DeploymentTarget
from mlops_cfn.config import load_data
from tests.helpers import default_data, only_resource, resources_of_type, template_dict

REPO = Path(__file__).resolve().parents[2]
KEY = {"Ref": "DataKeyArn"}
DELIVERY_KEY = {"Fn::GetAtt": ["DeliveryKey", "Arn"]}
CONNECTION = {
    "provider": "connection",
    "connection_arn": "arn:aws:codeconnections:us-east-1:123456789012:connection/"
                      "12345678-1234-1234-1234-123456789012",
    "repository": "example-org/mlops",
    "branch": "release",
}
NO_TRAINING = {"stages": {"training": {"enabled": False}}}


def loaded(changes: dict | None = None, env: str = "dev"):
    """The bundled default with the stage on and `changes` merged in; `environments` in
    `changes` replaces the default's environments whole (their order and flags matter here)."""
    data = default_data()
    _merge(data, {"stages": {"cicd": {"enabled": True}}})
    changes = dict(changes or {})
    if "environments" in changes:
        data["environments"] = changes.pop("environments")
    _merge(data, changes)
    return load_data(data, "pipeline.yaml", env)


def _merge(target: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def build(changes: dict | None = None, env: str = "dev", targets=None):
    return cicd.build(loaded(changes, env).config, targets)


def template(changes: dict | None = None, **kwargs) -> dict:
    return template_dict(build(changes, **kwargs))


def cicd_changes(**section) -> dict:
    return {"stages": {"cicd": section}}


@pytest.fixture(scope="module")
def default() -> dict:
    return template()


def pipeline_of(t: dict) -> dict:
    return only_resource(t, "AWS::CodePipeline::Pipeline")["Properties"]


def stage_names(t: dict) -> list[str]:
    return [s["Name"] for s in pipeline_of(t)["Stages"]]


def actions_of(t: dict, stage: str) -> list[dict]:
    (found,) = [s for s in pipeline_of(t)["Stages"] if s["Name"] == stage]
    return sorted(found["Actions"], key=lambda a: a["RunOrder"])


def statements_of(t: dict, logical_id: str) -> list[dict]:
    props = t["Resources"][logical_id]["Properties"]
    # A conditional inline policy (Fn::If [condition, policy, AWS::NoValue]) counts as present.
    documents = [(p["Fn::If"][1] if "Fn::If" in p else p)["PolicyDocument"]
                 for p in props.get("Policies", [])]
    if "PolicyDocument" in props:
        documents.append(props["PolicyDocument"])
    return [s for d in documents for s in d["Statement"]]


def all_statements(t: dict) -> list[tuple[str, dict]]:
    found = []
    for logical_id, resource in t["Resources"].items():
        if resource["Type"] in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy",
                                "AWS::S3::BucketPolicy"):
            found += [(logical_id, s) for s in statements_of(t, logical_id)]
    return found


def as_list(value):
    return value if isinstance(value, list) else [value]


def granted(statements: list[dict]) -> set[str]:
    return {a for s in statements if s["Effect"] == "Allow" for a in as_list(s["Action"])}


def build_spec_of(t: dict, project: str = "BuildProject") -> dict:
    return yaml.safe_load(t["Resources"][project]["Properties"]["Source"]["BuildSpec"])


def lint(t: dict) -> list:
    text = json.dumps(t)
    return cfnlint.api.lint(text, config=cfnlint.api.ManualArgs(regions=["us-east-1"]))


# --- the pipeline's stages -------------------------------------------------------------------

def test_stages_run_source_build_then_each_environment_in_config_order():
    t = template({"environments": {"dev": {}, "test": {}, "prod": {"protected": True}},
                  **NO_TRAINING})
    assert stage_names(t) == ["Source", "Build", "Deploy-dev", "Deploy-test", "Deploy-prod"]


def test_every_environment_is_deployed_by_change_set_replace_then_execute(default):
    for env in ("dev", "prod"):
        create, *_, execute = [a for a in actions_of(default, f"Deploy-{env}")
                               if a["Name"] not in ("ProtectStack", "SmokeTest")]
        stack = f"mlops-demo-{env}"
        assert create["ActionTypeId"]["Provider"] == "CloudFormation"
        assert create["Configuration"]["ActionMode"] == "CHANGE_SET_REPLACE"
        assert create["Configuration"]["StackName"] == stack
        assert create["Configuration"]["TemplatePath"] == f"Delivery::{env}/packaged-root.yaml"
        # The template configuration package --stack-name wrote: never parameters.json as
        # rendered, whose missing model and image CloudFormation would reset to the defaults.
        assert create["Configuration"]["TemplateConfiguration"] == (
            f"Delivery::{env}/packaged-parameters.json")
        assert create["Configuration"]["RoleArn"] == {"Fn::GetAtt": ["DeployRole", "Arn"]}
        assert "CAPABILITY_IAM" in create["Configuration"]["Capabilities"]
        assert execute["Configuration"]["ActionMode"] == "CHANGE_SET_EXECUTE"
        assert execute["Configuration"]["StackName"] == stack
        assert execute["Configuration"]["ChangeSetName"] == create["Configuration"]["ChangeSetName"]
        assert execute["RunOrder"] > create["RunOrder"]


def test_manual_approval_sits_between_change_set_and_execution_of_protected_environments_only(
        default):
    assert [a["Name"] for a in actions_of(default, "Deploy-dev")] == [
        "CreateChangeSet", "ExecuteChangeSet", "SmokeTest"]
    create, approve, execute, protect, _smoke = actions_of(default, "Deploy-prod")
    assert approve["ActionTypeId"] == {"Category": "Approval", "Owner": "AWS",
                                       "Provider": "Manual", "Version": "1"}
    assert create["RunOrder"] < approve["RunOrder"] < execute["RunOrder"] < protect["RunOrder"]
    assert "mlops-demo-prod-delivery" in approve["Configuration"]["CustomData"]
    # The request reaches people through the monitoring stage's alarm topic.
    assert approve["Configuration"]["NotificationArn"] == {"Ref": "AlarmTopicArn"}


def test_the_pipeline_may_announce_approvals_on_the_encrypted_alarm_topic(default):
    statements = statements_of(default, "PipelineRole")
    (publish,) = [s for s in statements if s["Action"] == ["sns:Publish"]]
    assert publish["Resource"] == [{"Ref": "AlarmTopicArn"}]
    via_sns = [s for s in statements if "kms:GenerateDataKey" in as_list(s["Action"])
               and s["Condition"]["StringEquals"]["kms:ViaService"] == [
                   {"Fn::Sub": "sns.${AWS::Region}.amazonaws.com"}]]
    assert len(via_sns) == 1


def test_without_monitoring_approvals_are_not_announced():
    t = template({"stages": {"monitoring": {"enabled": False}}})
    (approve,) = [a for a in actions_of(t, "Deploy-prod") if a["Name"] == "Approve"]
    assert "NotificationArn" not in approve["Configuration"]
    assert "AlarmTopicArn" not in t["Parameters"]


def test_a_protected_environment_gets_termination_protection_after_each_execution(default):
    [protect] = [a for a in actions_of(default, "Deploy-prod") if a["Name"] == "ProtectStack"]
    [execute] = [a for a in actions_of(default, "Deploy-prod")
                 if a["Name"] == "ExecuteChangeSet"]
    assert protect["RunOrder"] == execute["RunOrder"] + 1
    assert protect["Configuration"]["ProjectName"] == {"Ref": "ProtectProject"}
    assert json.loads(protect["Configuration"]["EnvironmentVariables"]) == [
        {"name": "STACK_NAME", "value": "mlops-demo-prod", "type": "PLAINTEXT"}]
    spec_text = default["Resources"]["ProtectProject"]["Properties"]["Source"]["BuildSpec"]
    assert ('aws cloudformation update-termination-protection --enable-termination-protection '
            '--stack-name "$STACK_NAME"') in spec_text
    statements = statements_of(default, "ProtectRole")
    (update,) = [s for s in statements
                 if s["Action"] == ["cloudformation:UpdateTerminationProtection"]]
    # Only the protected environments' stacks.
    assert update["Resource"] == [{"Fn::Sub": (
        "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:"
        "stack/mlops-demo-prod/*")}]
    unprotected = template({"environments": {"dev": {}, "qa": {}}, **NO_TRAINING})
    assert "ProtectProject" not in unprotected["Resources"]


def test_approvals_follow_the_protected_flag_of_each_environment():
    t = template({"environments": {"dev": {"protected": True}, "qa": {}, "prod": {}},
                  **NO_TRAINING})
    approvals = {stage: [a["Name"] for a in actions_of(t, stage) if a["Name"] == "Approve"]
                 for stage in ("Deploy-dev", "Deploy-qa", "Deploy-prod")}
    assert approvals == {"Deploy-dev": ["Approve"], "Deploy-qa": [], "Deploy-prod": []}


def test_explicit_targets_decide_environments_and_approvals():
    targets = (DeploymentTarget("a", False), DeploymentTarget("b", True))
    t = template(NO_TRAINING, targets=targets)
    assert stage_names(t) == ["Source", "Build", "Deploy-a", "Deploy-b"]
    assert [a["Name"] for a in actions_of(t, "Deploy-b")][1] == "Approve"


def test_targets_read_from_one_environment_match_the_whole_file():
    # The bundled default in both environments: the derivation agrees with the merged configs.
    for env in ("dev", "prod"):
        whole = loaded(env=env)
        assert cicd.targets_from(whole.config) == cicd.targets_of(whole)


def test_a_protected_flag_shared_by_every_environment_applies_to_all():
    data = {"protected": True, "environments": {"dev": {}, "prod": {}}}
    assert [t.protected for t in cicd.targets_from(loaded(data).config)] == [True, True]


def test_build_consumes_the_source_and_publishes_variables():
    build_action, image_action = actions_of(template(), "Build")
    assert image_action["Name"] == "ModelApiImage" and image_action["RunOrder"] == 2
    assert build_action["ActionTypeId"]["Provider"] == "CodeBuild"
    assert build_action["Configuration"]["ProjectName"] == {"Ref": "BuildProject"}
    assert build_action["InputArtifacts"] == [{"Name": "Source"}]
    assert build_action["OutputArtifacts"] == [{"Name": "Delivery"}]
    assert build_action["Namespace"] == "Build"


def test_pipeline_is_v2_and_restarts_after_updating_itself(default):
    props = pipeline_of(default)
    assert props["PipelineType"] == "V2"
    assert props["RestartExecutionOnUpdate"] is True
    assert props["Name"] == "mlops-demo-dev-delivery"


# --- source ----------------------------------------------------------------------------------

def test_s3_source_is_the_default_started_by_eventbridge_not_polling(default):
    (source,) = actions_of(default, "Source")
    assert source["ActionTypeId"]["Provider"] == "S3"
    assert source["Configuration"] == {"S3Bucket": {"Ref": "SourceBucket"},
                                       "S3ObjectKey": "source/repository.zip",
                                       "PollForSourceChanges": "false"}
    bucket = default["Resources"]["SourceBucket"]["Properties"]
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"] == {
        "EventBridgeEnabled": True}
    rule = default["Resources"]["SourceTriggerRule"]["Properties"]
    assert rule["EventPattern"]["detail"] == {"bucket": {"name": [{"Ref": "SourceBucket"}]},
                                              "object": {"key": ["source/repository.zip"]}}
    (target,) = rule["Targets"]
    assert "codepipeline" in target["Arn"]["Fn::Sub"]
    assert statements_of(default, "SourceTriggerRole")[0]["Action"] == [
        "codepipeline:StartPipelineExecution"]


def test_source_bucket_is_an_output_naming_the_home_environments_bucket(default):
    value = default["Outputs"][outputs.DELIVERY_SOURCE_BUCKET_NAME.name]["Value"]
    assert value == {"Fn::Sub": "mlops-demo-dev-source-${AWS::AccountId}-${AWS::Region}"}


def test_connection_source_takes_repository_branch_and_the_arn_as_a_parameter():
    t = template(cicd_changes(source=CONNECTION))
    (source,) = actions_of(t, "Source")
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["ConnectionArn"] == {"Ref": "DeliverySourceConnectionArn"}
    assert source["Configuration"]["FullRepositoryId"] == "example-org/mlops"
    assert source["Configuration"]["BranchName"] == "release"
    assert "DeliverySourceConnectionArn" in t["Parameters"]
    assert "arn:aws:codeconnections" not in json.dumps(t)
    assert "SourceTriggerRule" not in t["Resources"]
    assert "SourceBucket" not in t["Resources"]
    use = [s for s in statements_of(t, "PipelineRole")
           if "codeconnections:UseConnection" in as_list(s["Action"])]
    assert use[0]["Resource"] == [{"Ref": "DeliverySourceConnectionArn"}]


@pytest.mark.parametrize("source, message", [
    ({"provider": "connection"}, "needs connection_arn and repository"),
    ({"repository": "a/b"}, "only for provider 'connection'"),
])
def test_source_fields_must_fit_the_provider(source, message):
    with pytest.raises(UserError, match=message):
        loaded(cicd_changes(source=source))


# --- one pipeline per project: the home environment --------------------------------------------

def test_only_the_home_environment_creates_the_pipeline(default):
    assert default["Conditions"]["IsDeliveryHome"] == {
        "Fn::Equals": [{"Ref": "EnvironmentName"}, "dev"]}
    for logical_id, resource in default["Resources"].items():
        if logical_id == "Placeholder":
            assert "Condition" not in resource
        else:
            assert resource.get("Condition") == "IsDeliveryHome", logical_id


def test_home_environment_is_configurable_and_must_exist():
    t = template(cicd_changes(home_environment="prod"))
    assert t["Conditions"]["IsDeliveryHome"]["Fn::Equals"][1] == "prod"
    assert pipeline_of(t)["Name"] == "mlops-demo-prod-delivery"
    with pytest.raises(UserError, match="home_environment: 'qa' is not one of"):
        loaded(cicd_changes(home_environment="qa"))


def test_every_environment_renders_the_same_template_and_names_the_one_pipeline():
    dev, prod = template(env="dev"), template(env="prod")
    assert dev == prod
    assert dev["Outputs"][outputs.DELIVERY_PIPELINE_NAME.name]["Value"] == "mlops-demo-dev-delivery"


def test_the_composed_root_wires_the_stage_and_keeps_environments_identical():
    dev = pipeline.build(loaded(env="dev"))
    prod = pipeline.build(loaded(env="prod"))
    assert "CicdStack" in dev.root.resources
    assert render.render_files(dev) .keys() == render.render_files(prod).keys()
    for name, content in render.render_files(dev).items():
        if name != render.PARAMETERS_FILE:
            assert content == render.render_files(prod)[name], name


# --- build spec ------------------------------------------------------------------------------

def test_build_checks_validates_and_tests_before_packaging_each_environment(default):
    phases = build_spec_of(default)["phases"]
    assert phases["pre_build"]["commands"] == [
        "mlops-cfn render --check --all-envs --out templates",
        "mlops-cfn validate templates",
        "python -m pytest -q -n auto",
    ]
    commands = phases["build"]["commands"]
    for env in ("dev", "prod"):
        package = ('mlops-cfn package --bucket "$ARTIFACT_BUCKET" --prefix delivery/ '
                   f"--stack-name mlops-demo-{env} --latest-approved-model --model-api-image "
                   f"templates/{env}")
        copy = (f"cp templates/{env}/packaged-root.yaml templates/{env}/packaged-parameters.json"
                f" delivery/{env}/")
        assert commands.index(package) < commands.index(copy)
    assert build_spec_of(default)["artifacts"] == {"base-directory": "delivery",
                                                   "files": ["**/*"]}


def test_build_installs_the_repository_with_the_configured_python(default):
    install = build_spec_of(default)["phases"]["install"]
    assert install["runtime-versions"] == {"python": "3.11"}
    assert install["commands"][0].startswith("pip install")
    assert '-e ".[test]"' in install["commands"][0]


def test_build_uses_the_configured_pipeline_file_and_templates_directory():
    t = template(cicd_changes(build={"config_file": "deploy/pipeline.yaml",
                                     "templates_dir": "cfn", "test_commands": []}))
    pre_build = build_spec_of(t)["phases"]["pre_build"]["commands"]
    assert pre_build == [
        "mlops-cfn render --check --all-envs --out cfn --config deploy/pipeline.yaml",
        "mlops-cfn validate cfn",
    ]


def test_repository_paths_stay_inside_the_repository():
    with pytest.raises(UserError, match="leaves the repository"):
        loaded(cicd_changes(build={"templates_dir": "../elsewhere"}))
    with pytest.raises(UserError, match="templates_dir"):
        loaded(cicd_changes(build={"templates_dir": "/etc"}))


def test_build_spec_file_names_are_those_render_and_package_write():
    assert spec.PARAMETERS_FILE == render.PARAMETERS_FILE
    assert spec.PACKAGED_ROOT_NAME == render.PACKAGED_ROOT_NAME


def test_build_exports_the_training_code_hash_only_with_retraining(default):
    assert build_spec_of(default)["env"]["exported-variables"] == ["TRAINING_CODE_HASH"]
    without = template(NO_TRAINING)
    assert "exported-variables" not in build_spec_of(without)["env"]
    assert "RetrainProject" not in without["Resources"]
    assert "Retrain" not in stage_names(without)
    off = template(cicd_changes(retrain={"enabled": False}))
    assert "RetrainProject" not in off["Resources"]


def run_hash(tmp_path: Path, paths: list[str]) -> str:
    command = spec.training_code_hash_command(paths)
    result = subprocess.run(["bash", "-c", f'{command} && printf %s "$TRAINING_CODE_HASH"'],
                            cwd=tmp_path, capture_output=True, text=True, check=True)
    return result.stdout


def test_training_code_hash_follows_content_and_paths_not_time(tmp_path):
    code = tmp_path / "training"
    code.mkdir()
    (code / "train.py").write_text("print('v1')\n")
    first = run_hash(tmp_path, ["training"])
    assert len(first) == 64
    os.utime(code / "train.py", (0, 0))
    assert run_hash(tmp_path, ["training"]) == first
    (code / "train.py").write_text("print('v2')\n")
    second = run_hash(tmp_path, ["training"])
    assert second != first
    (code / "train.py").write_text("print('v1')\n")
    assert run_hash(tmp_path, ["training"]) == first  # a revert retrains again
    (code / "train.py").rename(code / "fit.py")
    assert run_hash(tmp_path, ["training"]) != first


def test_training_code_hash_of_missing_paths_is_stable(tmp_path):
    empty = hashlib.sha256(b"").hexdigest()
    assert run_hash(tmp_path, ["absent"]) == empty


def test_retraining_follows_the_home_deployment_and_gets_the_hash(default):
    names = stage_names(default)
    assert names.index("Retrain") == names.index("Deploy-dev") + 1
    (action,) = actions_of(default, "Retrain")
    assert action["Configuration"]["ProjectName"] == {"Ref": "RetrainProject"}
    assert json.loads(action["Configuration"]["EnvironmentVariables"]) == [{
        "name": "TRAINING_CODE_HASH", "value": "#{Build.TRAINING_CODE_HASH}",
        "type": "PLAINTEXT"}]
    variables = {v["Name"]: v["Value"] for v in default["Resources"]["RetrainProject"][
        "Properties"]["Environment"]["EnvironmentVariables"]}
    assert variables["TRAINING_START_ARN"] == {"Ref": "TrainingStartArn"}


def test_retrain_spec_starts_training_only_for_a_new_hash_and_remembers_it():
    commands = spec.retrain_spec()["phases"]["build"]["commands"]
    decision = commands[-1]
    assert decision.startswith('if [ "$last" = "$TRAINING_CODE_HASH" ]')
    started = decision.split("else", 1)[1]
    assert "aws sagemaker start-pipeline-execution" in started
    assert started.index("start-pipeline-execution") < started.index(spec.RETRAIN_STATE_KEY)


def test_retrain_spec_skips_an_unchanged_hash_when_run(tmp_path):
    """The decision, run in bash with `aws` stubbed: unchanged hash, no start; new hash, start
    and remember."""
    calls = tmp_path / "calls"
    state = tmp_path / "state"
    stub = tmp_path / "bin" / "aws"
    stub.parent.mkdir()
    stub.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {calls}
if [ "$1 $2" = "s3 cp" ] && [ "$4" = "-" ]; then cat {state} 2>/dev/null || exit 1; fi
if [ "$1 $2" = "s3 cp" ] && [ "$3" = "-" ]; then cat > {state}; fi
exit 0
""")
    stub.chmod(0o755)
    script = "\n".join(spec.retrain_spec()["phases"]["build"]["commands"])
    pipeline = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/p"
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}",
           "ARTIFACT_BUCKET": "b", "TRAINING_START_ARN": pipeline, "TRAINING_CODE_HASH": "a" * 64}

    def run():
        subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True)
        text = calls.read_text() if calls.exists() else ""
        calls.unlink(missing_ok=True)
        return text

    assert "start-pipeline-execution" in run()
    assert state.read_text() == "a" * 64
    assert "start-pipeline-execution" not in run()
    env["TRAINING_CODE_HASH"] = "b" * 64
    assert "start-pipeline-execution --pipeline-name p" in run()
    # With engine codebuild the wire names the training project: the same build starts it.
    env["TRAINING_START_ARN"] = "arn:aws:codebuild:eu-west-1:123456789012:project/cb-train"
    env["TRAINING_CODE_HASH"] = "c" * 64
    started = run()
    assert "codebuild start-build --project-name cb-train" in started
    assert "sagemaker" not in started


def test_retrain_spec_refuses_to_run_without_a_hash():
    script = "\n".join(spec.retrain_spec()["phases"]["build"]["commands"])
    result = subprocess.run(["bash", "-c", script], env={"PATH": os.environ["PATH"]},
                            capture_output=True, text=True)
    assert result.returncode != 0


# --- encryption and logging ------------------------------------------------------------------

@pytest.mark.parametrize("bucket", ["ArtifactBucket", "SourceBucket"])
def test_buckets_are_encrypted_versioned_private_logged_tls_only_and_retained(default, bucket):
    resource = default["Resources"][bucket]
    props = resource["Properties"]
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms",
                                                     "KMSMasterKeyID": DELIVERY_KEY}
    assert rule["BucketKeyEnabled"] is True
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": "AccessLogsBucketName"}
    assert props["LoggingConfiguration"]["LogFilePrefix"].startswith("s3-access/")
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
    denies = [s for s in statements_of(default, f"{bucket}Policy") if s["Effect"] == "Deny"]
    assert {"Bool": {"aws:SecureTransport": "false"}} in [d.get("Condition") for d in denies]


def test_artifact_store_is_encrypted_with_the_delivery_key(default):
    store = pipeline_of(default)["ArtifactStore"]
    assert store["EncryptionKey"] == {"Id": DELIVERY_KEY, "Type": "KMS"}
    assert store["Location"] == {"Ref": "ArtifactBucket"}


@pytest.mark.parametrize("project, log_group", [("BuildProject", "BuildLogGroup"),
                                                ("RetrainProject", "RetrainLogGroup")])
def test_projects_are_encrypted_unprivileged_and_log_to_encrypted_groups(default, project,
                                                                         log_group):
    props = default["Resources"][project]["Properties"]
    assert props["EncryptionKey"] == DELIVERY_KEY
    assert props["Environment"]["PrivilegedMode"] is False
    assert props["LogsConfig"]["CloudWatchLogs"] == {"Status": "ENABLED",
                                                     "GroupName": {"Ref": log_group}}
    assert props["LogsConfig"]["S3Logs"] == {"Status": "DISABLED"}
    group = default["Resources"][log_group]["Properties"]
    assert group["KmsKeyId"] == KEY
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_delivery_key_is_its_own_rotated_retained_and_used_only_through_iam(default):
    """Every environment's roles decrypt the packages: a key of their own, not the home
    environment's data key."""
    key = default["Resources"]["DeliveryKey"]
    assert key["Condition"] == "IsDeliveryHome"
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"
    props = key["Properties"]
    assert props["EnableKeyRotation"] is True
    statements = props["KeyPolicy"]["Statement"]
    principals = {json.dumps(s["Principal"]) for s in statements if s["Effect"] == "Allow"}
    assert principals == {json.dumps({"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::"
                                                         "${AWS::AccountId}:root"}})}
    # The one deny: grants only for AWS resources (CT.KMS.PR.3).
    assert [s["Sid"] for s in statements if s["Effect"] == "Deny"] == ["GrantsOnlyForAwsResources"]
    users = {logical_id for logical_id, s in all_statements(default)
             if DELIVERY_KEY in as_list(s.get("Resource", []))}
    assert users == {"PipelineRole", "BuildRole", "RetrainRole", "ProtectRole", "SmokeRole",
                     "ImageRole", "DeployRole"}
    for logical_id, s in all_statements(default):
        if DELIVERY_KEY in as_list(s.get("Resource", [])):
            assert [v["Fn::Sub"] for v in s["Condition"]["StringEquals"]["kms:ViaService"]] \
                == ["s3.${AWS::Region}.amazonaws.com"], logical_id


def test_build_sizes_are_settings_not_literals(default):
    props = default["Resources"]["BuildProject"]["Properties"]
    assert props["Environment"]["ComputeType"] == {"Ref": "DeliveryBuildComputeType"}
    assert props["Environment"]["Image"] == {"Ref": "DeliveryBuildImage"}
    assert props["TimeoutInMinutes"] == {"Ref": "DeliveryBuildTimeoutMinutes"}
    resources = json.dumps(default["Resources"])
    assert "BUILD_GENERAL1" not in resources and "amazonlinux" not in resources


def test_build_runs_outside_the_vpc_by_default(default):
    assert "VpcConfig" not in default["Resources"]["BuildProject"]["Properties"]
    assert "VpcId" not in default["Parameters"]


# --- in the VPC ------------------------------------------------------------------------------

IN_VPC = {"network": {"internet_gateway": True}, **cicd_changes(build={"in_vpc": True})}


def test_in_vpc_builds_run_in_the_private_subnets():
    t = template(IN_VPC)
    for project in ("BuildProject", "RetrainProject"):
        vpc = t["Resources"][project]["Properties"]["VpcConfig"]
        assert vpc["Subnets"] == {"Ref": "PrivateSubnetIds"}
        assert vpc["VpcId"] == {"Ref": "VpcId"}
        assert vpc["SecurityGroupIds"] == [{"Fn::GetAtt": ["BuildSecurityGroup", "GroupId"]}]
    group = t["Resources"]["BuildSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in group
    assert [r["FromPort"] for r in group["SecurityGroupEgress"]] == [443]
    permission = [s for s in statements_of(t, "BuildRole")
                  if s["Action"] == ["ec2:CreateNetworkInterfacePermission"]]
    assert permission[0]["Condition"]["StringEquals"] == {
        "ec2:AuthorizedService": "codebuild.amazonaws.com"}


def test_in_vpc_needs_a_way_to_the_internet_in_a_created_vpc():
    with pytest.raises(UserError, match="stages.cicd.build.in_vpc"):
        loaded(cicd_changes(build={"in_vpc": True}))


def test_in_vpc_asks_the_network_for_the_endpoints_it_calls():
    section = loaded(IN_VPC).config.stages.cicd
    assert section.vpc_endpoints() == ("logs", "sagemaker.api")
    assert loaded().config.stages.cicd.vpc_endpoints() == ()


# --- IAM -------------------------------------------------------------------------------------

VARIANTS = {
    "default": {},
    "connection": cicd_changes(source=CONNECTION),
    "in-vpc": IN_VPC,
    "no-training": NO_TRAINING,
    "one-environment": {"environments": {"dev": {}}},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_allow_statement_grants_a_wildcard_action(variant):
    statements = all_statements(template(VARIANTS[variant]))
    assert statements
    for where, statement in statements:
        if statement["Effect"] != "Allow":
            continue
        for action in as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), (where, action)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_star_resources_only_for_actions_aws_cannot_scope(variant):
    statements = all_statements(template(VARIANTS[variant]))
    assert statements
    for where, statement in statements:
        if statement["Effect"] == "Allow" and "*" in as_list(statement["Resource"]):
            for action in as_list(statement["Action"]):
                assert not permissions.supports_resource_scope(action), (where, action)


def test_services_assume_the_roles_only_for_this_account(default):
    for role, service in [("PipelineRole", "codepipeline.amazonaws.com"),
                          ("BuildRole", "codebuild.amazonaws.com"),
                          ("SourceTriggerRole", "events.amazonaws.com")]:
        (trust,) = default["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": service}
        assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {
            "Ref": "AWS::AccountId"}}}
    (trust,) = default["Resources"]["DeployRole"]["Properties"]["AssumeRolePolicyDocument"][
        "Statement"]
    assert trust["Principal"] == {"Service": "cloudformation.amazonaws.com"}


def test_pipeline_role_passes_only_the_deploy_role_and_only_to_cloudformation(default):
    statements = statements_of(default, "PipelineRole")
    (passing,) = [s for s in statements if "iam:PassRole" in as_list(s["Action"])]
    assert passing["Resource"] == [{"Fn::GetAtt": ["DeployRole", "Arn"]}]
    assert passing["Condition"] == {"StringEquals": {
        "iam:PassedToService": "cloudformation.amazonaws.com"}}


def test_pipeline_role_changes_only_the_environments_root_stacks(default):
    (stacks,) = [s for s in statements_of(default, "PipelineRole")
                 if "cloudformation:CreateChangeSet" in as_list(s["Action"])]
    assert [r["Fn::Sub"] for r in stacks["Resource"]] == [
        "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:"
        f"stack/mlops-demo-{env}/*" for env in ("dev", "prod")]
    assert stacks["Condition"] == {"StringEquals": {"cloudformation:ChangeSetName": [
        "mlops-demo-dev-delivery", "mlops-demo-prod-delivery"]}}
    stack_actions = {a for a in granted(statements_of(default, "PipelineRole"))
                     if a.startswith("cloudformation:") and "Stack" in a}
    # no direct create/update/delete; reading events names a failed deployment's first failure
    assert stack_actions == {"cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents"}


def test_pipeline_role_starts_only_its_own_builds(default):
    (builds,) = [s for s in statements_of(default, "PipelineRole")
                 if "codebuild:StartBuild" in as_list(s["Action"])]
    assert builds["Resource"] == [{"Fn::GetAtt": ["BuildProject", "Arn"]},
                                  {"Fn::GetAtt": ["RetrainProject", "Arn"]},
                                  {"Fn::GetAtt": ["ProtectProject", "Arn"]},
                                  {"Fn::GetAtt": ["SmokeProject", "Arn"]},
                                  {"Fn::GetAtt": ["ImageProject", "Arn"]}]


def test_build_role_can_package_but_not_deploy(default):
    statements = statements_of(default, "BuildRole")
    actions = granted(statements)
    assert {"s3:PutObject", "s3:GetObject", "logs:PutLogEvents"} <= actions
    # SageMaker only to list the approved model versions it serves.
    assert not {a for a in actions if a.split(":")[0] == "iam"}
    assert {a for a in actions if a.startswith("sagemaker:")} == {
        "sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage"}
    # It reads the environments' stacks (their live model and image), nothing more.
    (describe,) = [s for s in statements if any(a.startswith("cloudformation:")
                                                for a in as_list(s["Action"]))]
    assert describe["Action"] == ["cloudformation:DescribeStacks"]
    assert [r["Fn::Sub"] for r in describe["Resource"]] == [
        "arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:"
        f"stack/mlops-demo-{env}/*" for env in ("dev", "prod")]


def test_build_installs_the_wheel_packaging_shipped(default):
    """mlops-cfn is on no package index: the build gets the wheel package uploaded beside the
    templates (wheel.py), and may read exactly that object."""
    variables = {v["Name"]: v["Value"] for v in
                 default["Resources"]["BuildProject"]["Properties"]["Environment"][
                     "EnvironmentVariables"]}
    assert variables["MLOPS_CFN_WHEEL"] == {
        "Fn::Sub": "s3://${AssetsBucket}/${AssetsPrefix}${ToolWheelKey}"}
    (read,) = [s for s in statements_of(default, "BuildRole")
               if "ToolWheelKey" in json.dumps(s.get("Resource"))]
    assert read["Action"] == ["s3:GetObject"]
    assert read["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:s3:::${AssetsBucket}/"
                                            "${AssetsPrefix}${ToolWheelKey}"}]
    install = build_spec_of(template(cicd_changes(build={"install_commands": BuildConfig()
                                                          .install_commands})))
    commands = install["phases"]["install"]["commands"]
    assert any('"$MLOPS_CFN_WHEEL"' in c for c in commands)
    assert not any("pip install" in c and "mlops-cfn==" in c for c in commands)


def test_retrain_role_starts_only_what_the_training_stage_names(default):
    statements = statements_of(default, "RetrainRole")
    (start,) = [s for s in statements
                if "sagemaker:StartPipelineExecution" in as_list(s["Action"])]
    # Either engine's start, on the one ARN: IAM applies each only to its own service's ARN.
    assert sorted(as_list(start["Action"])) == ["codebuild:StartBuild",
                                                "sagemaker:StartPipelineExecution"]
    assert start["Resource"] == [{"Ref": "TrainingStartArn"}]
    assert granted(statements) & {"s3:PutObject"}
    (put,) = [s for s in statements if s["Action"] == ["s3:PutObject"]]
    assert put["Resource"] == [{"Fn::Sub": f"${{ArtifactBucket.Arn}}/{spec.RETRAIN_STATE_KEY}"}]


def test_deploy_role_holds_what_the_templates_need_and_reads_the_packages():
    built = pipeline.build(loaded())
    t = template_dict(next(s for s in built.stages if s.name == "cicd"))
    requirements = pipeline.deployed_requirements(loaded())
    own = permissions.template_requirements(t)
    assert {"AWS::Kinesis::Stream", "AWS::SageMaker::Pipeline"} <= requirements  # others'
    assert "AWS::CodePipeline::Pipeline" in own and "AWS::CodePipeline::Pipeline" not in (
        requirements)
    from mlops_cfn import boundary

    # Everything the handlers list, but removing a permissions boundary (boundary.py): the
    # deploy role never takes a role out from under it.
    expected = set(permissions.actions_for({*requirements, *own})) - {boundary.REMOVE_BOUNDARY}
    assert granted(deploy_statements(t)) == expected
    (read,) = [s for s in statements_of(t, "DeployRole")
               if "s3:GetObject" in as_list(s["Action"])]
    assert read["Resource"] == [{"Fn::Sub": "${ArtifactBucket.Arn}/delivery/*"}]


def test_the_pipeline_may_update_itself():
    """Issue 12, finding 16: updating AWS::CodePipeline::Pipeline starts it and toggles its
    stage transitions (its registry update handler); without these the pipeline's own stack
    update fails."""
    actions = granted(deploy_statements(template()))
    assert {"codepipeline:StartPipelineExecution", "codepipeline:EnableStageTransition",
            "codepipeline:DisableStageTransition"} <= actions


def test_the_deploy_role_may_build_a_model_from_a_registered_model_package():
    """Issue 12, finding 12: CreateModel from ContainerDefinition.ModelPackageName."""
    t = template_dict(next(s for s in pipeline.build(loaded()).stages if s.name == "cicd"))
    assert "sagemaker:DescribeModelPackage" in granted(deploy_statements(t))


def test_without_requirements_the_deploy_role_covers_this_stage_and_the_nested_stacks():
    actions = granted(deploy_statements(template()))
    assert {"codebuild:CreateProject", "cloudformation:CreateStack"} <= actions
    assert not {a for a in actions if a.startswith("kinesis:")}


def deploy_statements(t: dict) -> list[dict]:
    role = t["Resources"]["DeployRole"]["Properties"]
    return [s for r in role["ManagedPolicyArns"]
            for s in t["Resources"][r["Ref"]]["Properties"]["PolicyDocument"]["Statement"]]


@pytest.mark.parametrize("project, prefix", [
    ("mlops-demo", "mlops-demo-"),
    # CloudFormation keeps 25 characters of a stack's name in a generated role name that
    # would be too long; the prefix is what survives that cut.
    ("customer-churn-predictions", "customer-churn-prediction"),
])
def test_the_deploy_role_manages_and_passes_only_the_projects_roles_and_policies(project,
                                                                                 prefix):
    t = template({"project": project})
    iam = [s for s in deploy_statements(t) if s.get("Sid") == "ManageIam"]
    assert len(iam) == 1
    assert iam[0]["Resource"] == [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{prefix}*"},
        {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/*"},
        {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy/{prefix}*"}]
    (passing,) = [s for s in deploy_statements(t) if s.get("Sid") == "PassRolesToServices"]
    assert passing["Resource"] == [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{prefix}*"}]
    # CloudFormation's name for a role of a nested stack of this project starts so.
    nested_stack = f"{project}-prod-TrainingStack-1A2B3C4D5E6F"
    generated = f"{nested_stack[:25]}-PipelineRole-ABCDEFGHIJKL"
    assert generated.startswith(prefix)


def test_deploy_role_policies_each_fit_a_managed_policy(default):
    managed = resources_of_type(default, "AWS::IAM::ManagedPolicy")
    assert managed
    for logical_id in managed:
        document = default["Resources"][logical_id]["Properties"]["PolicyDocument"]
        assert len(json.dumps(document, separators=(",", ":"))) <= permissions.MANAGED_POLICY_LIMIT
    assert len(default["Resources"]["DeployRole"]["Properties"]["ManagedPolicyArns"]) <= 10


def test_deploy_role_covers_stages_enabled_in_any_environment():
    data = {"stages": {"training": {"enabled": False}},
            "environments": {"dev": {}, "prod": {"stages": {"training": {"enabled": True}}}}}
    assert "AWS::SageMaker::Pipeline" in pipeline.deployed_requirements(loaded(data))
    dev, prod = (template_dict(next(s for s in pipeline.build(loaded(data, env)).stages
                                    if s.name == "cicd")) for env in ("dev", "prod"))
    assert "sagemaker:CreatePipeline" in granted(deploy_statements(dev))
    # Environments that differ in which stages they enable still share the deploy role.
    assert deploy_statements(dev) == deploy_statements(prod)


# --- cross-stage contracts -------------------------------------------------------------------

def test_access_logs_bucket_admits_the_delivery_buckets_logs():
    from mlops_cfn.stages import storage

    logs_policy = template_dict(storage.build(loaded().config))["Resources"][
        "AccessLogsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (delivery,) = [s for s in logs_policy if s.get("Sid") == "S3ServerAccessLogDelivery"]
    sources = json.dumps(delivery["Condition"])
    assert "delivery" in sources or "-*" in sources


# --- lint ------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cfn_lint_finds_nothing(variant):
    assert lint(template(VARIANTS[variant])) == []


def test_build_config_defaults_describe_this_repository():
    build = BuildConfig()
    assert build.templates_dir == "templates"
    assert build.config_file is None


# --- approving a model deploys it ------------------------------------------------------------

def test_approving_a_package_in_any_environments_group_starts_the_pipeline(default):
    rule = default["Resources"]["ApprovalTriggerRule"]
    assert rule["Condition"] == "IsDeliveryHome"
    # AWS: "Automating Amazon SageMaker AI with Amazon EventBridge", model package state change.
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {"ModelPackageGroupName": ["mlops-demo-dev-models", "mlops-demo-prod-models"],
                   "ModelApprovalStatus": ["Approved"]},
    }
    [target] = rule["Properties"]["Targets"]
    assert target["RoleArn"] == {"Fn::GetAtt": ["ApprovalTriggerRole", "Arn"]}
    [starts] = statements_of(default, "ApprovalTriggerRole")
    assert starts["Action"] == ["codepipeline:StartPipelineExecution"]
    assert starts["Resource"] == [target["Arn"]]


def test_every_run_serves_each_environments_newest_approved_package(default):
    commands = build_spec_of(default)["phases"]["build"]["commands"]
    packaging = [c for c in commands if c.startswith("mlops-cfn package")]
    assert len(packaging) == 2
    assert all("--stack-name mlops-demo-" in c and "--latest-approved-model" in c
               for c in packaging)
    # Listing the registry's approved versions, in this account and region only.
    [listing] = [s for s in statements_of(default, "BuildRole")
                 if "sagemaker:ListModelPackages" in as_list(s["Action"])]
    assert as_list(listing["Action"]) == ["sagemaker:ListModelPackages",
                                          "sagemaker:DescribeModelPackage"]
    assert listing["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:"
                                               "${AWS::AccountId}:model-package/*"}]


@pytest.mark.parametrize("changes", [
    cicd_changes(deploy_approved_models=False),
    {"stages": {"training": {"enabled": False}}},
    {"stages": {"serving": {"model_source": "model_data", "target": "fargate"}}},
], ids=["switched-off", "no-training", "no-model-packages"])
def test_without_approved_models_to_serve_nothing_watches_the_registry(changes):
    t = template(changes)
    assert "ApprovalTriggerRule" not in t["Resources"]
    commands = build_spec_of(t)["phases"]["build"]["commands"]
    assert [c for c in commands if c.startswith("mlops-cfn package")]
    assert not [c for c in commands if "--latest-approved-model" in c]
    assert "sagemaker:ListModelPackages" not in granted(statements_of(t, "BuildRole"))


def test_an_explicit_approved_model_switch_without_training_is_refused():
    with pytest.raises(UserError, match=r"stages.cicd.deploy_approved_models.*"
                                        r"stages.training.enabled"):
        loaded({"stages": {"cicd": {"deploy_approved_models": True},
                           "training": {"enabled": False}}})


# --- the smoke test after each deployment ----------------------------------------------------

def test_each_environments_stage_ends_with_the_smoke_test_that_stops_promotion(default):
    for env in ("dev", "prod"):
        actions = actions_of(default, f"Deploy-{env}")
        smoke = actions[-1]
        assert smoke["Name"] == "SmokeTest", "last: a failure stops the next environment"
        assert smoke["Configuration"]["ProjectName"] == {"Ref": "SmokeProject"}
        assert json.loads(smoke["Configuration"]["EnvironmentVariables"]) == [
            {"name": spec.ENVIRONMENT_VARIABLE, "value": env, "type": "PLAINTEXT"}]
        assert smoke["InputArtifacts"] == [{"Name": cicd.SOURCE_ARTIFACT}]
        assert smoke["RunOrder"] > max(a["RunOrder"] for a in actions[:-1])
    phases = build_spec_of(default, "SmokeProject")["phases"]
    assert phases["install"]["commands"] == (
        loaded().config.stages.cicd.build.install_commands), "installed as the build is"
    # The build runs outside the VPC by default: the internal load balancer is out of reach.
    assert phases["build"]["commands"][-1] == (
        f'mlops-cfn smoke --env "${spec.ENVIRONMENT_VARIABLE}" --endpoint-only')


def test_the_smoke_role_reads_the_stacks_and_invokes_only_the_projects_endpoints(default):
    statements = statements_of(default, "SmokeRole")
    actions = granted(statements)
    assert {"cloudformation:DescribeStacks", "sagemaker:InvokeEndpoint"} <= actions
    assert not {a for a in actions if a.split(":")[0] in ("iam", "cloudformation")
                and a != "cloudformation:DescribeStacks"}
    [invoke] = [s for s in statements if "sagemaker:InvokeEndpoint" in as_list(s["Action"])]
    assert invoke["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:"
                                              "${AWS::AccountId}:endpoint/mlops-demo-*"}]


def test_in_the_vpc_the_smoke_test_also_calls_the_api():
    t = template({"network": {"internet_gateway": True},
                  **cicd_changes(build={"in_vpc": True})})
    assert build_spec_of(t, "SmokeProject")["phases"]["build"]["commands"][-1] == (
        f'mlops-cfn smoke --env "${spec.ENVIRONMENT_VARIABLE}"')
    assert "VpcConfig" in t["Resources"]["SmokeProject"]["Properties"]


def test_without_serving_there_is_no_smoke_test():
    t = template({"stages": {"serving": {"enabled": False},
                             "monitoring": {"enabled": False}}})
    assert "SmokeProject" not in t["Resources"]
    assert all(a["Name"] != "SmokeTest" for a in actions_of(t, "Deploy-dev"))


# --- the model API's image -------------------------------------------------------------------

def test_the_pipeline_builds_the_model_api_image_once_and_pushes_it_where_it_is_missing(default):
    project = default["Resources"]["ImageProject"]["Properties"]
    assert project["Environment"]["PrivilegedMode"] is True, "Docker needs it"
    others = [r["Properties"]["Environment"]["PrivilegedMode"]
              for k, r in default["Resources"].items()
              if r["Type"] == "AWS::CodeBuild::Project" and k != "ImageProject"]
    assert others and not any(others)
    commands = build_spec_of(default, "ImageProject")["phases"]["build"]["commands"]
    [loop] = [c for c in commands if c.startswith("for repository in ")]
    assert loop.startswith("for repository in mlops-demo-dev-model-api "
                           "mlops-demo-prod-model-api; do")
    assert "describe-images" in loop and "not rebuilt" in loop
    assert f"BASE_IMAGE={spec.MODEL_API_BASE_IMAGE}" in loop
    # Each deployment runs the image of the mlops-cfn that packaged it, by its content tag.
    build = build_spec_of(default)["phases"]["build"]["commands"]
    assert all("--model-api-image" in c for c in build if c.startswith("mlops-cfn package"))


def test_the_image_role_pushes_only_to_the_serving_stages_repositories(default):
    from mlops_cfn.stages import serving

    statements = statements_of(default, "ImageRole")
    [push] = [s for s in statements if "ecr:PutImage" in as_list(s["Action"])]
    assert set(as_list(push["Action"])) == {
        "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
        "ecr:DescribeImages", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"}
    pushed = [r["Fn::Sub"].rsplit("repository/", 1)[1] for r in push["Resource"]]
    assert pushed == ["mlops-demo-dev-model-api", "mlops-demo-prod-model-api"]
    # The names the serving stage gives its repositories, in each environment.
    for env in ("dev", "prod"):
        t = template_dict(serving.build(loaded(env=env).config))
        name = t["Resources"]["ApiRepository"]["Properties"]["RepositoryName"]["Fn::Sub"]
        assert name.replace("${EnvironmentName}", env) in pushed


def test_without_a_fargate_api_no_image_is_built():
    t = template({"stages": {"serving": {"target": "sagemaker"}}})
    assert "ImageProject" not in t["Resources"]
    assert [a["Name"] for a in actions_of(t, "Build")] == ["CheckTestPackage"]
