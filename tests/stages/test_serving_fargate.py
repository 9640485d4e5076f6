"""The serving stage's Fargate part and the API Gateway in front: a hardened container behind an
internal load balancer in the private subnets, public only through an IAM-authorized API."""

import json

from mlops_cfn.config.serving import FargateServingConfig
from troposphere import encode_to_dict

from mlops_cfn import pipeline
from mlops_cfn.stages import access_logs, serving, storage
from tests.helpers import (config_with, only_resource, resources_of_type, statements,
                           template_dict, with_action)
from tests.stages.test_serving import (CERTIFICATE, KEY, build, props, resource, sub_text,
                                       template, types_in)

FARGATE = {"target": "fargate"}
HTTPS = {"target": "fargate", "fargate": {"certificate_arn": CERTIFICATE}}
SERVICE = "mlops-demo-${EnvironmentName}-model-api"


def fargate(changes: dict | None = None, env: str = "dev", **serving) -> dict:
    return template({"target": "fargate", "fargate": changes or {}, **serving}, env)


def container(t: dict) -> dict:
    definition, = props(t, "ApiTaskDefinition")["ContainerDefinitions"]
    return definition


def listeners(t: dict) -> dict[str, dict]:
    return {k: r["Properties"] for k, r in
            resources_of_type(t, "AWS::ElasticLoadBalancingV2::Listener").items()}


# --- first deployment ----------------------------------------------------------------------

