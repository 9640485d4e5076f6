"""The analytics stage: a private, encrypted Redshift warehouse (Serverless or a cluster), loaded
from the processed data by an EventBridge rule on the ETL job's success, with an optional
QuickSight data source."""

import json

import cfnlint.api
import pytest

from mlops_cfn.config.analytics import AnalyticsConfig
from mlops_cfn.errors import UserError
from mlops_cfn.outputs import (ETL_JOB_NAME, GLUE_DATABASE_NAME, PRIVATE_SUBNET_IDS,
                               PROCESSED_DATA_PREFIX, REDSHIFT_ENDPOINT_ADDRESS,
                               REDSHIFT_ENDPOINT_PORT, REDSHIFT_ROLE_ARN, REDSHIFT_SECRET_ARN,
                               REDSHIFT_WORKGROUP_NAME, VPC_CIDR, VPC_ID)
from mlops_cfn.stages import analytics, analytics_sql
from tests.helpers import config_with, only_resource, resources_of_type, template_dict, statements

KEY = {"Ref": "DataKeyArn"}
ROLE_ARN = {"Fn::GetAtt": ["RedshiftRole", "Arn"]}
WORKGROUP_ARN = {"Fn::GetAtt": ["Workgroup", "Workgroup.WorkgroupArn"]}
CLUSTER_ARN = {"Fn::Sub": "arn:${AWS::Partition}:redshift:${AWS::Region}:${AWS::AccountId}"
                          ":cluster:${Warehouse}"}
OWNER = "arn:aws:quicksight:us-east-1:123456789012:group/default/analysts"
LOG_TYPES = ["connectionlog", "userlog", "useractivitylog"]


def loaded(env: str = "dev", etl: bool = True, **changes):
    return config_with({"stages": {"etl": {"enabled": etl},
                                   "analytics": {"enabled": True, **changes}}}, env=env)


def build(env: str = "dev", etl: bool = True, **changes):
    return analytics.build(loaded(env, etl, **changes).config)


def template(**changes) -> dict:
    return template_dict(build(**changes))


def provisioned(**changes) -> dict:
    return template(deployment="provisioned", **changes)



def actions(found: list[dict]) -> set[str]:
    return {a for s in found for a in s["Action"]}


def lint(stage) -> list:
    return cfnlint.api.lint(stage.template.to_yaml(),
                            config=cfnlint.api.ManualArgs(regions=["us-east-1"]))


# --- Redshift Serverless (default) -------------------------------------------------------------

def test_serverless_is_the_default_deployment():
    t = template()
    assert only_resource(t, "AWS::RedshiftServerless::Namespace")
    assert only_resource(t, "AWS::RedshiftServerless::Workgroup")
    assert not resources_of_type(t, "AWS::Redshift::Cluster")


def test_namespace_is_encrypted_with_the_data_key_and_retained():
    namespace = only_resource(template(), "AWS::RedshiftServerless::Namespace")
    assert namespace["Properties"]["KmsKeyId"] == KEY
    assert namespace["DeletionPolicy"] == "Retain"
    assert namespace["UpdateReplacePolicy"] == "Retain"


def test_namespace_takes_the_redshift_role_as_its_default():
    props = only_resource(template(), "AWS::RedshiftServerless::Namespace")["Properties"]
    assert props["DefaultIamRoleArn"] == ROLE_ARN
    assert props["IamRoles"] == [ROLE_ARN]


SERVERLESS_SECRET = ("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:"
                     "secret:redshift!mlops-demo-${EnvironmentName}-warehouse-owner")
SERVERLESS_SECRET_ARN = {"Fn::Sub": SERVERLESS_SECRET}
SERVERLESS_SECRET_GRANT = {"Fn::Sub": SERVERLESS_SECRET + "-??????"}
CLUSTER_SECRET = {"Fn::GetAtt": ["Warehouse", "MasterPasswordSecretArn"]}


