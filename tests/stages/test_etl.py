"""The etl stage: a Glue database, crawlers over the raw and processed data, and a Spark job in
the private subnets, everything encrypted with the data key and run by one workflow."""

import json
import re

import cfnlint.api
import pytest

from mlops_cfn import pipeline
from mlops_cfn.config.etl import EtlConfig
from mlops_cfn.errors import UserError
from mlops_cfn.outputs import (ETL_JOB_NAME, GLUE_DATABASE_NAME, PRIVATE_SUBNET_IDS,
                               PROCESSED_DATA_PREFIX, PROCESSED_TABLE_NAME, RAW_DATA_PREFIX,
                               VPC_ID)
from mlops_cfn.stages import etl
from mlops_cfn.stages.network import needed_interface_endpoints
from tests.helpers import config_with, only_resource, resources_of_type, template_dict

KEY = {"Ref": "DataKeyArn"}
SECURITY = {"Ref": "SecurityConfiguration"}
CONNECTIONS = [{"Ref": "NetworkConnection1"}, {"Ref": "NetworkConnection2"}]
EXISTING_NETWORK = {"mode": "existing", "vpc_id": "vpc-0123abcd", "cidr": "10.9.0.0/16",
                    "subnet_ids": ["subnet-0123abcd", "subnet-4567ef01", "subnet-89ab2345"]}
ZONES = ["eu-west-1b", "eu-west-1c", "eu-west-1a"]
EXISTING_NETWORK_WITH_ZONES = {**EXISTING_NETWORK, "subnet_zones": ZONES}
# What AWS lets nothing narrower than "*" stand for (see tests/test_security.py).
UNSCOPABLE = {"ec2:DescribeNetworkInterfaces", "ec2:DescribeRouteTables",
              "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcEndpoints",
              "cloudwatch:PutMetricData"}


# Raw objects that stay readable: what a crawler of every folder needs.
READABLE_ARCHIVE = {"archive_storage_class": "GLACIER_IR"}


def config(env: str = "dev", ingestion: bool = True, network: dict | None = None,
           storage: dict | None = None, **changes):
    data = {"stages": {"etl": {"enabled": True, **changes},
                       "ingestion": {"enabled": ingestion}, "storage": storage or {}}}
    if network is not None:
        data["network"] = network
    return config_with(data, env=env).config


def build(**changes):
    return etl.build(config(**changes))


def template(**changes) -> dict:
    return template_dict(build(**changes))


def job(t: dict) -> dict:
    return only_resource(t, "AWS::Glue::Job")["Properties"]


def crawlers(t: dict) -> dict[str, dict]:
    return {name: r["Properties"] for name, r in resources_of_type(t, "AWS::Glue::Crawler").items()}


def statements(t: dict, *titles: str) -> list[dict]:
    """Every statement of the given roles' inline policies and of the policies attached to
    them."""
    found = []
    for title, resource in t["Resources"].items():
        props = resource["Properties"]
        if title in titles:
            # A conditional policy (Fn::If [condition, policy, AWS::NoValue]) counts as present.
            policies = [p["Fn::If"][1] if "Fn::If" in p else p for p in props.get("Policies", [])]
            found += [s for p in policies for s in p["PolicyDocument"]["Statement"]]
        elif resource["Type"] == "AWS::IAM::Policy" and any(
                r == {"Ref": name} for r in props["Roles"] for name in titles):
            found += props["PolicyDocument"]["Statement"]
    return found


def with_action(found: list[dict], action: str) -> list[dict]:
    return [s for s in found if action in s["Action"]]


def subs(value) -> list[str]:
    """The Fn::Sub patterns (and plain strings) in a list of resources."""
    result = []
    for item in value:
        if isinstance(item, str):
            result.append(item)
        elif "Fn::Sub" in item:
            sub = item["Fn::Sub"]
            result.append(sub if isinstance(sub, str) else sub[0])
        elif "Ref" in item:
            result.append("${" + item["Ref"] + "}")
    return result


def lint(stage) -> list:
    return cfnlint.api.lint(stage.template.to_yaml(),
                            config=cfnlint.api.ManualArgs(regions=["us-east-1"]))


# --- encryption -------------------------------------------------------------------------------