def test_no_task_runs_until_an_image_tag_and_a_model_are_named():
    # A task with no model never turns healthy, and the circuit breaker would roll the whole
    # deployment back: the service waits for both.
    t = fargate()
    assert t["Conditions"]["ApiRunnable"] == {"Fn::And": [
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "ApiImageTag"}, ""]}]},
        {"Condition": "ModelSupplied"}]}
    assert t["Conditions"]["ModelSupplied"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ModelPackageArn"}, ""]}]}
    for logical_id in ("ApiTaskDefinition", "ApiService", "ApiScalingTarget",
                       "ApiCpuScalingPolicy", "ApiRequestScalingPolicy"):
        assert resource(t, logical_id)["Condition"] == "ApiRunnable", logical_id
    # The rest exists from the first deploy, so an image can be pushed and traffic can arrive.
    for logical_id in ("ApiRepository", "ApiCluster", "LoadBalancer", "ApiTargetGroup",
                       "HttpListener"):
        assert "Condition" not in resource(t, logical_id), logical_id


def test_the_image_is_the_tag_of_the_stages_own_repository():
    assert container(fargate())["Image"] == {
        "Fn::Sub": "${ApiRepository.RepositoryUri}:${ApiImageTag}"}


# --- repository and cluster ----------------------------------------------------------------

def test_the_repository_scans_keeps_tags_immutable_encrypts_and_outlives_the_stack():
    repository = resource(fargate(), "ApiRepository")
    p = repository["Properties"]
    assert p["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert p["ImageTagMutability"] == "IMMUTABLE"
    assert p["EncryptionConfiguration"] == {"EncryptionType": "KMS", "KmsKey": KEY}
    assert repository["DeletionPolicy"] == repository["UpdateReplacePolicy"] == "Retain"


def test_the_lifecycle_expires_untagged_images_and_keeps_the_newest_as_a_parameter():
    text = sub_text(props(fargate(), "ApiRepository")["LifecyclePolicy"]["LifecyclePolicyText"])
    rules = json.loads(text.replace("${ApiImagesKept}", "30"))["rules"]
    assert [r["selection"]["tagStatus"] for r in rules] == ["untagged", "any"]
    assert "${ApiImagesKept}" in text
    assert rules[-1]["selection"]["countType"] == "imageCountMoreThan"


def test_the_cluster_has_container_insights():
    assert props(fargate(), "ApiCluster")["ClusterSettings"] == [
        {"Name": "containerInsights", "Value": "enabled"}]


def test_the_tasks_ephemeral_storage_is_encrypted_with_the_data_key():
    cluster = props(fargate(), "ApiCluster")
    assert cluster["Configuration"] == {
        "ManagedStorageConfiguration": {"FargateEphemeralStorageKmsKeyId": KEY}}
    # The stage asks the key's policy to admit Fargate for this cluster's name (stage.KeyUse).
    asked = [encode_to_dict(s) for s in build(FARGATE).key_use.statements]
    names = [s["Condition"]["StringEquals"]["kms:EncryptionContext:aws:ecs:clusterName"]
             for s in asked if s.get("Principal") == {"Service": "fargate.amazonaws.com"}]
    assert len(names) == 2 and all(name == cluster["ClusterName"] for name in names)
    # And the storage stage built by the composer grants exactly that.
    built = pipeline.build(config_with({"stages": {"serving": FARGATE}}))
    storage_key = only_resource(template_dict(next(s for s in built.stages
                                                   if s.name == "storage")), "AWS::KMS::Key")
    granted = [s for s in storage_key["Properties"]["KeyPolicy"]["Statement"]
               if s.get("Principal") == {"Service": "fargate.amazonaws.com"}]
    assert granted == [s for s in asked if s.get("Principal") == {
        "Service": "fargate.amazonaws.com"}]


# --- the task ------------------------------------------------------------------------------

def test_the_container_is_read_only_non_root_and_without_capabilities():
    c = container(fargate({"user": "10001:10001"}))
    assert c["ReadonlyRootFilesystem"] is True
    assert c["User"] == "10001:10001"
    assert c["LinuxParameters"]["Capabilities"] == {"Drop": ["ALL"]}
    assert c["MountPoints"] == [{"SourceVolume": "tmp", "ContainerPath": "/tmp",
                                 "ReadOnly": False}]
    assert "Privileged" not in c


def test_the_container_logs_to_the_encrypted_group_monitoring_is_told_of():
    t = fargate()
    options = container(t)["LogConfiguration"]["Options"]
    assert options["awslogs-group"] == {"Ref": "ApiLogGroup"}
    assert props(t, "ApiLogGroup")["KmsKeyId"] == KEY
    assert t["Outputs"]["ApiLogGroupName"]["Value"] == {"Ref": "ApiLogGroup"}


def test_environment_comes_from_config_and_secrets_from_secrets_manager():
    t = fargate({"environment": {"LOG_LEVEL": "info"},
                 "secrets": {"DB_PASSWORD": "app/db",
                             "API_KEY": "arn:aws:secretsmanager:eu-west-1:111122223333:"
                                        "secret:app/key-AbCdEf"}})
    c = container(t)
    assert {"Name": "LOG_LEVEL", "Value": "info"} in c["Environment"]
    assert c["Secrets"] == [
        {"Name": "API_KEY",
         "ValueFrom": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:app/key-AbCdEf"},
        {"Name": "DB_PASSWORD", "ValueFrom": {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:"
                                              "${AWS::Region}:${AWS::AccountId}:secret:app/db"}},
    ]
    reads, = with_action(statements(resource(t, "ApiExecutionRole")),
                         "secretsmanager:GetSecretValue")
    assert [sub_text(r) for r in reads["Resource"]] == [
        "arn:aws:secretsmanager:eu-west-1:111122223333:secret:app/key-AbCdEf",
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:"
        "secret:app/db-??????"]


def test_the_model_api_is_told_which_model_its_features_and_its_limits():
    """What mlops_cfn/data/model_api/app.py reads at start (Settings.from_environment)."""
    variables = {e["Name"]: e["Value"] for e in container(fargate())["Environment"]}
    assert variables == {
        "MODEL_PACKAGE_ARN": {"Ref": "ModelPackageArn"},
        # The record schema's features, in the order training gives them to the model.
        "MODEL_FEATURES": '["value"]',
        "MAX_BATCH_ROWS": "100",
        "PORT": "8080",
        "AWS_DEFAULT_REGION": {"Ref": "AWS::Region"},
    }
    by_archive = {e["Name"]: e["Value"] for e in container(template(
        {"target": "fargate", "model_source": "model_data",
         "fargate": {"max_batch_rows": 20, "container_port": 9000}}))["Environment"]}
    assert by_archive["MODEL_DATA_URL"] == {"Ref": "ModelDataUrl"}
    assert "MODEL_PACKAGE_ARN" not in by_archive
    assert (by_archive["MAX_BATCH_ROWS"], by_archive["PORT"]) == ("20", "9000")


def test_the_settings_the_stage_gives_are_the_ones_the_api_reads():
    """Rendered variables go through the app's own settings parser unchanged."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "mlops_cfn/data/model_api/app.py"
    spec = importlib.util.spec_from_file_location("model_api_settings", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    variables = {e["Name"]: e["Value"] for e in container(fargate())["Environment"]}
    variables["MODEL_PACKAGE_ARN"] = ("arn:aws:sagemaker:eu-west-1:111122223333:"
                                      "model-package/group/1")
    settings = module.Settings.from_environment(
        {k: v for k, v in variables.items() if isinstance(v, str)})
    assert settings.features == ("value",) and settings.port == 8080


def test_without_secrets_the_tasks_may_read_none():
    t = fargate()
    assert "Secrets" not in container(t)
    assert not with_action(statements(resource(t, "ApiExecutionRole")),
                           "secretsmanager:GetSecretValue")


def test_task_size_is_parameters_and_the_architecture_is_config():
    p = props(fargate({"cpu_architecture": "ARM64"}), "ApiTaskDefinition")
    assert p["Cpu"] == {"Ref": "ApiTaskCpu"} and p["Memory"] == {"Ref": "ApiTaskMemoryMiB"}
    assert p["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert p["RequiresCompatibilities"] == ["FARGATE"] and p["NetworkMode"] == "awsvpc"


def test_the_execution_role_pulls_only_from_its_repository():
    found = statements(resource(fargate(), "ApiExecutionRole"))
    pulls, = with_action(found, "ecr:BatchGetImage")
    assert pulls["Resource"] == [{"Fn::GetAtt": ["ApiRepository", "Arn"]}]
    logs, = with_action(found, "logs:PutLogEvents")
    assert [sub_text(r) for r in logs["Resource"]] == [
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${ApiLogGroup}:*"]


def test_the_task_role_is_another_role_and_only_reads_the_model_archives():
    t = fargate()
    p = props(t, "ApiTaskDefinition")
    assert p["TaskRoleArn"] != p["ExecutionRoleArn"]
    found = statements(resource(t, "ApiTaskRole"))
    actions = {a for s in found for a in s["Action"]}
    assert actions == {"sagemaker:DescribeModelPackage", "s3:ListBucket", "s3:GetObject",
                       "kms:Decrypt"}
    # Only the package version the stack serves, once one is named.
    [describe] = with_action(found, "sagemaker:DescribeModelPackage")
    assert describe["Resource"] == [{"Ref": "ModelPackageArn"}]
    [conditional] = [s for s in resource(t, "ApiTaskRole")["Properties"]["Policies"][0][
        "PolicyDocument"]["Statement"] if "Fn::If" in s]
    assert conditional["Fn::If"][0] == "ModelSupplied"
    # Where the training pipeline writes models, not the training splits or the captures.
    [read] = with_action(found, "s3:GetObject")
    assert read["Resource"] == [{"Fn::Sub": "${ArtifactsBucketArn}/training/models/*"}]
    [listing] = with_action(found, "s3:ListBucket")
    assert listing["Resource"] == [{"Ref": "ArtifactsBucketArn"}]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "training/models/*"}}


# --- the service ---------------------------------------------------------------------------

def test_the_service_runs_in_the_private_subnets_without_public_addresses():
    p = props(fargate(), "ApiService")
    network = p["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["Subnets"] == {"Ref": "PrivateSubnetIds"}
    assert p["LaunchType"] == "FARGATE" and p["PlatformVersion"] == "LATEST"
    assert p["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True, "Rollback": True}
    assert "DesiredCount" not in p  # autoscaling owns the count
    assert p["EnableExecuteCommand"] is False


def test_the_tasks_admit_only_the_load_balancer():
    t = fargate()
    assert "SecurityGroupIngress" not in props(t, "ApiTaskSecurityGroup")
    ingress = props(t, "TasksFromLoadBalancer")
    assert ingress["SourceSecurityGroupId"] == {
        "Fn::GetAtt": ["LoadBalancerSecurityGroup", "GroupId"]}
    assert ingress["FromPort"] == ingress["ToPort"] == 8080


def test_the_service_scales_on_cpu_and_requests_between_parameter_bounds():
    t = fargate()
    target = props(t, "ApiScalingTarget")
    assert target["MinCapacity"] == {"Ref": "ApiMinTasks"}
    assert target["MaxCapacity"] == {"Ref": "ApiMaxTasks"}
    assert sub_text(target["ResourceId"]) == f"service/${{ApiCluster}}/{SERVICE}"
    cpu = props(t, "ApiCpuScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]
    assert cpu["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
        "ECSServiceAverageCPUUtilization")
    assert cpu["TargetValue"] == {"Ref": "ApiCpuTargetPercent"}
    requests = props(t, "ApiRequestScalingPolicy")["TargetTrackingScalingPolicyConfiguration"]
    assert requests["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ALBRequestCountPerTarget",
        "ResourceLabel": {"Fn::Sub": "${LoadBalancer.LoadBalancerFullName}/"
                                     "${ApiTargetGroup.TargetGroupFullName}"}}
    assert requests["TargetValue"] == {"Ref": "ApiRequestsPerTarget"}


# --- the load balancer ---------------------------------------------------------------------

def test_the_load_balancer_is_internal_logs_drops_bad_headers_and_protection_is_a_parameter():
    p = props(fargate(), "LoadBalancer")
    assert p["Scheme"] == "internal"
    assert p["Subnets"] == {"Ref": "PrivateSubnetIds"}
    attributes = {a["Key"]: a["Value"] for a in p["LoadBalancerAttributes"]}
    assert attributes == {
        "access_logs.s3.enabled": "true",
        "access_logs.s3.bucket": {"Ref": "AccessLogsBucketName"},
        "access_logs.s3.prefix": access_logs.LOAD_BALANCER_LOG_PREFIX,
        "routing.http.drop_invalid_header_fields.enabled": "true",
        "deletion_protection.enabled": {"Ref": "LoadBalancerDeletionProtection"},
    }


def test_the_load_balancer_admits_only_the_vpc_on_its_listener_ports():
    http = props(fargate(), "LoadBalancerSecurityGroup")["SecurityGroupIngress"]
    assert [(r["FromPort"], r["CidrIp"]) for r in http] == [(80, {"Ref": "VpcCidrBlock"})]
    https = props(template(HTTPS), "LoadBalancerSecurityGroup")["SecurityGroupIngress"]
    assert [r["FromPort"] for r in https] == [443, 80]
    assert {r["CidrIp"]["Ref"] for r in https} == {"VpcCidrBlock"}


def test_without_a_certificate_one_http_listener_forwards_with_reasoned_skips():
    t = fargate()
    assert set(listeners(t)) == {"HttpListener"}
    http = listeners(t)["HttpListener"]
    assert http["Protocol"] == "HTTP"
    assert http["DefaultActions"] == [{"Type": "forward",
                                       "TargetGroupArn": {"Ref": "ApiTargetGroup"}}]
    skips = resource(t, "HttpListener")["Metadata"]["checkov"]["skip"]
    assert {s["id"] for s in skips} == {"CKV_AWS_2", "CKV_AWS_103"}


def test_with_a_certificate_https_forwards_and_http_redirects_to_it():
    t = template(HTTPS)
    found = listeners(t)
    assert set(found) == {"HttpsListener", "HttpListener"}
    secure = found["HttpsListener"]
    assert secure["Protocol"] == "HTTPS" and secure["Port"] == 443
    assert secure["Certificates"] == [{"CertificateArn": {"Ref": "ApiCertificateArn"}}]
    assert secure["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert secure["DefaultActions"][0]["Type"] == "forward"
    assert found["HttpListener"]["DefaultActions"] == [{"Type": "redirect", "RedirectConfig": {
        "Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}]
    assert "Metadata" not in resource(t, "HttpListener")
    assert resource(t, "ApiService")["DependsOn"] == ["HttpsListener", "HttpListener"]


def test_the_health_check_probes_the_configured_path():
    p = props(fargate({"health_check_path": "/healthz", "container_port": 9000}),
              "ApiTargetGroup")
    assert p["HealthCheckPath"] == "/healthz"
    assert p["Port"] == 9000 and p["TargetType"] == "ip"


def test_a_task_that_loads_its_model_late_turns_healthy_within_the_grace_period():
    """The API answers 503 until its model is loaded. A target that failed its first checks
    needs HealthyThresholdCount passes at HealthCheckIntervalSeconds ("Health checks for
    Application Load Balancer target groups"); ECS counts the load balancer's verdict once
    HealthCheckGracePeriodSeconds (60 s by default) are over."""
    t = fargate()
    group = props(t, "ApiTargetGroup")
    recovery = group["HealthyThresholdCount"] * group["HealthCheckIntervalSeconds"]
    grace = FargateServingConfig().health_check_grace_seconds
    assert recovery <= grace / 2, "a task that failed early must recover well within the grace"
    # Timeout under the interval (the ALB default for HTTP ip targets is 5 s).
    assert group.get("HealthCheckTimeoutSeconds", 5) < group["HealthCheckIntervalSeconds"]
    assert group["UnhealthyThresholdCount"] >= 2


def test_the_access_logs_bucket_lets_load_balancers_of_this_account_write_under_the_prefix():
    t = template_dict(storage.build(config_with().config))
    bucket_policy = props(t, "AccessLogsBucketPolicy")["PolicyDocument"]["Statement"]
    # Who delivers depends on the region (tests/test_access_logs_bucket.py): an Fn::If of the
    # regional ELB account's statement and the log delivery service's.
    [choice] = [s["Fn::If"] for s in bucket_policy if "Fn::If" in s]
    by_account, by_service = choice[1:]
    for delivery in (by_account, by_service):
        assert delivery["Sid"] == "LoadBalancerAccessLogDelivery"
        assert delivery["Action"] == ["s3:PutObject"]
        assert [sub_text(r) for r in delivery["Resource"]] == [
            "${AccessLogsBucket.Arn}/alb/AWSLogs/${AWS::AccountId}/*"]
    assert by_service["Principal"] == {
        "Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert by_service["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


# --- API Gateway: HTTP API to the load balancer ---------------------------------------------

def test_the_http_api_reaches_the_forwarding_listener_through_a_private_vpc_link():
    t = fargate(api_gateway={"enabled": True})
    integration = props(t, "HttpApiIntegration")
    assert integration["ConnectionType"] == "VPC_LINK"
    assert integration["ConnectionId"] == {"Ref": "VpcLink"}
    assert integration["IntegrationUri"] == {"Ref": "HttpListener"}
    assert "TlsConfig" not in integration
    assert props(t, "VpcLink")["SubnetIds"] == {"Ref": "PrivateSubnetIds"}
    egress = props(t, "VpcLinkSecurityGroup")["SecurityGroupEgress"]
    assert [(r["FromPort"], r["CidrIp"]) for r in egress] == [(80, {"Ref": "VpcCidrBlock"})]


def test_with_https_the_http_api_verifies_the_certificate_name():
    t = template({**HTTPS, "api_gateway": {"enabled": True,
                                           "tls_server_name": "api.example.com"}})
    integration = props(t, "HttpApiIntegration")
    assert integration["IntegrationUri"] == {"Ref": "HttpsListener"}
    assert integration["TlsConfig"] == {"ServerNameToVerify": {"Ref": "ApiTlsServerName"}}


def test_every_http_api_call_is_iam_authorized_logged_and_throttled():
    t = fargate(api_gateway={"enabled": True})
    route = props(t, "HttpApiRoute")
    assert route["AuthorizationType"] == "AWS_IAM" and route["RouteKey"] == "$default"
    stage = props(t, "HttpApiStage")
    assert stage["AccessLogSettings"]["DestinationArn"] == {
        "Fn::GetAtt": ["ApiGatewayLogGroup", "Arn"]}
    assert json.loads(stage["AccessLogSettings"]["Format"])["caller"] == (
        "$context.identity.userArn")
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == {
        "Ref": "ApiThrottlingRateLimit"}
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == {
        "Ref": "ApiThrottlingBurstLimit"}
    assert props(t, "ApiGatewayLogGroup")["KmsKeyId"] == KEY
    assert t["Outputs"]["ApiUrl"]["Value"] == {"Fn::GetAtt": ["HttpApi", "ApiEndpoint"]}


# --- API Gateway: REST API to the SageMaker endpoint -----------------------------------------

REST = {"target": "sagemaker", "api_gateway": {"enabled": True}}


def test_the_rest_api_invokes_only_this_endpoint_with_iam_authorization():
    t = template(REST)
    method = props(t, "RestApiInvokeMethod")
    assert method["HttpMethod"] == "POST" and method["AuthorizationType"] == "AWS_IAM"
    integration = method["Integration"]
    assert integration["Type"] == "AWS"
    assert sub_text(integration["Uri"]) == (
        "arn:${AWS::Partition}:apigateway:${AWS::Region}:runtime.sagemaker:"
        "path/endpoints/mlops-demo-${EnvironmentName}-endpoint/invocations")
    assert integration["Credentials"] == {"Fn::GetAtt": ["RestApiRole", "Arn"]}
    invoke, = statements(resource(t, "RestApiRole"))
    assert invoke["Action"] == ["sagemaker:InvokeEndpoint"]
    assert [sub_text(r) for r in invoke["Resource"]] == [
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
        "endpoint/mlops-demo-${EnvironmentName}-endpoint"]


def test_the_rest_stage_traces_logs_and_throttles_and_never_logs_bodies():
    stage = props(template(REST), "RestApiStage")
    assert stage["TracingEnabled"] is True
    assert stage["AccessLogSetting"]["DestinationArn"] == {
        "Fn::GetAtt": ["ApiGatewayLogGroup", "Arn"]}
    setting, = stage["MethodSettings"]
    assert setting["DataTraceEnabled"] is False
    assert setting["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert setting["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}


def test_a_changed_rest_method_gets_a_new_deployment():
    def deployment_id(changes):
        t = template({"target": "sagemaker", "api_gateway": {"enabled": True}, **changes})
        return next(iter(resources_of_type(t, "AWS::ApiGateway::Deployment")))

    same_api_other_values = deployment_id({"api_gateway": {"enabled": True,
                                                           "throttling_rate_limit": 5}})
    assert deployment_id({}) == same_api_other_values
    # A different project changes the endpoint the method calls.
    other = template_dict(serving.build(config_with(
        {"project": "other", "stages": {"serving": {"enabled": True, **REST}}}).config))
    assert next(iter(resources_of_type(other, "AWS::ApiGateway::Deployment"))) != deployment_id({})


def test_the_rest_api_sets_the_accounts_logging_role_unless_told_not_to():
    t = template(REST)
    account = only_resource(t, "AWS::ApiGateway::Account")
    assert account["Properties"]["CloudWatchRoleArn"] == {
        "Fn::GetAtt": ["ApiGatewayLoggingRole", "Arn"]}
    assert resource(t, "RestApiStage")["DependsOn"] == ["ApiGatewayAccount"]
    # The account setting outlives the stack; so must the role it names, or deleting one
    # environment would break REST API logging for the rest of the account.
    role = resource(t, "ApiGatewayLoggingRole")
    assert role["DeletionPolicy"] == role["UpdateReplacePolicy"] == "Retain"
    without = template({**REST, "api_gateway": {"enabled": True,
                                                "set_account_logging_role": False}})
    assert "AWS::ApiGateway::Account" not in types_in(without)
    assert "DependsOn" not in resource(without, "RestApiStage")


def test_the_rest_url_is_the_stages_invocations_path():
    assert sub_text(template(REST)["Outputs"]["ApiUrl"]["Value"]) == (
        "https://${RestApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/v1/invocations")
