"""The serving stage's SageMaker part: a real-time endpoint that updates itself safely.

Resources
- ModelRole: the role SageMaker runs the model as (endpoint and batch transform): reads the
  artifacts bucket, writes data captures and batch results, pulls images of this account, writes
  its own log groups, manages its network interfaces in the private subnets.
- ModelSecurityGroup: the model's network interfaces in the private subnets; HTTPS out only.
- EndpointLogGroup: `/aws/sagemaker/Endpoints/<endpoint>`, made before SageMaker would make it
  unencrypted, so the container logs are encrypted with the data key and expire.
- Only once a model is supplied (condition ModelSupplied: ModelPackageArn, or ModelDataUrl with
  ModelImageUri, is set):
  - Model: the package version (or archive and image), network isolation, private subnets.
  - EndpointConfig<hash>: one variant, volume encrypted with the data key, data capture into the
    artifacts bucket. The hash of its structural properties is in the logical id, and so in the
    name CloudFormation gives it: a structural change adds a new config beside the one in use.
    No name of our own: every change to an endpoint config replaces it (a value-only change or
    a new model too), and a fixed name would make that replacement fail.
  - Endpoint: named, blue/green deployments (canary, linear or all at once) that roll back by
    themselves when EndpointErrorAlarm or EndpointLatencyAlarm fires while a deployment bakes.
  - EndpointErrorAlarm (5XX errors), EndpointLatencyAlarm (p99 model latency in ms).
  - EndpointScalingTarget + EndpointScalingPolicy: target tracking on invocations per instance
    between EndpointMinInstances and EndpointMaxInstances.

Inputs: DataKeyArn, ArtifactsBucketName/Arn, VpcId, PrivateSubnetIds; ProcessedBucketArn with
batch transform.
Outputs: EndpointName (its name is fixed, so it is known before a model exists) with
EndpointExists ("true" under ModelSupplied), DataCaptureS3Uri (with data capture).
"""

from dataclasses import dataclass
from typing import Any

import awacs.cloudwatch
import awacs.ec2
import awacs.ecr
import awacs.kms
import awacs.logs
import awacs.s3
import awacs.sns
from awacs.aws import Allow, Condition, Statement, StringEquals, StringLike
from troposphere import (GetAtt, If, NoValue, Ref, Sub,
                         applicationautoscaling as scaling, cloudwatch, ec2, iam, logs, sagemaker,
                         sns)

from .. import naming, policies
from ..config import PipelineConfig
from ..config.serving import SageMakerServingConfig
from ..outputs import (ARTIFACTS_BUCKET_ARN, ARTIFACTS_BUCKET_NAME, ASYNC_ERROR_TOPIC_ARN,
                       ASYNC_INPUT_URI, ASYNC_OUTPUT_URI, ASYNC_SUCCESS_TOPIC_ARN,
                       DATA_CAPTURE_URI, DATA_KEY_ARN, ENDPOINT_NAME, PRIVATE_SUBNET_IDS,
                       PROCESSED_BUCKET_ARN)
from ..stage import StageBuilder
from .common import control_tower_exceptions, https_out_security_group
from .serving_common import (MODEL_SUPPLIED, SCALE_IN_COOLDOWN_SECONDS,
                             SCALE_OUT_COOLDOWN_SECONDS, VARIANT, add_model_supplied, content_hash,
                             ecr_repository_arn, list_under, model_archive_read_statement,
                             name_pattern, objects_under)

# Rollback alarms look at one-minute periods and fire after three in a row: one slow minute is
# noise, three are a bad model.
ALARM_PERIOD_SECONDS = 60
ALARM_PERIODS = 3
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"
TRAFFIC_TYPES = {"canary": "CANARY", "linear": "LINEAR", "all_at_once": "ALL_AT_ONCE"}
REAL_TIME, SERVERLESS, ASYNCHRONOUS = "real_time", "serverless", "asynchronous"


@dataclass(frozen=True)
class AsyncTopics:
    success: sns.Topic
    error: sns.Topic


@dataclass(frozen=True)
class SageMakerServing:
    endpoint_name: Sub
    # The model's name where the model exists, "" before (for batch transform).
    model_name: Any
    role: iam.Role


def endpoint_name_pattern(b: StageBuilder) -> str:
    return name_pattern(b, naming.SAGEMAKER, "endpoint")


