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
from .template_eval import ACCOUNT, Request, Resolver

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
