"""The serving stage's SageMaker part: a private, encrypted, autoscaled endpoint whose config is
content-addressed and whose deployments roll back by themselves; and batch transform without
code, as a Step Functions state machine."""

import re

import pytest

from mlops_cfn import naming
from mlops_cfn.config import setting_values
from mlops_cfn.stages.serving_common import TRANSFORM_JOB_PREFIX
from mlops_cfn.stages import serving
from tests.helpers import (config_with, only_resource, resources_of_type, statements,
                           template_dict, with_action)
from tests.stages.test_serving import (KEY, build, props, resource, serving_config, sub_text,
                                       template)

ENDPOINT = "mlops-demo-${EnvironmentName}-endpoint"
SAGEMAKER_ONLY = {"target": "sagemaker"}


# What the serving section holds for both targets: the model they serve.
MODEL_KEYS = ("model_source", "model_package_arn", "model_data_url")


def sagemaker(changes: dict | None = None, env: str = "dev") -> dict:
    changes = dict(changes or {})
    model = {k: changes.pop(k) for k in MODEL_KEYS if k in changes}
    return template({"target": "sagemaker", "sagemaker": changes, **model}, env)


def endpoint_config(t: dict) -> tuple[str, dict]:
    found = resources_of_type(t, "AWS::SageMaker::EndpointConfig")
    assert len(found) == 1
    return next(iter(found.items()))


def endpoint_config_id(changes: dict | None = None, env: str = "dev") -> str:
    return endpoint_config(sagemaker(changes, env))[0]


# --- first deployment ----------------------------------------------------------------------

