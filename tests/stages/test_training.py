"""The training stage: a model registry, a SageMaker pipeline in the private subnets that trains,
judges and registers models, its least-privilege role, and EventBridge triggers with a
dead-letter queue for continuous training.

The pipeline definition's own shape is specified in tests/test_training_pipeline.py; here it is
read back from the template (the Fn::Sub body with CloudFormation's values put in).
"""

import json
import re
import subprocess

import cfnlint.api
import pytest

from mlops_cfn import validate
from mlops_cfn.errors import UserError
from mlops_cfn.outputs import (ARTIFACTS_BUCKET_ARN, ARTIFACTS_BUCKET_NAME, DATA_KEY_ARN,
                               ETL_JOB_NAME, MODEL_PACKAGE_GROUP_NAME, PRIVATE_SUBNET_IDS,
                               PROCESSED_BUCKET_ARN, PROCESSED_BUCKET_NAME,
                               PROCESSED_DATA_PREFIX, TRAINING_PIPELINE_ARN,
                               TRAINING_PIPELINE_NAME, TRAINING_ROLE_ARN, VPC_ID)
from mlops_cfn.stages import network, training
from tests.helpers import (config_with, only_resource, resources_of_type, template_dict,
                           statements, with_action)

KEY = {"Ref": "DataKeyArn"}
PIPELINE_ARN = {"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
                           "pipeline/mlops-demo-${EnvironmentName}-training"}
# Actions AWS offers no resource-level permission for (each commented in the stage).
UNSCOPABLE = {"ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions",
              "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "cloudwatch:PutMetricData",
              "ecr:GetAuthorizationToken"}


def loaded(env: str = "dev", etl: bool = False, **changes):
    stages = {"training": {"enabled": True, **changes}}
    if etl:
        stages["etl"] = {"enabled": True}
    else:
        stages["etl"] = {"enabled": False}
    return config_with({"stages": stages}, env=env).config


def build(env: str = "dev", etl: bool = False, **changes):
    return training.build(loaded(env, etl, **changes))


def template(etl: bool = False, **changes) -> dict:
    return template_dict(build(etl=etl, **changes))



def role_statements(t: dict) -> list[dict]:
    return statements(t["Resources"]["PipelineRolePolicy"])



def texts(value) -> str:
    """Every string in a value, for a search through Subs and Refs."""
    return json.dumps(value)


def definition(t: dict, numbers: str = "1") -> dict:
    """The pipeline definition as SageMaker receives it: the Fn::Sub text with each
    ${X} replaced by `<X>` (numbers by `numbers`, the subnet list by two subnets)."""
    body = t["Resources"]["TrainingPipeline"]["Properties"]["PipelineDefinition"][
        "PipelineDefinitionBody"]["Fn::Sub"]
    text, variables = body
    numeric = {name for name, p in t["Parameters"].items() if p["Type"] == "Number"}

    def value(match):
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name == "Subnets":
            return 'subnet-a","subnet-b'
        if name in numeric:
            return numbers
        return f"<{name}>"
    assert set(variables) <= {"Subnets", "XgboostAccount", "AnalyzerAccount", "ClarifyAccount"}
    return json.loads(re.sub(r"\$\{([^}]*)\}", value, text))


def steps(d: dict) -> dict[str, dict]:
    found = {}
    for step in d["Steps"]:
        found[step["Name"]] = step
        for branch in ("IfSteps", "ElseSteps"):
            for inner in step["Arguments"].get(branch, []):
                found[inner["Name"]] = inner
    return found


def lint(stage) -> list:
    return cfnlint.api.lint(stage.template.to_yaml(),
                            config=cfnlint.api.ManualArgs(regions=["us-east-1"]))


# --- registry and pipeline --------------------------------------------------------------------

def test_the_model_registry_is_a_named_group_kept_with_its_models():
    group = only_resource(template(), "AWS::SageMaker::ModelPackageGroup")
    assert group["DeletionPolicy"] == "Retain" and group["UpdateReplacePolicy"] == "Retain"
    assert group["Properties"]["ModelPackageGroupName"] == {
        "Fn::Sub": "mlops-demo-${EnvironmentName}-models"}


