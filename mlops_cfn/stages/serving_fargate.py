"""The serving stage's Fargate part: a container API behind an internal load balancer.

Resources
- ApiRepository (ECR): scan on push, immutable tags, encrypted with the data key, a lifecycle
  that drops untagged images after a week and keeps the newest ApiImagesKept; retained. With
  environments in other accounts and the image built by the pipeline, its policy in a target
  account lets the delivery pipeline's image build push (sharing.repository_policy).
- ApiCluster (ECS): Container Insights on.
- ApiLogGroup: the containers' logs (KMS, retention).
- ApiExecutionRole: what ECS does for a task: pull from ApiRepository, write ApiLogGroup, read
  the configured secrets. ApiTaskRole: what the container may do: describe the model package it
  serves and read the model archives the training pipeline writes
  (<training.artifacts_prefix>models/ of the artifacts bucket), or exactly ModelDataUrl's.
- LoadBalancer (internal, private subnets) with LoadBalancerSecurityGroup (from inside the VPC):
  access logs to the access-logs bucket, invalid headers dropped, deletion protection as
  LoadBalancerDeletionProtection. ApiTargetGroup (ip targets, health check path).
  Listeners: with a certificate, HttpsListener (TLS 1.2+) and HttpListener redirecting to it;
  without one, HttpListener forwarding (reachable inside the VPC only).
- ApiTaskSecurityGroup: admits the load balancer only; HTTPS out to ECR, Logs, Secrets Manager
  (VPC endpoints) and S3 (gateway endpoint).
- Only once an image and a model are named (condition ApiRunnable: ApiImageTag and the model,
  ModelSupplied, are set; a task with no model never turns healthy): ApiTaskDefinition (the
  model API of mlops_cfn/data/model_api, told its model, features and limits by environment
  variables; read-only root filesystem with a writable /tmp volume, non-root user, no Linux
  capabilities, logs to ApiLogGroup), ApiService (private subnets, no public address,
  circuit breaker with rollback), ApiScalingTarget with ApiCpuScalingPolicy and
  ApiRequestScalingPolicy.

First deployment: the repository is new and empty, so no task can start. Build the model API's
image (README, "The Fargate model API"), push it, set ApiImageTag to its tag, and update the
stack; every later release is a new tag.

Inputs: DataKeyArn, ArtifactsBucketArn, AccessLogsBucketName, VpcId, VpcCidrBlock,
PrivateSubnetIds.
Outputs: EcsClusterName, EcsServiceName (fixed, known before the service exists) with
ApiServiceExists ("true" under ApiRunnable), ApiLogGroupName, LoadBalancerDnsName,
LoadBalancerFullName, TargetGroupFullName.
"""

import json
from typing import Any
from dataclasses import dataclass

import awacs.ecr
import awacs.kms
import awacs.logs
import awacs.s3
import awacs.sagemaker
import awacs.secretsmanager
from awacs.aws import Allow, ForAllValuesStringEquals, Statement, StringEquals
from troposphere import (And, Condition as TroposphereCondition, GetAtt, If, NoValue, Ref, Sub,
                         applicationautoscaling as scaling, ec2, ecr, ecs,
                         elasticloadbalancingv2 as elb, iam)

from .. import naming, policies
from ..config import PipelineConfig
from ..config.serving import FargateServingConfig
from ..outputs import (ACCESS_LOGS_BUCKET_NAME, API_LOG_GROUP_NAME, ARTIFACTS_BUCKET_ARN,
                       DATA_KEY_ARN, ECS_CLUSTER_NAME, ECS_SERVICE_NAME, LOAD_BALANCER_DNS_NAME,
                       LOAD_BALANCER_FULL_NAME, PRIVATE_SUBNET_IDS, TARGET_GROUP_FULL_NAME,
                       VPC_CIDR, VPC_ID)