def add_sagemaker(b: StageBuilder, config: PipelineConfig) -> SageMakerServing:
    settings = config.stages.serving.sagemaker
    key = b.input(DATA_KEY_ARN)
    name = endpoint_name_pattern(b)
    add_model_supplied(b, config)

    b.add(endpoint_log_group(b, config, name))
    # AWS: "Deploy models with Amazon SageMaker Serverless Inference" (feature exclusions): a
    # serverless endpoint takes no VPC configuration, so its model has no network interfaces;
    # batch transform then runs its own model in the private subnets ("Give Batch Transform
    # Jobs Access to Resources in Your Amazon VPC": the VPC is the model's).
    serverless = settings.kind == SERVERLESS
    transform_in_own_model = serverless and settings.batch_transform.enabled
    security_group = (model_security_group(b, config)
                      if not serverless or transform_in_own_model else None)
    alarms = [b.add(error_alarm(b, settings, name)), b.add(latency_alarm(b, settings, name))]
    topics = add_async_topics(b, settings, key)
    role = b.add(model_role(b, config, name, security_group, alarms, topics))
    model = b.add(model_resource(b, config, role, None if serverless else security_group))
    transform_model = (b.add(model_resource(b, config, role, security_group,
                                            title="TransformModel", isolation=True))
                       if transform_in_own_model else model)
    endpoint_config = b.add(endpoint_config_resource(b, settings, model, key, topics))
    endpoint = b.add(endpoint_resource(b, settings, name, endpoint_config, alarms))
    if settings.kind == REAL_TIME:
        scaling_target = b.add(endpoint_scaling_target(b, settings, name, endpoint))
        b.add(endpoint_scaling_policy(b, settings, scaling_target))
    elif settings.kind == ASYNCHRONOUS:
        scaling_target = b.add(endpoint_scaling_target(b, settings, name, endpoint))
        b.add(backlog_scaling_policy(b, settings, name, scaling_target))
        if settings.asynchronous.scale_to_zero:
            scale_from_zero = b.add(scale_from_zero_policy(scaling_target))
            b.add(backlog_without_capacity_alarm(name, scale_from_zero))
    # Serverless: SageMaker scales the workers up to max_concurrency itself.

    # The name is fixed, so it is known before the endpoint exists; EndpointExists says when.
    b.output(ENDPOINT_NAME, Sub(name), condition=MODEL_SUPPLIED)
    if settings.data_capture.enabled:
        b.output(DATA_CAPTURE_URI, capture_uri(b, settings))
    if settings.kind == ASYNCHRONOUS:
        b.output(ASYNC_INPUT_URI, artifacts_uri(b, settings.asynchronous.input_prefix))
        b.output(ASYNC_OUTPUT_URI, artifacts_uri(b, settings.asynchronous.output_prefix))
    if topics is not None:
        b.output(ASYNC_SUCCESS_TOPIC_ARN, Ref(topics.success))
        b.output(ASYNC_ERROR_TOPIC_ARN, Ref(topics.error))
    return SageMakerServing(
        endpoint_name=Sub(name),
        model_name=If(MODEL_SUPPLIED, GetAtt(transform_model, "ModelName"), ""),
        role=role,
    )


# --- the model -----------------------------------------------------------------------------

def model_security_group(b: StageBuilder, config: PipelineConfig) -> ec2.SecurityGroup:
    return https_out_security_group(
        b, config, "ModelSecurityGroup",
        "SageMaker model: HTTPS out to S3 and VPC endpoints, nothing in", reaches_s3=True)


def model_resource(b: StageBuilder, config: PipelineConfig, role: iam.Role,
                   security_group: ec2.SecurityGroup | None, title: str = "Model",
                   isolation: bool | None = None) -> sagemaker.Model:
    """The model, in the private subnets with `security_group` (None: outside any VPC, as a
    serverless endpoint's must be); `isolation` overrides sagemaker.network_isolation (the
    batch transform model of a serverless endpoint keeps the isolated default)."""
    serving, settings = config.stages.serving, config.stages.serving.sagemaker
    if serving.model_source == "model_package":
        container = sagemaker.ContainerDefinition(
            ModelPackageName=b.setting(serving, "model_package_arn"))
    else:
        container = sagemaker.ContainerDefinition(
            Image=b.setting(settings, "image_uri"),
            ModelDataUrl=b.setting(serving, "model_data_url"))
    isolated = settings.network_isolation if isolation is None else isolation
    metadata = {}
    if security_group is None:
        metadata = {"Metadata": {"checkov": {"skip": [{
            "id": "CKV_AWS_370",
            "comment": "sagemaker.kind is serverless: SageMaker Serverless Inference supports "
                       "neither network isolation nor a VPC (AWS: Serverless Inference, "
                       "feature exclusions); the container runs in SageMaker's network."}]}}}
    elif not isolated:
        metadata = {"Metadata": {"checkov": {"skip": [{
            "id": "CKV_AWS_370",
            "comment": "sagemaker.network_isolation is off in this config: the model container "
                       "calls services through the VPC endpoints of the private subnets."}]}}}
    network: dict[str, Any] = {}
    if security_group is not None:
        network["VpcConfig"] = sagemaker.VpcConfig(
            SecurityGroupIds=[GetAtt(security_group, "GroupId")],
            Subnets=b.input(PRIVATE_SUBNET_IDS))
    # No ModelName: a new package version replaces the model, which needs a fresh name.
    return sagemaker.Model(
        title,
        Condition=MODEL_SUPPLIED,
        ExecutionRoleArn=GetAtt(role, "Arn"),
        PrimaryContainer=container,
        EnableNetworkIsolation=isolated,
        **network,
        **metadata,
    )