def test_namespace_admin_password_is_managed_by_redshift_with_the_data_key():
    """Finding 2 of issue 12: no dynamic reference for CloudFormation to resolve with the
    deploying principal (the delivery pipeline's and the launch role's), and rotation on."""
    t = template(admin_username="owner")
    namespace = only_resource(t, "AWS::RedshiftServerless::Namespace")["Properties"]
    assert namespace["AdminUsername"] == "owner"
    assert namespace["ManageAdminPassword"] is True
    assert namespace["AdminPasswordSecretKmsKeyId"] == KEY
    assert "AdminUserPassword" not in namespace
    assert not resources_of_type(t, "AWS::SecretsManager::Secret")
    assert "{{resolve:" not in json.dumps(t)


def test_the_managed_namespace_secret_is_published_by_its_name():
    # CloudFormation returns no ARN of the secret a namespace manages; the output is the ARN
    # without Secrets Manager's random suffix (a partial ARN Secrets Manager resolves).
    t = template(admin_username="owner")
    assert t["Outputs"][REDSHIFT_SECRET_ARN.name]["Value"] == SERVERLESS_SECRET_ARN
    assert only_resource(t, "AWS::RedshiftServerless::Namespace")["Properties"][
        "NamespaceName"] == {"Fn::Sub": "mlops-demo-${EnvironmentName}-warehouse"}


@pytest.mark.parametrize("name, refused", [("owner", False), ("admin1", True),
                                           ("mlops_admin", False)])
def test_a_six_character_serverless_admin_name_is_refused(name, refused):
    # Secrets Manager would take the name's last six characters for an ARN's random suffix.
    if refused:
        with pytest.raises(UserError, match="admin_username.*6 characters"):
            template(admin_username=name)
    else:
        template(admin_username=name)
    template(deployment="provisioned", admin_username=name)


def test_audit_logs_go_to_our_encrypted_log_groups_under_redshifts_names():
    t = template()
    namespace = only_resource(t, "AWS::RedshiftServerless::Namespace")
    assert namespace["Properties"]["LogExports"] == LOG_TYPES
    name = namespace["Properties"]["NamespaceName"]["Fn::Sub"]
    groups = resources_of_type(t, "AWS::Logs::LogGroup")
    assert sorted(g["Properties"]["LogGroupName"]["Fn::Sub"] for g in groups.values()) == sorted(
        f"/aws/redshift/{name}/{log_type}" for log_type in LOG_TYPES)
    for group in groups.values():
        assert group["Properties"]["KmsKeyId"] == KEY
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert group["DeletionPolicy"] == "Retain"
    # Made before Redshift would make them itself, unencrypted and never expiring.
    assert sorted(namespace["DependsOn"]) == sorted(groups)


def test_workgroup_is_private_with_enhanced_vpc_routing_and_ssl():
    props = only_resource(template(), "AWS::RedshiftServerless::Workgroup")["Properties"]
    assert props["PubliclyAccessible"] is False
    assert props["EnhancedVpcRouting"] is True
    assert props["SubnetIds"] == {"Ref": PRIVATE_SUBNET_IDS.name}
    assert props["SecurityGroupIds"] == [{"Fn::GetAtt": ["WarehouseSecurityGroup", "GroupId"]}]
    assert props["NamespaceName"] == {"Ref": "Namespace"}
    assert {"ParameterKey": "require_ssl", "ParameterValue": "true"} in props["ConfigParameters"]


def test_base_capacity_is_a_setting():
    t = template(serverless={"base_capacity": 64})
    props = only_resource(t, "AWS::RedshiftServerless::Workgroup")["Properties"]
    assert props["BaseCapacity"] == {"Ref": "RedshiftBaseCapacity"}
    assert "64" in t["Parameters"]["RedshiftBaseCapacity"]["AllowedValues"]


