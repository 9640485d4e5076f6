"""Each patch of moto_support.py is needed: the same small stack fails (or comes out wrong) on
bare moto and works with the patches. If one of these starts passing without its patch, moto has
caught up: drop the patch."""

import textwrap

import pytest

from . import moto_support
from .conftest import BUCKET, reset

pytestmark = pytest.mark.slow


def upload(sandbox, name: str, text: str) -> str:
    sandbox.s3.put_object(Bucket=BUCKET, Key=name, Body=textwrap.dedent(text).encode())
    return f"https://{BUCKET}.s3.us-east-1.amazonaws.com/{name}"


def outputs(sandbox, stack: str) -> dict[str, str]:
    described = sandbox.cfn.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs") or []}


def parameters(stack: dict) -> dict[str, str]:
    return {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}


def both_ways(bare_aws, patch: str, scenario):
    """`scenario` on bare moto (all patches but `patch`), then with every patch."""
    with moto_support.patched(without=[patch]):
        bare_aws.bucket()
        try:
            without = scenario(bare_aws)
        except Exception as error:  # noqa: BLE001 - a ClientError or an unparsable 500
            without = error
    reset(bare_aws.url)
    with moto_support.patched():
        bare_aws.bucket()
        with_patch = scenario(bare_aws)
    return without, with_patch


# --- nested stack outputs --------------------------------------------------------------------

PRODUCER = """\
    Resources:
      Queue:
        Type: AWS::SQS::Queue
        Properties: {QueueName: wired-queue}
    Outputs:
      QueueName: {Value: !GetAtt Queue.QueueName}
    """
CONSUMER = """\
    Parameters:
      QueueName: {Type: String}
    Resources:
      Copy:
        Type: AWS::SQS::Queue
        Properties: {QueueName: !Sub '${QueueName}-copy'}
    Outputs:
      CopyName: {Value: !GetAtt Copy.QueueName}
    """


def wired_stacks(sandbox):
    root = f"""\
        Resources:
          Producer:
            Type: AWS::CloudFormation::Stack
            Properties: {{TemplateURL: {upload(sandbox, "producer.yaml", PRODUCER)}}}
          Consumer:
            Type: AWS::CloudFormation::Stack
            Properties:
              TemplateURL: {upload(sandbox, "consumer.yaml", CONSUMER)}
              Parameters: {{QueueName: !GetAtt Producer.Outputs.QueueName}}
        Outputs:
          CopyName: {{Value: !GetAtt Consumer.Outputs.CopyName}}
        """
    sandbox.cfn.create_stack(StackName="wired", TemplateBody=textwrap.dedent(root))
    return outputs(sandbox, "wired")


def test_nested_stack_outputs_feed_sibling_parameters_and_root_outputs(bare_aws):
    without, with_patch = both_ways(bare_aws, "nested_stack_outputs", wired_stacks)
    assert isinstance(without, Exception) or "CopyName" not in without
    assert with_patch == {"CopyName": "wired-queue-copy"}


# --- Fn::Cidr --------------------------------------------------------------------------------

SUBNETS = """\
    Resources:
      Vpc:
        Type: AWS::EC2::VPC
        Properties: {CidrBlock: 10.7.0.0/16}
      Second:
        Type: AWS::EC2::Subnet
        Properties:
          VpcId: !Ref Vpc
          CidrBlock: !Select [1, !Cidr [!GetAtt Vpc.CidrBlock, 3, 8]]
    """


def second_subnet_range(sandbox):
    sandbox.cfn.create_stack(StackName="subnets", TemplateBody=textwrap.dedent(SUBNETS))
    subnet = sandbox.resources("subnets")["Second"]["PhysicalResourceId"]
    return sandbox.client("ec2").describe_subnets(SubnetIds=[subnet])["Subnets"][0]["CidrBlock"]


def test_cidr_cuts_subnet_ranges_like_cloudformation(bare_aws):
    without, with_patch = both_ways(bare_aws, "cidr", second_subnet_range)
    assert isinstance(without, Exception)
    assert with_patch == "10.7.1.0/24"


# --- AWS::NoValue in a list ----------------------------------------------------------------