def test_security_configuration_encrypts_s3_logs_and_bookmarks_with_the_data_key():
    props = only_resource(template(), "AWS::Glue::SecurityConfiguration")["Properties"]
    encryption = props["EncryptionConfiguration"]
    assert encryption["S3Encryptions"] == [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": KEY}]
    assert encryption["CloudWatchEncryption"] == {"CloudWatchEncryptionMode": "SSE-KMS",
                                                  "KmsKeyArn": KEY}
    assert encryption["JobBookmarksEncryption"] == {"JobBookmarksEncryptionMode": "CSE-KMS",
                                                    "KmsKeyArn": KEY}


def test_job_and_both_crawlers_use_the_security_configuration():
    t = template()
    assert job(t)["SecurityConfiguration"] == SECURITY
    found = crawlers(t)
    assert set(found) == {"RawCrawler", "ProcessedCrawler"}
    assert all(c["CrawlerSecurityConfiguration"] == SECURITY for c in found.values())


def log_group_names(t: dict) -> dict[str, str]:
    return {name: group["Properties"]["LogGroupName"]["Fn::Sub"]
            for name, group in resources_of_type(t, "AWS::Logs::LogGroup").items()}


def test_the_log_groups_glue_writes_are_created_under_glues_names():
    names = log_group_names(template(glue_version="4.0"))
    assert names == {
        "JobOutputLogGroup": "/aws-glue/jobs/${SecurityConfiguration}-role/${JobRole}/output",
        "JobErrorLogGroup": "/aws-glue/jobs/${SecurityConfiguration}-role/${JobRole}/error",
        # Glue appends the security configuration's name to the continuous log group.
        "JobContinuousLogGroup": "/mlops/mlops-demo/${EnvironmentName}/etl-${SecurityConfiguration}",
        "CrawlerLogGroup": "/aws-glue/crawlers-role/${CrawlerRole}-${SecurityConfiguration}",
    }


def test_every_log_group_is_encrypted_with_the_data_key_and_expires():
    groups = resources_of_type(template(), "AWS::Logs::LogGroup")
    assert groups
    for group in groups.values():
        assert group["Properties"]["KmsKeyId"] == KEY
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_glue_4_logs_continuously_to_the_stage_log_group():
    args = job(template(glue_version="4.0"))["DefaultArguments"]
    assert args["--enable-continuous-cloudwatch-log"] == "true"
    assert args["--continuous-log-logGroup"] == {"Fn::Sub": "/mlops/mlops-demo/${EnvironmentName}/etl"}


def test_glue_5_logs_in_real_time_to_the_output_and_error_groups_only():
    t = template(glue_version="5.0")
    assert job(t)["GlueVersion"] == "5.0"
    assert set(log_group_names(t)) == {"JobOutputLogGroup", "JobErrorLogGroup", "CrawlerLogGroup"}
    assert not [a for a in job(t)["DefaultArguments"] if a.startswith("--continuous-log")]


def test_job_and_crawlers_wait_for_their_log_groups_and_the_right_to_write_them():
    t = template(glue_version="4.0")
    assert set(t["Resources"]["EtlJob"]["DependsOn"]) == {
        "JobOutputLogGroup", "JobErrorLogGroup", "JobContinuousLogGroup", "JobLoggingPolicy"}
    for name in ("RawCrawler", "ProcessedCrawler"):
        assert set(t["Resources"][name]["DependsOn"]) == {"CrawlerLogGroup",
                                                          "CrawlerLoggingPolicy"}


def test_glue_may_attach_the_key_to_its_log_groups_and_nothing_else():
    t = template(glue_version="4.0")
    for role, groups in (("JobRole", ["JobOutputLogGroup", "JobErrorLogGroup",
                                      "JobContinuousLogGroup"]),
                         ("CrawlerRole", ["CrawlerLogGroup"])):
        [logs] = [s for s in statements(t, role) if any(a.startswith("logs:") for a in s["Action"])]
        assert "logs:AssociateKmsKey" in logs["Action"]
        expected = []
        for group in groups:
            prefix = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
            expected += [f"{prefix}${{{group}}}", f"{prefix}${{{group}}}:*"]
        assert subs(logs["Resource"]) == expected


# --- network ----------------------------------------------------------------------------------

def connection(t: dict, index: int) -> dict:
    props = t["Resources"][f"NetworkConnection{index}"]["Properties"]["ConnectionInput"]
    assert props["ConnectionType"] == "NETWORK"
    return props["PhysicalConnectionRequirements"]


def test_connections_sit_in_the_first_two_private_subnets_and_their_zones():
    t = template()
    for index in (0, 1):
        requirements = connection(t, index + 1)
        assert requirements["SubnetId"] == {"Fn::Select": [index, {"Ref": "PrivateSubnetIds"}]}
        # The network stage offers each private subnet's zone, in the subnets' order.
        assert requirements["AvailabilityZone"] == {
            "Fn::Select": [index, {"Ref": "PrivateSubnetZones"}]}
        assert requirements["SecurityGroupIdList"] == [{"Fn::GetAtt": ["GlueSecurityGroup",
                                                                       "GroupId"]}]


def test_the_connection_zones_come_from_the_network_stage():
    stage = build(network=EXISTING_NETWORK_WITH_ZONES)
    t = template_dict(stage)
    assert connection(t, 2)["AvailabilityZone"] == {
        "Fn::Select": [1, {"Ref": "PrivateSubnetZones"}]}
    assert t["Parameters"]["PrivateSubnetZones"]["Type"] == \
        "List<AWS::EC2::AvailabilityZone::Name>"
    assert "PrivateSubnetZones" in {wire.name for wire in stage.inputs}


def test_an_existing_vpc_must_name_its_subnets_zones_for_glue():
    with pytest.raises(UserError, match="stages.etl: needs network.subnet_zones with network "
                                        "mode 'existing'"):
        config(network=EXISTING_NETWORK)


def test_job_and_crawlers_run_through_the_network_connections():
    t = template()
    assert job(t)["Connections"] == {"Connections": CONNECTIONS}
    for crawler in crawlers(t).values():
        [target] = crawler["Targets"]["S3Targets"]
        assert target["ConnectionName"] == CONNECTIONS[0]


def test_security_group_admits_only_itself_and_sends_only_https_beyond_itself():
    t = template()
    group = t["Resources"]["GlueSecurityGroup"]["Properties"]
    assert group["VpcId"] == {"Ref": "VpcId"}
    assert "SecurityGroupIngress" not in group
    [egress] = group["SecurityGroupEgress"]
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"]) == ("tcp", 443, 443)
    self_id = {"Fn::GetAtt": ["GlueSecurityGroup", "GroupId"]}
    [ingress] = resources_of_type(t, "AWS::EC2::SecurityGroupIngress").values()
    assert ingress["Properties"]["SourceSecurityGroupId"] == self_id
    assert ingress["Properties"]["GroupId"] == self_id
    assert (ingress["Properties"]["FromPort"], ingress["Properties"]["ToPort"]) == (0, 65535)
    [self_egress] = resources_of_type(t, "AWS::EC2::SecurityGroupEgress").values()
    assert self_egress["Properties"]["DestinationSecurityGroupId"] == self_id


def test_the_interface_endpoints_a_vpc_glue_job_calls_are_requested():
    # `events`: the job's new-data event (PutEvents) from the private subnets.
    called = {"events", "glue", "kms", "logs", "monitoring", "sts"}
    assert set(EtlConfig().vpc_endpoints()) == called
    assert called <= set(needed_interface_endpoints(config()))


# --- IAM --------------------------------------------------------------------------------------

ROLES = ("JobRole", "CrawlerRole")


def test_only_glue_assumes_the_roles():
    t = template()
    for role in ROLES:
        [trust] = t["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "glue.amazonaws.com"}


@pytest.mark.parametrize("role", ROLES)
def test_no_wildcard_action_and_star_only_where_aws_allows_nothing_narrower(role):
    found = statements(template(), role)
    assert found
    for statement in found:
        assert statement["Effect"] == "Allow"
        assert all("*" not in action for action in statement["Action"]), statement
        if "*" in statement["Resource"]:
            assert statement["Resource"] == ["*"]
            assert set(statement["Action"]) <= UNSCOPABLE, statement


def test_metrics_are_limited_to_glues_namespace():
    [metrics] = with_action(statements(template(), "JobRole"), "cloudwatch:PutMetricData")
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "Glue"}}