def test_the_pipeline_runs_as_its_role_after_the_role_has_its_permissions():
    pipeline = only_resource(template(), "AWS::SageMaker::Pipeline")
    props = pipeline["Properties"]
    assert props["PipelineName"] == {"Fn::Sub": "mlops-demo-${EnvironmentName}-training"}
    assert props["RoleArn"] == {"Fn::GetAtt": ["PipelineRole", "Arn"]}
    assert set(pipeline["DependsOn"]) == {"PipelineRolePolicy", "ModelPackageGroup"}


def test_outputs_offer_the_pipeline_group_and_role():
    outputs = template()["Outputs"]
    assert outputs[TRAINING_PIPELINE_NAME.name]["Value"] == {"Ref": "TrainingPipeline"}
    assert outputs[TRAINING_PIPELINE_ARN.name]["Value"] == PIPELINE_ARN
    assert outputs[MODEL_PACKAGE_GROUP_NAME.name]["Value"] == {
        "Fn::Sub": "mlops-demo-${EnvironmentName}-models"}
    assert outputs[TRAINING_ROLE_ARN.name]["Value"] == {"Fn::GetAtt": ["PipelineRole", "Arn"]}


def test_the_definition_registers_into_this_stacks_group():
    d = definition(template())
    register = steps(d)["RegisterModel"]["Arguments"]
    assert register["ModelPackageGroupName"] == "mlops-demo-<EnvironmentName>-models"
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}


def test_the_definition_names_the_stacks_role_key_buckets_and_scripts():
    t = template()
    d = definition(t)
    train = steps(d)["TrainModel"]["Arguments"]
    assert train["RoleArn"] == "<PipelineRole.Arn>"
    assert train["OutputDataConfig"] == {
        "S3OutputPath": "s3://<ArtifactsBucketName>/training/models", "KmsKeyId": "<DataKeyArn>"}
    assert train["ResourceConfig"]["VolumeKmsKeyId"] == "<DataKeyArn>"
    defaults = {p["Name"]: p["DefaultValue"] for p in d["Parameters"]}
    assert defaults["InputDataUri"] == "s3://<ProcessedBucketName>/training/"
    scripts = {i["S3Input"]["S3Uri"] for s in steps(d).values() if s["Type"] == "Processing"
               for i in s["Arguments"]["ProcessingInputs"] if i["InputName"] == "code"}
    stage = build()
    assert scripts == {f"s3://<AssetsBucket>/<AssetsPrefix>{a.key}" for a in stage.assets}
    assert {a.file_name for a in stage.assets} == {"prepare.py", "evaluate.py"}
    assert all(a.content == (training.SCRIPTS / a.file_name).read_bytes() for a in stage.assets)


def test_without_the_prepare_step_only_the_evaluation_script_ships():
    stage = build(prepare={"enabled": False})
    assert [a.file_name for a in stage.assets] == ["evaluate.py"]
    assert "PrepareData" not in steps(definition(template_dict(stage)))


def test_with_etl_the_pipeline_trains_on_what_the_etl_job_writes():
    stage = build(etl=True)
    inputs = {w.name for w in stage.inputs}
    assert {PROCESSED_DATA_PREFIX.name, ETL_JOB_NAME.name} <= inputs
    defaults = {p["Name"]: p["DefaultValue"]
                for p in definition(template_dict(stage))["Parameters"]}
    assert defaults["InputDataUri"] == "s3://<ProcessedBucketName>/<ProcessedDataPrefix>"


def test_without_etl_the_pipeline_trains_on_the_configured_prefix():
    stage = build(input_prefix="features/")
    assert not {PROCESSED_DATA_PREFIX.name, ETL_JOB_NAME.name} & {w.name for w in stage.inputs}
    defaults = {p["Name"]: p["DefaultValue"]
                for p in definition(template_dict(stage))["Parameters"]}
    assert defaults["InputDataUri"] == "s3://<ProcessedBucketName>/features/"


