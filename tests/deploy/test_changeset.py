"""The change set preview: every nested stack's changes in one table, and the data guard.

CloudFormation's DescribeChangeSet responses are stubbed (botocore Stubber, responses checked
against the API model): what matters here is how they are read, not how they are made.
"""

import boto3
import pytest
from botocore.stub import Stubber
from rich.console import Console

from mlops_cfn.changeset import Change, changes_table, collect_changes, guarded, is_no_changes

from .changesets import (change_set_arn, describe_response, detail, nested_stack_change,
                         resource_change, stack_arn)

STACK = "mlops-demo-dev"
CHANGE_SET = "mlops-cfn-20260101-000000-abcdef12"


@pytest.fixture
def cfn(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("cloudformation", region_name="us-east-1")
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client
        stubber.assert_no_pending_responses()


def expect(cfn, response, change_set_id):
    cfn.stubber.add_response("describe_change_set", response,
                             {"ChangeSetName": change_set_id})


def test_nested_change_sets_are_read_into_one_list_parents_first(cfn):
    root, storage = change_set_arn(CHANGE_SET), change_set_arn(CHANGE_SET, "StorageStack")
    expect(cfn, describe_response(STACK, CHANGE_SET, [
        nested_stack_change("StorageStack", STACK, storage),
        resource_change("Add", "TrainingStack", "AWS::CloudFormation::Stack"),
    ]), root)
    expect(cfn, describe_response(STACK, CHANGE_SET, [
        resource_change("Modify", "RawBucket", "AWS::S3::Bucket", replacement="False",
                        details=[detail("LifecycleConfiguration", "Never")]),
    ], nested="StorageStack", parent=root, root=root), storage)

    changes = collect_changes(cfn, root, STACK)

    assert changes == [
        Change(STACK, "Modify", "StorageStack", "AWS::CloudFormation::Stack", "False",
               stack_arn(f"{STACK}-StorageStack-1A2B3C4D5E6F")),
        Change("StorageStack", "Modify", "RawBucket", "AWS::S3::Bucket", "False"),
        Change(STACK, "Add", "TrainingStack", "AWS::CloudFormation::Stack"),
    ]
    assert guarded(changes) == []


def test_a_modified_nested_stack_without_its_own_change_set_is_marked_unreported(cfn):
    # CloudFormation makes a change set for every nested stack a change reaches; when none is
    # named (an emulator), what changes inside cannot be shown or guarded, and deploy says so.
    root = change_set_arn(CHANGE_SET)
    row = nested_stack_change("AnalyticsStack", STACK, "unused")
    del row["ResourceChange"]["ChangeSetId"]
    expect(cfn, describe_response(STACK, CHANGE_SET, [
        row, resource_change("Add", "TrainingStack", "AWS::CloudFormation::Stack")]), root)

    changes = collect_changes(cfn, root, STACK)

    assert [(c.logical_id, c.unreported) for c in changes] == [
        ("AnalyticsStack", True), ("TrainingStack", False)]


def test_a_removed_nested_stack_that_names_no_stack_is_marked_unreported(cfn):
    # Its data stores cannot be listed, so the guard cannot say what would go.
    root = change_set_arn(CHANGE_SET)
    expect(cfn, describe_response(STACK, CHANGE_SET, [
        resource_change("Remove", "IngestionStack", "AWS::CloudFormation::Stack")]), root)

    [change] = collect_changes(cfn, root, STACK)

    assert (change.action, change.unreported) == ("Remove", True)


def test_every_page_of_a_change_set_is_read(cfn):
    root = change_set_arn(CHANGE_SET)
    expect(cfn, describe_response(STACK, CHANGE_SET, [
        resource_change("Add", "A", "AWS::SQS::Queue")], token="page-2"), root)
    cfn.stubber.add_response("describe_change_set", describe_response(STACK, CHANGE_SET, [
        resource_change("Add", "B", "AWS::SQS::Queue")]),
        {"ChangeSetName": root, "NextToken": "page-2"})
    assert [c.logical_id for c in collect_changes(cfn, root, STACK)] == ["A", "B"]


@pytest.mark.parametrize("resource_type", [
    "AWS::S3::Bucket", "AWS::KMS::Key", "AWS::Kinesis::Stream", "AWS::Glue::Database",
    "AWS::RedshiftServerless::Namespace", "AWS::Redshift::Cluster", "AWS::SageMaker::Endpoint",
])
def test_replacing_or_removing_a_data_store_is_guarded(resource_type):
    assert Change("S", "Modify", "X", resource_type, "True").danger.startswith("replaces a ")
    assert Change("S", "Modify", "X", resource_type, "Conditional").danger.startswith(
        "may replace a ")
    assert Change("S", "Remove", "X", resource_type).danger.startswith("removes a ")
    assert Change("S", "Modify", "X", resource_type, "False").danger is None
    assert Change("S", "Add", "X", resource_type).danger is None


@pytest.mark.parametrize("resource_type", [
    "AWS::EC2::SecurityGroup", "AWS::Lambda::Function", "AWS::IAM::Role",
    "AWS::KinesisFirehose::DeliveryStream", "AWS::SageMaker::EndpointConfig",
    "AWS::CloudFormation::Stack",
])
def test_stateless_replacements_and_removals_pass(resource_type):
    assert Change("S", "Modify", "X", resource_type, "True").danger is None
    assert Change("S", "Remove", "X", resource_type).danger is None


def test_renaming_a_live_endpoint_is_a_guarded_replacement():
    rename = Change("ServingStack", "Modify", "Endpoint", "AWS::SageMaker::Endpoint", "True")
    assert rename.danger == "replaces a live endpoint (clients call it by name)"


def test_removing_a_nested_stack_lists_the_data_stores_it_holds(cfn):
    root = change_set_arn(CHANGE_SET)
    ingestion = stack_arn(f"{STACK}-IngestionStack-1A2B3C4D5E6F")
    expect(cfn, describe_response(STACK, CHANGE_SET, [
        resource_change("Remove", "IngestionStack", "AWS::CloudFormation::Stack",
                        physical_id=ingestion)]), root)
    cfn.stubber.add_response("list_stack_resources", {"StackResourceSummaries": [
        {"LogicalResourceId": "IngestStream", "PhysicalResourceId": "mlops-demo-dev-ingest",
         "ResourceType": "AWS::Kinesis::Stream", "ResourceStatus": "CREATE_COMPLETE",
         "LastUpdatedTimestamp": "2026-01-01T00:00:00Z"},
        {"LogicalResourceId": "ConsumerRole", "PhysicalResourceId": "role",
         "ResourceType": "AWS::IAM::Role", "ResourceStatus": "CREATE_COMPLETE",
         "LastUpdatedTimestamp": "2026-01-01T00:00:00Z"},
    ]}, {"StackName": ingestion})

    changes = collect_changes(cfn, root, STACK)

    assert [(c.stack, c.action, c.logical_id) for c in guarded(changes)] == [
        ("IngestionStack", "Remove", "IngestStream")]


def test_the_table_shows_every_column_and_marks_guarded_rows():
    changes = [
        Change("mlops-demo-dev", "Modify", "StorageStack", "AWS::CloudFormation::Stack", "False"),
        Change("StorageStack", "Modify", "RawBucket", "AWS::S3::Bucket", "True"),
        Change("IngestionStack", "Modify", "ConsumerSecurityGroup", "AWS::EC2::SecurityGroup",
               "True"),
        Change("IngestionStack", "Add", "Extra", "AWS::SQS::Queue"),
    ]
    console = Console(width=200, record=True, color_system="truecolor")
    console.print(changes_table(changes, "title"))
    text = console.export_text(clear=False)
    for header in ("Stack", "Action", "Logical ID", "Type", "Replacement", "Data guard"):
        assert header in text
    bucket_row = next(line for line in text.splitlines() if "RawBucket" in line)
    assert "replaces a bucket" in bucket_row and "StorageStack" in bucket_row
    sg_row = next(line for line in text.splitlines() if "ConsumerSecurityGroup" in line)
    assert "replaces" not in sg_row
    html = console.export_html(inline_styles=True)
    red = [line for line in html.splitlines() if "color: #800000" in line or
           "color: #ff0000" in line]
    assert any("RawBucket" in line for line in red), "guarded rows are red"
    assert not any("ConsumerSecurityGroup" in line for line in red)


def test_no_guard_column_without_guarded_changes():
    console = Console(width=200, record=True)
    console.print(changes_table([Change("S", "Add", "Q", "AWS::SQS::Queue")], "t"))
    assert "Data guard" not in console.export_text()


def test_no_changes_is_recognised_in_both_wordings():
    assert is_no_changes("The submitted information didn't contain changes. Submit different "
                         "information to create a change set.")
    assert is_no_changes("No updates are to be performed.")
    assert not is_no_changes("Parameters: [X] must have values")
    assert not is_no_changes(None)