def endpoint_log_group(b: StageBuilder, config: PipelineConfig, name: str) -> logs.LogGroup:
    # SageMaker writes container logs to this fixed name and makes the group (unencrypted,
    # kept forever) if it is missing. Made here first, it is encrypted and expires; the name is
    # SageMaker's, outside the project's prefix, so the key's policy is asked to admit it.
    b.data_key_log_group(f"/aws/sagemaker/Endpoints/{name}")
    return logs.LogGroup(
        "EndpointLogGroup",
        LogGroupName=Sub(f"/aws/sagemaker/Endpoints/{name}"),
        KmsKeyId=b.input(DATA_KEY_ARN),
        RetentionInDays=b.setting(config, "log_retention_days"),
    )


def model_role(b: StageBuilder, config: PipelineConfig, endpoint_name: str,
               security_group: ec2.SecurityGroup | None, alarms: list[cloudwatch.Alarm],
               topics: AsyncTopics | None) -> iam.Role:
    return iam.Role(
        "ModelRole",
        Description="SageMaker: run the served model (endpoint and batch transform)",
        AssumeRolePolicyDocument=policies.trusted_by(
            "sagemaker.amazonaws.com", StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(
            PolicyName="model",
            # A plain document: awacs admits no Fn::If among statements.
            PolicyDocument={"Version": policies.POLICY_VERSION, "Statement": model_role_statements(
                b, config, endpoint_name, security_group, alarms, topics)},
        )],
    )


