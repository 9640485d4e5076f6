"""permissions.py: the deploy and launch roles' grants, derived from the CloudFormation registry
schemas' handler permissions (as cfn-lint ships them) plus a documented supplement, checked
against IAM's service reference (cfn-lint's copy) and against every template we render."""

import fnmatch
import json
import re
from functools import lru_cache
from pathlib import Path

import pytest
from troposphere import encode_to_dict

from mlops_cfn import config, permissions, pipeline
from mlops_cfn.errors import UserError
from tests.helpers import default_data

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [None, *sorted((REPO / "examples").glob("*.yaml"))]
CONFIG_IDS = ["default" if p is None else p.stem for p in CONFIGS]
SAMPLE = {"${AWS::Partition}": "aws", "${AWS::Region}": "eu-west-1",
          "${AWS::AccountId}": "123456789012"}


def as_data(value):
    return encode_to_dict(value)


@lru_cache(maxsize=None)
def rendered_requirements(path: Path | None) -> frozenset[str]:
    """What every template of every environment of one config requires of its deployer."""
    loaded = config.load(path)
    found: set[str] = set()
    for built in pipeline.build_all(loaded, list(loaded.merged)):
        for template in [built.root, *(s.template for s in built.stages)]:
            found |= permissions.template_requirements(template.to_dict())
    return frozenset(found)


def every_requirement() -> frozenset[str]:
    return frozenset().union(*(rendered_requirements(p) for p in CONFIGS))


def granted(statements) -> set[str]:
    return {a for s in statements for a in as_data(s)["Action"]}


# --- the grants follow the registry's handler lists -------------------------------------------

def test_types_come_with_their_registry_handler_permissions():
    # The finding that started this (issue 12, 16): updating a pipeline starts it and toggles
    # its stage transitions, which the hand-written map left out.
    actions = set(permissions.actions_for(["AWS::CodePipeline::Pipeline"]))
    assert {"codepipeline:StartPipelineExecution", "codepipeline:EnableStageTransition",
            "codepipeline:DisableStageTransition", "codepipeline:UpdatePipeline"} <= actions


@pytest.mark.parametrize("resource_type, action", [
    ("AWS::Kinesis::Stream", "kinesis:ListTagsForResource"),
    ("AWS::RedshiftServerless::Namespace", "redshift-serverless:ListSnapshotCopyConfigurations"),
    ("AWS::Lambda::Function", "lambda:PutFunctionRecursionConfig"),
    ("AWS::ApplicationAutoScaling::ScalableTarget", "application-autoscaling:PutScheduledAction"),
    ("AWS::ElasticLoadBalancingV2::LoadBalancer", "elasticloadbalancing:ModifyCapacityReservation"),
    ("AWS::S3::Bucket", "s3:GetBucketMetadataTableConfiguration"),
    ("AWS::ECR::Repository", "kms:RetireGrant"),
])
def test_handler_permissions_the_hand_map_missed_are_granted(resource_type, action):
    assert action in permissions.actions_for([resource_type])


def test_handler_lists_are_read_from_cfn_lints_own_schema_files():
    import cfnlint

    data = Path(cfnlint.__file__).parent / "data" / "schemas"
    providers = json.loads((data / "providers" / "us-east-1.json").read_text())
    schema = json.loads((data / "resources" / f"{providers['AWS::SQS::Queue']}.json").read_text())
    listed = {p for h in schema["handlers"].values() for p in h["permissions"]}
    assert set(permissions.handler_permissions("AWS::SQS::Queue")) == listed


def test_a_type_neither_the_registry_nor_the_supplement_knows_is_an_error_naming_it():
    with pytest.raises(UserError, match="AWS::Made::Up"):
        permissions.actions_for(["AWS::S3::Bucket", "AWS::Made::Up"])
    # A legacy type without registry handlers, which no template of ours uses.
    with pytest.raises(UserError, match="AWS::EMR::Cluster"):
        permissions.actions_for(["AWS::EMR::Cluster"])


def test_custom_resources_need_to_invoke_their_function():
    assert permissions.actions_for(["Custom::RedshiftSql"]) == ["lambda:InvokeFunction"]


def test_a_placeholder_needs_nothing():
    assert permissions.actions_for(["AWS::CloudFormation::WaitConditionHandle"]) == []
    assert permissions.deployment_statements(["AWS::CloudFormation::WaitConditionHandle"]) == []


# --- the supplement ----------------------------------------------------------------------------

def test_a_model_from_a_model_package_may_read_the_package():
    """Issue 12, finding 12: CreateModel with ContainerDefinition.ModelPackageName."""
    actions = permissions.actions_for(["AWS::SageMaker::Model"])
    assert {"sagemaker:CreateModel", "sagemaker:DescribeModelPackage", "iam:PassRole"} <= set(
        actions)


