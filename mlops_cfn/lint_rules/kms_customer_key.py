"""E9001: every data store encrypts at rest with a customer-managed KMS key."""

from __future__ import annotations

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from mlops_cfn.lint_rules import _common

KEY = "customer-managed key"  # the requirement: a key that is not AWS managed (alias/aws/...)
TRUE = frozenset({True, "true", "True"})

# Per resource type, the properties that must hold a customer-managed key (KEY) or one of the
# listed values. A key starting with `?` applies only when present (`_common.values_at`).
REQUIREMENTS: dict[str, list[tuple[tuple[str, ...], object]]] = {
    "AWS::S3::Bucket": [
        (("BucketEncryption", "ServerSideEncryptionConfiguration", "*",
          "ServerSideEncryptionByDefault", "SSEAlgorithm"), frozenset({"aws:kms", "aws:kms:dsse"})),
        (("BucketEncryption", "ServerSideEncryptionConfiguration", "*",
          "ServerSideEncryptionByDefault", "KMSMasterKeyID"), KEY),
    ],
    "AWS::Kinesis::Stream": [
        (("StreamEncryption", "EncryptionType"), frozenset({"KMS"})),
        (("StreamEncryption", "KeyId"), KEY),
    ],
    "AWS::KinesisFirehose::DeliveryStream": [
        (("?ExtendedS3DestinationConfiguration", "EncryptionConfiguration",
          "KMSEncryptionConfig", "AWSKMSKeyARN"), KEY),
        (("?S3DestinationConfiguration", "EncryptionConfiguration",
          "KMSEncryptionConfig", "AWSKMSKeyARN"), KEY),
        (("?DeliveryStreamEncryptionConfigurationInput", "KeyType"),
         frozenset({"CUSTOMER_MANAGED_CMK"})),
        (("?DeliveryStreamEncryptionConfigurationInput", "KeyARN"), KEY),
    ],
    "AWS::SQS::Queue": [(("KmsMasterKeyId",), KEY)],
    "AWS::SNS::Topic": [(("KmsMasterKeyId",), KEY)],
    "AWS::Logs::LogGroup": [(("KmsKeyId",), KEY)],
    "AWS::DynamoDB::Table": [
        (("SSESpecification", "SSEEnabled"), TRUE),
        (("SSESpecification", "SSEType"), frozenset({"KMS"})),
        (("SSESpecification", "KMSMasterKeyId"), KEY),
    ],
    "AWS::DynamoDB::GlobalTable": [
        (("SSESpecification", "SSEType"), frozenset({"KMS"})),
        (("Replicas", "*", "SSESpecification", "KMSMasterKeyId"), KEY),
    ],
    "AWS::Redshift::Cluster": [(("Encrypted",), TRUE), (("KmsKeyId",), KEY)],
    "AWS::RedshiftServerless::Namespace": [(("KmsKeyId",), KEY)],
    "AWS::RDS::DBCluster": [(("StorageEncrypted",), TRUE), (("KmsKeyId",), KEY)],
    "AWS::RDS::DBInstance": [(("StorageEncrypted",), TRUE), (("KmsKeyId",), KEY)],
    "AWS::EFS::FileSystem": [(("Encrypted",), TRUE), (("KmsKeyId",), KEY)],
    "AWS::SecretsManager::Secret": [(("KmsKeyId",), KEY)],
    "AWS::ECR::Repository": [
        (("EncryptionConfiguration", "EncryptionType"), frozenset({"KMS", "KMS_DSSE"})),
        (("EncryptionConfiguration", "KmsKey"), KEY),
    ],
    "AWS::Glue::SecurityConfiguration": [
        (("EncryptionConfiguration", "S3Encryptions", "*", "S3EncryptionMode"),
         frozenset({"SSE-KMS"})),
        (("EncryptionConfiguration", "S3Encryptions", "*", "KmsKeyArn"), KEY),
        (("EncryptionConfiguration", "CloudWatchEncryption", "CloudWatchEncryptionMode"),
         frozenset({"SSE-KMS"})),
        (("EncryptionConfiguration", "CloudWatchEncryption", "KmsKeyArn"), KEY),
        (("EncryptionConfiguration", "JobBookmarksEncryption", "JobBookmarksEncryptionMode"),
         frozenset({"CSE-KMS"})),
        (("EncryptionConfiguration", "JobBookmarksEncryption", "KmsKeyArn"), KEY),
    ],
    "AWS::SageMaker::EndpointConfig": [
        (("KmsKeyId",), KEY),
        (("?DataCaptureConfig", "KmsKeyId"), KEY),
    ],
    "AWS::SageMaker::NotebookInstance": [(("KmsKeyId",), KEY)],
    "AWS::SageMaker::Domain": [(("KmsKeyId",), KEY)],
    "AWS::SageMaker::FeatureGroup": [
        (("?OnlineStoreConfig", "SecurityConfig", "KmsKeyId"), KEY),
        (("?OfflineStoreConfig", "S3StorageConfig", "KmsKeyId"), KEY),
    ],
    **{f"AWS::SageMaker::{kind}JobDefinition": [
        ((f"{kind}JobOutputConfig", "KmsKeyId"), KEY),
        (("JobResources", "ClusterConfig", "VolumeKmsKeyId"), KEY),
    ] for kind in ("DataQuality", "ModelQuality", "ModelBias", "ModelExplainability")},
}