def test_nothing_runs_until_a_model_package_is_named():
    t = sagemaker()
    assert t["Conditions"]["ModelSupplied"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ModelPackageArn"}, ""]}]}
    for kind in ("AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig",
                 "AWS::SageMaker::Endpoint", "AWS::CloudWatch::Alarm",
                 "AWS::ApplicationAutoScaling::ScalableTarget",
                 "AWS::ApplicationAutoScaling::ScalingPolicy"):
        for logical_id, r in resources_of_type(t, kind).items():
            assert r["Condition"] == "ModelSupplied", logical_id
    # The parameter's default is empty: the first deploy creates the rest without a model.
    assert t["Parameters"]["ModelPackageArn"]["AllowedPattern"].endswith(")?$")


def test_the_model_serves_the_package_version_the_parameter_names():
    container = props(sagemaker(), "Model")["PrimaryContainer"]
    assert container == {"ModelPackageName": {"Ref": "ModelPackageArn"}}


def test_a_model_archive_is_served_by_the_image_the_parameters_name():
    t = sagemaker({"model_source": "model_data"})
    assert props(t, "Model")["PrimaryContainer"] == {
        "Image": {"Ref": "ModelImageUri"}, "ModelDataUrl": {"Ref": "ModelDataUrl"}}
    assert t["Conditions"]["ModelSupplied"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ModelDataUrl"}, ""]}]}
    assert "ModelPackageArn" not in t["Parameters"]


# --- placement and encryption --------------------------------------------------------------

def test_the_model_runs_isolated_in_the_private_subnets():
    model = props(sagemaker(), "Model")
    assert model["EnableNetworkIsolation"] is True
    assert model["VpcConfig"] == {
        "SecurityGroupIds": [{"Fn::GetAtt": ["ModelSecurityGroup", "GroupId"]}],
        "Subnets": {"Ref": "PrivateSubnetIds"}}
    assert "ModelName" not in model  # a new package version replaces the model: fresh name
    group = props(sagemaker(), "ModelSecurityGroup")
    assert "SecurityGroupIngress" not in group
    assert [(r["FromPort"], r["ToPort"]) for r in group["SecurityGroupEgress"]] == [(443, 443)]


def test_turning_isolation_off_says_so_to_checkov():
    model = resource(sagemaker({"network_isolation": False}), "Model")
    assert model["Properties"]["EnableNetworkIsolation"] is False
    assert [s["id"] for s in model["Metadata"]["checkov"]["skip"]] == ["CKV_AWS_370"]


def test_instance_volumes_and_captures_are_encrypted_with_the_data_key():
    _, config = endpoint_config(sagemaker())
    assert config["Properties"]["KmsKeyId"] == KEY
    assert config["Properties"]["DataCaptureConfig"]["KmsKeyId"] == KEY


def test_instance_type_and_count_are_parameters():
    _, config = endpoint_config(sagemaker())
    variant, = config["Properties"]["ProductionVariants"]
    assert variant["InstanceType"] == {"Ref": "EndpointInstanceType"}
    assert variant["InitialInstanceCount"] == {"Ref": "EndpointInitialInstanceCount"}
    assert variant["VariantName"] == "AllTraffic"
    assert variant["ModelName"] == {"Fn::GetAtt": ["Model", "ModelName"]}


def test_container_logs_go_to_an_encrypted_group_made_before_sagemaker_makes_one():
    group = props(sagemaker(), "EndpointLogGroup")
    assert sub_text(group["LogGroupName"]) == f"/aws/sagemaker/Endpoints/{ENDPOINT}"
    assert group["KmsKeyId"] == KEY


# --- data capture --------------------------------------------------------------------------

def test_data_capture_is_plain_data_of_the_endpoint_config_shape():
    # troposphere 4.11.1's sagemaker.DataCaptureConfig lacks these keys: the template carries
    # the shape CloudFormation's AWS::SageMaker::EndpointConfig documents.
    _, config = endpoint_config(sagemaker({"data_capture": {
        "prefix": "captures/", "csv_content_types": ["text/csv"],
        "json_content_types": ["application/json", "application/jsonlines"]}}))
    assert config["Properties"]["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": {"Ref": "DataCaptureSamplingPercentage"},
        "DestinationS3Uri": {"Fn::Sub": "s3://${ArtifactsBucketName}/captures"},
        "KmsKeyId": KEY,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json", "application/jsonlines"]},
    }


def test_the_capture_location_is_an_output_and_the_role_may_write_only_there():
    t = sagemaker()
    assert t["Outputs"]["DataCaptureS3Uri"]["Value"] == {
        "Fn::Sub": "s3://${ArtifactsBucketName}/data-capture"}
    writes = with_action(statements(resource(t, "ModelRole")), "s3:PutObject")
    resources = [sub_text(r) for s in writes for r in s["Resource"]]
    assert "${ArtifactsBucketArn}/data-capture/*" in resources
    assert "${ArtifactsBucketArn}/*" not in resources


def test_without_capture_the_config_has_none():
    _, config = endpoint_config(sagemaker({"data_capture": {"enabled": False}}))
    assert "DataCaptureConfig" not in config["Properties"]


# --- the content-hashed endpoint config ----------------------------------------------------

def test_the_endpoint_config_is_named_by_cloudformation_after_its_hashed_logical_id():
    logical_id, config = endpoint_config(sagemaker())
    assert logical_id.startswith("EndpointConfig") and len(logical_id) == len("EndpointConfig") + 8
    # No name of our own: any change replaces an endpoint config, and a fixed name would make
    # the replacement collide with the config in use.
    assert "EndpointConfigName" not in config["Properties"]
    assert props(sagemaker(), "Endpoint")["EndpointConfigName"] == {
        "Fn::GetAtt": [logical_id, "EndpointConfigName"]}


def test_the_hash_does_not_change_with_values():
    dev = endpoint_config_id(env="dev")
    prod = endpoint_config_id({"instance_type": "ml.c5.4xlarge", "initial_instance_count": 3,
                               "max_instances": 8,
                               "data_capture": {"sampling_percentage": 100},
                               "model_package_arn": "arn:aws:sagemaker:eu-west-1:111122223333:"
                                                    "model-package/group/3"}, env="prod")
    assert dev == prod


@pytest.mark.parametrize("change", [
    {"data_capture": {"enabled": False}},
    {"data_capture": {"json_content_types": ["application/jsonlines"]}},
    {"data_capture": {"prefix": "captured/"}},
])
def test_the_hash_changes_with_the_structure(change):
    assert endpoint_config_id(change) != endpoint_config_id()


# --- blue/green deployments ----------------------------------------------------------------

def test_deployments_shift_a_canary_then_the_rest_and_roll_back_on_the_alarms():
    config = props(sagemaker(), "Endpoint")["DeploymentConfig"]
    policy = config["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": {"Ref": "EndpointTrafficStepPercent"}},
        "WaitIntervalInSeconds": {"Ref": "EndpointTrafficWaitSeconds"},
    }
    assert policy["TerminationWaitInSeconds"] == {"Ref": "EndpointTerminationWaitSeconds"}
    assert policy["MaximumExecutionTimeoutInSeconds"] == {
        "Ref": "EndpointDeploymentTimeoutSeconds"}
    assert config["AutoRollbackConfiguration"] == {"Alarms": [
        {"AlarmName": {"Ref": "EndpointErrorAlarm"}},
        {"AlarmName": {"Ref": "EndpointLatencyAlarm"}}]}


def test_linear_shifting_uses_steps_and_all_at_once_neither():
    linear = props(sagemaker({"deployment": {"traffic_shifting": "linear"}}), "Endpoint")
    routing = linear["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "LINEAR" and "LinearStepSize" in routing
    assert "CanarySize" not in routing
    once = props(sagemaker({"deployment": {"traffic_shifting": "all_at_once"}}), "Endpoint")
    routing = once["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "ALL_AT_ONCE"
    assert not {"CanarySize", "LinearStepSize"} & set(routing)


def test_the_rollback_alarms_watch_this_endpoints_variant_with_thresholds_as_parameters():
    t = sagemaker()
    errors = props(t, "EndpointErrorAlarm")
    assert errors["Namespace"] == "AWS/SageMaker"
    assert errors["MetricName"] == "Invocation5XXErrors"
    assert errors["Threshold"] == {"Ref": "EndpointRollbackErrorCount"}
    dimensions = {d["Name"]: sub_text(d["Value"]) for d in errors["Dimensions"]}
    assert dimensions == {"EndpointName": ENDPOINT, "VariantName": "AllTraffic"}
    latency = props(t, "EndpointLatencyAlarm")
    assert latency["Threshold"] == {"Ref": "EndpointRollbackLatencyMs"}
    stat, expression = latency["Metrics"]
    assert stat["MetricStat"]["Metric"]["MetricName"] == "ModelLatency"
    assert stat["MetricStat"]["Stat"] == "p99"
    # ModelLatency is in microseconds, the threshold in milliseconds.
    assert expression["Expression"] == "latency / 1000" and expression["ReturnData"] is True


# --- autoscaling ---------------------------------------------------------------------------

def test_the_variant_scales_between_parameter_bounds_on_invocations_per_instance():
    t = sagemaker()
    target = resource(t, "EndpointScalingTarget")
    assert target["DependsOn"] == ["Endpoint"]
    assert target["Properties"]["MinCapacity"] == {"Ref": "EndpointMinInstances"}
    assert target["Properties"]["MaxCapacity"] == {"Ref": "EndpointMaxInstances"}
    assert sub_text(target["Properties"]["ResourceId"]) == f"endpoint/{ENDPOINT}/variant/AllTraffic"
    assert target["Properties"]["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    tracking = props(t, "EndpointScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
    assert tracking["TargetValue"] == {"Ref": "EndpointInvocationsPerInstance"}
    for bound in ("EndpointMinInstances", "EndpointMaxInstances"):
        assert t["Parameters"][bound]["Type"] == "Number"


# --- the model's role ----------------------------------------------------------------------

def test_only_sagemaker_of_this_account_may_assume_the_model_role():
    trust = props(sagemaker(), "ModelRole")["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{
        "Effect": "Allow", "Action": ["sts:AssumeRole"],
        "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}}]


def test_the_model_role_reaches_only_the_models_its_captures_and_its_batch_prefixes():
    found = statements(resource(sagemaker(), "ModelRole"))
    s3_resources = {sub_text(r) if not isinstance(r, dict) or "Fn::Sub" in r else r["Ref"]
                    for s in found if any(a.startswith("s3:") for a in s["Action"])
                    for r in s["Resource"]}
    # Not the whole artifacts bucket: no training splits, no reports, no baseline.
    assert s3_resources == {
        "${ArtifactsBucketArn}/training/models/*", "${ArtifactsBucketArn}/data-capture/*",
        "ProcessedBucketArn", "${ProcessedBucketArn}/batch-input/*",
        "${ProcessedBucketArn}/batch-predictions/*"}
    reads = with_action(found, "s3:GetObject")
    assert [sub_text(r) for s in reads for r in s["Resource"]] == [
        "${ArtifactsBucketArn}/training/models/*", "${ProcessedBucketArn}/batch-input/*"]
    writes = with_action(found, "s3:PutObject")
    assert [sub_text(r) for s in writes for r in s["Resource"]] == [
        "${ArtifactsBucketArn}/data-capture/*", "${ProcessedBucketArn}/batch-predictions/*"]
    [listing] = with_action(found, "s3:ListBucket")
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "batch-input/*"}}
    # What the CreateModel and transform pages list for data, nothing more.
    assert {a for s in found for a in s["Action"] if a.startswith("s3:")} == {
        "s3:GetObject", "s3:PutObject", "s3:ListBucket"}


def test_the_models_folder_is_where_the_training_pipeline_writes_model_archives():
    from mlops_cfn import pipeline
    for prefix in ("training/", "ml/churn/"):
        built = pipeline.build(config_with(
            {"stages": {"training": {"artifacts_prefix": prefix}}}))
        stages = {stage.name: stage.template.to_json() for stage in built.stages}
        # The training step's S3OutputPath, inside the pipeline definition's JSON text.
        assert re.search(r'S3OutputPath\\": \\"s3://\$\{ArtifactsBucketName\}/'
                         + re.escape(prefix) + r'models\\"', stages["training"])
        assert f"${{ArtifactsBucketArn}}/{prefix}models/*" in stages["serving"]


def test_a_model_archive_anywhere_is_readable_as_exactly_that_object():
    t = sagemaker({"model_source": "model_data"})
    found = statements(resource(t, "ModelRole"))
    [read] = [s for s in with_action(found, "s3:GetObject") if "ModelDataUrl" in str(s)]
    assert read["Resource"] == [{"Fn::Sub": ["arn:${AWS::Partition}:s3:::${Object}", {
        "Object": {"Fn::Select": [1, {"Fn::Split": ["s3://", {"Ref": "ModelDataUrl"}]}]}}]}]
    # Before the first model the URL is empty and the statement is not there at all.
    before = statements(resource(t, "ModelRole"), absent=("ModelSupplied",))
    assert "ModelDataUrl" not in str(before)
    assert "${ArtifactsBucketArn}/training/models/*" not in str(found)


def test_the_model_role_pulls_only_the_models_own_image():
    # A customer image: its repository only, derived from the URI in the template.
    t = sagemaker({"model_source": "model_data"})
    found = statements(resource(t, "ModelRole"))
    [pull] = with_action(found, "ecr:BatchGetImage")
    [repository] = pull["Resource"]
    condition, china, elsewhere = repository["Fn::If"]
    assert condition == "InChinaPartition"
    assert t["Conditions"]["InChinaPartition"] == {
        "Fn::Equals": [{"Ref": "AWS::Partition"}, "aws-cn"]}
    assert "repository/${Repository}" in elsewhere["Fn::Sub"][0]
    assert with_action(found, "ecr:GetAuthorizationToken")[0]["Resource"] == ["*"]
    # The built-in XGBoost image the training pipeline registers is SageMaker's own, pulled
    # with service credentials (SageMaker: Docker Registry Paths): nothing to grant.
    default = statements(resource(sagemaker(), "ModelRole"))
    assert not [s for s in default if any(a.startswith("ecr:") for a in s["Action"])]
    # A training image of the customer's is what the packages name.
    custom = config_with({"stages": {
        "serving": {"target": "sagemaker"},
        "training": {"image_uri": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/xgb:1"}}})
    t = template_dict(serving.build(custom.config))
    [pull] = with_action(statements(resource(t, "ModelRole")), "ecr:BatchGetImage")
    assert "TrainingImageUri" in str(pull["Resource"])


@pytest.mark.parametrize("partition, image, repository", [
    ("aws", "111122223333.dkr.ecr.eu-west-1.amazonaws.com/churn:7",
     "arn:aws:ecr:eu-west-1:111122223333:repository/churn"),
    ("aws", "444455556666.dkr.ecr.us-east-2.amazonaws.com/team/churn@sha256:" + "a" * 64,
     "arn:aws:ecr:us-east-2:444455556666:repository/team/churn"),
    ("aws-cn", "111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn/ml/churn:2024.06",
     "arn:aws-cn:ecr:cn-north-1:111122223333:repository/ml/churn"),
])
def test_read_as_cloudformation_does_the_role_names_that_archive_and_that_repository(
        partition, image, repository):
    from mlops_cfn import pipeline
    from tests.cloudformation import create
    built = pipeline.build(config_with({"stages": {"serving": {
        "target": "sagemaker", "model_source": "model_data"}}}))
    url = "s3://models-elsewhere/churn/7/model.tar.gz"
    role = create(built, {"ModelDataUrl": url, "ModelImageUri": image},
                  pseudo={"AWS::Partition": partition})["serving"].resources["ModelRole"]
    found = statements(role)
    assert f"arn:{partition}:s3:::models-elsewhere/churn/7/model.tar.gz" in [
        r for s in with_action(found, "s3:GetObject") for r in s["Resource"]]
    [pull] = with_action(found, "ecr:BatchGetImage")
    assert pull["Resource"] == [repository]
    # Before a model: no archive, no image, nothing to read or pull.
    first = create(built, {"ModelDataUrl": "", "ModelImageUri": ""})["serving"]
    found = statements(first.resources["ModelRole"])
    assert not with_action(found, "ecr:BatchGetImage")
    assert "models-elsewhere" not in str(found)


def test_the_model_role_may_describe_the_rollback_alarms_once_they_exist():
    t = sagemaker()
    [describe] = with_action(statements(resource(t, "ModelRole")), "cloudwatch:DescribeAlarms")
    assert describe["Resource"] == [{"Fn::GetAtt": ["EndpointErrorAlarm", "Arn"]},
                                    {"Fn::GetAtt": ["EndpointLatencyAlarm", "Arn"]}]
    assert not with_action(statements(resource(t, "ModelRole"), absent=("ModelSupplied",)),
                           "cloudwatch:DescribeAlarms")
    rollback = props(t, "Endpoint")["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert {a["AlarmName"]["Ref"] for a in rollback} == {"EndpointErrorAlarm",
                                                          "EndpointLatencyAlarm"}


def test_the_model_role_uses_the_key_only_through_s3():
    key_use = [s for s in statements(resource(sagemaker(), "ModelRole"))
               if any(a.startswith("kms:") for a in s["Action"])]
    assert len(key_use) == 1
    assert key_use[0]["Resource"] == [KEY]
    assert key_use[0]["Condition"]["StringEquals"]["kms:ViaService"] == [
        {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}]


def test_the_model_role_writes_only_its_own_log_groups():
    logs = with_action(statements(resource(sagemaker(), "ModelRole")), "logs:PutLogEvents")
    assert [sub_text(r) for s in logs for r in s["Resource"]] == [
        f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:"
        f"/aws/sagemaker/Endpoints/{ENDPOINT}:*",
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
        "/aws/sagemaker/TransformJobs:*"]


def test_without_batch_transform_the_role_has_no_processed_bucket_access():
    t = sagemaker({"batch_transform": {"enabled": False}})
    assert "ProcessedBucketArn" not in str(statements(resource(t, "ModelRole")))
    assert not resources_of_type(t, "AWS::StepFunctions::StateMachine")
    assert not resources_of_type(t, "AWS::Scheduler::Schedule")


# --- batch transform -----------------------------------------------------------------------

def machine(t: dict) -> dict:
    return only_resource(t, "AWS::StepFunctions::StateMachine")["Properties"]


def test_the_state_machine_logs_to_an_encrypted_group_and_traces():
    t = sagemaker()
    props_ = machine(t)
    assert props_["TracingConfiguration"] == {"Enabled": True}
    logging = props_["LoggingConfiguration"]
    assert logging["Level"] == "ALL" and logging["IncludeExecutionData"] is False
    assert logging["Destinations"] == [{"CloudWatchLogsLogGroup": {
        "LogGroupArn": {"Fn::GetAtt": ["BatchTransformLogGroup", "Arn"]}}}]
    assert props(t, "BatchTransformLogGroup")["KmsKeyId"] == KEY


def test_a_run_without_a_model_fails_with_a_reason_instead_of_calling_sagemaker():
    props_ = machine(sagemaker())
    states = props_["Definition"]["States"]
    assert states["ModelDeployed"]["Choices"] == [
        {"Variable": "$.modelName", "StringEquals": "", "Next": "NoModelYet"}]
    assert "ModelPackageArn" in states["NoModelYet"]["Cause"]
    assert props_["DefinitionSubstitutions"]["ModelName"] == {
        "Fn::If": ["ModelSupplied", {"Fn::GetAtt": ["Model", "ModelName"]}, ""]}


def test_the_transform_reads_the_input_prefix_and_writes_encrypted_results():
    props_ = machine(sagemaker({"batch_transform": {
        "input_prefix": "to-score/", "output_prefix": "scored/", "content_type": "text/csv"}}))
    task = props_["Definition"]["States"]["Transform"]
    assert task["Resource"] == "${TransformTask}"
    assert props_["DefinitionSubstitutions"]["TransformTask"] == {
        "Fn::Sub": "arn:${AWS::Partition}:states:::sagemaker:createTransformJob.sync"}
    job = task["Parameters"]
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri.$"] == (
        "States.Format('s3://${ProcessedBucket}/to-score/{}', $.options.subPrefix)")
    assert job["TransformOutput"]["S3OutputPath.$"] == (
        "States.Format('s3://${ProcessedBucket}/scored/{}/', $$.Execution.Name)")
    assert job["TransformOutput"]["KmsKeyId"] == "${DataKeyArn}"
    assert job["TransformResources"]["VolumeKmsKeyId"] == "${DataKeyArn}"
    assert job["TransformResources"]["InstanceType"] == "${InstanceType}"
    # The count arrives as text; CreateTransformJob needs a number.
    assert job["TransformResources"]["InstanceCount.$"] == "States.StringToJson('${InstanceCount}')"
    substitutions = props_["DefinitionSubstitutions"]
    assert substitutions["ProcessedBucket"] == {"Ref": "ProcessedBucketName"}
    assert substitutions["DataKeyArn"] == KEY
    assert substitutions["InstanceType"] == {"Ref": "BatchTransformInstanceType"}
    assert substitutions["InstanceCount"] == {"Ref": "BatchTransformInstanceCount"}


def test_transform_jobs_carry_the_prefix_the_role_is_limited_to():
    t = sagemaker()
    props_ = machine(t)
    prefix = sub_text(props_["DefinitionSubstitutions"]["JobPrefix"])
    assert props_["Definition"]["States"]["Transform"]["Parameters"]["TransformJobName.$"] == (
        "States.Format('${JobPrefix}-{}', States.UUID())")
    # <prefix>-<36-character uuid> fits SageMaker's 63 characters for every environment name.
    assert naming.max_length(prefix) + 1 + 36 <= 63
    assert naming.max_length(prefix) <= TRANSFORM_JOB_PREFIX.max_length
    jobs = with_action(statements(resource(t, "BatchTransformRole")),
                       "sagemaker:CreateTransformJob")
    assert [sub_text(r) for s in jobs for r in s["Resource"]] == [
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:transform-job/"
        f"{prefix}-*"]


def test_the_state_machine_keeps_its_definition_and_history_under_the_data_key():
    t = sagemaker()
    props_ = machine(t)
    assert props_["EncryptionConfiguration"] == {
        "Type": "CUSTOMER_MANAGED_KMS_KEY", "KmsKeyId": KEY, "KmsDataKeyReusePeriodSeconds": 300}
    name = sub_text(props_["StateMachineName"])
    assert name == "mlops-demo-${EnvironmentName}-batch-transform"
    context = {"kms:EncryptionContext:aws:states:stateMachineArn": {"Fn::Sub": (
        "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:"
        f"stateMachine:{name}")}}
    # The machine's role reads and writes that state, in this machine's encryption context
    # only, and encrypts what the vended log delivery takes (AWS's documented pair with the
    # key policy's grant to delivery.logs, see the storage stage).
    role_use = with_action(statements(resource(t, "BatchTransformRole")), "kms:GenerateDataKey")
    state, = [s for s in role_use if "StringEquals" in s.get("Condition", {})]
    assert sorted(state["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert state["Resource"] == [KEY] and state["Condition"]["StringEquals"] == context
    logs, = [s for s in role_use if "StringLike" in s.get("Condition", {})]
    assert logs["Action"] == ["kms:GenerateDataKey"]
    assert logs["Condition"]["StringLike"] == {"kms:EncryptionContext:SourceArn": {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:*"}}
    # Starting an execution encrypts its input in the caller's name (the schedule's role), in
    # the same context: tests/stages/test_serving_sagemaker.py, the scheduler's key use.
    [start] = with_action(statements(resource(t, "BatchTransformScheduleRole")),
                          "kms:GenerateDataKey")
    assert sorted(start["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert start["Resource"] == [KEY] and start["Condition"]["StringEquals"] == context


def test_the_state_machine_role_grants_the_key_only_to_sagemaker_for_resources():
    found = statements(resource(sagemaker(), "BatchTransformRole"))
    grants = with_action(found, "kms:CreateGrant")
    assert len(grants) == 1 and grants[0]["Action"] == ["kms:CreateGrant"]
    assert grants[0]["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}
    assert grants[0]["Condition"]["StringEquals"] == {
        "kms:ViaService": {"Fn::Sub": "sagemaker.${AWS::Region}.amazonaws.com"}}
    # kms:GrantIsForAWSResource is on grant requests only: DescribeKey has its own statement.
    [describe] = with_action(found, "kms:DescribeKey")
    assert describe["Action"] == ["kms:DescribeKey"]
    assert describe["Condition"] == {"StringEquals": {
        "kms:ViaService": {"Fn::Sub": "sagemaker.${AWS::Region}.amazonaws.com"}}}


def test_the_state_machine_may_tag_the_jobs_it_starts():
    # A .sync task tags its job MANAGED_BY_AWS; without sagemaker:AddTags SageMaker refuses.
    found = statements(resource(sagemaker(), "BatchTransformRole"))
    [tags] = with_action(found, "sagemaker:AddTags")
    [create] = with_action(found, "sagemaker:CreateTransformJob")
    assert tags["Resource"] == create["Resource"]


def test_the_schedule_is_off_by_default_and_both_its_time_and_state_are_parameters():
    t = sagemaker()
    schedule = props(t, "BatchTransformSchedule")
    assert schedule["ScheduleExpression"] == {"Ref": "BatchTransformScheduleExpression"}
    assert schedule["State"] == {"Ref": "BatchTransformScheduleState"}
    assert schedule["KmsKeyArn"] == KEY
    assert schedule["Target"]["Arn"] == {"Ref": "BatchTransformStateMachine"}
    assert "BatchTransformScheduleState" in build(SAGEMAKER_ONLY).settings
    assert setting_values(serving_config().config)["BatchTransformScheduleState"] == "DISABLED"


def test_the_scheduler_may_only_start_this_state_machine():
    found = statements(resource(sagemaker(), "BatchTransformScheduleRole"))
    starts = with_action(found, "states:StartExecution")
    assert starts == [{"Effect": "Allow", "Action": ["states:StartExecution"],
                       "Resource": [{"Ref": "BatchTransformStateMachine"}]}]
    [decrypt] = [s for s in with_action(found, "kms:Decrypt")
                 if "kms:GenerateDataKey" not in s["Action"]]
    context = decrypt["Condition"]["StringEquals"]
    assert sub_text(context["kms:EncryptionContext:aws:scheduler:schedule-arn"]).endswith(
        ":schedule/default/mlops-demo-${EnvironmentName}-batch-transform")


def test_read_as_iam_does_the_schedule_may_use_the_key_to_start_this_machine_and_nothing_else():
    # AWS: "Data at rest encryption in Step Functions": starting an execution of a machine
    # encrypted with a customer managed key takes kms:GenerateDataKey and kms:Decrypt from the
    # caller, in the machine's encryption context.
    from tests.template_eval import ACCOUNT, REGION, Request, Resolver, role_statements

    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/data"
    t = sagemaker()
    resolver = Resolver(t, {"EnvironmentName": "dev", "DataKeyArn": key})
    found = role_statements(resolver, "BatchTransformScheduleRole")
    machine = resolver.value(t["Resources"]["BatchTransformStateMachine"]["Properties"][
        "StateMachineName"])
    machine_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{machine}"
    context = "kms:EncryptionContext:aws:states:stateMachineArn"
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert Request(action, key, ((context, machine_arn),)).allowed_by(found), action
        other = machine_arn.replace("batch-transform", "other")
        assert not Request(action, key, ((context, other),)).allowed_by(found), action
        assert not Request(action, key).allowed_by(found), action