def test_the_prepare_step_reads_the_format_the_etl_job_writes():
    d = definition(template_dict(training.build(config_with({"stages": {
        "etl": {"enabled": True, "output_format": "csv"}, "training": {"enabled": True}}}).config)))
    arguments = steps(d)["PrepareData"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert arguments[:2] == ["--input-format", "csv"]
    d = definition(template(prepare={"input_format": "csv_headerless"}))
    arguments = steps(d)["PrepareData"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert arguments[:2] == ["--input-format", "csv_headerless"]


def test_needed_wires():
    stage = build()
    assert {w.name for w in stage.inputs} == {
        DATA_KEY_ARN.name, PROCESSED_BUCKET_NAME.name, PROCESSED_BUCKET_ARN.name,
        ARTIFACTS_BUCKET_NAME.name, ARTIFACTS_BUCKET_ARN.name, VPC_ID.name,
        PRIVATE_SUBNET_IDS.name}


# --- images ------------------------------------------------------------------------------------

def test_by_default_the_regions_built_in_xgboost_image_is_looked_up():
    t = template()
    body = t["Resources"]["TrainingPipeline"]["Properties"]["PipelineDefinition"][
        "PipelineDefinitionBody"]["Fn::Sub"]
    assert body[1]["XgboostAccount"] == {
        "Fn::FindInMap": ["XgboostRegistry", {"Ref": "AWS::Region"}, "Account"]}
    assert t["Mappings"]["XgboostRegistry"]["eu-west-1"] == {"Account": "141502667606"}
    d = definition(t)
    image = ("<XgboostAccount>.dkr.ecr.<AWS::Region>.<AWS::URLSuffix>"
             "/sagemaker-xgboost:1.7-1")
    assert steps(d)["TrainModel"]["Arguments"]["AlgorithmSpecification"]["TrainingImage"] == image
    assert steps(d)["EvaluateModel"]["Arguments"]["AppSpecification"]["ImageUri"] == image
    container = steps(d)["RegisterModel"]["Arguments"]["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == image
    assert "TrainingImageUri" not in t["Parameters"]
    assert not with_action(role_statements(t), "ecr:BatchGetImage")


CUSTOM = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/model:1.0"


def test_a_configured_image_is_a_setting_and_may_be_pulled_from_this_accounts_ecr():
    t = template(image_uri=CUSTOM, hyperparameters={"epochs": "3"})
    assert "XgboostRegistry" not in t.get("Mappings", {})
    assert t["Parameters"]["TrainingImageUri"]["Type"] == "String"
    d = definition(t)
    assert steps(d)["TrainModel"]["Arguments"]["AlgorithmSpecification"]["TrainingImage"] == (
        "<TrainingImageUri>")
    assert CUSTOM not in texts(t)
    [pull] = with_action(role_statements(t), "ecr:BatchGetImage")
    assert pull["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:"
                                            "${AWS::AccountId}:repository/*"}]


def test_an_evaluation_image_runs_the_processing_steps():
    d = definition(template(evaluation_image_uri=CUSTOM))
    for name in ("PrepareData", "EvaluateModel"):
        assert steps(d)[name]["Arguments"]["AppSpecification"]["ImageUri"] == (
            "<TrainingEvaluationImageUri>")
    assert "XgboostAccount" in steps(d)["TrainModel"]["Arguments"]["AlgorithmSpecification"][
        "TrainingImage"]


# --- settings ---------------------------------------------------------------------------------

SETTINGS = {
    "TrainingInstanceType": "String", "TrainingInstanceCount": "Number",
    "TrainingVolumeSizeGiB": "Number", "TrainingMaxRuntimeSeconds": "Number",
    "TrainingProcessingInstanceType": "String", "TrainingProcessingVolumeSizeGiB": "Number",
    "TrainingProcessingMaxRuntimeSeconds": "Number", "TrainingMetricThreshold": "Number",
    "ModelApprovalStatus": "String",
}


def test_sizes_counts_thresholds_and_approval_are_settings_fed_into_the_definition():
    t = template()
    for name, kind in SETTINGS.items():
        assert t["Parameters"][name]["Type"] == kind, name
        assert f"${{{name}}}" in t["Resources"]["TrainingPipeline"]["Properties"][
            "PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][0], name
    assert t["Parameters"]["ModelApprovalStatus"]["AllowedValues"] == [
        "PendingManualApproval", "Approved"]


# Distributed training the built-in XGBoost supports with the pipeline's whole-data channels:
# GPU instances with Dask (AWS: "XGBoost algorithm with Amazon SageMaker AI").
DASK = {"objective": "binary:logistic", "eval_metric": "auc", "num_round": "50",
        "tree_method": "gpu_hist", "use_dask_gpu_training": "true"}


def test_values_never_reach_the_resources():
    t = template(instance_type="ml.g5.12xlarge", instance_count=7, volume_size_gb=4321,
                 metric_threshold=0.123, approval_status="Approved", schedule="rate(3 days)",
                 hyperparameters=DASK)
    text = texts(t["Resources"])
    for value in ("ml.g5.12xlarge", r"\b4321\b", r"0\.123", "Approved", r"rate\(3 days\)"):
        assert not re.search(value, text), value


def test_environments_differing_only_in_values_render_the_same_template():
    dev = training.build(config_with({"stages": {"etl": {"enabled": False}, "training": {
        "enabled": True, "instance_count": 1, "schedule": "rate(7 days)",
        "instance_type": "ml.g4dn.xlarge", "hyperparameters": DASK}}}, env="dev").config)
    prod = training.build(config_with({"stages": {"etl": {"enabled": False}, "training": {
        "enabled": True, "hyperparameters": DASK, "instance_type": "ml.g4dn.xlarge"}},
        "environments": {"prod": {"stages": {
            "training": {"instance_count": 4, "metric_threshold": 0.9,
                         "approval_status": "Approved",
                         "instance_type": "ml.g5.4xlarge"}}}}}, env="prod").config)
    assert dev.template.to_yaml() == prod.template.to_yaml()


# --- the role -----------------------------------------------------------------------------------

def test_only_sagemaker_acting_for_this_account_assumes_the_pipeline_role():
    role = template()["Resources"]["PipelineRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"].startswith(
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:")
    assert "ManagedPolicyArns" not in role
    # Inline: only decrypting the scripts with the assets bucket's key, when it has one.
    [(condition, policy, absent)] = [p["Fn::If"] for p in role["Policies"]]
    assert (condition, absent) == ("AssetsEncryptedWithCustomerKey", {"Ref": "AWS::NoValue"})
    [decrypt] = policy["PolicyDocument"]["Statement"]
    assert (decrypt["Action"], decrypt["Resource"]) == (["kms:Decrypt"], [{"Ref": "AssetsKeyArn"}])
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": [
        {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}]}}


@pytest.mark.parametrize("changes", [{}, {"image_uri": CUSTOM, "hyperparameters": {}}])
def test_no_wildcard_action_and_star_only_where_aws_cannot_scope(changes):
    found = role_statements(template(**changes))
    assert found
    for statement in found:
        assert statement["Effect"] == "Allow"
        assert all(not a.endswith("*") for a in statement["Action"]), statement
        if "*" in statement["Resource"]:
            assert statement["Resource"] == ["*"]
            assert set(statement["Action"]) <= UNSCOPABLE, statement


def test_the_role_runs_only_the_pipelines_own_jobs_and_registers_only_into_its_group():
    found = role_statements(template())
    prefix = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
    [jobs] = with_action(found, "sagemaker:CreateTrainingJob")
    assert [r["Fn::Sub"].removeprefix(prefix) for r in jobs["Resource"]] == [
        "training-job/pipelines-*", "processing-job/pipelines-*"]
    [packages] = with_action(found, "sagemaker:CreateModelPackage")
    assert [r["Fn::Sub"].removeprefix(prefix) for r in packages["Resource"]] == [
        "model-package-group/mlops-demo-${EnvironmentName}-models",
        "model-package/mlops-demo-${EnvironmentName}-models/*"]
    sagemaker_actions = {a for s in found for a in s["Action"] if a.startswith("sagemaker:")}
    assert "sagemaker:CreateEndpoint" not in sagemaker_actions
    assert "sagemaker:UpdateModelPackage" not in sagemaker_actions


def test_the_role_passes_only_itself_and_only_to_sagemaker():
    [passing] = with_action(role_statements(template()), "iam:PassRole")
    assert passing["Resource"] == [{"Fn::GetAtt": ["PipelineRole", "Arn"]}]
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def object_resources(found: list[dict], action: str) -> list[str]:
    return [r["Fn::Sub"] for s in with_action(found, action) for r in s["Resource"]]


def test_the_role_reads_the_input_prefix_and_writes_only_the_artifacts_prefix():
    found = role_statements(template(input_prefix="features/", artifacts_prefix="ml/"))
    reads = object_resources(found, "s3:GetObject")
    assert "${ProcessedBucketArn}/features/*" in reads
    assert "${ArtifactsBucketArn}/ml/*" in reads
    # And, for the baselining step, the prefix the Model Monitor schedule reads.
    assert object_resources(found, "s3:PutObject") == [
        "${ArtifactsBucketArn}/ml/*", "${ArtifactsBucketArn}/monitoring/baseline/*"]
    assert not with_action(found, "s3:DeleteObject")
    for listing in with_action(found, "s3:ListBucket"):
        assert listing.get("Condition"), listing


def test_the_baseline_goes_where_the_monitoring_schedule_reads_it_only_with_model_monitor():
    stage = training.build(config_with({"stages": {
        "etl": {"enabled": False},
        "monitoring": {"model_monitor": {"baseline_prefix": "drift/base/"}}}}).config)
    t = template_dict(stage)
    baseline = steps(definition(t))["BaselineData"]["Arguments"]
    [output] = baseline["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"] == "s3://<ArtifactsBucketName>/drift/base/"
    assert baseline["AppSpecification"]["ImageUri"] == (
        "<AnalyzerAccount>.dkr.ecr.<AWS::Region>.<AWS::URLSuffix>/sagemaker-model-monitor-analyzer")
    variables = t["Resources"]["TrainingPipeline"]["Properties"]["PipelineDefinition"][
        "PipelineDefinitionBody"]["Fn::Sub"][1]
    assert variables["AnalyzerAccount"] == {
        "Fn::FindInMap": ["ModelMonitorImageAccounts", {"Ref": "AWS::Region"}, "Account"]}
    assert "${ArtifactsBucketArn}/drift/base/*" in object_resources(role_statements(t),
                                                                    "s3:PutObject")
    for off in ({"monitoring": {"model_monitor": {"enabled": False}}},
                {"serving": {"target": "fargate"}}):
        without = template_dict(training.build(config_with({"stages": {
            "etl": {"enabled": False}, **off}}).config))
        assert "BaselineData" not in steps(definition(without)), off
        assert "ModelMonitorImageAccounts" not in without.get("Mappings", {})


def test_with_etl_the_role_reads_under_the_etl_prefix():
    found = role_statements(template(etl=True))
    assert "${ProcessedBucketArn}/${ProcessedDataPrefix}*" in object_resources(found,
                                                                                "s3:GetObject")


def test_the_role_reads_only_the_shipped_scripts_of_the_assets_bucket():
    stage = build()
    found = role_statements(template_dict(stage))
    assets = [r["Fn::Sub"] for s in found for r in s["Resource"]
              if "AssetsBucket" in texts(r)]
    keys = {a.key for a in stage.assets}
    assert {f"arn:${{AWS::Partition}}:s3:::${{AssetsBucket}}/${{AssetsPrefix}}{k}"
            for k in keys} <= set(assets)
    assert all(a.endswith(tuple(keys)) or a.endswith("${AssetsBucket}") for a in assets)
    [listing] = [s for s in with_action(found, "s3:ListBucket") if "AssetsBucket" in texts(s)]
    # Processing inputs list the script's key, under the prefix packaging chose.
    assert sorted(p["Fn::Sub"] for p in listing["Condition"]["StringEquals"]["s3:prefix"]) == \
        sorted(f"${{AssetsPrefix}}{k}" for k in keys)


def test_the_role_uses_the_data_key_through_s3_and_sagemaker_and_grants_only_to_aws():
    found = [s for s in role_statements(template()) if s["Resource"] == [KEY]]
    use = [s for s in found if "kms:Decrypt" in s["Action"]]
    [use] = use
    assert sorted(s["Fn::Sub"] for s in use["Condition"]["StringEquals"]["kms:ViaService"]) == [
        "s3.${AWS::Region}.amazonaws.com", "sagemaker.${AWS::Region}.amazonaws.com"]
    [grant] = with_action(found, "kms:CreateGrant")
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert {a for s in found for a in s["Action"]} == {
        "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant",
        "kms:DescribeKey"}


def test_the_role_creates_network_interfaces_only_in_this_vpc_with_the_job_group():
    found = role_statements(template())
    [create] = with_action(found, "ec2:CreateNetworkInterface")
    assert ("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:security-group/"
            "${JobSecurityGroup.GroupId}") in [r["Fn::Sub"] for r in create["Resource"]]
    vpc = {"ArnEquals": {"ec2:Vpc": {"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:"
                                                "${AWS::AccountId}:vpc/${VpcId}"}}}
    assert create["Condition"] == vpc
    [manage] = with_action(found, "ec2:DeleteNetworkInterface")
    assert manage["Condition"] == vpc


def test_the_role_writes_only_the_jobs_logs_and_metrics():
    found = role_statements(template())
    [logs] = with_action(found, "logs:PutLogEvents")
    assert [r["Fn::Sub"].split("log-group:")[1] for r in logs["Resource"]] == [
        "/aws/sagemaker/TrainingJobs:*", "/aws/sagemaker/ProcessingJobs:*"]
    [metrics] = with_action(found, "cloudwatch:PutMetricData")
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": [
        "/aws/sagemaker/TrainingJobs", "/aws/sagemaker/ProcessingJobs"]}}