from ..sharing import Sharing, repository_policy, shared
from ..stage import StageBuilder
from .common import control_tower_exceptions, encrypted_log_group, https_out_security_group
from .serving_common import (API_RUNNABLE, HTTP, HTTPS, MODEL_SUPPLIED,
                             SCALE_IN_COOLDOWN_SECONDS, SCALE_OUT_COOLDOWN_SECONDS,
                             add_model_supplied, list_under, model_archive_read_statement,
                             models_prefix, name_pattern, not_empty)
from .access_logs import LOAD_BALANCER_LOG_PREFIX

CONTAINER = "model-api"
# TLS 1.3 and 1.2 only, forward secrecy: AWS's recommended policy for new listeners.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# Untagged images come from failed or superseded pushes; a week is time enough to notice.
UNTAGGED_IMAGE_DAYS = 7
HEALTH_CHECK_INTERVAL_SECONDS = 10
# The container's one writable place (the task's ephemeral storage). The image declares a VOLUME
# at this path, so the non-root user may write there (mlops_cfn/data/model_api/Dockerfile).
SCRATCH_PATH = "/tmp"
# A task being replaced gets this long to finish its requests.
DEREGISTRATION_DELAY_SECONDS = 30


@dataclass(frozen=True)
class FargateServing:
    load_balancer: elb.LoadBalancer
    # The listener that forwards to the API (HTTPS with a certificate, else HTTP) and its port.
    listener: elb.Listener
    port: int


def add_fargate(b: StageBuilder, config: PipelineConfig,
                sharing: Sharing | None = None) -> FargateServing:
    settings = config.stages.serving.fargate
    https = config.stages.serving.https
    key = b.input(DATA_KEY_ARN)
    add_model_supplied(b, config)
    b.template.add_condition(API_RUNNABLE, And(not_empty(b.setting(settings, "image_tag")),
                                               TroposphereCondition(MODEL_SUPPLIED)))

    repository = b.add(api_repository(b, settings, key))
    share_repository(b, config, sharing, repository)
    cluster_name = naming.physical_name(naming.ECS, config.project, naming.API_CLUSTER_PURPOSE)
    fargate_uses_the_key(b, cluster_name)
    cluster = b.add(ecs.Cluster(
        "ApiCluster",
        ClusterName=b.physical_name(naming.ECS, naming.API_CLUSTER_PURPOSE),
        ClusterSettings=[ecs.ClusterSetting(Name="containerInsights", Value="enabled")],
        # The tasks' ephemeral storage under the data key rather than an AWS-owned one
        # (the key's policy lets Fargate use it for this cluster: `fargate_uses_the_key`).
        Configuration=ecs.ClusterConfiguration(
            ManagedStorageConfiguration=ecs.ManagedStorageConfiguration(
                FargateEphemeralStorageKmsKeyId=key)),
    ))
    log_group = encrypted_log_group(b, config, "ApiLogGroup", "model-api")

    lb_group = b.add(load_balancer_security_group(b, https))
    task_group = task_security_group(b, config)
    b.add(ec2.SecurityGroupEgress(
        "LoadBalancerToTasks",
        GroupId=GetAtt(lb_group, "GroupId"),
        Description="To the API tasks",
        IpProtocol="tcp", FromPort=settings.container_port, ToPort=settings.container_port,
        DestinationSecurityGroupId=GetAtt(task_group, "GroupId"),
    ))
    b.add(ec2.SecurityGroupIngress(
        "TasksFromLoadBalancer",
        GroupId=GetAtt(task_group, "GroupId"),
        Description="From the load balancer",
        IpProtocol="tcp", FromPort=settings.container_port, ToPort=settings.container_port,
        SourceSecurityGroupId=GetAtt(lb_group, "GroupId"),
    ))

    load_balancer = b.add(load_balancer_resource(b, settings, lb_group))
    target_group = b.add(target_group_resource(b, settings))
    listeners = add_listeners(b, settings, https, load_balancer, target_group)

    execution_role = b.add(execution_role_resource(settings, key, repository, log_group))
    task_role = b.add(task_role_resource(b, config, key))
    task_definition = b.add(task_definition_resource(
        b, config, repository, log_group, execution_role, task_role))
    service_name = name_pattern(b, naming.ECS, "model-api")
    service = b.add(service_resource(b, settings, service_name, cluster, task_definition,
                                     task_group, target_group, listeners))
    add_service_scaling(b, settings, cluster, service_name, service, load_balancer, target_group)

    b.output(ECS_CLUSTER_NAME, Ref(cluster))
    b.output(ECS_SERVICE_NAME, Sub(service_name), condition=API_RUNNABLE)
    b.output(API_LOG_GROUP_NAME, Ref(log_group))
    b.output(LOAD_BALANCER_DNS_NAME, GetAtt(load_balancer, "DNSName"))
    b.output(LOAD_BALANCER_FULL_NAME, GetAtt(load_balancer, "LoadBalancerFullName"))
    b.output(TARGET_GROUP_FULL_NAME, GetAtt(target_group, "TargetGroupFullName"))
    return FargateServing(load_balancer, listeners[0], HTTPS if https else HTTP)


