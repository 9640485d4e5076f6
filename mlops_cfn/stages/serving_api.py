"""The serving stage's optional API Gateway: a public front door with IAM authorization.

Type `http` (in front of Fargate)
- HttpApi, HttpApiIntegration (HTTP proxy through VpcLink to the load balancer's forwarding
  listener; with HTTPS the certificate's name is verified), HttpApiRoute (`$default`, AWS_IAM),
  HttpApiStage (`$default`, auto-deploy, access logs, throttling), VpcLink in the private
  subnets with VpcLinkSecurityGroup (out to the listener only).
Type `rest` (in front of the SageMaker endpoint)
- RestApi (regional) with `POST /invocations` (AWS_IAM) calling SageMaker Runtime's
  InvokeEndpoint as RestApiRole (that endpoint only), RestApiDeployment<hash> (a new one whenever
  the API changes: REST APIs publish only deployments), RestApiStage `v1` (access logs, X-Ray,
  throttling). With `set_account_logging_role`: ApiGatewayAccount and ApiGatewayLoggingRole,
  the region-wide role REST APIs need before they can write access logs.
Both: ApiGatewayLogGroup (access logs, KMS, retention).

Outputs: ApiUrl.
"""

import json

import awacs.logs
import awacs.sagemaker
from awacs.aws import Allow, Statement, StringEquals
from troposphere import GetAtt, Ref, Sub, apigateway, apigatewayv2, ec2, iam

from .. import policies
from ..config import PipelineConfig
from ..outputs import PRIVATE_SUBNET_IDS, VPC_CIDR, VPC_ID
from ..stage import StageBuilder
from .common import RETAIN, control_tower_exceptions, encrypted_log_group
from .serving_common import API_NAME, content_hash
from .serving_fargate import FargateServing

REST_STAGE = "v1"
# API Gateway's longest integration timeout for REST APIs.
REST_TIMEOUT_MS = 29000
# One JSON line per request; variables both API types know.
ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "sourceIp": "$context.identity.sourceIp",
    "caller": "$context.identity.userArn",
    "httpMethod": "$context.httpMethod",
    "path": "$context.path",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
}, sort_keys=True)


def access_log_group(b: StageBuilder, config: PipelineConfig):
    return encrypted_log_group(b, config, "ApiGatewayLogGroup", "api-gateway")


# --- HTTP API to the load balancer ----------------------------------------------------------

def add_http_api(b: StageBuilder, config: PipelineConfig, fargate: FargateServing) -> GetAtt:
    serving = config.stages.serving
    settings = serving.api_gateway
    log_group = access_log_group(b, config)
    link_group = b.add(ec2.SecurityGroup(
        "VpcLinkSecurityGroup",
        GroupDescription="API Gateway VPC link: to the model API load balancer only",
        VpcId=b.input(VPC_ID),
        SecurityGroupEgress=[ec2.SecurityGroupRule(
            Description="To the load balancer listener", IpProtocol="tcp",
            FromPort=fargate.port, ToPort=fargate.port, CidrIp=b.input(VPC_CIDR))],
    ))
    link = b.add(apigatewayv2.VpcLink(
        "VpcLink",
        Name=b.physical_name(API_NAME, "model-api"),
        SubnetIds=b.input(PRIVATE_SUBNET_IDS),
        SecurityGroupIds=[GetAtt(link_group, "GroupId")],
    ))
    api = b.add(apigatewayv2.Api(
        "HttpApi",
        Name=b.physical_name(API_NAME, "model-api"),
        Description="Model API (IAM authorization) in front of the internal load balancer",
        ProtocolType="HTTP",
    ))
    integration_props = {}
    if serving.https:
        integration_props["TlsConfig"] = apigatewayv2.TlsConfig(
            ServerNameToVerify=b.setting(settings, "tls_server_name"))
    integration = b.add(apigatewayv2.Integration(
        "HttpApiIntegration",
        ApiId=Ref(api),
        IntegrationType="HTTP_PROXY",
        IntegrationMethod="ANY",
        IntegrationUri=Ref(fargate.listener),
        ConnectionType="VPC_LINK",
        ConnectionId=Ref(link),
        PayloadFormatVersion="1.0",
        **integration_props,
    ))
    b.add(apigatewayv2.Route(
        "HttpApiRoute",
        ApiId=Ref(api),
        RouteKey="$default",
        # Callers sign requests with SigV4; IAM policies say who may call.
        AuthorizationType="AWS_IAM",
        Target=Sub("integrations/${%s}" % integration.title),
    ))
    b.add(apigatewayv2.Stage(
        "HttpApiStage",
        ApiId=Ref(api),
        StageName="$default",
        AutoDeploy=True,
        AccessLogSettings=apigatewayv2.AccessLogSettings(
            DestinationArn=GetAtt(log_group, "Arn"), Format=ACCESS_LOG_FORMAT),
        DefaultRouteSettings=apigatewayv2.RouteSettings(
            DetailedMetricsEnabled=True,
            ThrottlingRateLimit=b.setting(settings, "throttling_rate_limit"),
            ThrottlingBurstLimit=b.setting(settings, "throttling_burst_limit"),
        ),
    ))
    return GetAtt(api, "ApiEndpoint")