# --- network ----------------------------------------------------------------------------------

def test_jobs_run_in_the_private_subnets_with_their_own_security_group():
    t = template()
    body = t["Resources"]["TrainingPipeline"]["Properties"]["PipelineDefinition"][
        "PipelineDefinitionBody"]["Fn::Sub"]
    assert body[1]["Subnets"] == {"Fn::Join": ['","', {"Ref": "PrivateSubnetIds"}]}
    d = definition(t)
    vpc = {"SecurityGroupIds": ["<JobSecurityGroup.GroupId>"], "Subnets": ["subnet-a", "subnet-b"]}
    jobs = [s for s in steps(d).values() if s["Type"] in ("Training", "Processing")]
    assert len(jobs) == 4  # prepare, train, evaluate, baseline
    for job in jobs:
        found = job["Arguments"].get("VpcConfig") or job["Arguments"]["NetworkConfig"]["VpcConfig"]
        assert found == vpc, job["Name"]


@pytest.mark.parametrize("isolation", [True, False])
def test_network_isolation_and_traffic_encryption_follow_the_config(isolation):
    d = definition(template(network_isolation=isolation, inter_container_encryption=isolation))
    train = steps(d)["TrainModel"]["Arguments"]
    assert train["EnableNetworkIsolation"] is isolation
    assert train["EnableInterContainerTrafficEncryption"] is isolation
    network_config = steps(d)["EvaluateModel"]["Arguments"]["NetworkConfig"]
    assert network_config["EnableNetworkIsolation"] is isolation


