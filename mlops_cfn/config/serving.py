"""The `stages.serving` section: SageMaker endpoint and batch transform, or a Fargate API.

`target` picks what serves predictions: a SageMaker real-time endpoint (with batch transform
beside it), a container API on Fargate behind an internal load balancer, or both. An optional API
Gateway goes in front: an HTTP API through a VPC link to the load balancer, or a REST API to the
SageMaker endpoint, both with IAM authorization.

First deployment: neither a model nor an API image exists when the stack is first created. The
SageMaker model, endpoint and their scaling exist only once `model_package_arn` (or
`model_data_url` with `sagemaker.image_uri`) is set; the Fargate task definition, service and
their scaling only once `fargate.image_tag` names an image pushed to the stage's ECR repository
and that model is set too (the API loads it). Both targets serve the one model the section
names (`model_source`, `model_package_arn`, `model_data_url`). Everything else
(roles, log groups, repository, cluster, load balancer, batch transform) is created at once, so
CI/CD can push an image or register a model and then set these parameters in an update.
"""

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import SCHEDULE_PATTERN, Model, Setting, StageToggle

# A versioned package of a SageMaker model registry group, or nothing yet (the first deploy).
MODEL_PACKAGE_ARN_PATTERN = (
    r"^(arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:model-package/"
    r"[a-zA-Z0-9][a-zA-Z0-9-]{0,62}/[0-9]+)?$")
S3_URI_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]*)?$"
# An inference image in Amazon ECR (SageMaker pulls from ECR unless told of a private registry):
# <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>[:tag|@digest]. The serving stage
# derives the repository's ARN from it for the model role.
IMAGE_URI_PATTERN = (r"^([0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
                     r"[a-z0-9][a-z0-9._/-]{0,254}"
                     r"(:[A-Za-z0-9_.-]{1,128}|@sha256:[a-f0-9]{64}))?$")
INSTANCE_TYPE_PATTERN = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
KEY_PREFIX_PATTERN = r"^[a-z0-9][a-z0-9_\-/]{0,62}/$"
CONTENT_TYPE_PATTERN = r"^[a-z]+/[a-z0-9.+-]+$"
CERTIFICATE_ARN_PATTERN = r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]{36}$"
SERVER_NAME_PATTERN = r"^([a-z0-9*]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
EnvVarName = Annotated[str, Field(pattern=ENV_VAR_PATTERN)]
# A secret of this account and region by name, or by ARN.
SECRET_PATTERN = (r"^([A-Za-z0-9/_+=.@-]{1,512}|arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:"
                  r"[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]{1,512})$")
IMAGE_TAG_PATTERN = r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"

# Task sizes Fargate accepts: CPU units to the memory (MiB) allowed with them.
FARGATE_MEMORY = {
    256: range(512, 2048 + 1, 512),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}


class DataCaptureConfig(Model):
    enabled: Annotated[
        bool,
        Field(description="Capture a sample of the endpoint's requests and responses into the "
                          "artifacts bucket (what model monitoring compares with its baseline)."),
    ] = True
    sampling_percentage: Annotated[
        int,
        Field(ge=1, le=100, description="Share of requests captured."),
        Setting("DataCaptureSamplingPercentage"),
    ] = 20
    prefix: Annotated[
        str,
        Field(pattern=KEY_PREFIX_PATTERN,
              description="Key prefix in the artifacts bucket; SageMaker appends "
                          "<endpoint>/<variant>/yyyy/mm/dd/hh/."),
    ] = "data-capture/"
    csv_content_types: Annotated[
        list[Annotated[str, Field(pattern=CONTENT_TYPE_PATTERN)]],
        Field(min_length=1, max_length=10,
              description="Content types captured as CSV text (others are base64-encoded)."),
    ] = ["text/csv"]
    json_content_types: Annotated[
        list[Annotated[str, Field(pattern=CONTENT_TYPE_PATTERN)]],
        Field(min_length=1, max_length=10, description="Content types captured as JSON text."),
    ] = ["application/json"]


