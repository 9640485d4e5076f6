"""The storage stage: the data key and four buckets, secure by default.

The key's policy grants AWS services what the other enabled stages ask of it (stage.KeyUse), so
the stage is built here as the composer builds it, after those stages.
"""

import cfnlint.api
import pytest
from awacs.aws import Allow, Principal, Statement
from troposphere import Ref

from mlops_cfn import outputs, pipeline
from mlops_cfn.errors import UserError
from mlops_cfn.stage import KeyUse
from mlops_cfn.stages import storage
from tests.helpers import config_with, only_resource, resources_of_type, template_dict

DATA_BUCKETS = ("RawBucket", "ProcessedBucket", "ArtifactsBucket")
ALL_BUCKETS = (*DATA_BUCKETS, "AccessLogsBucket")
KEY_ARN = {"Fn::GetAtt": ["DataKey", "Arn"]}


def build(changes: dict | None = None, env: str = "dev"):
    """The storage stage of the bundled pipeline with `changes`, as the composer builds it."""
    built = pipeline.build(config_with(changes, env))
    return next(stage for stage in built.stages if stage.name == "storage")


@pytest.fixture(scope="module")
def stage():
    return build()


@pytest.fixture(scope="module")
def template(stage) -> dict:
    return template_dict(stage)


def bucket_props(template: dict, logical_id: str) -> dict:
    return template["Resources"][logical_id]["Properties"]


def lifecycle_rules(template: dict, logical_id: str) -> list[dict]:
    return bucket_props(template, logical_id)["LifecycleConfiguration"]["Rules"]


def policy_statements_of(template: dict, logical_id: str) -> list[dict]:
    policies = [p["Properties"]["PolicyDocument"]["Statement"]
                for p in resources_of_type(template, "AWS::S3::BucketPolicy").values()
                if p["Properties"]["Bucket"] == {"Ref": logical_id}]
    assert len(policies) == 1, f"expected one bucket policy on {logical_id}"
    # A statement chosen by region (Fn::If) counts as each of its branches.
    return [branch for statement in policies[0]
            for branch in (statement["Fn::If"][1:] if "Fn::If" in statement else [statement])]


def key_policy(template: dict) -> list[dict]:
    return only_resource(template, "AWS::KMS::Key")["Properties"]["KeyPolicy"]["Statement"]


# --- the data key -------------------------------------------------------------------------------