def test_code_build_projects_are_supplemented_as_codebuilds_reference_lists():
    assert permissions.handler_permissions("AWS::CodeBuild::Project") is None
    assert set(permissions.actions_for(["AWS::CodeBuild::Project"])) == {
        "codebuild:BatchGetProjects", "codebuild:CreateProject", "codebuild:DeleteProject",
        "codebuild:UpdateProject", "iam:PassRole"}
    assert permissions.passed_to_services(["AWS::CodeBuild::Project"]) == [
        "codebuild.amazonaws.com"]


@pytest.mark.parametrize("template, expected", [
    ({"Resources": {"Db": {"Type": "AWS::RedshiftServerless::Namespace", "Properties": {
        "AdminUserPassword": {"Fn::Sub": "{{resolve:secretsmanager:${Secret}:SecretString:p}}"}}}}},
     {"AWS::RedshiftServerless::Namespace", permissions.RESOLVE_SECRETSMANAGER}),
    ({"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"Tags": [
        {"Key": "k", "Value": "{{resolve:ssm:/team/name:3}}"}]}}}},
     {"AWS::SQS::Queue", permissions.RESOLVE_SSM}),
    ({"Parameters": {"Ami": {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"}},
      "Resources": {"H": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}},
     {"AWS::CloudFormation::WaitConditionHandle", permissions.SSM_PARAMETER_TYPE}),
])
def test_templates_require_their_types_dynamic_references_and_ssm_parameter_types(template,
                                                                                  expected):
    assert permissions.template_requirements(template) == expected


def test_dynamic_references_are_resolved_with_the_deploying_principal():
    assert {"secretsmanager:GetSecretValue", "kms:Decrypt"} <= set(
        permissions.actions_for([permissions.RESOLVE_SECRETSMANAGER]))
    assert permissions.actions_for([permissions.RESOLVE_SSM]) == ["ssm:GetParameters"]
    assert permissions.actions_for([permissions.SSM_PARAMETER_TYPE]) == ["ssm:GetParameters"]


def test_every_supplement_names_its_source_and_grants_only_iam_actions():
    for requirement, supplements in permissions.SUPPLEMENT.items():
        for supplement in supplements:
            assert supplement.source.strip(), requirement
            for action in supplement.actions:
                assert permissions.iam_action(action) is not None, (requirement, action)


def test_nested_stacks_may_cancel_an_update_that_rolls_back():
    assert "cloudformation:CancelUpdateStack" in permissions.actions_for(
        [permissions.NESTED_STACK])


# --- names IAM does not know, and wildcards -------------------------------------------------------

def test_errata_map_names_iam_does_not_know_to_actions_it_does():
    for name, meant in permissions.HANDLER_ERRATA.items():
        assert permissions.iam_action(name) is None, f"{name} is an IAM action now: drop it"
        for action in meant:
            assert permissions.iam_action(action) is not None, action


def test_wildcards_are_spelled_out_into_actions_they_match():
    for pattern, actions in permissions.WILDCARD_EXPANSIONS.items():
        assert actions
        for action in actions:
            assert fnmatch.fnmatchcase(action, pattern), (pattern, action)
            assert permissions.iam_action(action) is not None, action


def test_every_name_our_templates_handler_lists_give_is_an_iam_action_or_in_the_errata():
    """A name IAM's reference does not know is reviewed (HANDLER_ERRATA), never granted."""
    unknown = set()
    for requirement in every_requirement():
        for name in permissions.handler_permissions(requirement) or ():
            if ("*" not in name and permissions.iam_action(name) is None
                    and name not in permissions.HANDLER_ERRATA):
                unknown.add(f"{requirement}: {name}")
    assert not unknown


def test_nothing_granted_is_a_wildcard():
    granted = permissions.actions_for(every_requirement())
    assert granted
    for action in granted:
        assert "*" not in action and "?" not in action, action
        assert permissions.iam_action(action) is not None, action


# --- scope ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def statements() -> list[dict]:
    return [as_data(s) for s in permissions.deployment_statements(
        every_requirement(), iam_names="mlops-demo-", stacks="mlops-demo-")]


def resolved(pattern) -> str:
    text = pattern["Fn::Sub"] if isinstance(pattern, dict) else pattern
    for token, value in SAMPLE.items():
        text = text.replace(token, value)
    return text


