"""The ingestion stage's EC2 consumer (stages/ingestion_ec2.py): a KCL application on an Auto
Scaling group in the private subnets, IMDSv2 only, volumes encrypted with the data key, Session
Manager instead of SSH, KCL's tables created by the template, scaling on the stream's lag."""

import json
import re
import subprocess

import pytest
from troposphere import encode_to_dict

from mlops_cfn import permissions
from mlops_cfn.errors import UserError
from mlops_cfn.outputs import (EC2_CONSUMER_GROUP_NAME, EC2_CONSUMER_LEASE_TABLE_NAME,
                               PRIVATE_SUBNET_IDS, PRIVATE_SUBNET_ZONES)
from mlops_cfn.stages import ingestion, monitoring_metrics
from tests.helpers import (config_with, only_resource, resources_of_type, statements,
                           template_dict, with_action)

KEY = {"Ref": "DataKeyArn"}
ON = {"network": {"internet_gateway": True},
      "stages": {"ingestion": {"ec2_consumer": {"enabled": True}}}}


def loaded(consumer: dict | None = None, **top):
    changes = {"network": {"internet_gateway": True},
               "stages": {"ingestion": {"ec2_consumer": {"enabled": True, **(consumer or {})}}},
               **top}
    return config_with(changes)


def build(consumer: dict | None = None):
    return ingestion.build(loaded(consumer).config)


@pytest.fixture(scope="module")
def stage():
    return build()


@pytest.fixture(scope="module")
def template(stage):
    return template_dict(stage)


def resource(template, logical_id):
    return template["Resources"][logical_id]


def role_statements(template):
    return statements(resource(template, "Ec2ConsumerRole"))


def user_data(template) -> str:
    data = resource(template, "Ec2ConsumerLaunchTemplate")["Properties"]["LaunchTemplateData"]
    return data["UserData"]["Fn::Base64"]["Fn::Sub"]


def application_name(template) -> str:
    return resource(template, "Ec2ConsumerLeaseTable")["Properties"]["TableName"]["Fn::Sub"]


# --- off by default ------------------------------------------------------------------------

def test_off_by_default_nothing_of_it_is_rendered():
    default = template_dict(ingestion.build(config_with().config))
    for kind in ("AWS::AutoScaling::AutoScalingGroup", "AWS::EC2::LaunchTemplate",
                 "AWS::DynamoDB::Table", "AWS::IAM::InstanceProfile"):
        assert resources_of_type(default, kind) == {}
    assert "Ec2ConsumerGroupName" not in default["Outputs"]


def test_it_needs_a_route_to_the_internet_for_its_packages():
    with pytest.raises(UserError) as error:
        config_with({"stages": {"ingestion": {"ec2_consumer": {"enabled": True}}}})
    assert "stages.ingestion.ec2_consumer.enabled" in str(error.value)
    assert "network.internet_gateway" in str(error.value)


@pytest.mark.parametrize("consumer, named", [
    ({"min_size": 3, "max_size": 2}, "min_size 3 is above max_size 2"),
    ({"scale_in_iterator_age_ms": 60_000}, "scale_in_iterator_age_ms must be below"),
    ({"instance_types": ["c7g.large", "m7g.large"]}, "do not run the x86_64 AMI"),
    ({"instance_types": ["c6i.large", "c6i.large"]}, "must not repeat"),
    ({"instance_types": ["c6i.large"]}, "at least 2"),
])
def test_settings_it_cannot_honour_are_refused(consumer, named):
    with pytest.raises(UserError) as error:
        loaded(consumer)
    assert "stages.ingestion.ec2_consumer" in str(error.value)
    assert named in str(error.value)


def test_graviton_types_run_with_the_arm64_ami():
    ami = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    assert loaded({"instance_types": ["c7g.large", "m7g.large"], "ami_parameter": ami})


# --- instances -----------------------------------------------------------------------------

def test_instances_take_imdsv2_only_with_one_hop(template):
    data = resource(template, "Ec2ConsumerLaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"] == {"HttpEndpoint": "enabled", "HttpTokens": "required",
                                       "HttpPutResponseHopLimit": 1}


def test_the_root_volume_is_encrypted_with_the_data_key(template):
    data = resource(template, "Ec2ConsumerLaunchTemplate")["Properties"]["LaunchTemplateData"]
    [mapping] = data["BlockDeviceMappings"]
    assert mapping["Ebs"]["Encrypted"] is True
    assert mapping["Ebs"]["KmsKeyId"] == KEY
    assert mapping["Ebs"]["VolumeSize"] == {"Ref": "Ec2ConsumerVolumeGiB"}


