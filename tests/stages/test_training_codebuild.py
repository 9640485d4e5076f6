"""Training in CodeBuild (stages.training.engine: codebuild), and the instance rules of the
built-in XGBoost.

The rendered template is read the way AWS would: CodeBuild unpacks the project's S3 source (the
scripts' zip rendered beside the template) and runs its build spec in bash with the project's
environment variables; here the same commands run on this machine against generated data, with a
stand-in boto3 (S3 as a directory, SageMaker recording its requests), and every call the
scripts make is checked against the role's resolved policy. What cannot run here, in one line:
the XGBoost image itself (this machine's xgboost stands in) and CodeBuild's VPC placement (read
from the template).
"""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mlops_cfn.errors import UserError
from mlops_cfn.stages import training, training_buildspec, training_pipeline

from ..helpers import config_with, template_dict
from ..iam_policy import allowed
from ..template_eval import ACCOUNT, REGION, Resolver, role_statements

CODEBUILD = {"stages": {"training": {"engine": "codebuild"},
                        "monitoring": {"model_monitor": {"enabled": False}}}}
PARAMETERS = {
    "EnvironmentName": "dev", "ProcessedBucketName": "processed",
    "ProcessedBucketArn": "arn:aws:s3:::processed", "ProcessedDataPrefix": "clean/",
    "ArtifactsBucketName": "artifacts", "ArtifactsBucketArn": "arn:aws:s3:::artifacts",
    "DataKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/data", "AssetsBucket": "assets",
    "AssetsPrefix": "p/", "TrainingMetricThreshold": "0.6", "ModelApprovalStatus": "Approved",
    "VpcId": "vpc-0123456789abcdef0", "PrivateSubnetIds": ["subnet-a", "subnet-b"],
    "TrainingBuildComputeType": "BUILD_GENERAL1_SMALL", "TrainingBuildTimeoutMinutes": "60",
}
BUILD_UUID = "0b9d2f7e-1111-4222-8333-444455556666"


def stage(changes=None):
    data = json.loads(json.dumps(CODEBUILD))
    for key, value in (changes or {}).items():
        data["stages"]["training"][key] = value
    return training.build(config_with(data).config)


def load_error(training_changes: dict, more: dict | None = None) -> str:
    with pytest.raises(UserError) as error:
        config_with({"stages": {"training": training_changes, **(more or {})}})
    (line,) = str(error.value).splitlines()
    return line


# --- what cannot work together: one line each ---------------------------------------------------

@pytest.mark.parametrize("changes, says", [
    ({"tuning": {"enabled": True}}, "tuning runs SageMaker training jobs"),
    ({"spot": {"enabled": True}}, "spot is SageMaker's managed spot training"),
    ({"instance_count": 2}, "instance_count is 2"),
    ({"image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/own:1"},
     "image_uri's own training would not run"),
    ({"instance_type": "ml.m5.large", "network_isolation": True},
     "instance_type, network_isolation shape SageMaker jobs"),
])
def test_what_only_sagemaker_jobs_do_is_a_one_line_error_with_engine_codebuild(changes, says):
    line = load_error({"engine": "codebuild", **changes},
                      {"monitoring": {"model_monitor": {"enabled": False}}})
    assert line.startswith("pipeline.yaml: stages.training")
    assert says in line


def test_engine_codebuild_refuses_model_monitor_whose_baseline_only_the_pipeline_writes():
    line = load_error({"engine": "codebuild"})
    assert "stages.training.engine: codebuild writes no Model Monitor baseline" in line


# --- distributed training of the built-in XGBoost ------------------------------------------------

GPU = {"objective": "binary:logistic", "eval_metric": "auc", "num_round": "50",
       "tree_method": "gpu_hist"}


@pytest.mark.parametrize("changes, says", [
    # AWS: "XGBoost algorithm with Amazon SageMaker AI", Distributed CPU training: the data
    # divided between instances, which the pipeline's whole-data channels do not do.
    ({"instance_count": 3}, "distributed CPU training of the built-in XGBoost needs the "
                            "training data divided"),
    # Same page, Distributed GPU training: without Dask, divided data too.
    ({"instance_count": 2, "instance_type": "ml.g5.xlarge", "hyperparameters": GPU},
     "distributed GPU training"),
    # Dask is for GPU types, from 1.5-1.
    ({"instance_type": "ml.g4dn.xlarge", "xgboost_version": "1.3-1",
      "hyperparameters": {**GPU, "use_dask_gpu_training": "true"}},
     "use_dask_gpu_training needs a GPU instance_type and xgboost_version"),
    ({"hyperparameters": {"objective": "binary:logistic", "num_round": "5",
                          "use_dask_gpu_training": "true"}},
     "use_dask_gpu_training needs a GPU instance_type"),
    # Same page, GPU training: 1.7-1 "does not support the P2 instance family".
    ({"instance_type": "ml.p2.xlarge", "hyperparameters": GPU}, "does not support the P2"),
    # Same page: a GPU type trains on its GPU with tree_method gpu_hist.
    ({"instance_type": "ml.g5.xlarge"}, "tree_method gpu_hist only"),
])
def test_instance_choices_aws_documents_as_unsupported_are_one_line_errors(changes, says):
    line = load_error(changes)
    assert line.startswith("pipeline.yaml: stages.training")
    assert says in line