# --- REST API to the SageMaker endpoint -----------------------------------------------------

def add_rest_api(b: StageBuilder, config: PipelineConfig, endpoint_name: str) -> Sub:
    settings = config.stages.serving.api_gateway
    log_group = access_log_group(b, config)
    role = b.add(iam.Role(
        "RestApiRole",
        Description="API Gateway: invoke the model endpoint",
        AssumeRolePolicyDocument=policies.trusted_by(
            "apigateway.amazonaws.com", StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(
            PolicyName="invoke-endpoint",
            # AWS: "Control access to a REST API with IAM permissions" (API Gateway Developer
            # Guide): the integration calls SageMaker Runtime as this role (its credentials
            # role), which needs the action it calls: sagemaker:InvokeEndpoint on this endpoint
            # (SageMaker API permissions reference, runtime_InvokeEndpoint). The ARN is a name:
            # it grants nothing until the endpoint exists.
            PolicyDocument=policies.document(Statement(
                Effect=Allow,
                Action=[awacs.sagemaker.InvokeEndpoint],
                Resource=[policies.arn("sagemaker", f"endpoint/{endpoint_name}")],
            )),
        )],
    ))
    api = b.add(apigateway.RestApi(
        "RestApi",
        Name=b.physical_name(API_NAME, "model-endpoint"),
        Description="Model endpoint (IAM authorization): POST /invocations",
        EndpointConfiguration=apigateway.EndpointConfiguration(Types=["REGIONAL"]),
    ))
    resource = b.add(apigateway.Resource(
        "RestApiInvocations",
        RestApiId=Ref(api),
        ParentId=GetAtt(api, "RootResourceId"),
        PathPart="invocations",
    ))
    method = b.add(invoke_method(api, resource, role, endpoint_name))
    deployment = b.add(apigateway.Deployment(
        # REST APIs serve a deployment, a snapshot: a changed method needs a new one.
        "RestApiDeployment" + content_hash([resource.to_dict(), method.to_dict()]),
        DependsOn=[method.title],
        RestApiId=Ref(api),
        Description="Model endpoint API",
    ))
    order = {}
    if settings.set_account_logging_role:
        # Access logging is refused until the account's logging role is set.
        order["DependsOn"] = [b.add(account_logging(b)).title]
    b.add(apigateway.Stage(
        "RestApiStage",
        **order,
        RestApiId=Ref(api),
        DeploymentId=Ref(deployment),
        StageName=REST_STAGE,
        TracingEnabled=True,
        AccessLogSetting=apigateway.AccessLogSetting(
            DestinationArn=GetAtt(log_group, "Arn"), Format=ACCESS_LOG_FORMAT),
        MethodSettings=[apigateway.MethodSetting(
            HttpMethod="*",
            ResourcePath="/*",
            MetricsEnabled=True,
            # Request and response bodies (model inputs) never go to the execution logs.
            DataTraceEnabled=False,
            ThrottlingRateLimit=b.setting(settings, "throttling_rate_limit"),
            ThrottlingBurstLimit=b.setting(settings, "throttling_burst_limit"),
        )],
        Metadata={
            "checkov": {"skip": [{
                "id": "CKV_AWS_120",
                "comment": "Predictions are computed per request body (POST); a response cache "
                           "keyed on the path would answer one caller's request with another's "
                           "prediction."}]},
            **control_tower_exceptions((
                "CT.APIGATEWAY.PR.1",
                "Every request is recorded by the access log (AccessLogSetting, into a log "
                "group encrypted with the data key and kept LogRetentionDays). Execution logs "
                "would go to a log group API Gateway creates itself "
                "(API-Gateway-Execution-Logs_<api id>/<stage>), unencrypted and never expiring.")),
        },
    ))
    return Sub("https://${%s}.execute-api.${AWS::Region}.${AWS::URLSuffix}/%s/invocations"
               % (api.title, REST_STAGE))