CONDITIONAL_POLICY = """\
    Parameters:
      KeyArn: {Type: String, Default: ""}
    Conditions:
      HasKey: !Not [!Equals [!Ref KeyArn, ""]]
    Resources:
      Role:
        Type: AWS::IAM::Role
        Properties:
          AssumeRolePolicyDocument:
            Statement: [{Effect: Allow, Principal: {Service: glue.amazonaws.com},
                         Action: sts:AssumeRole}]
          Policies:
            - !If
              - HasKey
              - PolicyName: key
                PolicyDocument:
                  Statement: [{Effect: Allow, Action: kms:Decrypt, Resource: !Ref KeyArn}]
              - !Ref AWS::NoValue
    """


def role_without_its_conditional_policy(sandbox):
    sandbox.cfn.create_stack(StackName="conditional",
                             TemplateBody=textwrap.dedent(CONDITIONAL_POLICY))
    role = sandbox.resources("conditional")["Role"]["PhysicalResourceId"]
    return sandbox.client("iam").list_role_policies(RoleName=role)["PolicyNames"]


def test_no_value_drops_the_item_from_a_list_like_cloudformation(bare_aws):
    without, with_patch = both_ways(bare_aws, "no_value_in_lists",
                                    role_without_its_conditional_policy)
    assert isinstance(without, Exception)
    assert with_patch == []


# --- attributes moto's models lack -----------------------------------------------------------

TARGET_GROUP = """\
    Resources:
      Vpc:
        Type: AWS::EC2::VPC
        Properties: {CidrBlock: 10.8.0.0/16}
      Api:
        Type: AWS::ElasticLoadBalancingV2::TargetGroup
        Properties: {Name: api, Port: 8080, Protocol: HTTP, VpcId: !Ref Vpc}
    Outputs:
      FullName: {Value: !GetAtt Api.TargetGroupFullName}
    """


def target_group_name(sandbox):
    sandbox.cfn.create_stack(StackName="balanced", TemplateBody=textwrap.dedent(TARGET_GROUP))
    return outputs(sandbox, "balanced"), sandbox.resources("balanced")["Api"]


def test_attributes_moto_lacks_get_placeholder_values(bare_aws):
    without, (found, target_group) = both_ways(bare_aws, "attributes", target_group_name)
    assert without[0] == {}, "the output silently disappears (a Sub or Parameters answers 500)"
    assert found == {"FullName": target_group["PhysicalResourceId"]}
    assert ("AWS::ElasticLoadBalancingV2::TargetGroup", "TargetGroupFullName") in \
        moto_support.MISSING_ATTRIBUTES


# --- placeholders ----------------------------------------------------------------------------

UNMODELLED = """\
    Resources:
      Delivery:
        Type: AWS::KinesisFirehose::DeliveryStream
        Properties: {DeliveryStreamName: raw-delivery}
      FailureQueue:
        Type: AWS::SQS::Queue
        Properties: {QueueName: !Sub '${Delivery}-failures'}
    Outputs:
      DeliveryArn: {Value: !GetAtt Delivery.Arn}
      FailureQueueName: {Value: !GetAtt FailureQueue.QueueName}
    """


def unmodelled_stack(sandbox):
    sandbox.cfn.create_stack(StackName="unmodelled", TemplateBody=textwrap.dedent(UNMODELLED))
    return outputs(sandbox, "unmodelled"), sandbox.resources("unmodelled")


def test_placeholders_give_unmodelled_types_ids_and_attributes(bare_aws):
    assert moto_support.unmodelled_types(["AWS::KinesisFirehose::DeliveryStream",
                                          "AWS::SQS::Queue"]) == \
        ["AWS::KinesisFirehose::DeliveryStream"]
    without, (found, resources) = both_ways(bare_aws, "placeholders", unmodelled_stack)
    assert isinstance(without, Exception)
    assert found == {
        "DeliveryArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/raw-delivery",
        "FailureQueueName": "raw-delivery-failures",
    }
    assert resources["Delivery"]["PhysicalResourceId"] == "raw-delivery"


# --- the stack after a change set executes ---------------------------------------------------

QUEUE_WITH_PARAMETER = """\
    Parameters:
      Seconds: {Type: Number}
    Resources:
      Queue:
        Type: AWS::SQS::Queue
        Properties: {QueueName: change-set-queue, VisibilityTimeout: !Ref Seconds}
    Outputs:
      QueueName: {Value: !GetAtt Queue.QueueName}
    """