def test_environments_differing_only_in_values_render_the_same_template():
    dev = loaded("dev")
    data = {"stages": {"etl": {"enabled": True}, "analytics": {
        "enabled": True, "serverless": {"base_capacity": 8}}},
        "environments": {"dev": {}, "prod": {"stages": {"analytics": {
            "serverless": {"base_capacity": 128}}}}}}
    both = config_with(data, env="prod")
    assert both.config.stages.analytics.serverless.base_capacity == 128
    assert (analytics.build(both.config).template.to_yaml()
            == analytics.build(dev.config).template.to_yaml())


# --- the three-zone rule ------------------------------------------------------------------------

def test_serverless_refuses_a_created_vpc_of_two_zones():
    with pytest.raises(UserError) as caught:
        config_with({"network": {"availability_zones": 2},
                     "stages": {"analytics": {"enabled": True}}})
    [line] = str(caught.value).splitlines()
    assert "stages.analytics.deployment 'serverless'" in line
    assert "network.availability_zones 3 (got 2)" in line


def test_serverless_refuses_an_existing_vpc_with_two_subnets():
    network = {"mode": "existing", "vpc_id": "vpc-0123abcd", "cidr": "10.9.0.0/16",
               "subnet_ids": ["subnet-0123abcd", "subnet-4567ef01"], "interface_endpoints": []}
    with pytest.raises(UserError) as caught:
        config_with({"network": network, "stages": {"analytics": {"enabled": True}}})
    assert "network.subnet_ids in 3 availability zones (got 2)" in str(caught.value)
    network["subnet_ids"].append("subnet-89abcdef")
    network["subnet_zones"] = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]  # for the etl stage
    assert config_with({"network": network, "stages": {"analytics": {"enabled": True}}})


def test_a_provisioned_cluster_or_a_disabled_stage_is_fine_in_two_zones():
    assert config_with({"network": {"availability_zones": 2}, "stages": {
        "analytics": {"enabled": True, "deployment": "provisioned"}}})
    assert config_with({"network": {"availability_zones": 2},
                        "stages": {"analytics": {"enabled": False}}})


# --- provisioned cluster ------------------------------------------------------------------------

def test_provisioned_cluster_replaces_the_serverless_resources():
    t = provisioned()
    assert not resources_of_type(t, "AWS::RedshiftServerless::Namespace")
    assert not resources_of_type(t, "AWS::RedshiftServerless::Workgroup")
    assert only_resource(t, "AWS::Redshift::Cluster")


def test_cluster_is_encrypted_private_and_snapshotted_on_delete():
    cluster = only_resource(provisioned(), "AWS::Redshift::Cluster")
    props = cluster["Properties"]
    assert props["Encrypted"] is True
    assert props["KmsKeyId"] == KEY
    assert props["PubliclyAccessible"] is False
    assert props["EnhancedVpcRouting"] is True
    assert props["AutomatedSnapshotRetentionPeriod"] == {"Ref": "RedshiftSnapshotRetentionDays"}
    assert cluster["DeletionPolicy"] == "Snapshot"
    assert cluster["UpdateReplacePolicy"] == "Snapshot"


def test_cluster_password_is_managed_by_redshift_and_encrypted_with_the_data_key():
    t = provisioned()
    props = only_resource(t, "AWS::Redshift::Cluster")["Properties"]
    assert props["ManageMasterPassword"] is True
    assert props["MasterPasswordSecretKmsKeyId"] == KEY
    assert "MasterUserPassword" not in props
    assert not resources_of_type(t, "AWS::SecretsManager::Secret")
    assert t["Outputs"][REDSHIFT_SECRET_ARN.name]["Value"] == {
        "Fn::GetAtt": ["Warehouse", "MasterPasswordSecretArn"]}