def object_patterns(found: list[dict], action: str) -> list[str]:
    return sorted(p for s in with_action(found, action) for p in subs(s["Resource"]))


def test_job_reads_the_raw_prefix_and_writes_only_the_processed_prefix():
    found = statements(template(), "JobRole")
    assert "${RawBucketArn}/${RawDataPrefix}*" in object_patterns(found, "s3:GetObject")
    assert object_patterns(found, "s3:PutObject") == [
        "${ProcessedBucketArn}/events/*", "${ProcessedBucketArn}/events_$folder$"]
    assert object_patterns(found, "s3:DeleteObject") == object_patterns(found, "s3:PutObject")
    for listing in with_action(found, "s3:ListBucket"):
        assert "s3:prefix" in listing["Condition"]["StringLike"]


def test_crawlers_only_read_the_raw_and_processed_prefixes():
    found = statements(template(), "CrawlerRole")
    assert object_patterns(found, "s3:GetObject") == [
        "${ProcessedBucketArn}/events/*", "${RawBucketArn}/${RawDataPrefix}*"]
    assert not with_action(found, "s3:PutObject") and not with_action(found, "s3:DeleteObject")


def test_job_reads_its_script_and_no_other_asset():
    stage = build()
    [asset] = stage.assets
    found = statements(template_dict(stage), "JobRole")
    arn = f"arn:${{AWS::Partition}}:s3:::${{AssetsBucket}}/${{AssetsPrefix}}{asset.key}"
    assert arn in object_patterns(found, "s3:GetObject")
    assert not [p for p in object_patterns(found, "s3:GetObject")
                if "AssetsBucket" in p and asset.key not in p]


