"""deploy's checks against the account before any upload (preflight.py), as functions: the
reserved concurrency the stack's Lambda functions ask for against what Lambda lets an account
reserve, and the service-linked roles the templates name. The account is a botocore Stubber
(moto 5.2 does not implement GetAccountSettings); tests/deploy/test_ec2_consumer.py runs the
role check through deploy on moto."""

import boto3
import pytest
from botocore.stub import Stubber

from mlops_cfn import config, pipeline
from mlops_cfn.preflight import (Concurrency, concurrency_problems, lambda_problems,
                                 reservations, root_values, service_linked_role_problems,
                                 service_linked_roles)

REGION = "eu-west-1"


def planned(env: str):
    built = pipeline.build(config.load(env=env))
    root = built.root.to_dict()
    values = root_values(root, built.parameters, REGION)
    return built, values, reservations(built.stages, values)


def account(limit: int, unreserved: int, held: dict[str, int | None]):
    client = boto3.client("lambda", region_name=REGION, aws_access_key_id="x",
                          aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.add_response("get_account_settings", {"AccountLimit": {
        "ConcurrentExecutions": limit, "UnreservedConcurrentExecutions": unreserved,
        "TotalCodeSize": 1, "CodeSizeUnzipped": 1, "CodeSizeZipped": 1}})
    for name, reserved in held.items():
        if reserved is None:
            stubber.add_client_error("get_function_concurrency", "ResourceNotFoundException",
                                     expected_params={"FunctionName": name})
        else:
            stubber.add_response("get_function_concurrency",
                                 {"ReservedConcurrentExecutions": reserved}, {"FunctionName": name})
    stubber.activate()
    return client, stubber


def test_the_stack_reserves_for_the_consumer_and_the_retrain_function():
    _, _, dev = planned("dev")
    assert [(r.function_name, r.concurrency, r.parameter) for r in dev] == [
        ("mlops-demo-dev-consumer", 10, "ConsumerReservedConcurrency"),
        ("mlops-demo-dev-retrain", 1, None)]
    _, _, prod = planned("prod")
    assert sum(r.concurrency for r in prod) == 51


NEW = {"mlops-demo-prod-consumer": None, "mlops-demo-prod-retrain": None}


@pytest.mark.parametrize("limit, unreserved, held, refused", [
    (1000, 1000, NEW, False),      # the default quota
    (10, 10, NEW, True),           # a new account's quota
    (150, 150, NEW, True),         # 150 - 51 leaves 99
    (151, 151, NEW, False),        # 151 - 51 leaves 100
    (150, 100, NEW, True),         # others already hold 50
    # An update gives back what the stack's functions hold: the same values reserve nothing new.
    (150, 89, {"mlops-demo-prod-consumer": 50, "mlops-demo-prod-retrain": 1}, False),
])
def test_a_reservation_leaving_less_than_lambdas_minimum_unreserved_is_refused(
        limit, unreserved, held, refused):
    built, values, _ = planned("prod")
    client, stubber = account(limit, unreserved, held)
    problems, notes = lambda_problems(client, built.stages, values, REGION)
    stubber.assert_no_pending_responses()  # asked what each function holds today
    assert bool(problems) == refused
    assert notes == []


def test_the_boundary_is_lambdas_minimum_of_one_hundred():
    _, _, plan = planned("prod")
    assert concurrency_problems(plan, Concurrency(151, 151, 0), REGION) == []
    assert concurrency_problems(plan, Concurrency(150, 150, 0), REGION) != []


def test_raising_a_reservation_on_update_counts_what_the_stack_already_holds():
    _, _, plan = planned("prod")  # 51
    # 10 held today by these functions, 140 unreserved: 150 available, 51 leaves 99.
    [line] = concurrency_problems(plan, Concurrency(160, 140, 10), REGION)
    assert line == (
        "Lambda reserved concurrency in eu-west-1: the stack reserves 51 (50 for "
        "mlops-demo-prod-consumer (stages.ingestion.consumer.reserved_concurrency), 1 for "
        "mlops-demo-prod-retrain), but of the account's quota of 160 concurrent executions 140 "
        "are unreserved (10 of the reserved held by these functions now) and Lambda keeps 100 "
        "unreserved, so at most 50 can be reserved: lower "
        "stages.ingestion.consumer.reserved_concurrency, or ask for a higher 'Concurrent "
        "executions' quota (Service Quotas)")
    assert concurrency_problems(plan, Concurrency(161, 141, 10), REGION) == []


def test_unreadable_account_settings_are_a_note_not_a_refusal():
    built, values, _ = planned("dev")
    client = boto3.client("lambda", region_name=REGION, aws_access_key_id="x",
                          aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.add_client_error("get_account_settings", "AccessDeniedException")
    stubber.activate()
    problems, notes = lambda_problems(client, built.stages, values, REGION)
    assert problems == []
    assert notes == ["Lambda account settings not readable (AccessDeniedException): reserved "
                     "concurrency (11) not checked against the quota"]


# --- service-linked roles ------------------------------------------------------------------------

EC2_CONSUMER = "examples/ingestion-ec2-consumer.yaml"
ROLE = "AWSServiceRoleForAutoScaling"


def iam_account(get_role_error: str | None):
    client = boto3.client("iam", region_name=REGION, aws_access_key_id="x",
                          aws_secret_access_key="x")
    stubber = Stubber(client)
    if get_role_error:
        stubber.add_client_error("get_role", get_role_error, expected_params={"RoleName": ROLE})
    else:
        stubber.add_response("get_role", {"Role": {
            "Path": "/aws-service-role/autoscaling.amazonaws.com/", "RoleName": ROLE,
            "RoleId": "AROAEXAMPLEEXAMPLE123", "CreateDate": "2024-01-01T00:00:00Z",
            "Arn": f"arn:aws:iam::123456789012:role/aws-service-role/"
                   f"autoscaling.amazonaws.com/{ROLE}"}}, {"RoleName": ROLE})
    stubber.activate()
    return client, stubber


def test_the_ec2_consumer_names_auto_scaling_s_service_linked_role_and_the_default_none():
    consumer = pipeline.build(config.load(EC2_CONSUMER, "dev"))
    assert [(r.role_name, r.service) for r in service_linked_roles(consumer.stages)] == [
        (ROLE, "autoscaling.amazonaws.com")]
    assert service_linked_roles(pipeline.build(config.load(env="dev")).stages) == []


def test_a_missing_service_linked_role_is_one_line_saying_how_to_create_it():
    client, stubber = iam_account("NoSuchEntity")
    problems, notes = service_linked_role_problems(
        client, pipeline.build(config.load(EC2_CONSUMER, "dev")).stages)
    stubber.assert_no_pending_responses()
    [line] = problems
    assert line.endswith("`aws iam create-service-linked-role --aws-service-name "
                         "autoscaling.amazonaws.com`")
    assert ROLE in line and "\n" not in line and notes == []


@pytest.mark.parametrize("error, problems, notes", [(None, 0, 0), ("AccessDenied", 0, 1)])
def test_an_existing_role_passes_and_an_unreadable_one_is_a_note(error, problems, notes):
    client, _ = iam_account(error)
    found, noted = service_linked_role_problems(
        client, pipeline.build(config.load(EC2_CONSUMER, "dev")).stages)
    assert (len(found), len(noted)) == (problems, notes)