def sample_arns(action: str) -> list[str]:
    """One ARN per format IAM's reference gives for the resource types `action` acts on, in
    the sample account and region."""
    service = action.split(":")[0]
    reference = permissions._iam_reference()[service]
    arns = []
    for resource_type in permissions.iam_action(action)["Resources"]:
        for arn_format in reference["Resources"][resource_type.lower()]["ARNFormats"]:
            arn = arn_format.replace("${Partition}", "aws").replace("${Region}", "eu-west-1")
            arn = arn.replace("${Account}", "123456789012")
            arns.append(re.sub(r"\$\{[^}]+\}|\.\*", "x", arn))
    return arns


def test_star_resources_only_for_actions_iam_cannot_scope(statements):
    for statement in statements:
        if "*" in statement["Resource"]:
            assert statement["Sid"] == "ActionsWithoutResourceScope"
            for action in statement["Action"]:
                assert not permissions.supports_resource_scope(action), action


def test_every_scoped_action_reaches_each_arn_shape_of_its_resources_in_this_account(statements):
    """Checked against IAM's reference: a pattern that missed a shape (a dashboard, which names
    no region) would leave the handler's call denied."""
    for statement in statements:
        if statement["Sid"] in ("ActionsWithoutResourceScope", "PassRolesToServices",
                                "ManageIam", "ManageCloudformation"):
            continue
        patterns = [resolved(r) for r in statement["Resource"]]
        for action in statement["Action"]:
            for arn in sample_arns(action):
                if arn.startswith("arn:aws:s3:eu-west-1:"):
                    continue  # access points and such: IAM refuses a regional S3 pattern
                assert any(fnmatch.fnmatchcase(arn, p) for p in patterns), (action, arn)


def test_no_s3_pattern_names_a_region(statements):
    """IAM refuses it ("Resource ... can not contain region information"), as moto does."""
    (s3,) = [s for s in statements if s["Sid"] == "ManageS3"]
    assert [resolved(r) for r in s3["Resource"]] == ["arn:aws:s3:::*"]


def test_scoped_patterns_name_this_account_unless_iams_arn_format_names_none(statements):
    accountless = {f"arn:aws:{fmt.split(':')[2]}:{'eu-west-1' if fmt.split(':')[3] else ''}::"
                   for service in permissions._iam_reference().values()
                   for resource in service.get("Resources", {}).values()
                   for fmt in resource.get("ARNFormats", []) if fmt.split(":")[4] == ""}
    for statement in statements:
        for pattern in statement["Resource"]:
            if pattern == "*":
                continue
            text = resolved(pattern)
            if "123456789012" in text:
                continue
            # AWS's own accounts own the endpoint services interface endpoints connect to.
            if text.endswith(":*:vpc-endpoint-service/*"):
                continue
            assert any(text.startswith(prefix) for prefix in accountless), text


def test_bucket_statements_are_limited_to_this_accounts_buckets(statements):
    (s3,) = [s for s in statements if s["Sid"] == "ManageS3"]
    assert s3["Condition"] == {"StringEquals": {"aws:ResourceAccount": {
        "Fn::Sub": "${AWS::AccountId}"}}}


def test_iam_and_stack_actions_reach_only_the_projects_roles_policies_and_stacks(statements):
    (iam,) = [s for s in statements if s["Sid"] == "ManageIam"]
    assert iam["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/mlops-demo-*"},
        {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/*"},
        {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/mlops-demo-*"}]
    (stacks,) = [s for s in statements if s["Sid"] == "ManageCloudformation"]
    assert stacks["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:cloudformation:"
                                              "${AWS::Region}:${AWS::AccountId}:"
                                              "stack/mlops-demo-*/*"}]


def test_roles_are_passed_only_to_the_services_the_types_hand_them_to():
    (passing,) = [as_data(s) for s in permissions.deployment_statements(
        ["AWS::Lambda::Function", "AWS::Glue::Job", "AWS::S3::Bucket", "AWS::ECS::TaskDefinition",
         "AWS::SQS::Queue"], iam_names="p-")
        if as_data(s)["Sid"] == "PassRolesToServices"]
    assert passing["Action"] == ["iam:PassRole"]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": [
        "ecs-tasks.amazonaws.com", "glue.amazonaws.com", "lambda.amazonaws.com",
        "s3.amazonaws.com"]}}
    assert passing["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/p-*"}]


def test_each_type_that_passes_a_role_passes_it_to_its_own_service_or_the_documented_one():
    passed = {t: permissions.passed_to_services([t]) for t in every_requirement()
              if permissions.passed_to_services([t])}
    assert passed["AWS::StepFunctions::StateMachine"] == ["states.amazonaws.com"]
    assert passed["AWS::KinesisFirehose::DeliveryStream"] == ["firehose.amazonaws.com"]
    assert passed["AWS::ApplicationAutoScaling::ScalableTarget"] == [
        "application-autoscaling.amazonaws.com"]
    assert passed["AWS::EC2::FlowLog"] == ["vpc-flow-logs.amazonaws.com"]
    assert passed["AWS::CloudFormation::Stack"] == ["cloudformation.amazonaws.com"]
    for services in passed.values():
        for service in services:
            assert re.fullmatch(r"[a-z0-9-]+\.amazonaws\.com", service), service