def customer_managed(value: object) -> bool:
    """A key is named, and not by an AWS managed key's alias (`alias/aws/<service>`). A key
    given by Ref, GetAtt or ImportValue cannot be told apart here and counts as customer
    managed; a Sub is read for the alias."""
    if value is _common.MISSING or value in ("", None):
        return False
    if isinstance(value, dict) and "Fn::Sub" in value:
        value = value["Fn::Sub"][0] if isinstance(value["Fn::Sub"], list) else value["Fn::Sub"]
    return not (isinstance(value, str) and "alias/aws/" in value)


class DataStoreCustomerManagedKey(CloudFormationLintRule):
    """Data at rest under a key the account controls: its policy says who may decrypt, it can
    be disabled or audited on its own, and deleting a stack never takes an AWS managed key's
    data with it."""

    id = "E9001"
    shortdesc = "Data stores are encrypted with a customer-managed KMS key"
    description = (
        "Buckets, streams, delivery streams, queues, topics, log groups, tables, warehouses, "
        "secrets, repositories, Glue security configurations and SageMaker stores name a "
        "customer-managed KMS key (not an AWS managed alias/aws/... key, not SSE-S3)")
    source_url = "https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#customer-cmk"
    tags = ["resources", "kms", "encryption", "mlops-cfn"]

    def match(self, cfn):
        # Over the resources rather than `match_resource_properties`, which cfn-lint calls only
        # for a resource with Properties: a bare `Type: AWS::SNS::Topic` is unencrypted too.
        matches = []
        for name, resource in cfn.template.get("Resources", {}).items():
            if (not isinstance(resource, dict) or resource.get("Type") not in REQUIREMENTS
                    or _common.excepted(resource, self.id)):
                continue
            properties = resource.get("Properties", {})
            path = ["Resources", name, "Properties"] if "Properties" in resource else \
                ["Resources", name]
            matches.extend(self._resource(name, resource["Type"], properties, path))
        return matches

    def _resource(self, name, resourcetype, properties, path):
        matches = []
        for keys, expected in REQUIREMENTS[resourcetype]:
            for value, where in _common.values_at(properties, path, keys):
                if expected is KEY:
                    ok = customer_managed(value)
                    want = "a customer-managed KMS key"
                else:
                    # A value from a parameter or function cannot be read here.
                    ok = isinstance(value, dict) or (
                        isinstance(value, (str, bool)) and value in expected)
                    want = " or ".join(sorted(map(str, expected)))
                if not ok:
                    shown = ".".join(k.lstrip("?") for k in keys)
                    matches.append(RuleMatch(
                        where, f"{name}: {shown} must be {want}{_common.HINT}"))
        return matches