def test_the_job_security_group_allows_https_out_and_traffic_within_the_job_only():
    t = template()
    group = t["Resources"]["JobSecurityGroup"]["Properties"]
    assert group["VpcId"] == {"Ref": "VpcId"}
    assert "SecurityGroupIngress" not in group
    [egress] = group["SecurityGroupEgress"]
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"]) == ("tcp", 443, 443)
    self_group = {"Fn::GetAtt": ["JobSecurityGroup", "GroupId"]}
    ingress = only_resource(t, "AWS::EC2::SecurityGroupIngress")["Properties"]
    assert ingress["SourceSecurityGroupId"] == self_group and ingress["GroupId"] == self_group
    egress_rule = only_resource(t, "AWS::EC2::SecurityGroupEgress")["Properties"]
    assert egress_rule["DestinationSecurityGroupId"] == self_group


def test_jobs_in_the_vpc_need_the_logs_and_monitoring_endpoints():
    assert loaded().stages.training.vpc_endpoints() == ("logs", "monitoring")
    assert {"logs", "monitoring"} <= set(network.needed_interface_endpoints(loaded()))


# --- continuous training ---------------------------------------------------------------------

def rules(t: dict) -> dict[str, dict]:
    return resources_of_type(t, "AWS::Events::Rule")


def test_by_default_the_pipeline_starts_after_the_etl_job_succeeds():
    t = template(etl=True)
    assert set(rules(t)) == {"EtlSucceededRule"}
    pattern = rules(t)["EtlSucceededRule"]["Properties"]["EventPattern"]
    # The job's own event, with at least one record written (tests/test_etl_job.py matches it
    # against sample events).
    assert pattern == {"source": ["mlops-cfn.etl"], "detail-type": ["Processed Data Written"],
                       "detail": {"jobName": [{"Ref": "EtlJobName"}],
                                  "recordsWritten": [{"numeric": [">", 0]}]}}