# --- every rendered template is covered, in every environment ---------------------------------

def deploy_role_actions(path: Path | None) -> dict[str, set[str]]:
    """Environment -> the actions of the delivery pipeline's DeployRole as rendered (lower case:
    IAM compares action names without case)."""
    loaded = config.load(path)
    roles = {}
    for built in pipeline.build_all(loaded, list(loaded.merged)):
        (cicd,) = [s for s in built.stages if s.name == "cicd"]
        template = cicd.template.to_dict()
        role = template["Resources"]["DeployRole"]["Properties"]
        roles[built.environment] = {
            a.lower() for ref in role["ManagedPolicyArns"]
            for s in template["Resources"][ref["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
            for a in s["Action"]}
    return roles


@pytest.mark.parametrize("path", CONFIGS, ids=CONFIG_IDS)
def test_the_deploy_role_grants_every_handler_permission_of_every_rendered_type(path):
    """Issue 12, finding 16: any type in any template of any environment, and any permission
    its registry handlers list (as IAM knows it), is in the rendered DeployRole; but those for
    a property no template sets (permissions.UNCONFIGURED, each with its reason)."""
    requirements = rendered_requirements(path)
    assert "AWS::CodePipeline::Pipeline" in requirements
    by_environment = deploy_role_actions(path)
    assert by_environment
    for environment, actions in by_environment.items():
        missing = {f"{requirement}: {action}" for requirement in requirements
                   for name in permissions.handler_permissions(requirement) or ()
                   if name not in permissions.UNCONFIGURED.get(requirement, ())
                   for action in permissions.granted_names(name)
                   if action.lower() not in actions}
        assert not missing, environment


# --- packing into managed policies ---------------------------------------------------------------

def test_the_largest_set_fits_the_managed_policies_one_role_may_have():
    statements = permissions.deployment_statements(every_requirement(), iam_names="x" * 25 + "-",
                                                   stacks="x" * 40 + "-")
    documents = permissions.policy_documents(statements)
    assert 1 < len(documents) <= permissions.MAX_MANAGED_POLICIES
    for document in documents:
        text = json.dumps(as_data(document), separators=(",", ":"))
        assert len(text) <= permissions.MANAGED_POLICY_LIMIT
    kept = {a for d in documents for s in as_data(d)["Statement"] for a in s["Action"]}
    assert kept == granted(statements)


def test_a_statement_larger_than_a_policy_is_split_by_actions():
    (big,) = [s for s in permissions.deployment_statements(every_requirement())
              if as_data(s)["Sid"] == "ActionsWithoutResourceScope"]
    documents = permissions.policy_documents([big], limit=1500)
    parts = [s for d in documents for s in as_data(d)["Statement"]]
    assert len(parts) > 1
    assert sorted(a for p in parts for a in p["Action"]) == sorted(as_data(big)["Action"])
    assert all(p["Resource"] == ["*"] for p in parts)


# --- extension stages are covered with no list to update -----------------------------------------

def test_a_stage_of_a_new_type_gets_its_permissions_in_the_deploy_role():
    """Issue 14, point 4: the deploy role follows the templates, not a list of stage names."""
    from troposphere import Template, dynamodb

    from mlops_cfn.stage import Stage

    def table_stage(loaded):
        template = Template()
        template.add_resource(dynamodb.Table(
            "Table", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[dynamodb.AttributeDefinition(AttributeName="id",
                                                               AttributeType="S")],
            KeySchema=[dynamodb.KeySchema(AttributeName="id", KeyType="HASH")]))
        return Stage("table", template, (), (), ())

    registry = (*pipeline.REGISTRY,
                pipeline.StageSpec("table", table_stage, lambda c: True, "extensions.table"))
    loaded = config.load_data(default_data(), "pipeline.yaml", "dev")
    built = pipeline.build(loaded, registry=registry)
    (cicd,) = [s for s in built.stages if s.name == "cicd"]
    template = cicd.template.to_dict()
    policies = [template["Resources"][r["Ref"]] for r in
                template["Resources"]["DeployRole"]["Properties"]["ManagedPolicyArns"]]
    actions = {a for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]
               for a in s["Action"]}
    assert {"dynamodb:CreateTable", "dynamodb:DeleteTable"} <= actions