def test_cluster_sits_in_the_private_subnets_and_requires_ssl():
    t = provisioned()
    props = only_resource(t, "AWS::Redshift::Cluster")["Properties"]
    subnets = only_resource(t, "AWS::Redshift::ClusterSubnetGroup")["Properties"]
    assert subnets["SubnetIds"] == {"Ref": PRIVATE_SUBNET_IDS.name}
    assert props["ClusterSubnetGroupName"] == {"Ref": "WarehouseSubnetGroup"}
    parameters = only_resource(t, "AWS::Redshift::ClusterParameterGroup")["Properties"]
    assert {"ParameterName": "require_ssl", "ParameterValue": "true"} in parameters["Parameters"]
    assert props["ClusterParameterGroupName"] == {"Ref": "WarehouseParameterGroup"}
    assert props["IamRoles"] == [ROLE_ARN]


def test_cluster_logs_to_cloudwatch_not_to_a_bucket():
    t = provisioned()
    cluster = only_resource(t, "AWS::Redshift::Cluster")
    assert cluster["Properties"]["LoggingProperties"] == {
        "LogDestinationType": "cloudwatch", "LogExports": LOG_TYPES}
    name = cluster["Properties"]["ClusterIdentifier"]["Fn::Sub"]
    groups = resources_of_type(t, "AWS::Logs::LogGroup")
    assert sorted(g["Properties"]["LogGroupName"]["Fn::Sub"] for g in groups.values()) == sorted(
        f"/aws/redshift/cluster/{name}/{log_type}" for log_type in LOG_TYPES)
    assert sorted(cluster["DependsOn"]) == sorted(groups)
    [skip] = cluster["Metadata"]["checkov"]["skip"]
    assert skip["id"] == "CKV_AWS_71" and "cloudwatch" in skip["comment"]


def test_node_type_and_count_are_settings_and_one_node_is_a_single_node_cluster():
    t = provisioned(provisioned={"node_type": "ra3.4xlarge", "node_count": 4})
    props = only_resource(t, "AWS::Redshift::Cluster")["Properties"]
    assert props["NodeType"] == {"Ref": "RedshiftNodeType"}
    assert props["ClusterType"] == {"Fn::If": [analytics.MULTI_NODE, "multi-node", "single-node"]}
    assert props["NumberOfNodes"] == {
        "Fn::If": [analytics.MULTI_NODE, {"Ref": "RedshiftNodeCount"}, {"Ref": "AWS::NoValue"}]}
    assert t["Conditions"][analytics.MULTI_NODE] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "RedshiftNodeCount"}, "1"]}]}
    assert "ra3.4xlarge" not in json.dumps(t["Resources"])


def test_large_node_types_need_two_nodes():
    with pytest.raises(UserError, match="ra3.4xlarge needs node_count of 2"):
        loaded(deployment="provisioned",
               provisioned={"node_type": "ra3.4xlarge", "node_count": 1})


# --- network ------------------------------------------------------------------------------------

def ingress(t: dict) -> list[dict]:
    group = resources_of_type(t, "AWS::EC2::SecurityGroup")["WarehouseSecurityGroup"]
    return group["Properties"]["SecurityGroupIngress"]


@pytest.mark.parametrize("deployment", ["serverless", "provisioned"])
def test_only_the_redshift_port_is_open_and_only_to_the_vpc(deployment):
    t = template(deployment=deployment)
    [rule] = ingress(t)
    assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (5439, 5439, "tcp")
    assert rule["CidrIp"] == {"Ref": VPC_CIDR.name}
    group = resources_of_type(t, "AWS::EC2::SecurityGroup")["WarehouseSecurityGroup"]
    assert group["Properties"]["VpcId"] == {"Ref": VPC_ID.name}