def invoke_method(api: apigateway.RestApi, resource: apigateway.Resource, role: iam.Role,
                  endpoint_name: str) -> apigateway.Method:
    passed_headers = ("Content-Type", "Accept")
    return apigateway.Method(
        "RestApiInvokeMethod",
        RestApiId=Ref(api),
        ResourceId=Ref(resource),
        HttpMethod="POST",
        # Callers sign requests with SigV4; IAM policies say who may call.
        AuthorizationType="AWS_IAM",
        RequestParameters={f"method.request.header.{h}": False for h in passed_headers},
        Integration=apigateway.Integration(
            Type="AWS",
            IntegrationHttpMethod="POST",
            Uri=Sub("arn:${AWS::Partition}:apigateway:${AWS::Region}:runtime.sagemaker:"
                    f"path/endpoints/{endpoint_name}/invocations"),
            Credentials=GetAtt(role, "Arn"),
            # The body goes to the model as it came.
            PassthroughBehavior="WHEN_NO_MATCH",
            RequestParameters={f"integration.request.header.{h}": f"method.request.header.{h}"
                               for h in passed_headers},
            TimeoutInMillis=REST_TIMEOUT_MS,
            IntegrationResponses=[
                apigateway.IntegrationResponse(StatusCode="200"),
                apigateway.IntegrationResponse(StatusCode="400", SelectionPattern=r"4\d{2}"),
                apigateway.IntegrationResponse(StatusCode="500", SelectionPattern=r"5\d{2}"),
            ],
        ),
        MethodResponses=[apigateway.MethodResponse(StatusCode=code)
                         for code in ("200", "400", "500")],
    )


def account_logging(b: StageBuilder) -> apigateway.Account:
    # API Gateway writes REST access logs through one role per account and region. Setting it
    # replaces any role set before, so it may write to any log group of this account and
    # region, as other APIs of the account may log too.
    role = b.add(iam.Role(
        "ApiGatewayLoggingRole",
        Description="API Gateway (this account and region): write REST API logs",
        AssumeRolePolicyDocument=policies.trusted_by(
            "apigateway.amazonaws.com", StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(
            PolicyName="write-logs",
            # AWS: "Set up CloudWatch logging for REST APIs in API Gateway": the actions of
            # AmazonAPIGatewayPushToCloudWatchLogs, which that page asks the account's role to
            # have.
            PolicyDocument=policies.document(Statement(
                Effect=Allow,
                Action=[awacs.logs.CreateLogGroup, awacs.logs.CreateLogStream,
                        awacs.logs.DescribeLogGroups, awacs.logs.DescribeLogStreams,
                        awacs.logs.GetLogEvents, awacs.logs.FilterLogEvents,
                        awacs.logs.PutLogEvents],
                Resource=[policies.arn("logs", "log-group:*")],
            )),
        )],
        # The setting outlives this stack, so the role does too: deleting one environment
        # must not leave the account's REST APIs logging through a role that is gone.
        **RETAIN,
    ))
    return apigateway.Account("ApiGatewayAccount", CloudWatchRoleArn=GetAtt(role, "Arn"))