# --- image repository ----------------------------------------------------------------------

def lifecycle_policy(images_kept: Ref) -> Sub:
    rules = {"rules": [
        {
            "rulePriority": 1,
            "description": f"Untagged images go after {UNTAGGED_IMAGE_DAYS} days",
            "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                          "countUnit": "days", "countNumber": UNTAGGED_IMAGE_DAYS},
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "Keep the newest images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                          "countNumber": "__KEPT__"},
            "action": {"type": "expire"},
        },
    ]}
    text = json.dumps(rules, sort_keys=True)
    # A number in the policy text, filled from the parameter.
    return Sub(text.replace('"__KEPT__"', "${%s}" % images_kept.data["Ref"]))


def fargate_uses_the_key(b: StageBuilder, cluster_name: str) -> None:
    """Ask the data key's policy to let Fargate encrypt the API tasks' ephemeral storage.

    AWS: "Create an encryption key for Fargate ephemeral storage for Amazon ECS": Fargate
    encrypts the ephemeral storage of the cluster's tasks with the key (its
    ManagedStorageConfiguration) as itself: a data key, and a grant to decrypt it, for that
    cluster of this account only, named in the encryption context (AWS's example key policy
    names the cluster, not its ARN).
    """
    the_cluster = StringEquals({
        "kms:EncryptionContext:aws:ecs:clusterAccount": Ref("AWS::AccountId"),
        "kms:EncryptionContext:aws:ecs:clusterName": Sub(cluster_name),
    })
    b.data_key_use(policies.key_use_by_service(
        "TaskStorageByFargate", "fargate.amazonaws.com",
        [awacs.kms.GenerateDataKeyWithoutPlaintext], the_cluster))
    # AWS: same page: kms:CreateGrant, for the grant operation Decrypt.
    b.data_key_use(policies.key_use_by_service(
        "TaskStorageGrantsByFargate", "fargate.amazonaws.com", [awacs.kms.CreateGrant],
        the_cluster, ForAllValuesStringEquals("kms:GrantOperations", ["Decrypt"])))


def share_repository(b: StageBuilder, config: PipelineConfig, sharing: Sharing | None,
                     repository: ecr.Repository) -> None:
    """In a target account, when the delivery pipeline builds the model API's image: the
    repository's policy admitting the delivery pipeline's image build, which pushes the image
    here (sharing.py). Why push rather than replicate or pull across accounts: ECR replication
    is configured once per registry (AWS: "Private image replication in Amazon ECR": the
    registry's replication configuration, and the destination's registry permissions), which a
    project's stack must not own; pulling from the home repository would make each
    environment's service depend on the home environment's stack and lifecycle policy. A push
    keeps each environment's images in its own account, under its own lifecycle policy."""
    from .cicd import building_model_api_image

    if sharing is not None and building_model_api_image(config):
        repository.RepositoryPolicyText = If(shared(b), repository_policy(config, sharing.home),
                                             NoValue)


