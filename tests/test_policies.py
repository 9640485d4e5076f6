"""Shared awacs helpers: what each statement allows, to whom, and on which resources."""

import pytest
from awacs.aws import Allow, PolicyDocument, Principal, Statement
from troposphere import GetAtt, Ref, Sub, encode_to_dict

from mlops_cfn import policies


def as_data(policy_object) -> dict:
    """An awacs object as the JSON CloudFormation receives (functions as {"Fn::...": ...})."""
    return encode_to_dict(policy_object)


def actions_of(statement: dict) -> list[str]:
    return statement["Action"]


def statements_by_sid(document: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in document["Statement"]}


ROOT = {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}


class TestDataKeyPolicy:
    LOG_GROUPS = [Sub("/mlops/example/${EnvironmentName}/*"), "/aws/example/fixed"]

    @pytest.fixture
    def policy(self) -> dict:
        return as_data(policies.data_key_policy(self.LOG_GROUPS))

    def test_no_statement_allows_every_action(self, policy):
        for statement in policy["Statement"]:
            for action in actions_of(statement):
                assert action != "*"
                assert action != "kms:*"

    def test_account_administers_the_key_through_iam(self, policy):
        admin = statements_by_sid(policy)["KeyAdministrationThroughIam"]
        assert admin["Principal"] == ROOT
        assert admin["Effect"] == "Allow"
        # CloudFormation refuses a key policy that would lock its creator out.
        assert "kms:PutKeyPolicy" in admin["Action"]
        for needed in ("kms:ScheduleKeyDeletion", "kms:EnableKeyRotation", "kms:CreateAlias",
                       "kms:TagResource", "kms:DescribeKey"):
            assert needed in admin["Action"]
        # Administration does not include using the key.
        assert "kms:Decrypt" not in admin["Action"]
        assert not any(a.startswith("kms:GenerateDataKey") for a in admin["Action"])

    def test_account_may_grant_use_of_the_key_through_iam(self, policy):
        use = statements_by_sid(policy)["KeyUseThroughIam"]
        assert use["Principal"] == ROOT
        assert sorted(use["Action"]) == sorted([
            "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
            "kms:DescribeKey"])

    def test_cloudwatch_logs_of_this_region_may_encrypt_only_the_named_log_groups(self, policy):
        logs = statements_by_sid(policy)["KeyUseByCloudWatchLogs"]
        assert logs["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
        assert sorted(logs["Action"]) == sorted([
            "kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*",
            "kms:Describe*"])
        arn = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
        assert logs["Condition"] == {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": [
            {"Fn::Sub": arn + "/mlops/example/${EnvironmentName}/*"},
            {"Fn::Sub": arn + "/aws/example/fixed"}]}}

    def test_grants_are_denied_unless_an_aws_service_makes_them_for_its_resources(self, policy):
        deny = statements_by_sid(policy)["GrantsOnlyForAwsResources"]
        assert deny["Effect"] == "Deny"
        assert deny["Principal"] == {"AWS": "*"}
        assert deny["Action"] == ["kms:CreateGrant"]
        assert deny["Condition"] == {"BoolIfExists": {"kms:GrantIsForAWSResource": "false",
                                                      "aws:PrincipalIsAWSService": "false"}}

    def test_resources_are_this_key(self, policy):
        for statement in policy["Statement"]:
            assert statement["Resource"] == ["*"]

    def test_only_the_account_and_cloudwatch_logs_are_principals(self, policy):
        assert [s["Sid"] for s in policy["Statement"]] == [
            "KeyAdministrationThroughIam", "KeyUseThroughIam", "GrantsOnlyForAwsResources",
            "KeyUseByCloudWatchLogs"]

    def test_later_stages_add_service_statements(self):
        extra = Statement(
            Sid="KeyUseByExample", Effect=Allow,
            Principal=Principal("Service", "example.amazonaws.com"),
            Action=list(policies.KEY_READ), Resource=[policies.THIS_KEY])
        policy = as_data(policies.data_key_policy(self.LOG_GROUPS, extra))
        assert policy["Statement"][-1]["Sid"] == "KeyUseByExample"
        assert len(policy["Statement"]) == 5