def model_role_statements(b: StageBuilder, config: PipelineConfig, endpoint_name: str,
                          security_group: ec2.SecurityGroup | None,
                          alarms: list[cloudwatch.Alarm],
                          topics: AsyncTopics | None) -> list[Any]:
    """What the model's execution role needs, each statement with the AWS page asking for it.

    Most come from AWS: "How to use SageMaker AI execution roles" (SageMaker Developer Guide,
    "CreateModel API: Execution Role Permissions"): the model archive, the image, logs,
    metrics, and with a VPC the network interfaces. SageMaker runs batch transform jobs and
    writes data captures with the same role.
    """
    settings = config.stages.serving.sagemaker
    key = b.input(DATA_KEY_ARN)
    batch = settings.batch_transform
    statements: list[Any] = [
        # "Scope S3 permissions to objects that you specify in the PrimaryContainer.ModelDataUrl"
        # (CreateModel API: Execution Role Permissions).
        model_archive_read(b, config),
    ]
    if settings.data_capture.enabled:
        # AWS: "Data capture" (SageMaker Developer Guide; DataCaptureConfig.DestinationS3Uri):
        # captured requests and responses are written with the endpoint's execution role.
        statements.append(Statement(
            Effect=Allow, Action=[awacs.s3.PutObject],
            Resource=[objects_under(b.input(ARTIFACTS_BUCKET_ARN), settings.data_capture.prefix)]))
    if batch.enabled:
        # A transform job reads TransformInput and writes TransformOutput with the model's role
        # (CreateModel API: "access model artifacts and docker image ... or for batch transform
        # jobs"): listing the input prefix (S3Prefix data), its objects, and the output prefix.
        processed = b.input(PROCESSED_BUCKET_ARN)
        statements += [
            list_under(processed, batch.input_prefix),
            Statement(Effect=Allow, Action=[awacs.s3.GetObject],
                      Resource=[objects_under(processed, batch.input_prefix)]),
            Statement(Effect=Allow, Action=[awacs.s3.PutObject],
                      Resource=[objects_under(processed, batch.output_prefix)]),
        ]
    if settings.kind == ASYNCHRONOUS:
        statements += async_statements(b, settings, topics)
    # Objects under the data key: reading needs kms:Decrypt, writing kms:GenerateDataKey
    # (Amazon S3: Using server-side encryption with AWS KMS keys); with a KmsKeyId for captures
    # or transform output "the SageMaker execution role must include permissions to call
    # kms:Encrypt" (DataCaptureConfig and TransformOutput, SageMaker API Reference). Publishing
    # to a topic encrypted with the key needs kms:GenerateDataKey and kms:Decrypt through SNS
    # (AWS: "Managing Amazon SNS encryption keys", permissions of the publisher).
    statements.append(policies.use_key(
        key, [awacs.kms.Decrypt, awacs.kms.GenerateDataKey, awacs.kms.Encrypt],
        via_services=("s3", "sns") if topics is not None else ("s3",)))
    statements += image_pull(b, config)
    log_groups = [policies.arn("logs", f"log-group:/aws/sagemaker/Endpoints/{endpoint_name}:*")]
    if batch.enabled:
        log_groups.append(policies.arn("logs", f"log-group:{TRANSFORM_LOG_GROUP}:*"))
    statements.append(
        # Container logs (CreateModel API: Execution Role Permissions), this model's groups only.
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogGroup, awacs.logs.CreateLogStream,
                    awacs.logs.DescribeLogStreams, awacs.logs.PutLogEvents],
            Resource=log_groups,
        ))
    if security_group is not None:
        statements += vpc_statements(security_group)
    statements += [
        # cloudwatch:PutMetricData (CreateModel API: Execution Role Permissions) has no
        # resource-level permission; the condition holds it to SageMaker's namespaces.
        Statement(
            Effect=Allow,
            Action=[awacs.cloudwatch.PutMetricData],
            Resource=["*"],
            Condition=Condition(StringLike("cloudwatch:namespace", "/aws/sagemaker/*")),
        ),
        # AWS: "Auto-Rollback Configuration and Monitoring" (SageMaker deployment guardrails):
        # "Ensure that your IAM execution role has permission to perform the
        # cloudwatch:DescribeAlarms action on the auto-rollback alarms you specify". The
        # alarms exist with the endpoint.
        If(MODEL_SUPPLIED, Statement(
            Effect=Allow,
            Action=[awacs.cloudwatch.DescribeAlarms],
            Resource=[GetAtt(alarm, "Arn") for alarm in alarms],
        ), NoValue),
    ]
    return statements


def vpc_statements(security_group: ec2.SecurityGroup) -> list[Statement]:
    """The model's network interfaces in the private subnets. AWS: "How to use SageMaker AI
    execution roles" (CreateModel API: Execution Role Permissions, for a model in a VPC)."""
    return [
        # "If you specify a private VPC for your model" (CreateModel API: Execution Role
        # Permissions): the network interfaces in the private subnets, with its security group.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.CreateNetworkInterface],
            Resource=[policies.arn("ec2", "network-interface/*"),
                      policies.arn("ec2", "subnet/*"),
                      policies.arn("ec2", "security-group/${%s.GroupId}" % security_group.title)],
        ),
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.CreateNetworkInterfacePermission, awacs.ec2.DeleteNetworkInterface,
                    awacs.ec2.DeleteNetworkInterfacePermission],
            Resource=[policies.arn("ec2", "network-interface/*")],
        ),
        # The same page's Describe calls, which have no resource-level permissions: AWS
        # accepts nothing narrower than "*".
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.DescribeDhcpOptions, awacs.ec2.DescribeNetworkInterfaces,
                    awacs.ec2.DescribeSecurityGroups, awacs.ec2.DescribeSubnets,
                    awacs.ec2.DescribeVpcs],
            Resource=["*"],
        ),
    ]


def async_statements(b: StageBuilder, settings: SageMakerServingConfig,
                     topics: AsyncTopics | None) -> list[Statement]:
    """What an asynchronous endpoint does with the model's role. AWS: "Complete the
    prerequisites" (Asynchronous Inference: the role SageMaker runs as accesses your S3 bucket
    and SNS topics): it reads each request from its InputLocation, writes the answer to
    S3OutputPath or the error to S3FailurePath, and publishes to the success and error
    topics."""
    bucket = b.input(ARTIFACTS_BUCKET_ARN)
    prefixes = settings.asynchronous
    statements = [
        Statement(Effect=Allow, Action=[awacs.s3.GetObject],
                  Resource=[objects_under(bucket, prefixes.input_prefix)]),
        Statement(Effect=Allow, Action=[awacs.s3.PutObject],
                  Resource=[objects_under(bucket, prefixes.output_prefix),
                            objects_under(bucket, prefixes.failure_prefix)]),
    ]
    if topics is not None:
        statements.append(Statement(Effect=Allow, Action=[awacs.sns.Publish],
                                    Resource=[Ref(topics.success), Ref(topics.error)]))
    return statements