def api_repository(b: StageBuilder, settings: FargateServingConfig, key: Ref) -> ecr.Repository:
    return ecr.Repository(
        "ApiRepository",
        RepositoryName=b.physical_name(naming.ECR_REPOSITORY, "model-api"),
        ImageScanningConfiguration=ecr.ImageScanningConfiguration(ScanOnPush=True),
        # A tag names one image for good: a deployment is repeatable and a rollback exact.
        ImageTagMutability="IMMUTABLE",
        EncryptionConfiguration=ecr.EncryptionConfiguration(EncryptionType="KMS", KmsKey=key),
        LifecyclePolicy=ecr.LifecyclePolicy(
            LifecyclePolicyText=lifecycle_policy(b.setting(settings, "images_kept"))),
        # The images are releases: they outlive the stack like the data does.
        DeletionPolicy="Retain",
        UpdateReplacePolicy="Retain",
    )


# --- network -------------------------------------------------------------------------------

def load_balancer_security_group(b: StageBuilder, https: bool) -> ec2.SecurityGroup:
    vpc_cidr = b.input(VPC_CIDR)
    ports = [HTTPS, HTTP] if https else [HTTP]
    return ec2.SecurityGroup(
        "LoadBalancerSecurityGroup",
        GroupDescription="Model API load balancer: clients inside the VPC",
        VpcId=b.input(VPC_ID),
        # Clients are in the VPC (or API Gateway's VPC link, whose interfaces are too).
        SecurityGroupIngress=[ec2.SecurityGroupRule(
            Description=f"Port {port} from the VPC's range", IpProtocol="tcp", FromPort=port,
            ToPort=port, CidrIp=vpc_cidr) for port in ports],
        # Egress to the tasks is its own resource (LoadBalancerToTasks); this rule matches
        # nothing, so the group allows nothing else (EC2 would otherwise allow all).
        SecurityGroupEgress=[ec2.SecurityGroupRule(
            Description="No other outbound traffic", IpProtocol="icmp", FromPort=252, ToPort=86,
            CidrIp="255.255.255.255/32")],
    )


def task_security_group(b: StageBuilder, config: PipelineConfig) -> ec2.SecurityGroup:
    # ECR, Logs, Secrets Manager and the SageMaker API (the model API asks where its package's
    # archive is) are interface endpoints in the VPC; image layers and the model archive come
    # from S3 through the gateway endpoint. The load balancer's way in is a rule of its own.
    return https_out_security_group(
        b, config, "ApiTaskSecurityGroup", "Model API tasks: the load balancer in, HTTPS out",
        reaches_s3=True)


# --- load balancer -------------------------------------------------------------------------

def load_balancer_resource(b: StageBuilder, settings: FargateServingConfig,
                           security_group: ec2.SecurityGroup) -> elb.LoadBalancer:
    attributes = {
        "access_logs.s3.enabled": "true",
        "access_logs.s3.bucket": b.input(ACCESS_LOGS_BUCKET_NAME),
        "access_logs.s3.prefix": LOAD_BALANCER_LOG_PREFIX,
        # Headers that are not valid HTTP never reach the API (request smuggling).
        "routing.http.drop_invalid_header_fields.enabled": "true",
        "deletion_protection.enabled": b.setting(settings, "deletion_protection"),
    }
    return elb.LoadBalancer(
        "LoadBalancer",
        Type="application",
        # Internal: no public address; public access, if any, is API Gateway's VPC link.
        Scheme="internal",
        Subnets=b.input(PRIVATE_SUBNET_IDS),
        SecurityGroups=[GetAtt(security_group, "GroupId")],
        LoadBalancerAttributes=[elb.LoadBalancerAttributes(Key=k, Value=v)
                                for k, v in attributes.items()],
        Metadata=control_tower_exceptions((
            "CT.ELASTICLOADBALANCING.PR.5",
            "Deletion protection follows stages.serving.fargate.deletion_protection (the "
            "LoadBalancerDeletionProtection parameter), the owner's choice per environment: on "
            "where the environment is protected, off where stacks are deleted and made again. "
            "The internal load balancer holds no data.")),
    )


