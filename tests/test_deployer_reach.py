"""The deploy role (the delivery pipeline's DeployRole) and the Service Catalog launch role as IAM
evaluates them: calls CloudFormation makes on the deployer's behalf for resources the handler
lists do not describe (a role AWS created, a service's log delivery) are allowed on exactly the
resources they touch.

Each request is resolved from the rendered templates in a fake account (template_eval.py) and
evaluated against the role's statements as IAM would: an Allow matching action, resource and
conditions, and no Deny."""

from mlops_cfn import permissions, pipeline, servicecatalog
from troposphere import encode_to_dict

from .helpers import config_with
from .template_eval import ACCOUNT, REGION, Request, Resolver, role_statements

OWNER = "arn:aws:quicksight:us-east-1:123456789012:group/default/analysts"
QUICKSIGHT = {"stages": {"analytics": {"quicksight": {"enabled": True, "owner_arn": OWNER}}}}


def built(changes: dict):
    return pipeline.build(config_with(changes))


def deploy_role_statements(pipe) -> list[dict]:
    """The DeployRole's managed policies (the cicd stage's DeployPolicy resources), resolved."""
    [cicd] = [s for s in pipe.stages if s.name == "cicd"]
    template = cicd.template.to_dict()
    resolver = Resolver(template, {"EnvironmentName": "dev"})
    attached = [ref["Ref"] for ref in
                template["Resources"]["DeployRole"]["Properties"]["ManagedPolicyArns"]]
    return [statement for name in attached
            for statement in resolver.value(
                template["Resources"][name]["Properties"]["PolicyDocument"])["Statement"]]


def launch_role_statements(pipe) -> list[dict]:
    """The Service Catalog launch role for the same templates, resolved."""
    requirements = {r for t in [pipe.root, *(s.template for s in pipe.stages)]
                    for r in permissions.template_requirements(t.to_dict())}
    statements = servicecatalog.launch_role_statements(requirements, "handoff-bucket")
    resolver = Resolver({}, {})
    return [resolver.value(encode_to_dict(s)) for s in statements]


def roles(pipe) -> dict[str, list[dict]]:
    return {"deploy": deploy_role_statements(pipe), "launch": launch_role_statements(pipe)}


# --- QuickSight: the policy on QuickSight's own Secrets Manager role -----------------------------

QUICKSIGHT_SECRETS_ROLE = (f"arn:aws:iam::{ACCOUNT}:role/service-role/"
                           "aws-quicksight-secretsmanager-role-v0")


def test_with_quicksight_the_deployer_may_put_the_secret_policy_on_quicksights_role():
    pipe = built(QUICKSIGHT)
    [analytics] = [s for s in pipe.stages if s.name == "analytics"]
    policy = analytics.template.to_dict()["Resources"]["QuickSightSecretAccess"]
    assert policy["Type"] == "AWS::IAM::Policy"
    assert policy["Properties"]["Roles"] == ["aws-quicksight-secretsmanager-role-v0"]
    for name, statements in roles(pipe).items():
        # AWS::IAM::Policy's create, update and delete handlers on that role.
        for action in ("iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"):
            assert Request(action, QUICKSIGHT_SECRETS_ROLE).allowed_by(statements), (name, action)
        # Nothing else on it: neither its trust nor its managed policies.
        for action in ("iam:UpdateAssumeRolePolicy", "iam:AttachRolePolicy", "iam:DeleteRole"):
            if name == "deploy":
                assert not Request(action, QUICKSIGHT_SECRETS_ROLE).allowed_by(statements)


def test_without_quicksight_the_deployer_has_nothing_on_quicksights_role():
    statements = deploy_role_statements(built({}))
    assert not Request("iam:PutRolePolicy", QUICKSIGHT_SECRETS_ROLE).allowed_by(statements)


# --- HTTP API access logs: the log delivery API Gateway sets up ----------------------------------

HTTP_API = {"stages": {"serving": {
    "target": "fargate",
    "fargate": {"certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/"
                                   "0f3a9d2e-6b1c-4e8a-9f7d-2c5b8e1a4d60"},
    "api_gateway": {"enabled": True, "type": "http", "tls_server_name": "api.example.com"}}}}


def test_with_an_http_api_logging_its_access_the_deployer_may_set_up_the_log_delivery():
    pipe = built(HTTP_API)
    [serving] = [s for s in pipe.stages if s.name == "serving"]
    [stage] = [r for r in serving.template.to_dict()["Resources"].values()
               if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    assert "DestinationArn" in stage["Properties"]["AccessLogSettings"]
    # AWS: "Configure logging for HTTP APIs in API Gateway" (permissions to activate logging;
    # these take no resource but `*`, CreateLogGroup a log group of this account).
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:any"
    for name, statements in roles(pipe).items():
        for action in ("logs:CreateLogDelivery", "logs:PutResourcePolicy",
                       "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
                       "logs:DescribeResourcePolicies", "logs:GetLogDelivery",
                       "logs:ListLogDeliveries"):
            assert Request(action, "*").allowed_by(statements), (name, action)
        assert Request("logs:CreateLogGroup", log_group).allowed_by(statements), name


# --- connections: both service prefixes -----------------------------------------------------------

def test_the_deployer_may_pass_a_connection_of_either_service_prefix_to_the_pipeline():
    # AWS: "Connections rename - Summary of changes": a policy names a connection with the
    # prefix of its ARN; the console creates codeconnections ARNs since July 2024.
    connection = "connection/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    statements = deploy_role_statements(built({}))
    for prefix in ("codestar-connections", "codeconnections"):
        arn = f"arn:aws:{prefix}:{REGION}:{ACCOUNT}:{connection}"
        assert Request(f"{prefix}:PassConnection", arn).allowed_by(statements), prefix


def test_the_pipeline_may_use_a_connection_of_either_service_prefix():
    connection = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    pipe = built({"stages": {"cicd": {"source": {
        "provider": "connection", "repository": "example-org/churn-model", "branch": "main",
        "connection_arn": f"arn:aws:codeconnections:{REGION}:{ACCOUNT}:connection/{connection}"}}}})
    [cicd] = [s for s in pipe.stages if s.name == "cicd"]
    template = cicd.template.to_dict()
    arn = f"arn:aws:codeconnections:{REGION}:{ACCOUNT}:connection/{connection}"
    resolver = Resolver(template, {"EnvironmentName": "dev", "DeliverySourceConnectionArn": arn})
    statements = role_statements(resolver, "PipelineRole")
    assert Request("codeconnections:UseConnection", arn).allowed_by(statements)