def test_key_rotates_and_waits_the_configured_window_before_deletion():
    key = only_resource(template_dict(
        build({"stages": {"storage": {"key_deletion_window_days": 7}}})), "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["Properties"]["PendingWindowInDays"] == 7


def test_key_policy_never_allows_every_action(template):
    allowed = [s for s in key_policy(template) if s["Effect"] == "Allow"]
    assert allowed
    for statement in allowed:
        for action in statement["Action"]:
            assert action not in ("*", "kms:*")


def test_key_policy_denies_grants_that_are_not_for_aws_resources(template):
    # AWS Control Tower CT.KMS.PR.3: grants outlive the IAM policy that allowed them, so only
    # an AWS service, for a resource it integrates, may create one.
    [deny] = [s for s in key_policy(template) if s["Effect"] == "Deny"]
    assert deny["Principal"] == {"AWS": "*"}
    assert deny["Action"] == ["kms:CreateGrant"]
    assert deny["Resource"] == ["*"]
    assert deny["Condition"] == {"BoolIfExists": {"kms:GrantIsForAWSResource": "false",
                                                  "aws:PrincipalIsAWSService": "false"}}


def test_key_policy_lets_the_account_administer_the_key_without_lockout(template):
    root = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    for_root = [s for s in key_policy(template) if s["Principal"] == root]
    actions = {a for s in for_root for a in s["Action"]}
    assert "kms:PutKeyPolicy" in actions
    assert {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"} <= actions


def test_key_policy_lets_cloudwatch_logs_encrypt_only_this_projects_log_groups(template):
    logs = [s for s in key_policy(template)
            if s["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}]
    assert len(logs) == 1
    assert "kms:GenerateDataKey*" in logs[0]["Action"]
    arn = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    assert logs[0]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == [
        {"Fn::Sub": arn + name} for name in (
            "/mlops/mlops-demo/${EnvironmentName}/*",
            # Asked for by the etl, analytics and serving stages, in that order.
            "/aws-glue/jobs/mlops-demo-${EnvironmentName}-etl-role/*",
            "/aws-glue/crawlers-role/*-mlops-demo-${EnvironmentName}-etl",
            "/aws/redshift/*mlops-demo-${EnvironmentName}-warehouse/*",
            "/aws/sagemaker/Endpoints/mlops-demo-${EnvironmentName}-endpoint")]


# --- what the other stages ask of the key -------------------------------------------------------

def test_alone_the_key_grants_no_service_anything_for_another_stages_resources():
    template = template_dict(storage.build(config_with().config))
    services = [s["Principal"]["Service"] for s in key_policy(template)
                if "Service" in s.get("Principal", {})]
    assert services == [{"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}]
    [logs] = [s for s in key_policy(template) if s.get("Sid") == "KeyUseByCloudWatchLogs"]
    assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == [{
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
                   "/mlops/mlops-demo/${EnvironmentName}/*"}]


def test_a_stage_switched_off_takes_its_grants_along():
    sids = {s.get("Sid") for s in key_policy(template_dict(build({"stages": {
        "monitoring": {"enabled": False},
        "serving": {"target": "sagemaker", "sagemaker": {"batch_transform": {
            "enabled": False}}}}})))}
    assert not sids & {"AlarmNotificationsByCloudWatch", "RuleNotificationsByEventBridge",
                       "TaskStorageByFargate", "TaskStorageGrantsByFargate",
                       "LogDeliveryByCloudWatchLogs"}
    assert "RuleDeadLettersByEventBridge" in sids  # the training and analytics stages'


def test_a_grant_two_stages_ask_for_is_given_once():
    sids = [s.get("Sid") for s in key_policy(template_dict(build()))]
    assert sids.count("RuleDeadLettersByEventBridge") == 1


def test_a_grant_naming_what_the_storage_template_lacks_is_refused():
    foreign = Statement(Sid="Foreign", Effect=Allow,
                        Principal=Principal("Service", "x.amazonaws.com"),
                        Action=[], Resource=[Ref("SomeOtherStagesTopic")])
    with pytest.raises(ValueError, match="SomeOtherStagesTopic"):
        storage.build(config_with().config, [KeyUse(statements=(foreign,))])
    with pytest.raises(ValueError, match="ApiName"):
        storage.build(config_with().config, [KeyUse(log_groups=("/aws/x/${ApiName}",))])


def service_statement(template: dict, service: str) -> dict:
    [found] = [s for s in key_policy(template) if s["Principal"] == {"Service": service}]
    return found


def test_key_policy_lets_cloudwatch_alarms_of_this_account_publish_to_encrypted_topics(template):
    alarms = service_statement(template, "cloudwatch.amazonaws.com")
    assert sorted(alarms["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert alarms["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert alarms["Condition"]["ArnLike"] == {"aws:SourceArn": {
        "Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"}}


def test_read_as_kms_does_eventbridge_may_use_the_key_for_this_accounts_topics_and_queues(
        template):
    # AWS: "Managing Amazon SNS encryption keys": EventBridge's requests to an encrypted topic
    # carry no aws:SourceAccount or aws:SourceArn, so a key statement needing them refuses
    # every delivery. They carry the encryption context SNS (aws:sns:topicArn) and SQS
    # (aws:sqs:arn) bind to the data.
    from tests.template_eval import ACCOUNT, REGION, Request, Resolver

    resolved = Resolver(template, {"EnvironmentName": "dev"}).value(
        template["Resources"]["DataKey"]["Properties"]["KeyPolicy"])["Statement"]
    mine = {"aws:sns:topicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:alarms",
            "aws:sqs:arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:load-dlq"}
    for context_key, arn in mine.items():
        for action in ("kms:GenerateDataKey", "kms:Decrypt"):
            # What SNS or SQS sends in EventBridge's name: no source keys at all.
            request = Request(action, "*", ((f"kms:EncryptionContext:{context_key}", arn),))
            assert allowed_for_service(request, resolved, "events.amazonaws.com"), context_key
            elsewhere = arn.replace(ACCOUNT, "999999999999")
            assert not allowed_for_service(
                Request(action, "*", ((f"kms:EncryptionContext:{context_key}", elsewhere),)),
                resolved, "events.amazonaws.com"), context_key


def allowed_for_service(request, statements: list[dict], service: str) -> bool:
    return request.allowed_by([s for s in statements
                               if s.get("Principal") in ({"Service": service}, "*")])


def test_every_allow_to_an_aws_service_is_scoped_by_a_condition(template):
    to_services = [s for s in key_policy(template)
                   if s["Effect"] == "Allow" and "Service" in s["Principal"]]
    assert to_services
    for statement in to_services:
        assert statement.get("Condition"), statement["Sid"]


def test_key_policy_lets_fargate_encrypt_task_storage_only_for_this_accounts_clusters(template):
    fargate = [s for s in key_policy(template)
               if s.get("Principal") == {"Service": "fargate.amazonaws.com"}]
    assert {a for s in fargate for a in s["Action"]} == {
        "kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant"}
    for statement in fargate:
        # The serving API's cluster of this account, by name, as AWS's example key policy has it.
        assert statement["Condition"]["StringEquals"] == {
            "kms:EncryptionContext:aws:ecs:clusterAccount": {"Ref": "AWS::AccountId"},
            "kms:EncryptionContext:aws:ecs:clusterName": {
                "Fn::Sub": "mlops-demo-${EnvironmentName}-model-api"}}
    grants, = [s for s in fargate if s["Action"] == ["kms:CreateGrant"]]
    # The grant Fargate makes for the task may only decrypt.
    assert grants["Condition"]["ForAllValues:StringEquals"] == {"kms:GrantOperations": ["Decrypt"]}


def test_key_policy_lets_log_delivery_decrypt_what_an_encrypted_state_machine_logs(template):
    delivery = service_statement(template, "delivery.logs.amazonaws.com")
    assert delivery["Action"] == ["kms:Decrypt"]
    assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}


def test_key_has_an_alias_named_for_project_and_environment(template):
    alias = only_resource(template, "AWS::KMS::Alias")["Properties"]
    assert alias["AliasName"] == {"Fn::Sub": "alias/mlops-demo-${EnvironmentName}-data"}
    assert alias["TargetKeyId"] == {"Ref": "DataKey"}


# --- encryption and access ----------------------------------------------------------------------

@pytest.mark.parametrize("bucket", DATA_BUCKETS)
def test_data_buckets_are_encrypted_with_the_data_key_and_a_bucket_key(template, bucket):
    [rule] = bucket_props(template, bucket)["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN}
    assert rule["BucketKeyEnabled"] is True


def test_access_logs_bucket_is_encrypted_with_sse_s3_for_s3_and_load_balancer_log_delivery(template):
    [rule] = bucket_props(template, "AccessLogsBucket")["BucketEncryption"][
        "ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_every_bucket_is_versioned_private_and_without_acls(template, bucket):
    props = bucket_props(template, bucket)
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True,
        "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_every_bucket_refuses_requests_without_tls(template, bucket):
    denies = [s for s in policy_statements_of(template, bucket)
              if s["Effect"] == "Deny"
              and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}]
    assert len(denies) == 1
    assert denies[0]["Principal"] == "*"
    assert denies[0]["Resource"] == [
        {"Fn::GetAtt": [bucket, "Arn"]}, {"Fn::Sub": f"${{{bucket}.Arn}}/*"}]


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_bucket_policies_allow_no_wildcard_action(template, bucket):
    for statement in policy_statements_of(template, bucket):
        if statement["Effect"] == "Allow":
            assert not any(a == "*" or a.endswith(":*") for a in statement["Action"])


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_bucket_names_follow_the_naming_rule(template, bucket):
    purpose = bucket.removesuffix("Bucket").lower().replace("accesslogs", "logs")
    expected = f"mlops-demo-${{EnvironmentName}}-{purpose}-${{AWS::AccountId}}-${{AWS::Region}}"
    assert bucket_props(template, bucket)["BucketName"] == {"Fn::Sub": expected}


# --- access logging -----------------------------------------------------------------------------

@pytest.mark.parametrize("bucket", DATA_BUCKETS)
def test_data_buckets_log_access_to_the_log_bucket_under_their_own_prefix(template, bucket):
    logging = bucket_props(template, bucket)["LoggingConfiguration"]
    assert logging["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}
    purpose = bucket.removesuffix("Bucket").lower()
    assert logging["LogFilePrefix"] == f"s3-access/{purpose}/"
    # Created only after the log bucket lets the logging service write.
    assert "AccessLogsBucketPolicy" in template["Resources"][bucket]["DependsOn"]


def test_log_bucket_lets_only_this_pipelines_buckets_deliver_logs(template):
    # (The load balancer log delivery beside it is specified in test_serving_fargate.py.)
    [delivery] = [s for s in policy_statements_of(template, "AccessLogsBucket")
                  if s["Effect"] == "Allow" and s.get("Sid") == "S3ServerAccessLogDelivery"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == ["s3:PutObject"]
    assert delivery["Resource"] == [{"Fn::Sub": "${AccessLogsBucket.Arn}/s3-access/*"}]
    assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    [source] = delivery["Condition"]["ArnLike"]["aws:SourceArn"]
    assert source == {"Fn::Sub": "arn:${AWS::Partition}:s3:::mlops-demo-${EnvironmentName}-*"}
    names = [bucket_props(template, b)["BucketName"]["Fn::Sub"] for b in DATA_BUCKETS]
    assert all(name.startswith("mlops-demo-${EnvironmentName}-") for name in names)


def test_log_bucket_does_not_log_to_itself_and_says_why(template):
    bucket = template["Resources"]["AccessLogsBucket"]
    assert "LoggingConfiguration" not in bucket["Properties"]
    skips = {s["id"]: s["comment"] for s in bucket["Metadata"]["checkov"]["skip"]}
    assert "CKV_AWS_18" in skips and skips["CKV_AWS_18"]


# --- lifecycle ----------------------------------------------------------------------------------

def transitions(template: dict, bucket: str) -> list[dict]:
    return [t for r in lifecycle_rules(template, bucket) for t in r.get("Transitions", [])]


def test_raw_moves_to_the_archive_class_after_the_setting(template):
    assert transitions(template, "RawBucket") == [
        {"StorageClass": "GLACIER", "TransitionInDays": {"Ref": "ArchiveAfterDays"}}]


def test_archive_storage_class_comes_from_config():
    deep = {"stages": {"storage": {"archive_storage_class": "DEEP_ARCHIVE"}}}
    template = template_dict(build(deep))
    [rule] = [r for r in lifecycle_rules(template, "RawBucket") if "Transitions" in r]
    assert rule["Transitions"][0]["StorageClass"] == "DEEP_ARCHIVE"


def test_processed_data_stays_in_standard_by_default(template):
    assert transitions(template, "ProcessedBucket") == []


@pytest.mark.parametrize("storage_class", ["INTELLIGENT_TIERING", "STANDARD_IA", "GLACIER_IR"])
def test_processed_data_may_move_to_a_class_that_stays_readable(storage_class):
    stage = build({"stages": {"storage": {"processed_storage_class": storage_class,
                                          "archive_storage_class": "DEEP_ARCHIVE"}}})
    assert transitions(template_dict(stage), "ProcessedBucket") == [
        {"StorageClass": storage_class, "TransitionInDays": {"Ref": "ProcessedTransitionDays"}}]
    assert "ProcessedTransitionDays" in stage.settings


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_processed_data_never_moves_to_a_class_that_needs_a_restore(storage_class):
    with pytest.raises(UserError, match="stages.storage.processed_storage_class"):
        build({"stages": {"storage": {"processed_storage_class": storage_class}}})


def test_artifacts_stay_readable_without_restore(template):
    assert not any("Transitions" in r for r in lifecycle_rules(template, "ArtifactsBucket"))


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_replaced_versions_expire_after_the_setting(template, bucket):
    expirations = [r["NoncurrentVersionExpiration"] for r in lifecycle_rules(template, bucket)
                   if "NoncurrentVersionExpiration" in r]
    assert expirations == [{"NoncurrentDays": {"Ref": "NoncurrentVersionExpirationDays"}}]


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_unfinished_multipart_uploads_are_aborted(template, bucket):
    assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
               for r in lifecycle_rules(template, bucket))


def test_access_logs_expire_after_the_setting(template):
    [rule] = lifecycle_rules(template, "AccessLogsBucket")
    assert rule["ExpirationInDays"] == {"Ref": "AccessLogExpirationDays"}


def test_lifecycle_days_are_environment_settings(stage):
    assert {"ArchiveAfterDays", "NoncurrentVersionExpirationDays",
            "AccessLogExpirationDays", "EnvironmentName"} <= set(stage.settings)


def test_environments_that_differ_only_in_values_render_the_same_template():
    # The bundled prod keeps replaced versions longer than dev.
    assert build(env="dev").template.to_yaml() == build(env="prod").template.to_yaml()


@pytest.mark.parametrize("bucket", DATA_BUCKETS)
def test_new_objects_are_announced_on_eventbridge(template, bucket):
    assert bucket_props(template, bucket)["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}}


# --- data survives the stack --------------------------------------------------------------------

@pytest.mark.parametrize("resource", ("DataKey", *ALL_BUCKETS))
def test_key_and_buckets_are_retained_on_delete_and_replace(template, resource):
    assert template["Resources"][resource]["DeletionPolicy"] == "Retain"
    assert template["Resources"][resource]["UpdateReplacePolicy"] == "Retain"


# --- wiring -------------------------------------------------------------------------------------

def test_offers_the_key_and_buckets_to_other_stages(stage, template):
    offered = {
        outputs.DATA_KEY_ARN: KEY_ARN,
        outputs.DATA_KEY_ALIAS: {"Ref": "DataKeyAlias"},
        outputs.RAW_BUCKET_NAME: {"Ref": "RawBucket"},
        outputs.RAW_BUCKET_ARN: {"Fn::GetAtt": ["RawBucket", "Arn"]},
        outputs.PROCESSED_BUCKET_NAME: {"Ref": "ProcessedBucket"},
        outputs.PROCESSED_BUCKET_ARN: {"Fn::GetAtt": ["ProcessedBucket", "Arn"]},
        outputs.ARTIFACTS_BUCKET_NAME: {"Ref": "ArtifactsBucket"},
        outputs.ARTIFACTS_BUCKET_ARN: {"Fn::GetAtt": ["ArtifactsBucket", "Arn"]},
        outputs.ACCESS_LOGS_BUCKET_NAME: {"Ref": "AccessLogsBucket"},
    }
    assert set(stage.outputs) == set(offered)
    for wire, value in offered.items():
        assert template["Outputs"][wire.name]["Value"] == value


def test_needs_nothing_from_other_stages(stage):
    assert stage.inputs == ()


def test_template_has_no_cfn_lint_matches(stage):
    matches = cfnlint.api.lint(stage.template.to_yaml(),
                               config=cfnlint.api.ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []
