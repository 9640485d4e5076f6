"""serving stage: predictions from a SageMaker endpoint, a Fargate API, or both.

Composed of parts, one module each (their docstrings list the resources):
- serving_sagemaker (target `sagemaker` or `both`): Model, EndpointConfig<hash>, Endpoint with
  blue/green deployments rolled back by EndpointErrorAlarm/EndpointLatencyAlarm, autoscaling on
  invocations per instance; ModelRole, ModelSecurityGroup, EndpointLogGroup.
- serving_batch (with `sagemaker.batch_transform.enabled`): BatchTransformStateMachine and its
  schedule, running transform jobs over a prefix of the processed bucket.
- serving_fargate (target `fargate` or `both`): ApiRepository, ApiCluster, ApiTaskDefinition,
  ApiService behind an internal LoadBalancer, service autoscaling on CPU and request count.
- serving_api (with `api_gateway.enabled`): an HTTP API through a VPC link to the load balancer,
  or a REST API to the endpoint; IAM authorization, access logs, throttling.

First deployment: nothing to serve exists yet. The model and endpoint (condition ModelSupplied)
appear once ModelPackageArn (or ModelDataUrl with ModelImageUri) is set, the Fargate service
(condition ApiRunnable) once ApiImageTag names an image pushed to ApiRepository and that model
is named too; the rest is
created at once. Names that monitoring needs (endpoint, ECS service) are fixed, so the outputs
exist before the things they name; each comes with its presence (EndpointExists,
ApiServiceExists: "true" once it exists), and the composer makes every consumer gate its uses
on it (outputs.py, conditional wires).

Inputs: DataKeyArn, VpcId, VpcCidrBlock, PrivateSubnetIds, ArtifactsBucketName/Arn;
ProcessedBucketName/Arn (batch transform), AccessLogsBucketName (Fargate).
Outputs: EndpointName + EndpointExists, DataCaptureS3Uri, BatchTransformStateMachineArn
(SageMaker); AsyncInputS3Uri, AsyncOutputS3Uri, AsyncSuccessTopicArn, AsyncErrorTopicArn
(SageMaker, asynchronous kind); EcsClusterName, EcsServiceName + ApiServiceExists, ApiLogGroupName,
LoadBalancerDnsName, LoadBalancerFullName, TargetGroupFullName (Fargate); ApiUrl +
ApiBackendExists (always: API Gateway when enabled, else the load balancer, else SageMaker
Runtime's invocation URL; the presence is that of the endpoint or service behind it).
"""

from troposphere import Sub

from ..config import PipelineConfig
from ..outputs import API_URL
from ..stage import Stage, StageBuilder
from .serving_api import add_http_api, add_rest_api
from .serving_batch import add_batch_transform
from .serving_common import API_RUNNABLE, MODEL_SUPPLIED
from ..sharing import Sharing
from .serving_fargate import add_fargate
from .serving_sagemaker import add_sagemaker, endpoint_name_pattern


def build(config: PipelineConfig, sharing: Sharing | None = None) -> Stage:
    """`sharing`: the file's environments in other accounts (sharing.of), whose API repository
    the delivery pipeline's image build pushes to (sharing.repository_policy)."""
    serving = config.stages.serving
    b = StageBuilder("serving", config.project, description(config))
    endpoint = fargate = None
    if serving.sagemaker_enabled:
        endpoint = add_sagemaker(b, config)
        if serving.sagemaker.batch_transform.enabled:
            add_batch_transform(b, config, endpoint.model_name)
    if serving.fargate_enabled:
        fargate = add_fargate(b, config, sharing)

    # The URL exists at once; what answers behind it only under its part's condition.
    if serving.api_type == "http":
        url, backend = add_http_api(b, config, fargate), API_RUNNABLE
    elif serving.api_type == "rest":
        url, backend = add_rest_api(b, config, endpoint_name_pattern(b)), MODEL_SUPPLIED
    elif fargate is not None:
        scheme = "https" if serving.https else "http"
        url = Sub(f"{scheme}://${{{fargate.load_balancer.title}.DNSName}}")
        backend = API_RUNNABLE
    else:
        # SageMaker Runtime's InvokeEndpoint (InvokeEndpointAsync for an asynchronous one).
        path = ("async-invocations" if serving.sagemaker.kind == "asynchronous"
                else "invocations")
        url = Sub("https://runtime.sagemaker.${AWS::Region}.${AWS::URLSuffix}/endpoints/"
                  + endpoint_name_pattern(b) + "/" + path)
        backend = MODEL_SUPPLIED
    b.output(API_URL, url, condition=backend)
    return b.finish()


def description(config: PipelineConfig) -> str:
    serving = config.stages.serving
    parts = []
    if serving.sagemaker_enabled:
        kind = serving.sagemaker.kind
        parts.append({"real_time": "SageMaker endpoint with blue/green deployments and "
                                   "autoscaling",
                      "serverless": "serverless SageMaker endpoint with blue/green deployments",
                      "asynchronous": "asynchronous SageMaker endpoint with blue/green "
                                      "deployments and backlog autoscaling"}[kind])
        if serving.sagemaker.batch_transform.enabled:
            parts.append("batch transform")
    if serving.fargate_enabled:
        parts.append("Fargate model API behind an internal load balancer")
    if serving.api_type:
        parts.append(f"API Gateway ({serving.api_type.upper()} API)")
    return ", ".join(parts)