def target_group_resource(b: StageBuilder, settings: FargateServingConfig) -> elb.TargetGroup:
    return elb.TargetGroup(
        "ApiTargetGroup",
        TargetType="ip",
        Protocol="HTTP",
        Port=settings.container_port,
        VpcId=b.input(VPC_ID),
        HealthCheckEnabled=True,
        HealthCheckProtocol="HTTP",
        HealthCheckPath=settings.health_check_path,
        Matcher=elb.Matcher(HttpCode="200"),
        # The API answers 503 while it loads its model. A new target turns healthy on its first
        # passing check; one that failed first needs HealthyThresholdCount passes (AWS: "Health
        # checks for Application Load Balancer target groups"). The defaults (every 30 s, 5
        # passes) would keep a task that loaded a few seconds late out for 150 s, beyond the
        # service's grace period: check every 10 s, 2 passes in, 3 failures out.
        HealthCheckIntervalSeconds=HEALTH_CHECK_INTERVAL_SECONDS,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=3,
        TargetGroupAttributes=[elb.TargetGroupAttribute(
            Key="deregistration_delay.timeout_seconds",
            Value=str(DEREGISTRATION_DELAY_SECONDS))],
    )


def add_listeners(b: StageBuilder, settings: FargateServingConfig, https: bool,
                  load_balancer: elb.LoadBalancer,
                  target_group: elb.TargetGroup) -> list[elb.Listener]:
    """The forwarding listener first: HTTPS with a certificate (plain HTTP then only
    redirects), else HTTP."""
    forward = [elb.Action(Type="forward", TargetGroupArn=Ref(target_group))]
    if not https:
        return [b.add(elb.Listener(
            "HttpListener",
            LoadBalancerArn=Ref(load_balancer),
            Port=HTTP,
            Protocol="HTTP",
            DefaultActions=forward,
            Metadata={
                "checkov": {"skip": [
                    {"id": "CKV_AWS_2",
                     "comment": "No certificate is configured (fargate.certificate_arn): the "
                                "load balancer is internal, reachable only inside the VPC; set "
                                "a certificate to serve HTTPS and redirect HTTP."},
                    {"id": "CKV_AWS_103",
                     "comment": "Plain HTTP inside the VPC: there is no TLS to set a version "
                                "for until a certificate is configured "
                                "(fargate.certificate_arn)."},
                ]},
                **control_tower_exceptions((
                    "CT.ELASTICLOADBALANCING.PR.1",
                    "No certificate is configured (stages.serving.fargate.certificate_arn), so "
                    "there is no HTTPS listener to redirect to: the internal load balancer "
                    "serves HTTP inside the VPC only. With a certificate this listener "
                    "redirects to HTTPS.")),
            },
        ))]
    secure = b.add(elb.Listener(
        "HttpsListener",
        LoadBalancerArn=Ref(load_balancer),
        Port=HTTPS,
        Protocol="HTTPS",
        SslPolicy=SSL_POLICY,
        Certificates=[elb.Certificate(CertificateArn=b.setting(settings, "certificate_arn"))],
        DefaultActions=forward,
    ))
    redirect = b.add(elb.Listener(
        "HttpListener",
        LoadBalancerArn=Ref(load_balancer),
        Port=HTTP,
        Protocol="HTTP",
        DefaultActions=[elb.Action(
            Type="redirect",
            RedirectConfig=elb.RedirectConfig(Protocol="HTTPS", Port=str(HTTPS),
                                              StatusCode="HTTP_301"))],
    ))
    return [secure, redirect]


# --- task and service ----------------------------------------------------------------------

def secret_arn(value: str):
    """A secret given by ARN as is; by name, its ARN in this account and region without the
    random suffix (Secrets Manager resolves such partial ARNs)."""
    return value if value.startswith("arn:") else policies.arn("secretsmanager", f"secret:{value}")


def secret_policy_arn(value: str):
    """The IAM resource of a secret: a name matches the six-character suffix Secrets Manager
    appends."""
    return value if value.startswith("arn:") else policies.arn(
        "secretsmanager", f"secret:{value}-??????")