def test_distributed_gpu_training_with_dask_takes_the_pipelines_whole_data_channels():
    loaded = config_with({"stages": {"training": {
        "instance_count": 4, "instance_type": "ml.g5.2xlarge",
        "hyperparameters": {**GPU, "use_dask_gpu_training": "true"}}}})
    t = template_dict(training.build(loaded.config))
    body = t["Resources"]["TrainingPipeline"]["Properties"]["PipelineDefinition"][
        "PipelineDefinitionBody"]["Fn::Sub"][0]
    # AWS: Dask "Either omit the distribution parameter ... or set it to FullyReplicated".
    assert '"S3DataDistributionType": "FullyReplicated"' in body
    assert '"ShardedByS3Key"' not in body


def test_a_p2_instance_is_fine_with_an_xgboost_version_that_supports_it():
    loaded = config_with({"stages": {"training": {
        "instance_type": "ml.p2.xlarge", "xgboost_version": "1.5-1", "hyperparameters": GPU}}})
    assert loaded.config.stages.training.instance_type == "ml.p2.xlarge"


# --- the template ---------------------------------------------------------------------------------

def resolved_project(t: dict) -> tuple[Resolver, dict]:
    resolver = Resolver(t, PARAMETERS)
    return resolver, resolver.value(t["Resources"]["TrainingProject"]["Properties"])


def test_the_codebuild_engine_renders_a_build_in_place_of_the_pipeline():
    t = template_dict(stage())
    types = {r["Type"] for r in t["Resources"].values()}
    assert "AWS::CodeBuild::Project" in types
    assert "AWS::SageMaker::Pipeline" not in types
    assert "AWS::SageMaker::ModelPackageGroup" in types
    assert t["Outputs"]["TrainingStartArn"]["Value"] == {"Fn::GetAtt": ["TrainingProject", "Arn"]}
    assert "TrainingPipelineName" not in t["Outputs"]


def test_the_default_engine_still_renders_the_pipeline_and_names_it_as_what_starts_a_run():
    t = template_dict(training.build(config_with().config))
    assert "TrainingProject" not in t["Resources"]
    assert t["Outputs"]["TrainingStartArn"]["Value"] == t["Outputs"]["TrainingPipelineArn"]["Value"]


def test_the_build_runs_in_the_private_subnets_encrypted_and_logging_with_a_retention():
    t = template_dict(stage())
    resolver, project = resolved_project(t)
    assert project["VpcConfig"]["Subnets"] == "subnet-a,subnet-b"
    (group_id,) = t["Resources"]["TrainingProject"]["Properties"]["VpcConfig"][
        "SecurityGroupIds"]
    group = t["Resources"][group_id["Fn::GetAtt"][0]]["Properties"]
    assert "SecurityGroupIngress" not in group
    assert {(r["FromPort"], r["ToPort"]) for r in group["SecurityGroupEgress"]} == {(443, 443)}
    assert project["EncryptionKey"] == PARAMETERS["DataKeyArn"]
    log_group = t["Resources"][t["Resources"]["TrainingProject"]["Properties"]["LogsConfig"][
        "CloudWatchLogs"]["GroupName"]["Ref"]]["Properties"]
    assert log_group["KmsKeyId"] == {"Ref": "DataKeyArn"}
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert project["Environment"]["PrivilegedMode"] is False