def test_configured_ranges_replace_the_vpc_range_as_a_setting():
    t = template(allowed_cidrs=["10.1.0.0/16", "192.168.4.0/24"])
    rules = ingress(t)
    assert [r["CidrIp"] for r in rules] == [
        {"Fn::Select": [i, {"Ref": "RedshiftAllowedCidrs"}]} for i in range(2)]
    assert t["Parameters"]["RedshiftAllowedCidrs"]["Type"] == "CommaDelimitedList"
    assert VPC_CIDR.name not in t["Parameters"]
    assert "10.1.0.0" not in json.dumps(t["Resources"])


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "10.0.0.0/4", "10.0.0.1/16", "fe80::/10", "x"])
def test_ranges_wider_than_a_slash_8_or_malformed_are_refused(cidr):
    with pytest.raises(UserError, match="allowed_cidrs"):
        loaded(allowed_cidrs=[cidr])


def test_spectrum_asks_the_network_for_a_glue_endpoint():
    assert AnalyticsConfig().vpc_endpoints() == ("glue",)
    assert AnalyticsConfig(spectrum={"enabled": False}).vpc_endpoints() == ()


# --- the role Redshift assumes ------------------------------------------------------------------

def redshift_role(t: dict) -> dict:
    return resources_of_type(t, "AWS::IAM::Role")["RedshiftRole"]


@pytest.mark.parametrize("deployment, principals", [
    ("serverless", ["redshift.amazonaws.com", "redshift-serverless.amazonaws.com"]),
    ("provisioned", ["redshift.amazonaws.com"]),
])
def test_redshift_role_is_trusted_by_redshift(deployment, principals):
    role = redshift_role(template(deployment=deployment))
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": principals}


def test_redshift_role_reads_only_the_etl_prefix_of_the_processed_bucket():
    found = statements(redshift_role(template()))
    s3_actions = {a for a in actions(found) if a.startswith("s3:")}
    assert s3_actions == {"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"}
    [objects] = [s for s in found if "s3:GetObject" in s["Action"]]
    assert objects["Resource"] == [{"Fn::Sub": "${ProcessedBucketArn}/${ProcessedDataPrefix}*"}]
    [listing] = [s for s in found if "s3:ListBucket" in s["Action"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {
        "Fn::Sub": "${ProcessedDataPrefix}*"}}}