def execution_role_resource(settings: FargateServingConfig, key: Ref, repository: ecr.Repository,
                            log_group) -> iam.Role:
    statements = [
        # AWS: "Amazon ECS task execution IAM role" (Amazon ECS Developer Guide): pulling the
        # image from a private ECR repository (this stage's only) ...
        Statement(
            Effect=Allow,
            Action=[awacs.ecr.BatchCheckLayerAvailability, awacs.ecr.BatchGetImage,
                    awacs.ecr.GetDownloadUrlForLayer],
            Resource=[GetAtt(repository, "Arn")],
        ),
        # AWS: same page: ... with a registry token, which has no resource-level permission:
        # "*" only ...
        Statement(Effect=Allow, Action=[awacs.ecr.GetAuthorizationToken], Resource=["*"]),
        # AWS: same page: ... and sending the container logs with the awslogs driver (its
        # group only).
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
            Resource=[policies.arn("logs", "log-group:${%s}:*" % log_group.title)],
        ),
    ]
    if settings.secrets:
        statements += [
            # AWS: "Pass Secrets Manager secrets through Amazon ECS environment variables"
            # (Amazon ECS Developer Guide): secretsmanager:GetSecretValue on those secrets ...
            Statement(
                Effect=Allow,
                Action=[awacs.secretsmanager.GetSecretValue],
                Resource=[secret_policy_arn(v) for _, v in sorted(settings.secrets.items())],
            ),
            # AWS: same page: ... and kms:Decrypt when a secret is under a customer managed key
            # (the data key; those under aws/secretsmanager need nothing).
            policies.use_key(key, [awacs.kms.Decrypt], via_services=("secretsmanager",)),
        ]
    return iam.Role(
        "ApiExecutionRole",
        Description="ECS: start the model API tasks (image, logs, secrets)",
        AssumeRolePolicyDocument=policies.trusted_by(
            "ecs-tasks.amazonaws.com", StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(PolicyName="start-tasks",
                             PolicyDocument=policies.document(statements))],
    )


def task_role_resource(b: StageBuilder, config: PipelineConfig, key: Ref) -> iam.Role:
    """What the container itself may do (AWS: "Amazon ECS task IAM role", Amazon ECS Developer
    Guide: the permissions the application needs). The model API (mlops_cfn/data/model_api)
    asks SageMaker where the package's archive is and reads it; nothing else of the artifacts
    bucket (not training splits, not captures)."""
    serving = config.stages.serving
    statements: list = []
    if serving.model_source == "model_package":
        prefix = models_prefix(config)
        statements += [
            # AWS: "Actions, resources, and condition keys for Amazon SageMaker AI":
            # DescribeModelPackage takes the model-package resource; exactly the version the
            # stack serves, once one is named.
            If(MODEL_SUPPLIED, Statement(
                Effect=Allow, Action=[awacs.sagemaker.DescribeModelPackage],
                Resource=[b.setting(serving, "model_package_arn")]), NoValue),
            # AWS: "Amazon S3 actions" (ListBucket lets a missing archive answer 404, not 403):
            # the models folder only.
            list_under(b.input(ARTIFACTS_BUCKET_ARN), prefix),
        ]
    return iam.Role(
        "ApiTaskRole",
        Description="Model API containers: read the model archive they serve",
        AssumeRolePolicyDocument=policies.trusted_by(
            "ecs-tasks.amazonaws.com", StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(
            PolicyName="read-models",
            # A plain document: awacs admits no Fn::If among statements.
            PolicyDocument={"Version": policies.POLICY_VERSION, "Statement": [
                *statements,
                # AWS: "Amazon S3 actions": s3:GetObject on the archive (the models folder, or
                # exactly ModelDataUrl's object).
                model_archive_read_statement(b, config),
                # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)": the
                # objects are under the data key, so reading needs kms:Decrypt, through S3.
                policies.use_key(key, [awacs.kms.Decrypt], via_services=("s3",)),
            ]},
        )],
    )