CATALOG = ["arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:catalog",
           "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:database/${GlueDatabase}",
           "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:table/${GlueDatabase}/*"]


def test_catalog_access_is_this_database_only_and_only_crawlers_change_it():
    t = template()
    for role in ROLES:
        glue = [s for s in statements(t, role)
                if any(a.startswith("glue:") and a != "glue:GetConnection" for a in s["Action"])]
        assert glue and all(subs(s["Resource"]) == CATALOG for s in glue)
    job_actions = {a for s in statements(t, "JobRole") for a in s["Action"]}
    assert not {a for a in job_actions if re.match(r"glue:(Create|Update|Delete|BatchCreate)", a)}
    crawler_actions = {a for s in statements(t, "CrawlerRole") for a in s["Action"]}
    assert {"glue:CreateTable", "glue:UpdateTable", "glue:BatchCreatePartition"} <= crawler_actions
    assert not [a for a in crawler_actions if a.startswith("glue:Delete")]


def test_connections_are_read_by_name():
    [get] = with_action(statements(template(), "JobRole"), "glue:GetConnection")
    assert subs(get["Resource"])[1:] == [
        "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:connection/${NetworkConnection1}",
        "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:connection/${NetworkConnection2}"]


ASSETS_KEY = {"Ref": "AssetsKeyArn"}