def model_archive_read(b: StageBuilder, config: PipelineConfig) -> Any:
    """s3:GetObject on the model archive: exactly ModelDataUrl's object (a setting, so its ARN
    is derived in the template, wherever it lives), or with model packages the folder the
    training pipeline writes models to (training_pipeline.definition: the training step's
    S3OutputPath `<artifacts>/<training.artifacts_prefix>models`). AWS: "How to use SageMaker
    AI execution roles" (CreateModel API: scope S3 permissions to the ModelDataUrl objects)."""
    return model_archive_read_statement(b, config)


def image_pull(b: StageBuilder, config: PipelineConfig) -> list[Any]:
    """Pulling the inference image, where it is one of the customer's ECR images.

    SageMaker's own images (the built-in XGBoost the training pipeline registers by default)
    are pulled with service-owned credentials, so no customer policy is involved (Docker
    Registry Paths and Example Code, SageMaker Developer Guide). A customer image needs the
    ECR actions, scoped to "a specific registry path that you specify as the
    PrimaryContainer.Image" (AWS: "How to use SageMaker AI execution roles", CreateModel API:
    Execution Role Permissions): with model_data,
    ModelImageUri; with model packages, the training image the pipeline registers
    (stages.training.image_uri). The URI is a setting, so the repository's ARN is derived in
    the template.
    """
    settings = config.stages.serving.sagemaker
    if config.stages.serving.model_source == "model_data":
        repository, exists = ecr_repository_arn(b, b.setting(settings, "image_uri")), True
    elif config.stages.training.image_uri is not None:
        repository = ecr_repository_arn(b, b.setting(config.stages.training, "image_uri"))
        exists = False
    else:
        return []
    pull = Statement(
        Effect=Allow,
        Action=[awacs.ecr.BatchCheckLayerAvailability, awacs.ecr.BatchGetImage,
                awacs.ecr.GetDownloadUrlForLayer],
        Resource=[repository],
    )
    # The same page's ecr:GetAuthorizationToken has no resource-level permission: "*".
    token = Statement(Effect=Allow, Action=[awacs.ecr.GetAuthorizationToken], Resource=["*"])
    if exists:
        # ModelImageUri is empty before the first model: its ARN exists with the model.
        return [If(MODEL_SUPPLIED, pull, NoValue), If(MODEL_SUPPLIED, token, NoValue)]
    return [pull, token]


# --- endpoint config -----------------------------------------------------------------------

def artifacts_uri(b: StageBuilder, prefix: str) -> Sub:
    """s3://<artifacts bucket>/<prefix without its trailing slash>."""
    b.input(ARTIFACTS_BUCKET_NAME)
    return Sub(f"s3://${{{ARTIFACTS_BUCKET_NAME.name}}}/{prefix.rstrip('/')}")


def capture_uri(b: StageBuilder, settings: SageMakerServingConfig) -> Sub:
    return artifacts_uri(b, settings.data_capture.prefix)


def add_async_topics(b: StageBuilder, settings: SageMakerServingConfig,
                     key: Ref) -> AsyncTopics | None:
    """The success and error topics of an asynchronous endpoint, encrypted with the data key;
    SageMaker publishes to them with the model's role (async_statements)."""
    if settings.kind != ASYNCHRONOUS or not settings.asynchronous.notifications:
        return None
    return AsyncTopics(*(b.add(sns.Topic(
        f"Async{outcome.capitalize()}Topic",
        TopicName=b.physical_name(naming.SNS_TOPIC, f"async-{outcome}"),
        DisplayName=f"{b.project} asynchronous inference: {outcome}",
        KmsMasterKeyId=key,
    )) for outcome in ("success", "error")))