def test_without_etl_the_default_is_new_data_in_the_processed_bucket():
    t = template()
    assert set(rules(t)) == {"NewDataRule"}
    pattern = rules(t)["NewDataRule"]["Properties"]["EventPattern"]
    assert pattern == {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": {
        "bucket": {"name": [{"Ref": "ProcessedBucketName"}]},
        "object": {"key": [{"wildcard": "training/*_SUCCESS"}]}}}


def test_new_data_under_the_etl_prefix_and_without_a_marker():
    t = template(etl=True, triggers=["new_data"], new_data_marker="")
    key = rules(t)["NewDataRule"]["Properties"]["EventPattern"]["detail"]["object"]["key"]
    assert key == [{"prefix": {"Fn::Sub": "${ProcessedDataPrefix}"}}]
    t = template(etl=True, triggers=["new_data"])
    key = rules(t)["NewDataRule"]["Properties"]["EventPattern"]["detail"]["object"]["key"]
    assert key == [{"wildcard": {"Fn::Sub": "${ProcessedDataPrefix}*_SUCCESS"}}]


def test_a_schedule_comes_from_its_setting():
    t = template(triggers=["schedule"])
    [rule] = rules(t).values()
    assert rule["Properties"]["ScheduleExpression"] == {"Ref": "TrainingSchedule"}
    assert t["Parameters"]["TrainingSchedule"]["Type"] == "String"


