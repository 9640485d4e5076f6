"""E9004: a data store survives the deletion of its stack and its replacement."""

from __future__ import annotations

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from mlops_cfn.lint_rules import _common

# Resources that hold data (or, the KMS key, make it readable): deleting one loses it.
DATA_STORES = frozenset({
    "AWS::S3::Bucket", "AWS::KMS::Key", "AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable",
    "AWS::RedshiftServerless::Namespace", "AWS::Redshift::Cluster", "AWS::RDS::DBCluster",
    "AWS::RDS::DBInstance", "AWS::EFS::FileSystem", "AWS::ECR::Repository",
    "AWS::SageMaker::ModelPackageGroup", "AWS::SageMaker::FeatureGroup",
    "AWS::SecretsManager::Secret", "AWS::Glue::Database",
})
KEPT = {
    "DeletionPolicy": frozenset({"Retain", "RetainExceptOnCreate", "Snapshot"}),
    "UpdateReplacePolicy": frozenset({"Retain", "Snapshot"}),
}


class DataStoreRetained(CloudFormationLintRule):
    """CloudFormation deletes a resource with its stack, and replaces it (deleting the old one)
    when a property that cannot change in place does: both must keep the data."""

    id = "E9004"
    shortdesc = "Data stores are retained on stack deletion and replacement"
    description = ("Every " + ", ".join(sorted(DATA_STORES)) + " has DeletionPolicy Retain, "
                   "RetainExceptOnCreate or Snapshot and UpdateReplacePolicy Retain or Snapshot")
    source_url = ("https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
                  "aws-attribute-deletionpolicy.html")
    tags = ["resources", "deletion-policy", "mlops-cfn"]

    def match(self, cfn):
        matches = []
        for name, resource in cfn.template.get("Resources", {}).items():
            if (not isinstance(resource, dict) or resource.get("Type") not in DATA_STORES
                    or _common.excepted(resource, self.id)):
                continue
            for attribute, allowed in KEPT.items():
                value = resource.get(attribute)
                if value is None:
                    matches.append(RuleMatch(
                        ["Resources", name],
                        f"{name}: {resource['Type']} without {attribute} (one of "
                        f"{', '.join(sorted(allowed))}){_common.HINT}"))
                elif isinstance(value, str) and value not in allowed:
                    matches.append(RuleMatch(
                        ["Resources", name, attribute],
                        f"{name}: {attribute} {value} deletes the data (use one of "
                        f"{', '.join(sorted(allowed))}){_common.HINT}"))
        return matches