def test_redshift_role_decrypts_with_the_data_key_only_through_s3():
    [decrypt] = [s for s in statements(redshift_role(template())) if "kms:Decrypt" in s["Action"]]
    assert decrypt["Action"] == ["kms:Decrypt"]
    assert decrypt["Resource"] == [KEY]
    assert decrypt["Condition"]["StringEquals"] == {
        "kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}


def test_redshift_role_reads_only_the_etl_catalog_database():
    [glue] = [s for s in statements(redshift_role(template()))
              if any(a.startswith("glue:") for a in s["Action"])]
    assert all(a.startswith("glue:Get") or a == "glue:BatchGetPartition" for a in glue["Action"])
    resources = [r["Fn::Sub"] for r in glue["Resource"]]
    assert resources[0].endswith(":catalog")
    assert resources[1].endswith(":database/${GlueDatabaseName}")
    assert resources[2].endswith(":table/${GlueDatabaseName}/*")


def test_without_spectrum_the_role_has_no_catalog_access():
    found = statements(redshift_role(template(spectrum={"enabled": False})))
    assert not any(a.startswith("glue:") for a in actions(found))


# --- loading on the ETL job's success -----------------------------------------------------------

def rule(t: dict) -> dict:
    return only_resource(t, "AWS::Events::Rule")["Properties"]


def target(t: dict, target_id: str) -> dict:
    [found] = [x for x in rule(t)["Targets"] if x["Id"] == target_id]
    return found


def test_the_rule_fires_when_an_etl_job_run_wrote_new_records():
    # Not Glue's SUCCEEDED, which every hourly run sends, new records or not (issue 12,
    # finding 8); tests/test_etl_job.py matches the pattern against sample events.
    t = template()
    assert rule(t)["EventPattern"] == {
        "source": ["mlops-cfn.etl"],
        "detail-type": ["Processed Data Written"],
        "detail": {"jobName": [{"Ref": ETL_JOB_NAME.name}],
                   "recordsWritten": [{"numeric": [">", 0]}]},
    }
    assert rule(t)["State"] == "ENABLED"


@pytest.mark.parametrize("deployment, arn, secret", [
    ("serverless", WORKGROUP_ARN, SERVERLESS_SECRET_ARN),
    ("provisioned", CLUSTER_ARN, CLUSTER_SECRET),
])
def test_the_load_runs_through_the_data_api_on_this_warehouse(deployment, arn, secret):
    t = template(deployment=deployment, database="sales", admin_username="owner")
    load = target(t, "load-table")
    assert load["Arn"] == arn
    assert load["RoleArn"] == {"Fn::GetAtt": ["LoadRole", "Arn"]}
    parameters = load["RedshiftDataParameters"]
    assert parameters["Database"] == "sales"
    assert parameters["SecretManagerArn"] == secret
    assert parameters["WithEvent"] is True
    assert parameters["StatementName"] == rule(t)["Name"]


def test_the_load_target_runs_the_generated_statements_as_one_batch():
    t = template()
    config = loaded().config
    expected = analytics_sql.load_statements(
        config.stages.analytics.table, config.record_schema.columns,
        "s3://${ProcessedBucketName}/${ProcessedDataPrefix}", "${RedshiftRole.Arn}", "parquet")
    sqls = target(t, "load-table")["RedshiftDataParameters"]["Sqls"]
    assert [s["Fn::Sub"] if isinstance(s, dict) else s for s in sqls] == expected
    # Every placeholder is something the template defines.
    for name in analytics_sql.placeholders(expected):
        assert name.split(".")[0] in t["Parameters"] or name.split(".")[0] in t["Resources"]


@pytest.mark.parametrize("output_format, options", [
    ("parquet", "FORMAT AS PARQUET"), ("csv", "FORMAT AS CSV"),
])
def test_the_copy_follows_the_etl_output_format(output_format, options):
    t = template_dict(analytics.build(config_with({"stages": {
        "etl": {"enabled": True, "output_format": output_format},
        "analytics": {"enabled": True}}}).config))
    copy = target(t, "load-table")["RedshiftDataParameters"]["Sqls"][-1]["Fn::Sub"]
    assert options in copy


def test_the_external_schema_is_created_apart_from_the_load_transaction():
    t = template(spectrum={"schema_name": "processed"})
    schema = target(t, "external-schema")["RedshiftDataParameters"]
    assert "Sqls" not in schema
    assert schema["Sql"] == {"Fn::Sub": analytics_sql.external_schema(
        "processed", "${GlueDatabaseName}", "${RedshiftRole.Arn}")}
    assert GLUE_DATABASE_NAME.name in t["Parameters"]


def test_retries_come_from_settings_and_failures_go_to_an_encrypted_queue():
    t = template()
    targets = rule(t)["Targets"]
    assert targets
    for x in targets:
        assert x["RetryPolicy"] == {
            "MaximumRetryAttempts": {"Ref": "RedshiftLoadRetryAttempts"},
            "MaximumEventAgeInSeconds": {"Ref": "RedshiftLoadMaxEventAgeSeconds"}}
        assert x["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["LoadDeadLetterQueue", "Arn"]}}
    queue = only_resource(t, "AWS::SQS::Queue")["Properties"]
    assert queue["KmsMasterKeyId"] == KEY


def test_only_the_load_rule_may_send_to_its_dead_letter_queue():
    policy = only_resource(template(), "AWS::SQS::QueuePolicy")["Properties"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == ["sqs:SendMessage"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {
        "Fn::GetAtt": ["LoadRule", "Arn"]}}}


@pytest.mark.parametrize("deployment, arn, secret", [
    ("serverless", WORKGROUP_ARN, SERVERLESS_SECRET_GRANT),
    ("provisioned", CLUSTER_ARN, CLUSTER_SECRET),
])
def test_eventbridge_may_run_statements_on_this_warehouse_with_its_secret_only(
        deployment, arn, secret):
    role = resources_of_type(template(deployment=deployment, admin_username="owner"),
                             "AWS::IAM::Role")["LoadRole"]
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    found = statements(role)
    assert actions(found) == {"redshift-data:ExecuteStatement",
                              "redshift-data:BatchExecuteStatement",
                              "secretsmanager:GetSecretValue", "kms:Decrypt"}
    by_action = {a: s for s in found for a in s["Action"]}
    assert by_action["redshift-data:ExecuteStatement"]["Resource"] == [arn]
    assert by_action["secretsmanager:GetSecretValue"]["Resource"] == [secret]
    assert by_action["kms:Decrypt"]["Condition"]["StringLike"] == {
        "kms:EncryptionContext:SecretARN": secret}
    assert by_action["kms:Decrypt"]["Condition"]["StringEquals"] == {
        "kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}


def test_load_off_keeps_only_the_external_schema_target():
    t = template(load={"enabled": False})
    assert [x["Id"] for x in rule(t)["Targets"]] == ["external-schema"]


def test_load_and_spectrum_off_leave_no_rule():
    t = template(load={"enabled": False}, spectrum={"enabled": False})
    assert not resources_of_type(t, "AWS::Events::Rule")
    assert not resources_of_type(t, "AWS::SQS::Queue")


def test_without_the_etl_stage_the_warehouse_renders_without_loading():
    stage = build(etl=False)
    t = template_dict(stage)
    assert not resources_of_type(t, "AWS::Events::Rule")
    assert set(resources_of_type(t, "AWS::IAM::Role")) == {"RedshiftRole"}
    wires = {w.name for w in stage.inputs}
    assert not wires & {ETL_JOB_NAME.name, GLUE_DATABASE_NAME.name, PROCESSED_DATA_PREFIX.name}
    # The role may still COPY from the processed bucket, by hand.
    [objects] = [s for s in statements(redshift_role(t)) if "s3:GetObject" in s["Action"]]
    assert objects["Resource"] == [{"Fn::Sub": "${ProcessedBucketArn}/*"}]
    assert lint(stage) == []


# --- QuickSight ---------------------------------------------------------------------------------

def quicksight_types(t: dict) -> list[str]:
    return [r["Type"] for r in t["Resources"].values() if r["Type"].startswith("AWS::QuickSight")]


def test_quicksight_is_off_by_default():
    t = template()
    assert quicksight_types(t) == []
    assert "QuickSightOwnerArn" not in t["Parameters"]


def test_quicksight_needs_an_owner():
    with pytest.raises(UserError, match="owner_arn"):
        loaded(quicksight={"enabled": True})


@pytest.mark.parametrize("deployment", ["serverless", "provisioned"])
def test_quicksight_reaches_the_warehouse_through_the_private_subnets(deployment):
    t = template(deployment=deployment, quicksight={"enabled": True, "owner_arn": OWNER})
    connection = only_resource(t, "AWS::QuickSight::VPCConnection")["Properties"]
    assert connection["SubnetIds"] == {"Ref": PRIVATE_SUBNET_IDS.name}
    assert connection["SecurityGroupIds"] == [
        {"Fn::GetAtt": ["QuickSightSecurityGroup", "GroupId"]}]
    source = only_resource(t, "AWS::QuickSight::DataSource")["Properties"]
    assert source["Type"] == "REDSHIFT"
    assert source["VpcConnectionProperties"] == {
        "VpcConnectionArn": {"Fn::GetAtt": ["QuickSightVpcConnection", "Arn"]}}
    assert source["SslProperties"] == {"DisableSsl": False}
    parameters = source["DataSourceParameters"]["RedshiftParameters"]
    assert parameters["Host"] == t["Outputs"][REDSHIFT_ENDPOINT_ADDRESS.name]["Value"]
    assert parameters["Port"] == 5439
    assert ("ClusterId" in parameters) == (deployment == "provisioned")
    assert source["Credentials"] == {"SecretArn": t["Outputs"][REDSHIFT_SECRET_ARN.name]["Value"]}
    [permission] = source["Permissions"]
    assert permission["Principal"] == {"Ref": "QuickSightOwnerArn"}
    assert OWNER not in json.dumps(t)


def test_quicksight_may_reach_the_port_even_with_configured_ranges():
    t = template(allowed_cidrs=["192.168.0.0/24"],
                 quicksight={"enabled": True, "owner_arn": OWNER})
    rule_ = only_resource(t, "AWS::EC2::SecurityGroupIngress")["Properties"]
    assert rule_["GroupId"] == {"Fn::GetAtt": ["WarehouseSecurityGroup", "GroupId"]}
    assert rule_["SourceSecurityGroupId"] == {
        "Fn::GetAtt": ["QuickSightSecurityGroup", "GroupId"]}
    assert (rule_["FromPort"], rule_["ToPort"]) == (5439, 5439)


def test_quicksight_reads_only_the_warehouse_secret():
    t = template(quicksight={"enabled": True, "owner_arn": OWNER}, admin_username="owner")
    policy = only_resource(t, "AWS::IAM::Policy")["Properties"]
    assert policy["Roles"] == ["aws-quicksight-secretsmanager-role-v0"]
    found = policy["PolicyDocument"]["Statement"]
    assert found[0]["Resource"] == [SERVERLESS_SECRET_GRANT]
    assert found[1]["Action"] == ["kms:Decrypt"]
    assert found[1]["Condition"]["StringEquals"]["kms:ViaService"] == {
        "Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}


def test_quicksight_network_interfaces_are_created_with_its_own_group_only():
    t = template(quicksight={"enabled": True, "owner_arn": OWNER})
    role = resources_of_type(t, "AWS::IAM::Role")["QuickSightVpcConnectionRole"]
    [create] = [s for s in statements(role) if "ec2:CreateNetworkInterface" in s["Action"]]
    assert {"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}"
                       ":security-group/${QuickSightSecurityGroup.GroupId}"} in create["Resource"]
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "quicksight.amazonaws.com"}


# --- outputs and lint ---------------------------------------------------------------------------

@pytest.mark.parametrize("deployment, name, address", [
    ("serverless", {"Ref": "Workgroup"},
     {"Fn::GetAtt": ["Workgroup", "Workgroup.Endpoint.Address"]}),
    ("provisioned", {"Ref": "Warehouse"}, {"Fn::GetAtt": ["Warehouse", "Endpoint.Address"]}),
])
def test_outputs_offer_the_endpoint_name_role_and_secret(deployment, name, address):
    outputs = template(deployment=deployment)["Outputs"]
    assert outputs[REDSHIFT_ENDPOINT_ADDRESS.name]["Value"] == address
    assert outputs[REDSHIFT_ENDPOINT_PORT.name]["Value"] == "5439"
    assert outputs[REDSHIFT_WORKGROUP_NAME.name]["Value"] == name
    assert outputs[REDSHIFT_ROLE_ARN.name]["Value"] == ROLE_ARN
    assert REDSHIFT_SECRET_ARN.name in outputs


VARIANTS = {
    "serverless": {},
    "provisioned": {"deployment": "provisioned"},
    "single-node": {"deployment": "provisioned", "provisioned": {"node_count": 1}},
    "ranges": {"allowed_cidrs": ["10.1.0.0/16", "10.2.0.0/16"]},
    "spectrum-only": {"load": {"enabled": False}},
    "serverless-quicksight": {"quicksight": {"enabled": True, "owner_arn": OWNER}},
    "provisioned-quicksight": {"deployment": "provisioned",
                               "quicksight": {"enabled": True, "owner_arn": OWNER}},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_passes_cfn_lint(variant):
    assert lint(build(**VARIANTS[variant])) == []