def test_every_rule_starts_the_pipeline_with_retries_and_a_dead_letter_queue():
    t = template(etl=True, triggers=["etl_success", "new_data", "schedule"])
    assert len(rules(t)) == 3
    for rule in rules(t).values():
        assert rule["Properties"]["State"] == "ENABLED"
        [target] = rule["Properties"]["Targets"]
        assert target["Arn"] == PIPELINE_ARN
        assert target["RoleArn"] == {"Fn::GetAtt": ["TriggerRole", "Arn"]}
        assert target["RetryPolicy"] == {
            "MaximumRetryAttempts": {"Ref": "TrainingTriggerRetryAttempts"},
            "MaximumEventAgeInSeconds": {"Ref": "TrainingTriggerMaxEventAgeSeconds"}}
        assert target["DeadLetterConfig"] == {
            "Arn": {"Fn::GetAtt": ["TriggerDeadLetterQueue", "Arn"]}}


def test_the_dead_letter_queue_is_encrypted_and_takes_only_these_rules_events():
    t = template(etl=True, triggers=["etl_success", "schedule"])
    queue = t["Resources"]["TriggerDeadLetterQueue"]["Properties"]
    assert queue["KmsMasterKeyId"] == KEY
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    [statement] = statements(t["Resources"]["TriggerDeadLetterQueuePolicy"])
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == ["sqs:SendMessage"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": [
        {"Fn::GetAtt": ["EtlSucceededRule", "Arn"]}, {"Fn::GetAtt": ["ScheduleRule", "Arn"]}]}}


def test_eventbridge_may_only_start_this_pipeline():
    role = template()["Resources"]["TriggerRole"]
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert statements(role) == [{"Effect": "Allow", "Action": ["sagemaker:StartPipelineExecution"],
                                 "Resource": [PIPELINE_ARN]}]


def test_no_triggers_means_no_rules_queue_or_role():
    t = template(triggers=[])
    for kind in ("AWS::Events::Rule", "AWS::SQS::Queue", "AWS::SQS::QueuePolicy"):
        assert not resources_of_type(t, kind)
    assert "TriggerRole" not in t["Resources"]


# --- config ------------------------------------------------------------------------------------

def test_the_etl_trigger_without_the_etl_stage_is_refused():
    with pytest.raises(UserError) as error:
        loaded(triggers=["etl_success"])
    assert "stages.training.triggers" in str(error.value)


def test_an_objective_that_does_not_fit_the_metric_is_refused():
    with pytest.raises(UserError, match="reg:squarederror"):
        loaded(metric="auc", hyperparameters={"objective": "reg:squarederror"})
    loaded(metric="rmse", hyperparameters={"objective": "reg:squarederror"})