def model_api_environment(b: StageBuilder, config: PipelineConfig) -> dict[str, Any]:
    """What the model API reads at start (mlops_cfn/data/model_api/app.py, Settings): which
    model, its features in the training order (the record schema's), the batch limit, the port.
    An image of the user's own gets the same variables."""
    serving = config.stages.serving
    settings = serving.fargate
    if serving.model_source == "model_package":
        model = {"MODEL_PACKAGE_ARN": b.setting(serving, "model_package_arn")}
    else:
        model = {"MODEL_DATA_URL": b.setting(serving, "model_data_url")}
    return {
        **model,
        "MODEL_FEATURES": json.dumps(config.record_schema.feature_columns(),
                                     separators=(",", ":")),
        "MAX_BATCH_ROWS": str(settings.max_batch_rows),
        "PORT": str(settings.container_port),
        "AWS_DEFAULT_REGION": Ref("AWS::Region"),
    }


def task_definition_resource(b: StageBuilder, config: PipelineConfig, repository: ecr.Repository,
                             log_group, execution_role: iam.Role,
                             task_role: iam.Role) -> ecs.TaskDefinition:
    settings = config.stages.serving.fargate
    image_tag = b.setting(settings, "image_tag")
    variables = {"Environment": [ecs.Environment(Name=k, Value=v) for k, v in
                                 sorted({**settings.environment,
                                         **model_api_environment(b, config)}.items())]}
    if settings.secrets:
        variables["Secrets"] = [ecs.Secret(Name=k, ValueFrom=secret_arn(v))
                                for k, v in sorted(settings.secrets.items())]
    container = ecs.ContainerDefinition(
        Name=CONTAINER,
        Image=Sub("${%s.RepositoryUri}:${%s}" % (repository.title, image_tag.data["Ref"])),
        Essential=True,
        # A hard limit, the task's whole memory: the one container may use all of it and no
        # more (AWS Control Tower CT.ECS.PR.7, controlreference/ecs-rules.html).
        Memory=b.setting(settings, "memory_mb"),
        User=settings.user,
        ReadonlyRootFilesystem=True,
        # Nothing a model server needs; dropping all closes the usual container escapes.
        LinuxParameters=ecs.LinuxParameters(
            Capabilities=ecs.KernelCapabilities(Drop=["ALL"]), InitProcessEnabled=True),
        # The one writable place: scratch space on the task's ephemeral storage.
        MountPoints=[ecs.MountPoint(SourceVolume="tmp", ContainerPath=SCRATCH_PATH,
                                    ReadOnly=False)],
        PortMappings=[ecs.PortMapping(ContainerPort=settings.container_port, Protocol="tcp")],
        **variables,
        LogConfiguration=ecs.LogConfiguration(
            LogDriver="awslogs",
            Options={"awslogs-group": Ref(log_group), "awslogs-region": Ref("AWS::Region"),
                     "awslogs-stream-prefix": CONTAINER},
        ),
    )
    return ecs.TaskDefinition(
        "ApiTaskDefinition",
        Condition=API_RUNNABLE,
        Family=b.physical_name(naming.ECS, "model-api"),
        RequiresCompatibilities=["FARGATE"],
        NetworkMode="awsvpc",
        Cpu=b.setting(settings, "cpu"),
        Memory=b.setting(settings, "memory_mb"),
        RuntimePlatform=ecs.RuntimePlatform(CpuArchitecture=settings.cpu_architecture,
                                            OperatingSystemFamily="LINUX"),
        ExecutionRoleArn=GetAtt(execution_role, "Arn"),
        TaskRoleArn=GetAtt(task_role, "Arn"),
        Volumes=[ecs.Volume(Name="tmp")],
        ContainerDefinitions=[container],
    )