def data_capture(b: StageBuilder, settings: SageMakerServingConfig, key: Ref) -> dict:
    """EndpointConfig.DataCaptureConfig as plain data: troposphere 4.11.1's
    sagemaker.DataCaptureConfig is the inference-experiment shape, without the capture options."""
    capture = settings.data_capture
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": b.setting(capture, "sampling_percentage"),
        "DestinationS3Uri": capture_uri(b, settings),
        "KmsKeyId": key,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": list(capture.csv_content_types),
            "JsonContentTypes": list(capture.json_content_types),
        },
    }


def production_variant(b: StageBuilder, settings: SageMakerServingConfig,
                       model: sagemaker.Model) -> sagemaker.ProductionVariant:
    if settings.kind == SERVERLESS:
        serverless = settings.serverless
        sizing: dict[str, Any] = {"ServerlessConfig": sagemaker.ServerlessConfig(
            MemorySizeInMB=b.setting(serverless, "memory_mb"),
            MaxConcurrency=b.setting(serverless, "max_concurrency"),
            **({"ProvisionedConcurrency": serverless.provisioned_concurrency}
               if serverless.provisioned_concurrency is not None else {}))}
    else:
        sizing = {"InstanceType": b.setting(settings, "instance_type"),
                  "InitialInstanceCount": b.setting(settings, "initial_instance_count")}
    return sagemaker.ProductionVariant(
        VariantName=VARIANT,
        ModelName=GetAtt(model, "ModelName"),
        InitialVariantWeight=1.0,
        **sizing,
    )


def async_inference(b: StageBuilder, settings: SageMakerServingConfig, key: Ref,
                    topics: AsyncTopics | None) -> sagemaker.AsyncInferenceConfig:
    prefixes = settings.asynchronous
    output: dict[str, Any] = {
        "S3OutputPath": artifacts_uri(b, prefixes.output_prefix),
        "S3FailurePath": artifacts_uri(b, prefixes.failure_prefix),
        # Encrypts the answers and failures SageMaker writes (AsyncInferenceOutputConfig).
        "KmsKeyId": key,
    }
    if topics is not None:
        output["NotificationConfig"] = sagemaker.AsyncInferenceNotificationConfig(
            SuccessTopic=Ref(topics.success), ErrorTopic=Ref(topics.error))
    client = ({"ClientConfig": sagemaker.AsyncInferenceClientConfig(
        MaxConcurrentInvocationsPerInstance=prefixes.max_concurrent_invocations_per_instance)}
        if prefixes.max_concurrent_invocations_per_instance is not None else {})
    return sagemaker.AsyncInferenceConfig(
        OutputConfig=sagemaker.AsyncInferenceOutputConfig(**output), **client)


def endpoint_config_resource(b: StageBuilder, settings: SageMakerServingConfig,
                             model: sagemaker.Model, key: Ref,
                             topics: AsyncTopics | None = None) -> sagemaker.EndpointConfig:
    props: dict[str, Any] = {
        "ProductionVariants": [production_variant(b, settings, model)],
        # Encrypts the ML storage volume of every instance; on a serverless endpoint, the
        # image SageMaker keeps (AWS: Serverless Inference, "Create an endpoint configuration").
        "KmsKeyId": key,
    }
    if settings.kind == ASYNCHRONOUS:
        props["AsyncInferenceConfig"] = async_inference(b, settings, key, topics)
    if settings.data_capture.enabled:
        props["DataCaptureConfig"] = data_capture(b, settings, key)
    title = "EndpointConfig" + content_hash(props)
    capture = props.pop("DataCaptureConfig", None)
    resource = sagemaker.EndpointConfig(title, Condition=MODEL_SUPPLIED, **props)
    if capture is not None:
        resource.properties["DataCaptureConfig"] = capture
    return resource


# --- endpoint ------------------------------------------------------------------------------

def endpoint_metric(name: str, metric: str) -> dict:
    return {
        "Namespace": "AWS/SageMaker",
        "MetricName": metric,
        "Dimensions": [cloudwatch.MetricDimension(Name="EndpointName", Value=Sub(name)),
                       cloudwatch.MetricDimension(Name="VariantName", Value=VARIANT)],
    }


# AWS Control Tower's CT.CLOUDWATCH.PR.1 asks every alarm for an action in the ALARM state.
ROLLBACK_ALARM_EXCEPTION = (
    "CT.CLOUDWATCH.PR.1",
    "A deployment guardrail: SageMaker watches it during a blue/green update and rolls back "
    "(the endpoint's AutoRollbackConfiguration), which is its action. People hear of endpoint "
    "errors and latency through the monitoring stage's alarms and its topic, which the serving "
    "stack cannot name (monitoring reads serving's outputs).")