@pytest.mark.parametrize("changes, field", [
    ({"triggers": ["schedule", "schedule"]}, "triggers"),
    ({"schedule": "every day"}, "schedule"),
    ({"image_uri": "docker.io/library/python:3"}, "image_uri"),
    ({"instance_type": "m5.large"}, "instance_type"),
    ({"metric_threshold": float("nan")}, "metric_threshold"),
    ({"prepare": {"validation_fraction": 0.4, "test_fraction": 0.45}}, "prepare"),
    ({"prepare": {"label_column": "y"}}, "prepare.label_column"),
])
def test_config_mistakes_name_the_field(changes, field):
    with pytest.raises(UserError) as error:
        loaded(**changes)
    assert f"stages.training.{field}" in str(error.value)


# --- lint -------------------------------------------------------------------------------------

VARIANTS = {
    "default": {},
    "etl-all-triggers": {"etl": True, "triggers": ["etl_success", "new_data", "schedule"]},
    "custom-image-regression-no-prepare": {
        "image_uri": CUSTOM, "evaluation_image_uri": CUSTOM, "metric": "rmse",
        "hyperparameters": {"objective": "reg:squarederror"}, "prepare": {"enabled": False},
        "network_isolation": False},
    "no-triggers": {"triggers": []},
}


@pytest.mark.parametrize("name", VARIANTS)
def test_template_has_no_cfn_lint_findings(name):
    assert lint(build(**VARIANTS[name])) == []


@pytest.mark.slow
def test_template_has_no_failed_checkov_checks(tmp_path):
    for name, changes in VARIANTS.items():
        (tmp_path / f"{name}.yaml").write_text(build(**changes).template.to_yaml())
    # The checkov `mlops-cfn validate` uses ($MLOPS_CFN_CHECKOV, PATH, .tools/): scripts/test
    # installs it, so its absence fails the test rather than skipping it.
    binary = validate.find_checkov()
    result = subprocess.run(
        [binary, "-d", str(tmp_path), "--framework", "cloudformation", "--skip-download",
         "--quiet", "--compact", "--output", "json"],
        capture_output=True, text=True, check=False)
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [check for r in reports for check in r.get("results", {}).get("failed_checks", [])]
    assert sum(r["summary"]["passed"] for r in reports) > 0
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    assert not failed, [(c["check_id"], c["resource"]) for c in failed]


def test_spot_training_waits_a_per_environment_time_and_checkpoints_where_the_role_writes():
    t = template(spot={"enabled": True, "max_wait_seconds": 20000})
    assert t["Parameters"]["TrainingMaxWaitSeconds"]["Type"] == "Number"
    from mlops_cfn.config import setting_values
    assert setting_values(loaded(spot={"enabled": True, "max_wait_seconds": 20000}))[
        "TrainingMaxWaitSeconds"] == 20000
    writes = [s for s in with_action(role_statements(t), "s3:PutObject")
              if "training/*" in texts(s["Resource"])]
    assert writes, "the checkpoints go under the artifacts prefix the pipeline role writes"
    assert "TrainingMaxWaitSeconds" not in template()["Parameters"], "only with spot"


def test_with_tuning_the_pipeline_role_runs_tuning_jobs_and_reads_their_training_jobs():
    """AWS: "IAM Access Management" (SageMaker Pipelines): Create and Describe for each job
    type; ListTrainingJobsForHyperParameterTuningJob backs the step's TrainingJobSummaries."""
    [tuning] = with_action(role_statements(template(tuning={"enabled": True})),
                           "sagemaker:CreateHyperParameterTuningJob")
    assert sorted(tuning["Action"]) == sorted([
        "sagemaker:CreateHyperParameterTuningJob", "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:StopHyperParameterTuningJob",
        "sagemaker:ListTrainingJobsForHyperParameterTuningJob", "sagemaker:AddTags"])
    assert texts(tuning["Resource"]) == texts([{"Fn::Sub": "arn:${AWS::Partition}:sagemaker:"
                                                "${AWS::Region}:${AWS::AccountId}:"
                                                "hyper-parameter-tuning-job/*"}])
    assert not with_action(role_statements(template()),
                           "sagemaker:CreateHyperParameterTuningJob"), "only with tuning"