def change_sets(sandbox):
    def change_set(kind, seconds):
        created = sandbox.cfn.create_change_set(
            StackName="from-change-set", ChangeSetName=f"cs{seconds}", ChangeSetType=kind,
            TemplateBody=textwrap.dedent(QUEUE_WITH_PARAMETER),
            Parameters=[{"ParameterKey": "Seconds", "ParameterValue": str(seconds)}])
        return sandbox.cfn.describe_change_set(ChangeSetName=created["Id"])

    sandbox.cfn.execute_change_set(ChangeSetName=change_set("CREATE", 30)["ChangeSetId"])
    created_outputs = outputs(sandbox, "from-change-set")
    sandbox.cfn.execute_change_set(ChangeSetName=change_set("UPDATE", 60)["ChangeSetId"])
    repeated = change_set("UPDATE", 60)
    return created_outputs, repeated["Status"]


def test_a_change_set_leaves_the_stack_with_its_outputs_and_parameters(bare_aws):
    without, with_patch = both_ways(bare_aws, "change_set_execution", change_sets)
    assert without == ({}, "CREATE_COMPLETE"), "no outputs; the same values again are a change"
    assert with_patch == ({"QueueName": "change-set-queue"}, "FAILED"), \
        "outputs as CloudFormation reports them; the same values again are no change"


# --- nested stacks updated in place ----------------------------------------------------------

CHILD = """\
    Resources:
      Data:
        Type: AWS::S3::Bucket
        DeletionPolicy: Retain
        UpdateReplacePolicy: Retain
        Properties: {{BucketName: kept-data-bucket}}
      {queue}:
        Type: AWS::SQS::Queue
    """


def nested_update(sandbox):
    def root(queue):
        url = upload(sandbox, f"child-{queue}.yaml", CHILD.format(queue=queue))
        return textwrap.dedent(f"""\
            Resources:
              Child:
                Type: AWS::CloudFormation::Stack
                Properties: {{TemplateURL: {url}}}
            """)

    sandbox.cfn.create_stack(StackName="parent", TemplateBody=root("First"))
    before = sandbox.resources("parent")["Child"]["PhysicalResourceId"]
    sandbox.cfn.update_stack(StackName="parent", TemplateBody=root("Second"))
    after = sandbox.resources("parent")["Child"]["PhysicalResourceId"]
    return before, after, sorted(sandbox.resources(after))


def test_a_nested_stack_is_updated_in_place_not_recreated(bare_aws):
    without, (before, after, resources) = both_ways(bare_aws, "nested_stack_update",
                                                    nested_update)
    # Bare moto deletes the child and creates another, whose bucket collides with the retained one.
    assert "BucketAlreadyExists" in str(without)
    assert before == after
    assert resources == ["Data", "Second"]


# --- changed outputs reach the stacks that take them -----------------------------------------

SOURCE = """\
    Parameters:
      Suffix: {Type: String}
    Resources:
      Queue:
        Type: AWS::SQS::Queue
    Outputs:
      SourceName: {Value: !Sub 'source-${Suffix}'}
    """
SINK = """\
    Parameters:
      SourceName: {Type: String}
    Resources:
      Queue:
        Type: AWS::SQS::Queue
    """


def propagated(sandbox):
    root = textwrap.dedent(f"""\
        Parameters:
          Suffix: {{Type: String}}
        Resources:
          Source:
            Type: AWS::CloudFormation::Stack
            Properties:
              TemplateURL: {upload(sandbox, "source.yaml", SOURCE)}
              Parameters: {{Suffix: !Ref Suffix}}
          Sink:
            Type: AWS::CloudFormation::Stack
            Properties:
              TemplateURL: {upload(sandbox, "sink.yaml", SINK)}
              Parameters: {{SourceName: !GetAtt Source.Outputs.SourceName}}
        """)

    def suffix(value):
        return [{"ParameterKey": "Suffix", "ParameterValue": value}]

    sandbox.cfn.create_stack(StackName="flow", TemplateBody=root, Parameters=suffix("a"))
    sandbox.cfn.update_stack(StackName="flow", TemplateBody=root, Parameters=suffix("b"))
    sink = sandbox.resources("flow")["Sink"]["PhysicalResourceId"]
    return parameters(sandbox.cfn.describe_stacks(StackName=sink)["Stacks"][0])