def test_the_image_is_the_built_in_xgboost_the_registry_entry_names_pulled_with_the_role():
    t = template_dict(stage())
    resolver, project = resolved_project(t)
    environment = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    image = project["Environment"]["Image"]
    assert image == environment["INFERENCE_IMAGE"]
    assert image.endswith(".dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1")
    assert project["Environment"]["ImagePullCredentialsType"] == "SERVICE_ROLE"
    statements = role_statements(resolver, "TrainingBuildRole")
    repository = f"arn:aws:ecr:{REGION}:{image.split('.')[0]}:repository/sagemaker-xgboost"
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"):
        assert allowed(statements, action, repository)
    assert allowed(statements, "ecr:GetAuthorizationToken", "*")
    assert not allowed(statements, "ecr:BatchGetImage",
                       f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/other")


def test_every_variable_the_build_spec_reads_is_set_by_the_project_or_codebuild():
    import re

    t = template_dict(stage())
    _, project = resolved_project(t)
    commands = training_buildspec.build_spec(
        config_with(CODEBUILD).config.stages.training, "label", ("value",),
        "parquet")["phases"]["build"]["commands"]
    assert project["Source"]["BuildSpec"] == training_buildspec.as_text(
        {"version": 0.2, "env": {"shell": "bash"}, "phases": {"build": {"commands": commands}}})
    read = set(re.findall(r"\$\{?([A-Z_]+)", "\n".join(commands)))
    given = {v["Name"] for v in project["Environment"]["EnvironmentVariables"]}
    # CodeBuild's own variables ("Environment variables in build environments"), and RUN,
    # which the first command exports.
    codebuild = {"CODEBUILD_BUILD_ID", "CODEBUILD_BUILD_ARN"}
    assert read <= given | codebuild | {training_buildspec.RUN}
    assert given == set(training_buildspec.ENVIRONMENT)


# --- the build, run ------------------------------------------------------------------------------

FAKE_BOTO3 = '''
import json, os, pathlib, shutil

ROOT = pathlib.Path(os.environ["FAKE_S3"])
CALLS = pathlib.Path(os.environ["FAKE_CALLS"])


def record(**call):
    with CALLS.open("a") as handle:
        handle.write(json.dumps(call) + "\\n")


class _Pages:
    def paginate(self, Bucket, Prefix):
        record(action="s3:ListBucket", bucket=Bucket, prefix=Prefix)
        base = ROOT / Bucket
        keys = sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
        yield {"Contents": [{"Key": k} for k in keys if k.startswith(Prefix)]}


class _S3:
    def get_paginator(self, name):
        assert name == "list_objects_v2"
        return _Pages()

    def download_file(self, bucket, key, path):
        record(action="s3:GetObject", bucket=bucket, key=key)
        shutil.copy(ROOT / bucket / key, path)

    def upload_file(self, path, bucket, key, ExtraArgs):
        record(action="s3:PutObject", bucket=bucket, key=key, extra=ExtraArgs)
        (ROOT / bucket / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, ROOT / bucket / key)


class _SageMaker:
    def create_model_package(self, **request):
        record(action="sagemaker:CreateModelPackage", request=request)
        return {"ModelPackageArn": "arn:aws:sagemaker:x:y:model-package/g/1"}


def client(name):
    return {"s3": _S3, "sagemaker": _SageMaker}[name]()
'''


def run_build(tmp_path: Path, threshold: str = "0.6") -> tuple[subprocess.CompletedProcess,
                                                             list[dict], Resolver, dict]:
    """The rendered build, run as CodeBuild would: the S3 source unpacked, the build spec's
    commands in one bash, the project's environment; boto3 a stand-in."""
    built = stage({"prepare": {"input_format": "csv"}})
    t = template_dict(built)
    resolver = Resolver(t, {**PARAMETERS, "TrainingMetricThreshold": threshold})
    project = resolver.value(t["Resources"]["TrainingProject"]["Properties"])
    (zip_asset,) = [a for a in built.assets if a.file_name == "training-build.zip"]
    assert project["Source"]["Location"] == f"assets/p/{zip_asset.key}"
    source = tmp_path / "src"
    zipfile.ZipFile(io.BytesIO(zip_asset.content)).extractall(source)
    stubs = tmp_path / "stubs" / "boto3"
    stubs.mkdir(parents=True)
    (stubs / "__init__.py").write_text(FAKE_BOTO3)
    s3 = tmp_path / "s3"
    data = s3 / "processed" / "clean" / "part-0.csv"
    data.parent.mkdir(parents=True)
    rows = ["label,value"] + [f"{int(i % 100 >= 50)},{(i % 100) / 100 + (i % 7) / 1000}"
                              for i in range(600)]
    data.write_text("\n".join(rows) + "\n")
    (s3 / "artifacts").mkdir()
    calls = tmp_path / "calls.jsonl"
    env = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    env.update({
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(stubs.parent), "FAKE_S3": str(s3), "FAKE_CALLS": str(calls),
        "CODEBUILD_BUILD_ID": f"training:{BUILD_UUID}",
        "CODEBUILD_BUILD_ARN": f"arn:aws:codebuild:{REGION}:{ACCOUNT}:build/training:x",
    })
    import yaml

    commands = yaml.safe_load(project["Source"]["BuildSpec"])["phases"]["build"]["commands"]
    # bash, stopping at the first failing command, as a build phase does.
    result = subprocess.run(["bash", "-e", "-c", "\n".join(commands)], cwd=source, env=env,
                            capture_output=True, text=True, timeout=300)
    recorded = ([json.loads(line) for line in calls.read_text().splitlines()]
                if calls.exists() else [])
    return result, recorded, resolver, project


def test_the_build_trains_evaluates_and_registers_like_the_pipelines_register_step(tmp_path):
    result, calls, resolver, project = run_build(tmp_path)
    assert result.returncode == 0, result.stderr
    (register,) = [c["request"] for c in calls if c["action"] == "sagemaker:CreateModelPackage"]
    run = f"codebuild-{BUILD_UUID}"
    model = f"s3://artifacts/training/models/{run}/model.tar.gz"
    report = f"s3://artifacts/training/evaluation/{run}/evaluation.json"
    assert register["ModelPackageGroupName"] == "mlops-demo-dev-models"
    assert register["ModelApprovalStatus"] == "Approved"
    assert register["InferenceSpecification"]["Containers"] == [
        {"Image": project["Environment"]["Image"], "ModelDataUrl": model}]
    # The same inference and metrics shape as the pipeline's RegisterModel step.
    pipeline_step = training_pipeline.register_step(
        config_with().config.stages.training,
        training_pipeline.Refs(*(["x"] * 20)))["Arguments"]
    spec = register["InferenceSpecification"]
    for key in ("SupportedContentTypes", "SupportedResponseMIMETypes"):
        assert spec[key] == pipeline_step["InferenceSpecification"][key]
    assert register["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json", "S3Uri": report}
    uploaded = tmp_path / "s3" / "artifacts" / "training"
    evaluation = json.loads((uploaded / "evaluation" / run / "evaluation.json").read_text())
    assert evaluation["binary_classification_metrics"]["auc"]["value"] >= 0.6
    assert (uploaded / "models" / run / "model.tar.gz").stat().st_size > 0
    assert register["ClientToken"] == BUILD_UUID


def test_the_role_allows_every_call_the_build_makes_and_uploads_use_the_data_key(tmp_path):
    result, calls, resolver, project = run_build(tmp_path)
    assert result.returncode == 0, result.stderr
    statements = role_statements(resolver, "TrainingBuildRole")
    assert {c["action"] for c in calls} == {"s3:ListBucket", "s3:GetObject", "s3:PutObject",
                                            "sagemaker:CreateModelPackage"}
    via_s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com",
              "kms:CallerAccount": ACCOUNT}
    for call in calls:
        if call["action"] == "s3:ListBucket":
            assert allowed(statements, "s3:ListBucket", f"arn:aws:s3:::{call['bucket']}",
                           {"s3:prefix": call["prefix"]}), call
        elif call["action"] == "sagemaker:CreateModelPackage":
            group = call["request"]["ModelPackageGroupName"]
            assert allowed(statements, "sagemaker:CreateModelPackage",
                           f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{group}")
        else:
            assert allowed(statements, call["action"],
                           f"arn:aws:s3:::{call['bucket']}/{call['key']}"), call
            if call["action"] == "s3:PutObject":
                assert call["extra"] == {"ServerSideEncryption": "aws:kms",
                                         "SSEKMSKeyId": PARAMETERS["DataKeyArn"]}
                assert allowed(statements, "kms:GenerateDataKey", PARAMETERS["DataKeyArn"],
                               via_s3)
            else:
                assert allowed(statements, "kms:Decrypt", PARAMETERS["DataKeyArn"], via_s3)
    # Nothing beyond the prefixes it works in.
    assert not allowed(statements, "s3:PutObject", "arn:aws:s3:::processed/clean/x")
    assert not allowed(statements, "s3:GetObject", "arn:aws:s3:::artifacts/other/x")


def test_a_model_below_the_threshold_fails_the_build_and_registers_nothing(tmp_path):
    result, calls, _, _ = run_build(tmp_path, threshold="1.01")
    assert result.returncode != 0
    assert "missed the registration threshold" in result.stderr
    assert not [c for c in calls if c["action"] == "sagemaker:CreateModelPackage"]


# --- what starts it --------------------------------------------------------------------------------

def test_the_triggers_start_the_build_and_may_start_nothing_else():
    t = template_dict(stage({"triggers": ["etl_success", "schedule"]}))
    resolver = Resolver(t, PARAMETERS)
    project_arn = resolver.get_att("TrainingProject", "Arn")
    for rule in ("EtlSucceededRule", "ScheduleRule"):
        (target,) = resolver.value(t["Resources"][rule]["Properties"]["Targets"])
        assert target["Arn"] == project_arn
    statements = role_statements(resolver, "TriggerRole")
    assert allowed(statements, "codebuild:StartBuild", project_arn)
    assert not allowed(statements, "codebuild:StartBuild",
                       f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/other")
    assert not allowed(statements, "sagemaker:StartPipelineExecution", project_arn)