def service_resource(b: StageBuilder, settings: FargateServingConfig, name: str,
                     cluster: ecs.Cluster, task_definition: ecs.TaskDefinition,
                     security_group: ec2.SecurityGroup, target_group: elb.TargetGroup,
                     listeners: list[elb.Listener]) -> ecs.Service:
    # No DesiredCount: ECS starts one task, autoscaling sets the count from there, and a stack
    # update never resets what autoscaling chose.
    return ecs.Service(
        "ApiService",
        Condition=API_RUNNABLE,
        # The target group must belong to a load balancer (through a listener) first.
        DependsOn=[listener.title for listener in listeners],
        ServiceName=Sub(name),
        Cluster=Ref(cluster),
        TaskDefinition=Ref(task_definition),
        LaunchType="FARGATE",
        PlatformVersion="LATEST",
        NetworkConfiguration=ecs.NetworkConfiguration(
            AwsvpcConfiguration=ecs.AwsvpcConfiguration(
                AssignPublicIp="DISABLED",
                Subnets=b.input(PRIVATE_SUBNET_IDS),
                SecurityGroups=[GetAtt(security_group, "GroupId")])),
        LoadBalancers=[ecs.LoadBalancer(ContainerName=CONTAINER,
                                        ContainerPort=settings.container_port,
                                        TargetGroupArn=Ref(target_group))],
        HealthCheckGracePeriodSeconds=b.setting(settings, "health_check_grace_seconds"),
        # A release whose tasks never get healthy is rolled back to the previous one.
        DeploymentConfiguration=ecs.DeploymentConfiguration(
            DeploymentCircuitBreaker=ecs.DeploymentCircuitBreaker(Enable=True, Rollback=True),
            MinimumHealthyPercent=100,
            MaximumPercent=200,
        ),
        EnableExecuteCommand=False,
        EnableECSManagedTags=True,
        PropagateTags="SERVICE",
    )


def add_service_scaling(b: StageBuilder, settings: FargateServingConfig, cluster: ecs.Cluster,
                        service_name: str, service: ecs.Service, load_balancer: elb.LoadBalancer,
                        target_group: elb.TargetGroup) -> None:
    # No RoleARN: Application Auto Scaling uses its service-linked role for ECS.
    target = b.add(scaling.ScalableTarget(
        "ApiScalingTarget",
        Condition=API_RUNNABLE,
        DependsOn=[service.title],
        ServiceNamespace="ecs",
        ScalableDimension="ecs:service:DesiredCount",
        ResourceId=Sub(f"service/${{{cluster.title}}}/{service_name}"),
        MinCapacity=b.setting(settings, "min_tasks"),
        MaxCapacity=b.setting(settings, "max_tasks"),
    ))
    b.add(target_tracking(
        "ApiCpuScalingPolicy", "cpu", target, b.setting(settings, "cpu_target_percent"),
        scaling.PredefinedMetricSpecification(
            PredefinedMetricType="ECSServiceAverageCPUUtilization")))
    b.add(target_tracking(
        "ApiRequestScalingPolicy", "requests-per-target", target,
        b.setting(settings, "requests_per_target"),
        scaling.PredefinedMetricSpecification(
            PredefinedMetricType="ALBRequestCountPerTarget",
            ResourceLabel=Sub("${%s.LoadBalancerFullName}/${%s.TargetGroupFullName}"
                              % (load_balancer.title, target_group.title)))))


def target_tracking(title: str, name: str, target: scaling.ScalableTarget, value: Ref,
                    metric: scaling.PredefinedMetricSpecification) -> scaling.ScalingPolicy:
    return scaling.ScalingPolicy(
        title,
        Condition=API_RUNNABLE,
        PolicyName=name,
        PolicyType="TargetTrackingScaling",
        ScalingTargetId=Ref(target),
        TargetTrackingScalingPolicyConfiguration=scaling.TargetTrackingScalingPolicyConfiguration(
            PredefinedMetricSpecification=metric,
            TargetValue=value,
            ScaleInCooldown=SCALE_IN_COOLDOWN_SECONDS,
            ScaleOutCooldown=SCALE_OUT_COOLDOWN_SECONDS,
        ),
    )