class TestUseKey:
    def test_reads_and_writes_by_default(self):
        statement = as_data(policies.use_key(Ref("DataKeyArn")))
        assert statement["Effect"] == "Allow"
        assert statement["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
        assert statement["Resource"] == [{"Ref": "DataKeyArn"}]
        assert "Condition" not in statement

    def test_read_only(self):
        statement = as_data(policies.use_key(Ref("DataKeyArn"), policies.KEY_READ))
        assert statement["Action"] == ["kms:Decrypt"]

    def test_limited_to_requests_through_named_services_of_this_region(self):
        statement = as_data(policies.use_key(Ref("DataKeyArn"), via_services=("s3", "kinesis")))
        assert statement["Condition"] == {"StringEquals": {"kms:ViaService": [
            {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"},
            {"Fn::Sub": "kinesis.${AWS::Region}.amazonaws.com"},
        ]}}


class TestBucketAccess:
    def test_read_of_a_prefix_lists_and_gets_only_under_it(self):
        statements = [as_data(s) for s in
                      policies.bucket_access(Ref("RawBucketArn"), "events/", read=True)]
        actions = {a for s in statements for a in s["Action"]}
        assert actions == {"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"}
        listing = next(s for s in statements if s["Action"] == ["s3:ListBucket"])
        assert listing["Condition"] == {"StringLike": {"s3:prefix": "events/*"}}
        objects = next(s for s in statements if "s3:GetObject" in s["Action"])
        assert objects["Resource"] == [{"Fn::Sub": "${RawBucketArn}/events/*"}]

    def test_write_adds_multipart_uploads_but_not_delete(self):
        statements = [as_data(s) for s in
                      policies.bucket_access(Ref("RawBucketArn"), read=False, write=True)]
        actions = {a for s in statements for a in s["Action"]}
        assert {"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
                "s3:ListBucketMultipartUploads"} <= actions
        assert "s3:GetObject" not in actions
        assert "s3:DeleteObject" not in actions

    def test_whole_bucket_has_no_prefix_condition(self):
        statements = [as_data(s) for s in policies.bucket_access(GetAtt("RawBucket", "Arn"))]
        assert all("Condition" not in s for s in statements)
        objects = statements[-1]
        assert objects["Resource"] == [{"Fn::Sub": "${RawBucket.Arn}/*"}]

    def test_prefix_from_a_parameter(self):
        statements = [as_data(s) for s in
                      policies.bucket_access(Ref("RawBucketArn"), Ref("RawDataPrefix"))]
        assert statements[-1]["Resource"] == [{"Fn::Sub": "${RawBucketArn}/${RawDataPrefix}*"}]
        assert statements[1]["Condition"] == {
            "StringLike": {"s3:prefix": {"Fn::Sub": "${RawDataPrefix}*"}}}

    def test_needs_some_access(self):
        with pytest.raises(ValueError):
            policies.bucket_access(Ref("RawBucketArn"), read=False)

    def test_never_a_wildcard_action(self):
        for statement in policies.bucket_access(Ref("B"), "p/", read=True, write=True,
                                                delete=True):
            for action in as_data(statement)["Action"]:
                assert not action.endswith("*")


class TestDenyInsecureTransport:
    def test_denies_every_request_without_tls_on_bucket_and_objects(self):
        statement = as_data(policies.deny_insecure_transport(GetAtt("RawBucket", "Arn")))
        assert statement["Effect"] == "Deny"
        assert statement["Principal"] == "*"
        # A Deny must cover every action; this is the only wildcard the helpers write.
        assert statement["Action"] == ["s3:*"]
        assert statement["Resource"] == [
            {"Fn::GetAtt": ["RawBucket", "Arn"]}, {"Fn::Sub": "${RawBucket.Arn}/*"}]
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


class TestArns:
    def test_regional_arn_uses_pseudo_parameters(self):
        assert as_data(policies.arn("logs", "log-group:*")) == {
            "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"}

    def test_bucket_arn_from_a_name_pattern(self):
        name = Sub("demo-${EnvironmentName}-raw")
        assert as_data(policies.bucket_arn(name)) == {
            "Fn::Sub": "arn:${AWS::Partition}:s3:::demo-${EnvironmentName}-raw"}

    def test_bucket_arn_from_a_parameter(self):
        assert as_data(policies.bucket_arn(Ref("BucketName"))) == {
            "Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"}

    def test_literal_text_with_substitution_is_refused(self):
        with pytest.raises(ValueError):
            policies.bucket_access(Ref("B"), "${Prefix}/")


def test_document_flattens_statement_lists():
    statements = policies.bucket_access(Ref("B"))
    document = policies.document(policies.use_key(Ref("K")), statements)
    assert isinstance(document, PolicyDocument)
    assert len(as_data(document)["Statement"]) == 1 + len(statements)
    assert as_data(document)["Version"] == "2012-10-17"