def test_no_ssh_no_key_pair_no_public_address_no_inbound_rule(template):
    data = resource(template, "Ec2ConsumerLaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert "KeyName" not in data
    [interface] = data["NetworkInterfaces"]
    assert interface["AssociatePublicIpAddress"] is False
    group = resource(template, "Ec2ConsumerSecurityGroup")["Properties"]
    assert "SecurityGroupIngress" not in group
    assert [(r["FromPort"], r["ToPort"]) for r in group["SecurityGroupEgress"]] == [(443, 443)]


def test_the_ami_comes_from_awss_public_parameter_when_deployed(template):
    data = resource(template, "Ec2ConsumerLaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["ImageId"] == {"Fn::Sub": "{{resolve:ssm:${Ec2ConsumerAmiParameter}}}"}
    assert "{{resolve:ssm}}" in permissions.template_requirements(template)


def test_the_group_spans_the_private_subnets_with_each_configured_type(stage, template):
    group = only_resource(template, "AWS::AutoScaling::AutoScalingGroup")["Properties"]
    assert group["VPCZoneIdentifier"] == {"Ref": PRIVATE_SUBNET_IDS.name}
    assert group["AvailabilityZones"] == {"Ref": PRIVATE_SUBNET_ZONES.name}
    overrides = group["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    assert overrides == [{"InstanceType": {"Fn::Select": [i, {"Ref": "Ec2ConsumerInstanceTypes"}]}}
                         for i in range(2)]
    assert (group["MinSize"], group["MaxSize"]) == ({"Ref": "Ec2ConsumerMinSize"},
                                                    {"Ref": "Ec2ConsumerMaxSize"})
    # the scaling policies own the desired capacity; a template value would reset it
    assert "DesiredCapacity" not in group
    assert "GroupInServiceInstances" in group["MetricsCollection"][0]["Metrics"]


def test_three_instance_types_give_three_overrides():
    group = only_resource(template_dict(build({"instance_types": ["c6i.large", "c6a.large",
                                                                   "m6i.large"]})),
                          "AWS::AutoScaling::AutoScalingGroup")["Properties"]
    assert len(group["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]) == 3


# --- KCL's tables --------------------------------------------------------------------------

def test_kcls_three_tables_are_created_encrypted_recoverable_and_retained(template):
    tables = resources_of_type(template, "AWS::DynamoDB::Table")
    name = application_name(template)
    assert {t["Properties"]["TableName"]["Fn::Sub"] for t in tables.values()} == {
        name, name + "-WorkerMetricStats", name + "-CoordinatorState"}
    for table in tables.values():
        props = table["Properties"]
        assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS",
                                             "KMSMasterKeyId": KEY}
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"


def test_the_lease_table_has_the_index_kcl_3_looks_leases_up_by(template):
    props = resource(template, "Ec2ConsumerLeaseTable")["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
    [index] = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "LeaseOwnerToLeaseKeyIndex"
    assert index["KeySchema"] == [{"AttributeName": "leaseOwner", "KeyType": "HASH"},
                                  {"AttributeName": "leaseKey", "KeyType": "RANGE"}]


def test_the_kcl_application_is_named_after_the_lease_table(template):
    text = user_data(template)
    assert f"applicationName = {application_name(template)}\n" in text
    assert "streamName = ${IngestStream}\n" in text
    assert "retrievalMode = POLLING\n" in text


# --- role ----------------------------------------------------------------------------------

def test_the_role_uses_the_tables_items_but_creates_and_changes_no_table(template):
    found = role_statements(template)
    actions = {a for s in found for a in s["Action"]}
    assert not {a for a in actions if a.startswith("dynamodb:") and "*" in a}
    assert not actions & {"dynamodb:CreateTable", "dynamodb:UpdateTable", "dynamodb:DeleteTable"}
    [items] = with_action(found, "dynamodb:UpdateItem")
    assert len(items["Resource"]) == 3
    [query] = with_action(found, "dynamodb:Query")
    assert query["Resource"] == [{"Fn::Sub": "${Ec2ConsumerLeaseTable.Arn}/index/"
                                             "LeaseOwnerToLeaseKeyIndex"}]


def test_kcls_metrics_stay_in_the_applications_namespace(template):
    [put] = with_action(role_statements(template), "cloudwatch:PutMetricData")
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": {
        "Fn::Sub": application_name(template)}}}


def test_session_manager_without_the_broad_managed_policy(template):
    props = resource(template, "Ec2ConsumerRole")["Properties"]
    assert "ManagedPolicyArns" not in props
    ssm = {a for s in role_statements(template) for a in s["Action"]
           if a.split(":")[0] in ("ssm", "ssmmessages", "ec2messages")}
    assert ssm == {"ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel",
                   "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel",
                   "ssmmessages:OpenDataChannel"}


def test_the_instances_read_exactly_their_asset(stage, template):
    [asset] = [a for a in stage.assets if a.file_name == "kcl_consumer.zip"]
    [read] = with_action(role_statements(template), "s3:GetObject")
    assert read["Resource"] == [asset.object_arn.to_dict()]
    assert "s3://${AssetsBucket}/${AssetsPrefix}" + asset.key in user_data(template)


def test_auto_scaling_may_encrypt_volumes_with_the_key_and_grant_only_for_aws_resources(stage):
    statements_by_sid = {s.Sid: encode_to_dict(s) for s in stage.key_use.statements}
    role = ("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/"
            "autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
    for statement in statements_by_sid.values():
        assert statement["Principal"] == {"AWS": {"Fn::Sub": role}}
    grants = statements_by_sid["VolumeGrantsByAutoScaling"]
    assert grants["Action"] == ["kms:CreateGrant"]
    assert grants["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": True}}
    assert "kms:GenerateDataKeyWithoutPlaintext" in statements_by_sid["VolumesByAutoScaling"]["Action"]


def test_the_deploy_role_may_launch_the_group_and_pass_its_role_to_ec2(template):
    requirements = permissions.template_requirements(template)
    actions = permissions.actions_for(requirements)
    assert {"ec2:DescribeLaunchTemplateVersions", "autoscaling:DescribeAutoScalingGroups",
            "iam:PassRole"} <= set(actions)
    assert "ec2.amazonaws.com" in permissions.passed_to_services(requirements)
    assert not [a for a in actions if "*" in a]


# --- scaling -------------------------------------------------------------------------------

@pytest.mark.parametrize("direction, comparison, threshold, change", [
    ("Out", "GreaterThanThreshold", "Ec2ConsumerScaleOutIteratorAgeMs", 1),
    ("In", "LessThanThreshold", "Ec2ConsumerScaleInIteratorAgeMs", -1),
])
def test_it_scales_one_instance_at_a_time_on_the_streams_lag(template, direction, comparison,
                                                            threshold, change):
    alarm = resource(template, f"Ec2ConsumerScale{direction}Alarm")["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Kinesis",
                                                          "GetRecords.IteratorAgeMilliseconds")
    assert alarm["Dimensions"] == [{"Name": "StreamName", "Value": {"Ref": "IngestStream"}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == (comparison, {"Ref": threshold})
    assert alarm["AlarmActions"] == [{"Ref": f"Ec2ConsumerScale{direction}Policy"}]
    policy = resource(template, f"Ec2ConsumerScale{direction}Policy")["Properties"]
    assert policy["AutoScalingGroupName"] == {"Ref": "Ec2ConsumerGroup"}
    [step] = policy["StepAdjustments"]
    assert step["ScalingAdjustment"] == change


# --- what the instances run, read as they would read it -----------------------------------

def substituted(text: str) -> str:
    """The boot script as EC2 receives it: every ${...} replaced with a plausible value."""
    return re.sub(r"\$\{[^}]+\}", "value", text)


def heredoc(script: str, marker: str) -> str:
    return script.split(f"<<'{marker}'\n", 1)[1].split(f"\n{marker}\n", 1)[0]


def test_the_boot_script_is_valid_bash(template, tmp_path):
    script = tmp_path / "user-data.sh"
    script.write_text(substituted(user_data(template)))
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_cloudwatch_agent_config_is_json_sending_both_logs_to_the_log_group(template):
    config = json.loads(heredoc(user_data(template), "AGENT"))
    collected = config["logs"]["logs_collected"]["files"]["collect_list"]
    assert {c["log_group_name"] for c in collected} == {"${Ec2ConsumerLogGroup}"}
    assert {c["file_path"].rsplit("/", 1)[1] for c in collected} == {"daemon.log", "records.log"}


def test_the_kcl_properties_are_key_value_lines(template):
    properties = heredoc(substituted(user_data(template)), "PROPERTIES").splitlines()
    keys = [line.split(" = ", 1)[0] for line in properties]
    assert all(" = " in line for line in properties)
    assert {"executableName", "streamName", "applicationName", "regionName"} <= set(keys)


def test_the_processor_reports_metrics_where_the_lambda_does(template):
    text = user_data(template)
    unit = heredoc(text, "UNIT")
    assert "METRICS_NAMESPACE=MLOps/" in unit and "STREAM_NAME=${IngestStream}" in unit


# --- wires and monitoring ------------------------------------------------------------------

def test_it_offers_the_group_and_the_lease_table(stage):
    assert {EC2_CONSUMER_GROUP_NAME, EC2_CONSUMER_LEASE_TABLE_NAME} <= set(stage.outputs)


def test_monitoring_watches_the_groups_instances_only_when_it_exists():
    with_consumer = {w.key for w in monitoring_metrics.watches(loaded().config)}
    without = {w.key for w in monitoring_metrics.watches(config_with().config)}
    assert {"Ec2ConsumerInService", "Ec2ConsumerDesired"} <= with_consumer
    assert not {"Ec2ConsumerInService", "Ec2ConsumerDesired"} & without
    [alarmed] = [w for w in monitoring_metrics.alarmed(loaded().config)
                 if w.key == "Ec2ConsumerInService"]
    assert alarmed.comparison == "LessThanThreshold"
    assert dict(alarmed.dimensions) == {"AutoScalingGroupName": EC2_CONSUMER_GROUP_NAME}