def error_alarm(b: StageBuilder, settings: SageMakerServingConfig,
                name: str) -> cloudwatch.Alarm:
    return cloudwatch.Alarm(
        "EndpointErrorAlarm",
        Condition=MODEL_SUPPLIED,
        Metadata=control_tower_exceptions(ROLLBACK_ALARM_EXCEPTION),
        AlarmDescription="Model endpoint answers with 5XX errors; rolls back a deployment",
        Statistic="Sum",
        Period=ALARM_PERIOD_SECONDS,
        EvaluationPeriods=ALARM_PERIODS,
        DatapointsToAlarm=ALARM_PERIODS,
        Threshold=b.setting(settings.deployment, "rollback_error_count"),
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        **endpoint_metric(name, "Invocation5XXErrors"),
    )


def latency_alarm(b: StageBuilder, settings: SageMakerServingConfig,
                  name: str) -> cloudwatch.Alarm:
    # ModelLatency is in microseconds; the threshold is set in milliseconds.
    return cloudwatch.Alarm(
        "EndpointLatencyAlarm",
        Condition=MODEL_SUPPLIED,
        Metadata=control_tower_exceptions(ROLLBACK_ALARM_EXCEPTION),
        AlarmDescription="Model endpoint p99 latency too high; rolls back a deployment",
        Metrics=[
            cloudwatch.MetricDataQuery(
                Id="latency",
                MetricStat=cloudwatch.MetricStat(
                    Metric=cloudwatch.Metric(**endpoint_metric(name, "ModelLatency")),
                    Period=ALARM_PERIOD_SECONDS,
                    Stat="p99"),
                ReturnData=False),
            cloudwatch.MetricDataQuery(
                Id="latencyMs", Expression="latency / 1000",
                Label="p99 model latency (ms)", ReturnData=True),
        ],
        EvaluationPeriods=ALARM_PERIODS,
        DatapointsToAlarm=ALARM_PERIODS,
        Threshold=b.setting(settings.deployment, "rollback_latency_ms"),
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )


def traffic_routing(b: StageBuilder,
                    settings: SageMakerServingConfig) -> sagemaker.TrafficRoutingConfig:
    deployment = settings.deployment
    props: dict[str, Any] = {
        "Type": TRAFFIC_TYPES[deployment.traffic_shifting],
        "WaitIntervalInSeconds": b.setting(deployment, "wait_seconds"),
    }
    if deployment.traffic_shifting in ("canary", "linear"):
        # All-at-once has no step: its parameter would be declared and never used.
        step = sagemaker.CapacitySize(Type="CAPACITY_PERCENT",
                                      Value=b.setting(deployment, "step_percent"))
        props["CanarySize" if deployment.traffic_shifting == "canary" else "LinearStepSize"] = step
    return sagemaker.TrafficRoutingConfig(**props)


def endpoint_resource(b: StageBuilder, settings: SageMakerServingConfig, name: str,
                      endpoint_config: sagemaker.EndpointConfig,
                      alarms: list[cloudwatch.Alarm]) -> sagemaker.Endpoint:
    deployment = settings.deployment
    return sagemaker.Endpoint(
        "Endpoint",
        Condition=MODEL_SUPPLIED,
        EndpointName=Sub(name),
        EndpointConfigName=GetAtt(endpoint_config, "EndpointConfigName"),
        DeploymentConfig=sagemaker.DeploymentConfig(
            BlueGreenUpdatePolicy=sagemaker.BlueGreenUpdatePolicy(
                TrafficRoutingConfiguration=traffic_routing(b, settings),
                TerminationWaitInSeconds=b.setting(deployment, "termination_wait_seconds"),
                MaximumExecutionTimeoutInSeconds=b.setting(deployment, "timeout_seconds"),
            ),
            AutoRollbackConfiguration=sagemaker.AutoRollbackConfig(
                Alarms=[sagemaker.Alarm(AlarmName=Ref(alarm)) for alarm in alarms]),
        ),
    )


def endpoint_scaling_target(b: StageBuilder, settings: SageMakerServingConfig, name: str,
                            endpoint: sagemaker.Endpoint) -> scaling.ScalableTarget:
    # No RoleARN: Application Auto Scaling uses its service-linked role for SageMaker.
    return scaling.ScalableTarget(
        "EndpointScalingTarget",
        Condition=MODEL_SUPPLIED,
        DependsOn=[endpoint.title],
        ServiceNamespace="sagemaker",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        ResourceId=Sub(f"endpoint/{name}/variant/{VARIANT}"),
        # Asynchronous Inference alone may scale to zero instances (AWS: "Autoscale an
        # asynchronous endpoint").
        MinCapacity=(0 if settings.kind == ASYNCHRONOUS and settings.asynchronous.scale_to_zero
                     else b.setting(settings, "min_instances")),
        MaxCapacity=b.setting(settings, "max_instances"),
    )