def test_a_changed_output_updates_the_stacks_that_take_it(bare_aws):
    without, with_patch = both_ways(bare_aws, "output_propagation", propagated)
    assert without == {"SourceName": "source-a"}, "moto leaves the sink as it was"
    assert with_patch == {"SourceName": "source-b"}


# --- termination protection ------------------------------------------------------------------

def protected_stack(sandbox):
    sandbox.cfn.create_stack(StackName="guarded", TemplateBody=textwrap.dedent(
        QUEUE_WITH_PARAMETER), Parameters=[{"ParameterKey": "Seconds", "ParameterValue": "30"}])
    sandbox.cfn.update_termination_protection(StackName="guarded",
                                              EnableTerminationProtection=True)
    described = sandbox.cfn.describe_stacks(StackName="guarded")["Stacks"][0]
    with pytest.raises(Exception, match="TerminationProtection is enabled"):
        sandbox.cfn.delete_stack(StackName="guarded")
    return described["EnableTerminationProtection"]


def test_termination_protection_is_kept_and_enforced(bare_aws):
    without, with_patch = both_ways(bare_aws, "termination_protection", protected_stack)
    assert isinstance(without, Exception)
    assert with_patch is True


# --- key tags --------------------------------------------------------------------------------

TAGGED_KEY = """\
    Resources:
      Key:
        Type: AWS::KMS::Key
        Properties:
          KeyPolicy: {Version: '2012-10-17', Statement: []}
          Tags: [{Key: mlops-cfn:project, Value: demo}]
    Outputs:
      KeyArn: {Value: !GetAtt Key.Arn}
    """


def tagged_key(sandbox):
    sandbox.cfn.create_stack(StackName="keyed", TemplateBody=textwrap.dedent(TAGGED_KEY))
    key = sandbox.resources("keyed")["Key"]["PhysicalResourceId"]
    return sandbox.client("kms").list_resource_tags(KeyId=key)["Tags"]


def test_a_keys_tags_are_kept(bare_aws):
    without, with_patch = both_ways(bare_aws, "key_tags", tagged_key)
    assert not isinstance(without, list) or without != with_patch
    assert with_patch == [{"TagKey": "mlops-cfn:project", "TagValue": "demo"}]


# --- updates moto does not model --------------------------------------------------------------

LOGGED = """\
    Parameters:
      Days: {Type: Number}
    Resources:
      Logs:
        Type: AWS::Logs::LogGroup
        Properties: {LogGroupName: kept-log-group, RetentionInDays: !Ref Days}
    Outputs:
      LogGroupName: {Value: !Ref Logs}
    """


def log_group_update(sandbox):
    url = upload(sandbox, "logged.yaml", LOGGED)

    def root(days):
        return textwrap.dedent(f"""\
            Resources:
              Child:
                Type: AWS::CloudFormation::Stack
                Properties:
                  TemplateURL: {url}
                  Parameters: {{Days: '{days}'}}
            Outputs:
              LogGroupName: {{Value: !GetAtt Child.Outputs.LogGroupName}}
            """)

    sandbox.cfn.create_stack(StackName="logged", TemplateBody=root(30))
    sandbox.cfn.update_stack(StackName="logged", TemplateBody=root(90))
    return outputs(sandbox, "logged")


def test_a_resource_moto_cannot_update_is_kept_not_dropped(bare_aws):
    without, with_patch = both_ways(bare_aws, "unmodelled_updates", log_group_update)
    assert isinstance(without, Exception) or without == {}, \
        "the log group is dropped, and the output naming it with it"
    assert with_patch == {"LogGroupName": "kept-log-group"}


def test_patches_are_named_and_undone():
    with pytest.raises(ValueError, match="no such patch"):
        with moto_support.patched(without=["typo"]):
            pass
    from moto.cloudformation import models

    with moto_support.patched():
        assert hasattr(models.Stack, "get_cfn_attribute")
    assert not hasattr(models.Stack, "get_cfn_attribute")