def test_key_use_is_the_data_key_only_and_the_crawlers_decrypt_their_data_through_s3():
    t = template()
    job_key = [s for s in statements(t, "JobRole") if s["Resource"] == [KEY]]
    assert [sorted(s["Action"]) for s in job_key] == [["kms:Decrypt", "kms:Encrypt",
                                                       "kms:GenerateDataKey"]]
    [through_s3] = [s for s in statements(t, "CrawlerRole")
                    if s["Resource"] == [KEY] and "Condition" in s]
    assert through_s3["Action"] == ["kms:Decrypt"]
    assert through_s3["Condition"]["StringEquals"] == {
        "kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}
    # Besides: the job decrypts its script with the assets bucket's key, through S3.
    assets_key = [s for s in statements(t, "JobRole") if s["Resource"] == [ASSETS_KEY]]
    assert [(s["Action"], s["Condition"]) for s in assets_key] == [(["kms:Decrypt"], {
        "StringEquals": {"kms:ViaService": [{"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}]}})]
    assert all(not a.startswith("kms:") for role in ROLES for s in statements(t, role)
               if s["Resource"] not in ([KEY], [ASSETS_KEY]) for a in s["Action"])


@pytest.mark.parametrize("role", ROLES)
def test_crawler_and_job_roles_may_encrypt_their_logs_under_the_security_configuration(role):
    """AWS, "Encrypting data written by AWS Glue" (setting up security configurations): the
    roles passed to crawlers and jobs use the key to encrypt CloudWatch Logs. Glue calls KMS as
    the role, so the grant cannot be limited to requests made through S3."""
    t = template()
    assert t["Resources"]["SecurityConfiguration"]["Properties"]["EncryptionConfiguration"][
        "CloudWatchEncryption"] == {"CloudWatchEncryptionMode": "SSE-KMS", "KmsKeyArn": KEY}
    direct = [s for s in statements(t, role) if s["Resource"] == [KEY] and "Condition" not in s]
    assert [sorted(s["Action"]) for s in direct] == [["kms:Decrypt", "kms:Encrypt",
                                                      "kms:GenerateDataKey"]]


def test_network_interfaces_only_in_the_stage_subnets_and_security_group():
    [create] = with_action(statements(template(), "JobRole"), "ec2:CreateNetworkInterface")
    patterns = subs(create["Resource"])
    assert ("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:"
            "security-group/${GlueSecurityGroup.GroupId}") in patterns
    subnets = [r["Fn::Sub"][1]["Subnet"] for r in create["Resource"]
               if isinstance(r["Fn::Sub"], list)]
    assert subnets == [{"Fn::Select": [0, {"Ref": "PrivateSubnetIds"}]},
                       {"Fn::Select": [1, {"Ref": "PrivateSubnetIds"}]}]
    [tags] = with_action(statements(template(), "JobRole"), "ec2:CreateTags")
    assert tags["Condition"] == {"ForAllValues:StringEquals": {
        "aws:TagKeys": ["aws-glue-service-resource"]}}


# --- the job and its script -------------------------------------------------------------------

def test_the_script_is_the_bundled_asset_at_its_bucket_location():
    stage = build()
    [asset] = stage.assets
    assert asset.file_name == "etl_job.py"
    assert asset.content == etl.JOB_SCRIPT.read_bytes()
    command = job(template_dict(stage))["Command"]
    assert command == {"Name": "glueetl", "PythonVersion": "3",
                       "ScriptLocation": {
                           "Fn::Sub": f"s3://${{AssetsBucket}}/${{AssetsPrefix}}{asset.key}"}}
    assert "AssetsBucket" in stage.settings


def test_a_script_of_ones_own_ships_instead(tmp_path):
    script = tmp_path / "my_job.py"
    script.write_text("print('mine')\n")
    stage = build(script=str(script))
    [asset] = stage.assets
    assert (asset.file_name, asset.content) == ("my_job.py", b"print('mine')\n")
    assert asset.key in job(template_dict(stage))["Command"]["ScriptLocation"]["Fn::Sub"]


def test_a_script_that_cannot_be_read_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="stages.etl.script: cannot read"):
        build(script=str(tmp_path / "missing.py"))


def test_bookmarks_metrics_and_one_run_at_a_time():
    props = job(template())
    args = props["DefaultArguments"]
    assert args["--job-bookmark-option"] == "job-bookmark-enable"
    assert args["--enable-metrics"] == "true"
    assert props["ExecutionProperty"] == {"MaxConcurrentRuns": 1}
    assert props["GlueVersion"] == "4.0"


def test_parquet_is_the_default_output_format():
    args = job(template())["DefaultArguments"]
    assert args["--output_format"] == "parquet"
    assert json.loads(args["--partition_keys"]) == ["year", "month", "day"]


def test_csv_is_chosen_by_config():
    args = job(template(output_format="csv", partition_keys=["year"]))["DefaultArguments"]
    assert args["--output_format"] == "csv"
    assert json.loads(args["--partition_keys"]) == ["year"]


def test_the_job_writes_the_record_schema():
    args = job(template())["DefaultArguments"]
    assert json.loads(args["--schema"]) == [
        {"name": "event_id", "type": "string", "max_bytes": 64},
        {"name": "event_type", "type": "string", "max_bytes": 64},
        {"name": "user_id", "type": "string", "max_bytes": 64},
        {"name": "item_id", "type": "string", "max_bytes": 64},
        {"name": "event_time", "type": "timestamp"},
        {"name": "value", "type": "double"},
        {"name": "label", "type": "integer"}]


def test_a_schema_column_named_like_a_partition_key_is_refused():
    # A partition key is a folder, not a column of the files: listing it would shift every
    # later column of the warehouse's positional COPY.
    with pytest.raises(UserError, match="record_schema.columns: 'year' is also in "
                                        "stages.etl.partition_keys"):
        config_with({"record_schema": {"columns": [
            {"name": "year", "type": "string"}, {"name": "label", "type": "integer"},
            {"name": "x", "type": "double"}]}})


def test_job_sizes_come_from_the_settings():
    props = job(template())
    assert {k: props[k] for k in ("WorkerType", "NumberOfWorkers", "Timeout", "MaxRetries")} == {
        "WorkerType": {"Ref": "EtlWorkerType"}, "NumberOfWorkers": {"Ref": "EtlWorkerCount"},
        "Timeout": {"Ref": "EtlTimeoutMinutes"}, "MaxRetries": {"Ref": "EtlMaxRetries"}}


def test_environments_differing_only_in_values_render_the_same_template():
    dev = etl.build(config("dev", workers=2, worker_type="G.1X", schedule="cron(0 * * * ? *)"))
    data = {"stages": {"etl": {"enabled": True}},
            "environments": {"dev": {}, "prod": {"stages": {"etl": {
                "workers": 10, "worker_type": "G.2X", "timeout_minutes": 30, "max_retries": 3,
                "schedule": "cron(0 6 * * ? *)"}}}}}
    prod = etl.build(config_with(data, env="prod").config)
    assert dev.template.to_yaml() == prod.template.to_yaml()


# --- data locations and wiring ------------------------------------------------------------------

def test_with_ingestion_the_raw_crawler_reads_where_firehose_writes():
    stage = build(ingestion=True)
    assert RAW_DATA_PREFIX.name in {w.name for w in stage.inputs}
    t = template_dict(stage)
    assert crawlers(t)["RawCrawler"]["Targets"]["S3Targets"][0]["Path"] == {
        "Fn::Sub": "s3://${RawBucketName}/${RawDataPrefix}"}
    assert job(t)["DefaultArguments"]["--raw_location"] == {
        "Fn::Sub": "s3://${RawBucketName}/${RawDataPrefix}"}


def test_without_ingestion_the_raw_prefix_comes_from_the_config():
    stage = build(ingestion=False, raw_prefix="landing/clicks/")
    assert RAW_DATA_PREFIX.name not in {w.name for w in stage.inputs}
    t = template_dict(stage)
    assert crawlers(t)["RawCrawler"]["Targets"]["S3Targets"][0]["Path"] == {
        "Fn::Sub": "s3://${RawBucketName}/landing/clicks/"}
    assert "${RawBucketArn}/landing/clicks/*" in object_patterns(statements(t, "JobRole"),
                                                                 "s3:GetObject")


def test_the_pipeline_builds_with_ingestion_disabled():
    loaded = config_with({"stages": {"etl": {"enabled": True},
                                     "ingestion": {"enabled": False}}})
    names = [s.name for s in pipeline.build(loaded).stages]
    assert "etl" in names and "ingestion" not in names


def test_the_pipeline_builds_with_etl_disabled():
    loaded = config_with({"stages": {"etl": {"enabled": False}}})
    assert "etl" not in [s.name for s in pipeline.build(loaded).stages]


def test_outputs_name_the_database_job_and_processed_data():
    outputs = template(processed_prefix="clicks/")["Outputs"]
    assert outputs[GLUE_DATABASE_NAME.name]["Value"] == {"Ref": "GlueDatabase"}
    assert outputs[ETL_JOB_NAME.name]["Value"] == {"Ref": "EtlJob"}
    assert outputs[PROCESSED_DATA_PREFIX.name]["Value"] == "clicks/"
    assert outputs[PROCESSED_TABLE_NAME.name]["Value"] == "clicks"


def test_the_stage_takes_the_network_wires():
    names = {w.name for w in build().inputs}
    assert {VPC_ID.name, PRIVATE_SUBNET_IDS.name} <= names


def test_physical_names_follow_the_environment():
    t = template()
    database = t["Resources"]["GlueDatabase"]["Properties"]["DatabaseInput"]["Name"]
    assert database == {"Fn::Sub": "mlops_demo_${EnvironmentName}_data"}
    assert job(t)["Name"] == {"Fn::Sub": "mlops-demo-${EnvironmentName}-etl"}


# --- crawlers ---------------------------------------------------------------------------------

def test_raw_tables_are_prefixed_and_the_processed_table_is_the_processed_folder():
    found = crawlers(template(processed_prefix="clicks/"))
    assert found["RawCrawler"]["TablePrefix"] == "raw_"
    processed = found["ProcessedCrawler"]
    assert "TablePrefix" not in processed
    assert processed["Targets"]["S3Targets"][0]["Path"] == {
        "Fn::Sub": "s3://${ProcessedBucketName}/clicks/"}
    assert json.loads(processed["Configuration"])["Grouping"]["TableLevelConfiguration"] == 1


def test_a_processed_folder_named_like_a_raw_table_is_refused():
    with pytest.raises(UserError, match="stages.etl.processed_prefix"):
        config(processed_prefix="raw_events/")


@pytest.mark.parametrize("recrawl, behavior, update", [
    ("new_folders_only", "CRAWL_NEW_FOLDERS_ONLY", "LOG"),
    ("everything", "CRAWL_EVERYTHING", "UPDATE_IN_DATABASE"),
])
def test_recrawl_and_schema_change_policies(recrawl, behavior, update):
    found = crawlers(template(recrawl=recrawl, storage=READABLE_ARCHIVE))
    assert found
    for crawler in found.values():
        assert crawler["RecrawlPolicy"] == {"RecrawlBehavior": behavior}
        # Never drop a table or partition because its objects are gone (archived).
        assert crawler["SchemaChangePolicy"] == {"UpdateBehavior": update, "DeleteBehavior": "LOG"}
        assert "Schedule" not in crawler  # the workflow starts them


@pytest.mark.parametrize("archive", ["GLACIER", "DEEP_ARCHIVE"])
def test_crawling_every_raw_folder_again_needs_raw_objects_that_stay_readable(archive):
    # Day 90 (issue 12, finding 7): archived raw objects cannot be read without a restore.
    with pytest.raises(UserError, match="stages.etl.recrawl: 'everything'.*"
                                        f"archive_storage_class {archive}"):
        config(recrawl="everything", storage={"archive_storage_class": archive})


# --- orchestration ----------------------------------------------------------------------------

def triggers(t: dict) -> dict[str, dict]:
    return {name: r["Properties"] for name, r in resources_of_type(t, "AWS::Glue::Trigger").items()}


def test_workflow_runs_raw_crawler_then_job_then_processed_crawler():
    found = triggers(template())
    workflow = {"Ref": "Workflow"}
    assert all(trigger["WorkflowName"] == workflow for trigger in found.values())
    assert found["StartTrigger"]["Actions"] == [{"CrawlerName": {"Ref": "RawCrawler"}}]
    assert found["JobTrigger"]["Predicate"]["Conditions"] == [
        {"CrawlerName": {"Ref": "RawCrawler"}, "CrawlState": "SUCCEEDED",
         "LogicalOperator": "EQUALS"}]
    assert found["JobTrigger"]["Actions"] == [{"JobName": {"Ref": "EtlJob"}}]
    assert found["ProcessedCrawlerTrigger"]["Predicate"]["Conditions"] == [
        {"JobName": {"Ref": "EtlJob"}, "State": "SUCCEEDED", "LogicalOperator": "EQUALS"}]
    assert found["ProcessedCrawlerTrigger"]["Actions"] == [
        {"CrawlerName": {"Ref": "ProcessedCrawler"}}]
    for name in ("JobTrigger", "ProcessedCrawlerTrigger"):
        assert found[name]["Type"] == "CONDITIONAL" and found[name]["StartOnCreation"] is True


def test_the_schedule_is_a_setting():
    stage = build(schedule="cron(0 3 * * ? *)")
    start = triggers(template_dict(stage))["StartTrigger"]
    assert (start["Type"], start["Schedule"]) == ("SCHEDULED", {"Ref": "EtlSchedule"})
    assert "EtlSchedule" in stage.settings


def test_without_a_schedule_the_workflow_runs_on_demand():
    stage = build(schedule=None)
    start = triggers(template_dict(stage))["StartTrigger"]
    assert start["Type"] == "ON_DEMAND" and "Schedule" not in start
    assert "EtlSchedule" not in stage.settings


# --- lint -------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    {},
    {"ingestion": False},
    {"glue_version": "5.0", "output_format": "csv", "schedule": None, "recrawl": "everything",
     "storage": READABLE_ARCHIVE},
    {"network": EXISTING_NETWORK_WITH_ZONES},
], ids=["default", "without-ingestion", "glue5-csv-on-demand", "existing-vpc"])
def test_template_has_no_cfn_lint_findings(changes):
    assert lint(build(**changes)) == []