class DeploymentConfig(Model):
    """How a new model reaches the endpoint: SageMaker's blue/green deployment guardrails."""

    traffic_shifting: Annotated[
        Literal["canary", "linear", "all_at_once"],
        Field(description="`canary`: one step of step_percent of the capacity, a baking wait, "
                          "then the rest; `linear`: steps of step_percent each with a wait "
                          "after every step; `all_at_once`: one step. Each bakes with the "
                          "rollback alarms watching. Canary and linear need two or more "
                          "instances."),
    ] = "canary"
    step_percent: Annotated[
        int,
        Field(ge=10, le=50, description="Canary size or linear step, in percent of the new "
                                        "fleet's capacity (SageMaker allows 10-50)."),
        Setting("EndpointTrafficStepPercent"),
    ] = 50
    wait_seconds: Annotated[
        int,
        Field(ge=0, le=3600, description="Baking time after each traffic step."),
        Setting("EndpointTrafficWaitSeconds"),
    ] = 600
    termination_wait_seconds: Annotated[
        int,
        Field(ge=0, le=3600, description="Final baking time before the old fleet is "
                                         "terminated; a rollback is still possible until then."),
        Setting("EndpointTerminationWaitSeconds"),
    ] = 600
    timeout_seconds: Annotated[
        int,
        Field(ge=600, le=14400, description="Longest a deployment may take before it is "
                                            "rolled back."),
        Setting("EndpointDeploymentTimeoutSeconds"),
    ] = 3600
    rollback_error_count: Annotated[
        int,
        Field(ge=1, le=1000000,
              description="5XX errors per minute (three minutes running) that roll a "
                          "deployment back."),
        Setting("EndpointRollbackErrorCount"),
    ] = 5
    rollback_latency_ms: Annotated[
        int,
        Field(ge=1, le=3600000,
              description="p99 model latency in milliseconds (three minutes running) that "
                          "rolls a deployment back."),
        Setting("EndpointRollbackLatencyMs"),
    ] = 1000

    @model_validator(mode="after")
    def _fits_in_the_timeout(self):
        # A wait follows every traffic step but the last; the final bake is the termination
        # wait. Provisioning the new fleet takes time on top.
        waits = {"canary": 1, "linear": -(-100 // self.step_percent) - 1,
                 "all_at_once": 0}[self.traffic_shifting]
        needed = waits * self.wait_seconds + self.termination_wait_seconds
        if self.timeout_seconds <= needed:
            raise ValueError(
                f"timeout_seconds ({self.timeout_seconds}) must exceed the baking waits of a "
                f"{self.traffic_shifting} deployment ({needed} s: wait_seconds after each step "
                "but the last, plus termination_wait_seconds)")
        return self


class BatchTransformConfig(Model):
    enabled: Annotated[
        bool,
        Field(description="A Step Functions state machine that runs a batch transform job "
                          "with the deployed model, on a schedule or on demand."),
    ] = True
    input_prefix: Annotated[
        str,
        Field(pattern=KEY_PREFIX_PATTERN,
              description="Key prefix in the processed bucket whose objects are transformed. "
                          "An execution may narrow it: input {\"subPrefix\": \"2024-06-01/\"}."),
    ] = "batch-input/"
    output_prefix: Annotated[
        str,
        Field(pattern=KEY_PREFIX_PATTERN,
              description="Key prefix in the processed bucket for results; each execution "
                          "writes under <output_prefix><execution name>/."),
    ] = "batch-predictions/"
    content_type: Annotated[
        str, Field(pattern=CONTENT_TYPE_PATTERN, description="MIME type of the input records.")
    ] = "text/csv"
    split_type: Annotated[
        Literal["Line", "RecordIO", "TFRecord", "None"],
        Field(description="How input files are split into records."),
    ] = "Line"
    instance_type: Annotated[
        str,
        Field(pattern=INSTANCE_TYPE_PATTERN,
              description="Instance type of transform jobs (one with EBS storage: the volume "
                          "is encrypted with the data key)."),
        Setting("BatchTransformInstanceType"),
    ] = "ml.m5.large"
    instance_count: Annotated[
        int,
        Field(ge=1, le=100, description="Instances per transform job."),
        Setting("BatchTransformInstanceCount"),
    ] = 1
    schedule: Annotated[
        str,
        Field(pattern=SCHEDULE_PATTERN,
              description="When the scheduled run starts: an EventBridge Scheduler rate() or "
                          "cron() expression, in UTC."),
        Setting("BatchTransformScheduleExpression"),
    ] = "cron(0 3 * * ? *)"
    schedule_state: Annotated[
        Literal["ENABLED", "DISABLED"],
        Field(description="Run on the schedule (ENABLED) or only on demand (DISABLED)."),
        Setting("BatchTransformScheduleState"),
    ] = "DISABLED"


class ServerlessEndpointConfig(Model):
    """SageMaker Serverless Inference: memory and concurrency instead of instances.

    AWS: "Deploy models with Amazon SageMaker Serverless Inference" (feature exclusions): no
    VPC configuration, network isolation, data capture or Model Monitor. So the model runs
    outside the private subnets, nothing is captured and Model Monitor cannot watch it."""

    memory_mb: Annotated[
        Literal[1024, 2048, 3072, 4096, 5120, 6144],
        Field(description="Memory of each serverless worker, in MB: 1024 to 6144 in steps of "
                          "1024 (ProductionVariantServerlessConfig.MemorySizeInMB)."),
        Setting("ServerlessMemoryMb"),
    ] = 2048
    max_concurrency: Annotated[
        int,
        Field(ge=1, le=200,
              description="Most invocations served at once (MaxConcurrency); further "
                          "requests are throttled."),
        Setting("ServerlessMaxConcurrency"),
    ] = 20
    provisioned_concurrency: Annotated[
        int | None,
        Field(ge=1, le=200,
              description="Invocations kept warm, at most max_concurrency "
                          "(ProvisionedConcurrency, billed while provisioned); unset for none "
                          "(cold starts after idle periods)."),
    ] = None

    @model_validator(mode="after")
    def _provisioned_within_max(self):
        if (self.provisioned_concurrency is not None
                and self.provisioned_concurrency > self.max_concurrency):
            raise ValueError(f"provisioned_concurrency ({self.provisioned_concurrency}) exceeds "
                             f"max_concurrency ({self.max_concurrency})")
        return self


class AsyncEndpointConfig(Model):
    """SageMaker Asynchronous Inference: requests queued from S3, answers written to S3.

    Callers put a payload under input_prefix of the artifacts bucket and call
    InvokeEndpointAsync with its location; SageMaker writes the answer under output_prefix (or
    the error under failure_prefix), encrypted with the data key, and announces it on the
    success or error topic. Autoscaling follows the backlog, down to zero instances with
    scale_to_zero (AWS: "Autoscale an asynchronous endpoint")."""

    input_prefix: Annotated[
        str,
        Field(pattern=KEY_PREFIX_PATTERN,
              description="Key prefix in the artifacts bucket where callers put request "
                          "payloads; the model role reads requests from here only."),
    ] = "async/input/"
    output_prefix: Annotated[
        str,
        Field(pattern=KEY_PREFIX_PATTERN,
              description="Key prefix in the artifacts bucket where SageMaker writes answers "
                          "(S3OutputPath)."),
    ] = "async/output/"
    failure_prefix: Annotated[
        str,
        Field(pattern=KEY_PREFIX_PATTERN,
              description="Key prefix in the artifacts bucket where SageMaker writes the "
                          "errors of failed requests (S3FailurePath)."),
    ] = "async/failure/"
    max_concurrent_invocations_per_instance: Annotated[
        int | None,
        Field(ge=1, le=1000,
              description="Requests one instance takes at once (ClientConfig); unset: "
                          "SageMaker's choice for the container."),
    ] = None
    notifications: Annotated[
        bool,
        Field(description="Announce every answer and every failure on two SNS topics "
                          "(encrypted with the data key; subscribe to the outputs "
                          "AsyncSuccessTopicArn and AsyncErrorTopicArn)."),
    ] = True
    scale_to_zero: Annotated[
        bool,
        Field(description="Let autoscaling stop every instance while nothing is queued (instead "
                          "of keeping min_instances), and start one as soon as a request waits "
                          "(AWS: \"Autoscale an asynchronous endpoint\"). The first request "
                          "after a quiet spell waits for an instance to start. Needs "
                          "deployment.traffic_shifting `all_at_once`."),
    ] = False
    backlog_per_instance: Annotated[
        int,
        Field(ge=1, le=100000,
              description="Autoscaling target: queued requests per instance "
                          "(ApproximateBacklogSizePerInstance)."),
        Setting("AsyncBacklogPerInstance"),
    ] = 5

    @model_validator(mode="after")
    def _separate_prefixes(self):
        prefixes = {"input_prefix": self.input_prefix, "output_prefix": self.output_prefix,
                    "failure_prefix": self.failure_prefix}
        for name, prefix in prefixes.items():
            for other, other_prefix in prefixes.items():
                if name != other and other_prefix.startswith(prefix):
                    raise ValueError(f"{other} ({other_prefix}) lies under {name} ({prefix}): "
                                     "requests, answers and failures need separate prefixes")
        return self


# What each endpoint kind does not use: set explicitly with another kind, an error.
INSTANCE_FIELDS = ("instance_type", "initial_instance_count", "min_instances",
                   "max_instances", "invocations_per_instance")


class SageMakerServingConfig(Model):
    kind: Annotated[
        Literal["real_time", "serverless", "asynchronous"],
        Field(description="`real_time`: instances behind the endpoint, answering at once; "
                          "`serverless`: SageMaker Serverless Inference (memory and "
                          "concurrency, scales to zero, but outside the VPC and without data "
                          "capture or Model Monitor: AWS's feature exclusions); `asynchronous`: "
                          "requests queued from S3 and answered into S3, scaling down to zero "
                          "instances with asynchronous.scale_to_zero. Each keeps the blue/green "
                          "deployment with rollback alarms. A deployed endpoint keeps its kind: "
                          "SageMaker does not update an endpoint of one kind into another "
                          "(\"Update a serverless endpoint\"), so the stack update fails and "
                          "rolls back; serve the new kind from a new environment, or turn "
                          "serving off and on again."),
    ] = "real_time"
    image_uri: Annotated[
        str,
        Field(pattern=IMAGE_URI_PATTERN,
              description="With serving.model_source `model_data`: the inference container image in "
                          "Amazon ECR (<account>.dkr.ecr.<region>.amazonaws.com/<repository>"
                          ":<tag> or @sha256:<digest>); the model role may pull from that "
                          "repository only. Empty: the stack's current image is kept on every "
                          "deployment."),
        Setting("ModelImageUri", run_time=True),
    ] = ""
    network_isolation: Annotated[
        bool,
        Field(description="Forbid the model container any network call (SageMaker still "
                          "fetches the model and writes captures). Off only for a container "
                          "that must reach other services, through VPC endpoints."),
    ] = True
    instance_type: Annotated[
        str,
        Field(pattern=INSTANCE_TYPE_PATTERN,
              description="Endpoint instance type (one with EBS storage: the volume is "
                          "encrypted with the data key). Changing it on a live endpoint fails "
                          "while autoscaling is registered (a SageMaker rule): deregister, "
                          "update, register."),
        Setting("EndpointInstanceType"),
    ] = "ml.m5.large"
    initial_instance_count: Annotated[
        int,
        Field(ge=1, le=100, description="Instances when the endpoint is created."),
        Setting("EndpointInitialInstanceCount"),
    ] = 2
    min_instances: Annotated[
        int,
        Field(ge=1, le=100, description="Fewest instances autoscaling keeps."),
        Setting("EndpointMinInstances"),
    ] = 2
    max_instances: Annotated[
        int,
        Field(ge=1, le=100, description="Most instances autoscaling adds."),
        Setting("EndpointMaxInstances"),
    ] = 4
    invocations_per_instance: Annotated[
        int,
        Field(ge=1, le=1000000,
              description="Target invocations per instance per minute for autoscaling."),
        Setting("EndpointInvocationsPerInstance"),
    ] = 1000
    data_capture: DataCaptureConfig = DataCaptureConfig()
    deployment: DeploymentConfig = DeploymentConfig()
    batch_transform: BatchTransformConfig = BatchTransformConfig()
    serverless: ServerlessEndpointConfig = ServerlessEndpointConfig()
    asynchronous: AsyncEndpointConfig = AsyncEndpointConfig()

    @model_validator(mode="before")
    @classmethod
    def _serverless_has_no_vpc_isolation_or_capture(cls, data: Any) -> Any:
        """A serverless endpoint has neither network isolation nor data capture (AWS's
        feature exclusions), so both default to off with that kind; set on, they are refused
        below rather than dropped."""
        if isinstance(data, dict) and data.get("kind") == "serverless":
            data = {"network_isolation": False, **data}
            capture = data.get("data_capture")
            if capture is None or isinstance(capture, dict):
                data["data_capture"] = {"enabled": False, **(capture or {})}
        return data

    @model_validator(mode="after")
    def _fits_the_kind(self):
        """Settings the kind cannot use are refused when they say something: set to other than
        their defaults (a file listing every default, as `mlops-cfn init` writes, stays valid
        for any kind)."""
        fields = type(self).model_fields

        def plain(value: Any) -> Any:
            # Sections compare by content (a model's equality also weighs which keys were set).
            return value.model_dump() if isinstance(value, Model) else value

        given = {name for name in self.model_fields_set
                 if plain(getattr(self, name))
                 != plain(fields[name].get_default(call_default_factory=True))}
        for section in ("serverless", "asynchronous"):
            if section in given and self.kind != section:
                raise ValueError(f"{section} is for kind '{section}' (kind is '{self.kind}')")
        if self.kind == "serverless":
            unused = [name for name in INSTANCE_FIELDS if name in given]
            if unused:
                raise ValueError(f"{', '.join(unused)}: a serverless endpoint has no instances; "
                                 "size it with serverless.memory_mb and max_concurrency")
            if self.network_isolation:
                raise ValueError("network_isolation: SageMaker Serverless Inference does not "
                                 "support network isolation (nor a VPC); leave it unset with "
                                 "kind 'serverless'")
            if self.data_capture.enabled:
                raise ValueError("data_capture.enabled: SageMaker Serverless Inference does not "
                                 "support data capture; leave it unset with kind 'serverless'")
            return self
        if self.kind == "asynchronous" and "invocations_per_instance" in given:
            raise ValueError("invocations_per_instance: an asynchronous endpoint scales on its "
                             "backlog; set asynchronous.backlog_per_instance")
        if self.kind == "asynchronous" and self.asynchronous.scale_to_zero:
            if "min_instances" in given:
                raise ValueError("min_instances: with asynchronous.scale_to_zero autoscaling "
                                 "keeps no instance while nothing is queued; leave it unset")
            if self.deployment.traffic_shifting != "all_at_once":
                raise ValueError(f"deployment.traffic_shifting "
                                 f"'{self.deployment.traffic_shifting}' shifts a part of the "
                                 "capacity at a time, which asynchronous.scale_to_zero can make "
                                 "none; use 'all_at_once'")
        return self

    @model_validator(mode="after")
    def _consistent(self):
        if self.kind == "serverless":
            return self
        if self.kind == "asynchronous" and self.asynchronous.scale_to_zero:
            if self.initial_instance_count > self.max_instances:
                raise ValueError(f"initial_instance_count ({self.initial_instance_count}) "
                                 f"exceeds max_instances ({self.max_instances})")
            return self
        if self.min_instances > self.max_instances:
            raise ValueError(f"min_instances ({self.min_instances}) exceeds max_instances "
                             f"({self.max_instances})")
        if not self.min_instances <= self.initial_instance_count <= self.max_instances:
            raise ValueError(f"initial_instance_count ({self.initial_instance_count}) must lie "
                             f"between min_instances and max_instances")
        if self.deployment.traffic_shifting != "all_at_once" and self.min_instances < 2:
            raise ValueError(
                f"deployment.traffic_shifting {self.deployment.traffic_shifting!r} shifts a "
                "part of the capacity at a time and needs min_instances >= 2 (or use "
                "'all_at_once')")
        return self


# The variables the serving stage gives the model API's container (serving_fargate.py,
# model_api_environment; mlops_cfn/data/model_api/app.py reads them).
MODEL_API_VARIABLES = ("MODEL_PACKAGE_ARN", "MODEL_DATA_URL", "MODEL_FEATURES", "MAX_BATCH_ROWS",
                       "PORT")


class FargateServingConfig(Model):
    image_tag: Annotated[
        str,
        Field(pattern=IMAGE_TAG_PATTERN,
              description="Tag of the API image in the stage's ECR repository (tags are "
                          "immutable: push a new tag per release). Empty: the stack's current "
                          "tag is kept on every deployment (`--parameter ApiImageTag=...` "
                          "chooses it; on the first deploy there is no task definition, service "
                          "or service scaling yet)."),
        Setting("ApiImageTag", run_time=True),
    ] = ""
    container_port: Annotated[
        int, Field(ge=1024, le=65535, description="Port the container listens on.")
    ] = 8080
    health_check_path: Annotated[
        str,
        Field(pattern=r"^/[A-Za-z0-9_./-]{0,1023}$", description="Path the load balancer probes."),
    ] = "/ping"
    user: Annotated[
        str,
        Field(pattern=r"^[1-9][0-9]{0,9}(:[0-9]{1,10})?$",
              description="Numeric uid[:gid] the container runs as (never root)."),
    ] = "1000:1000"
    cpu_architecture: Annotated[
        Literal["X86_64", "ARM64"], Field(description="CPU architecture of the image.")
    ] = "X86_64"
    cpu: Annotated[
        Literal[256, 512, 1024, 2048, 4096, 8192, 16384],
        Field(description="Task CPU units (1024 = one vCPU)."),
        Setting("ApiTaskCpu"),
    ] = 1024
    memory_mb: Annotated[
        int,
        Field(ge=512, le=122880, description="Task memory in MiB (Fargate allows a range per "
                                             "cpu value)."),
        Setting("ApiTaskMemoryMiB"),
    ] = 2048
    min_tasks: Annotated[
        int, Field(ge=1, le=1000, description="Fewest tasks autoscaling keeps."),
        Setting("ApiMinTasks"),
    ] = 2
    max_tasks: Annotated[
        int, Field(ge=1, le=1000, description="Most tasks autoscaling adds."),
        Setting("ApiMaxTasks"),
    ] = 6
    cpu_target_percent: Annotated[
        int, Field(ge=10, le=90, description="Average CPU autoscaling keeps the tasks at."),
        Setting("ApiCpuTargetPercent"),
    ] = 60
    requests_per_target: Annotated[
        int,
        Field(ge=1, le=1000000,
              description="Load balancer requests per task per minute autoscaling aims for."),
        Setting("ApiRequestsPerTarget"),
    ] = 1000
    health_check_grace_seconds: Annotated[
        int,
        Field(ge=0, le=3600, description="Time a new task has to start before failed health "
                                         "checks count."),
        Setting("ApiHealthCheckGraceSeconds"),
    ] = 60
    max_batch_rows: Annotated[
        int,
        Field(ge=1, le=10000,
              description="Most records one request to the model API may send (a larger batch "
                          "is refused with 413); the body is at most 6 MB either way, as for "
                          "a SageMaker endpoint."),
    ] = 100
    images_kept: Annotated[
        int,
        Field(ge=1, le=1000, description="Most recent images the repository keeps."),
        Setting("ApiImagesKept"),
    ] = 30
    environment: Annotated[
        dict[EnvVarName, Annotated[str, Field(max_length=4096)]],
        Field(max_length=50, description="Environment variables of the container (part of "
                                         "the template: no secrets here)."),
    ] = {}
    secrets: Annotated[
        dict[EnvVarName, Annotated[str, Field(pattern=SECRET_PATTERN)]],
        Field(max_length=50,
              description="Environment variables filled from Secrets Manager: variable -> "
                          "secret name (this account and region) or secret ARN. The task may "
                          "read exactly these secrets; a secret encrypted with a key other "
                          "than the data key (or aws/secretsmanager) needs that key granted."),
    ] = {}
    certificate_arn: Annotated[
        str | None,
        Field(pattern=CERTIFICATE_ARN_PATTERN,
              description="ACM certificate for an HTTPS listener (HTTP then redirects to "
                          "HTTPS). Unset: an HTTP listener only, reachable inside the VPC."),
        Setting("ApiCertificateArn"),
    ] = None
    deletion_protection: Annotated[
        bool,
        Field(description="Refuse to delete the load balancer (set it in production)."),
        Setting("LoadBalancerDeletionProtection"),
    ] = False

    @field_validator("environment")
    @classmethod
    def _no_reserved_names(cls, value):
        for name in value:
            if name.upper().startswith("AWS_") or name.upper().startswith("ECS_"):
                raise ValueError(f"variable {name!r}: AWS_ and ECS_ names are reserved")
            if name in MODEL_API_VARIABLES:
                raise ValueError(f"variable {name!r}: set by the serving stage for the model "
                                 f"API ({', '.join(MODEL_API_VARIABLES)} are reserved)")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.min_tasks > self.max_tasks:
            raise ValueError(f"min_tasks ({self.min_tasks}) exceeds max_tasks ({self.max_tasks})")
        allowed = FARGATE_MEMORY[self.cpu]
        if self.memory_mb not in allowed:
            raise ValueError(
                f"memory_mb {self.memory_mb} does not fit cpu {self.cpu}: Fargate allows "
                f"{allowed.start}-{allowed.stop - 1} MiB in steps of {allowed.step}")
        both = set(self.environment) & set(self.secrets)
        if both:
            raise ValueError(f"{', '.join(sorted(both))}: in both environment and secrets")
        return self


class ApiGatewayConfig(Model):
    enabled: Annotated[
        bool,
        Field(description="Put a public API Gateway API with IAM authorization in front of the "
                          "private serving."),
    ] = False
    type: Annotated[
        Literal["http", "rest"] | None,
        Field(description="`http`: an HTTP API with a VPC link to the Fargate load balancer; "
                          "`rest`: a REST API to the SageMaker endpoint. Unset: `http` when "
                          "Fargate serves, `rest` otherwise."),
    ] = None
    throttling_rate_limit: Annotated[
        int,
        Field(ge=1, le=100000, description="Steady requests per second the API admits."),
        Setting("ApiThrottlingRateLimit"),
    ] = 100
    throttling_burst_limit: Annotated[
        int,
        Field(ge=1, le=100000, description="Burst of requests the API admits."),
        Setting("ApiThrottlingBurstLimit"),
    ] = 200
    tls_server_name: Annotated[
        str | None,
        Field(pattern=SERVER_NAME_PATTERN,
              description="With type `http` and an HTTPS listener: the host name on the "
                          "certificate, which API Gateway verifies when it connects."),
        Setting("ApiTlsServerName"),
    ] = None
    set_account_logging_role: Annotated[
        bool,
        Field(description="With type `rest`: set this region's API Gateway CloudWatch Logs "
                          "role (account-wide, needed for REST access logs). Turn off when the "
                          "account already has one."),
    ] = True


class ServingConfig(StageToggle):
    target: Annotated[
        Literal["sagemaker", "fargate", "both"],
        Field(description="What serves predictions: a SageMaker endpoint (with batch "
                          "transform), a container API on Fargate, or both."),
    ] = "both"
    model_source: Annotated[
        Literal["model_package", "model_data"],
        Field(description="`model_package`: a versioned package of the model registry "
                          "(model_package_arn), what CI/CD sets after training registers and "
                          "someone approves a model; `model_data`: a model archive in S3 "
                          "(model_data_url), served on SageMaker by a container image "
                          "(sagemaker.image_uri). Both targets serve the same model: the "
                          "endpoint and the Fargate API (which loads the training pipeline's "
                          "XGBoost archive)."),
    ] = "model_package"
    model_package_arn: Annotated[
        str,
        Field(pattern=MODEL_PACKAGE_ARN_PATTERN,
              description="With model_source `model_package`: the package version to serve. "
                          "Empty: whatever the stack serves now is kept on every deployment "
                          "(`mlops-cfn deploy --latest-approved-model` or "
                          "`--parameter ModelPackageArn=...` chooses it; on the first deploy "
                          "there is no model, endpoint or API service yet). "
                          "The model role and the API's task role read archives where the "
                          "training pipeline writes them (<training.artifacts_prefix>models/ in the artifacts bucket) and "
                          "pulls the training image (training.image_uri, or SageMaker's own); a "
                          "package registered elsewhere needs those granted."),
        Setting("ModelPackageArn", run_time=True),
    ] = ""
    model_data_url: Annotated[
        str,
        Field(pattern=S3_URI_PATTERN,
              description="With model_source `model_data`: the model archive (s3://.../model."
                          "tar.gz). The model role and the API's task role may read exactly "
                          "this object, in any bucket of the account (another account's bucket "
                          "must allow it too, and only the SageMaker endpoint can use one: the "
                          "Fargate API reads through the VPC's S3 gateway endpoint, which admits "
                          "this account's buckets only; an object under a key other than the "
                          "data key needs that key granted). "
                          "Empty: the stack's current archive is kept on every deployment "
                          "(none, no model, endpoint or API service, at first)."),
        Setting("ModelDataUrl", run_time=True),
    ] = ""
    sagemaker: SageMakerServingConfig = SageMakerServingConfig()
    fargate: FargateServingConfig = FargateServingConfig()
    api_gateway: ApiGatewayConfig = ApiGatewayConfig()

    @property
    def sagemaker_enabled(self) -> bool:
        return self.target in ("sagemaker", "both")

    @property
    def fargate_enabled(self) -> bool:
        return self.target in ("fargate", "both")

    @property
    def api_type(self) -> str | None:
        """The API Gateway kind in front, or None."""
        if not self.api_gateway.enabled:
            return None
        if self.api_gateway.type is not None:
            return self.api_gateway.type
        return "http" if self.fargate_enabled else "rest"

    @property
    def https(self) -> bool:
        return self.fargate_enabled and self.fargate.certificate_arn is not None

    @model_validator(mode="after")
    def _one_model_source(self):
        image = self.sagemaker.image_uri
        if self.model_source == "model_package":
            if self.model_data_url:
                raise ValueError("model_data_url is for model_source 'model_data'")
            if image:
                raise ValueError("sagemaker.image_uri is for model_source 'model_data'")
        else:
            if self.model_package_arn:
                raise ValueError("model_package_arn is for model_source 'model_package'")
            if self.sagemaker_enabled and bool(self.model_data_url) != bool(image):
                raise ValueError("model_source 'model_data' on SageMaker needs both "
                                 "model_data_url and sagemaker.image_uri (or neither, before "
                                 "the first model exists)")
            if not self.sagemaker_enabled and image:
                raise ValueError("sagemaker.image_uri is for target 'sagemaker' or 'both'")
        return self

    @model_validator(mode="after")
    def _api_fits_target(self):
        kind = self.api_type
        if kind == "http" and not self.fargate_enabled:
            raise ValueError("api_gateway.type 'http' fronts the Fargate load balancer: it "
                             "needs target 'fargate' or 'both'")
        if kind == "rest" and not self.sagemaker_enabled:
            raise ValueError("api_gateway.type 'rest' fronts the SageMaker endpoint: it needs "
                             "target 'sagemaker' or 'both'")
        if kind == "rest" and self.sagemaker.kind == "asynchronous":
            raise ValueError("api_gateway.type 'rest' calls InvokeEndpoint, which an "
                             "asynchronous endpoint does not answer (callers use "
                             "InvokeEndpointAsync with a payload in S3); turn api_gateway off "
                             "or use sagemaker.kind 'real_time' or 'serverless'")
        if kind == "http" and self.https and self.api_gateway.tls_server_name is None:
            raise ValueError("api_gateway.tls_server_name is required with type 'http' and "
                             "fargate.certificate_arn: the host name API Gateway verifies on "
                             "the load balancer's certificate")
        return self

    def vpc_endpoints(self) -> tuple[str, ...]:
        # Fargate tasks in the private subnets pull their image (ecr.api for the token and
        # manifest, ecr.dkr for the registry; the layers come from S3 through the gateway
        # endpoint), send logs, and read their secrets. The SageMaker model container needs
        # none: with network isolation it makes no calls, and SageMaker fetches the model
        # and image and writes captures on the service side (S3 through the gateway).
        if not self.fargate_enabled:
            return ()
        needed = ["ecr.api", "ecr.dkr", "logs"]
        if self.model_source == "model_package":
            # The API asks SageMaker where the package's model archive is
            # (DescribeModelPackage) before it downloads it from S3.
            needed.append("sagemaker.api")
        if self.fargate.secrets:
            needed.append("secretsmanager")
        return tuple(needed)

    def problems_with(self, config: Any) -> list[str]:
        network = config.network
        # An existing VPC's owner runs its endpoints; NAT gateways reach the public endpoints.
        if (network.mode != "create" or network.interface_endpoints is None
                or network.internet_gateway):
            return []
        missing = [s for s in self.vpc_endpoints() if s not in network.interface_endpoints]
        if not missing:
            return []
        return [f"network.interface_endpoints: the Fargate API in the private subnets needs "
                f"{', '.join(missing)} (or leave interface_endpoints unset to derive them)"]