def backlog_scaling_policy(b: StageBuilder, settings: SageMakerServingConfig, name: str,
                           target: scaling.ScalableTarget) -> scaling.ScalingPolicy:
    """Instances follow the queue. AWS: "Autoscale an asynchronous endpoint" (define a
    scaling policy): target tracking on ApproximateBacklogSizePerInstance of the endpoint."""
    return scaling.ScalingPolicy(
        "EndpointScalingPolicy",
        Condition=MODEL_SUPPLIED,
        PolicyName="backlog-per-instance",
        PolicyType="TargetTrackingScaling",
        ScalingTargetId=Ref(target),
        TargetTrackingScalingPolicyConfiguration=scaling.TargetTrackingScalingPolicyConfiguration(
            CustomizedMetricSpecification=scaling.CustomizedMetricSpecification(
                MetricName="ApproximateBacklogSizePerInstance",
                Namespace="AWS/SageMaker",
                Dimensions=[scaling.MetricDimension(Name="EndpointName", Value=Sub(name))],
                Statistic="Average"),
            TargetValue=b.setting(settings.asynchronous, "backlog_per_instance"),
            ScaleInCooldown=SCALE_IN_COOLDOWN_SECONDS,
            ScaleOutCooldown=SCALE_OUT_COOLDOWN_SECONDS,
        ),
    )


def scale_from_zero_policy(target: scaling.ScalableTarget) -> scaling.ScalingPolicy:
    """One instance as soon as requests wait with none running. Without it, AWS notes, an
    endpoint at zero starts only once the backlog exceeds the tracking target ("Autoscale an
    asynchronous endpoint": optional policy that scales up from zero for new requests)."""
    return scaling.ScalingPolicy(
        "ScaleFromZeroPolicy",
        Condition=MODEL_SUPPLIED,
        PolicyName="scale-from-zero",
        PolicyType="StepScaling",
        ScalingTargetId=Ref(target),
        StepScalingPolicyConfiguration=scaling.StepScalingPolicyConfiguration(
            AdjustmentType="ChangeInCapacity",
            MetricAggregationType="Average",
            Cooldown=SCALE_IN_COOLDOWN_SECONDS,
            StepAdjustments=[scaling.StepAdjustment(MetricIntervalLowerBound=0,
                                                    ScalingAdjustment=1)],
        ),
    )


def backlog_without_capacity_alarm(name: str,
                                   policy: scaling.ScalingPolicy) -> cloudwatch.Alarm:
    """HasBacklogWithoutCapacity (1 while requests wait and no instance runs) starts the
    scale-from-zero policy, as in AWS's example on the same page."""
    return cloudwatch.Alarm(
        "BacklogWithoutCapacityAlarm",
        Condition=MODEL_SUPPLIED,
        AlarmDescription="Requests wait and no instance runs: start one",
        Namespace="AWS/SageMaker",
        MetricName="HasBacklogWithoutCapacity",
        Dimensions=[cloudwatch.MetricDimension(Name="EndpointName", Value=Sub(name))],
        Statistic="Average",
        Period=ALARM_PERIOD_SECONDS,
        EvaluationPeriods=2,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="missing",
        AlarmActions=[Ref(policy)],
    )


def endpoint_scaling_policy(b: StageBuilder, settings: SageMakerServingConfig,
                            target: scaling.ScalableTarget) -> scaling.ScalingPolicy:
    return scaling.ScalingPolicy(
        "EndpointScalingPolicy",
        Condition=MODEL_SUPPLIED,
        PolicyName="invocations-per-instance",
        PolicyType="TargetTrackingScaling",
        ScalingTargetId=Ref(target),
        TargetTrackingScalingPolicyConfiguration=scaling.TargetTrackingScalingPolicyConfiguration(
            PredefinedMetricSpecification=scaling.PredefinedMetricSpecification(
                PredefinedMetricType="SageMakerVariantInvocationsPerInstance"),
            TargetValue=b.setting(settings, "invocations_per_instance"),
            ScaleInCooldown=SCALE_IN_COOLDOWN_SECONDS,
            ScaleOutCooldown=SCALE_OUT_COOLDOWN_SECONDS,
        ),
    )
