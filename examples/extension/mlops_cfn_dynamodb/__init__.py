"""dynamodb stage (an mlops-cfn extension): one DynamoDB table of the pipeline.

A table for what the pipeline keeps by key (features served online, the latest prediction per
entity), configured under `extensions.dynamodb` in pipeline.yaml once this package is installed.

Resources
- Table (AWS::DynamoDB::Table): on-demand capacity; encrypted with the pipeline's data key, which
  it takes from the storage stage through the DataKeyArn wire (never by naming the storage
  stage's resources); point-in-time recovery over RecoveryPeriodInDays; deletion protection;
  kept when its stack is deleted or the table replaced (DeletionPolicy and UpdateReplacePolicy
  Retain), like every store of data of record in the pipeline.

Inputs: DataKeyArn.
Outputs: FeatureTableName, FeatureTableArn.
Settings: EnvironmentName, FeatureTableRecoveryDays.
"""

from typing import Annotated, Literal

from pydantic import Field
from troposphere import GetAtt, Ref, dynamodb

from mlops_cfn.extension import (RETAIN, ExtensionConfig, ExtensionStage, Setting, Stage,
                                 StageBuilder, Wire, naming, outputs)

NAME = "dynamodb"

TABLE_NAME = Wire("FeatureTableName", "DynamoDB table of the dynamodb extension stage")
TABLE_ARN = Wire("FeatureTableArn", "ARN of the dynamodb extension stage's table")

# DynamoDB table names: 3-255 characters of a-z, A-Z, 0-9, `_`, `-` and `.`.
TABLE = naming.NameRule("DynamoDB table", 255, allowed="a-z0-9._-")

_ATTRIBUTE = r"^[A-Za-z0-9_.-]{1,255}$"
KeyType = Literal["S", "N", "B"]


class DynamoDbConfig(ExtensionConfig):
    """A DynamoDB table encrypted with the pipeline's data key, with point-in-time recovery."""

    purpose: Annotated[
        str, Field(pattern=r"^[a-z][a-z0-9-]{0,19}$",
                   description="What the table holds; part of its name (1-20 characters: a-z, "
                               "0-9, -).")] = "features"
    partition_key: Annotated[
        str, Field(pattern=_ATTRIBUTE, description="The partition key's attribute name.")] = "id"
    partition_key_type: Annotated[
        KeyType, Field(description="The partition key's type: S (string), N (number) or B "
                                   "(binary).")] = "S"
    sort_key: Annotated[
        str | None, Field(pattern=_ATTRIBUTE, description="The sort key's attribute name; "
                                                          "none when unset.")] = None
    sort_key_type: Annotated[
        KeyType, Field(description="The sort key's type, when there is one.")] = "S"
    recovery_period_days: Annotated[
        int, Field(ge=1, le=35, description="How many days back point-in-time recovery can "
                                            "restore the table (1-35)."),
        Setting("FeatureTableRecoveryDays")] = 35


def build(config, section: DynamoDbConfig) -> Stage:
    b = StageBuilder(NAME, config.project, f"DynamoDB table ({section.purpose})")
    keys = [(section.partition_key, section.partition_key_type, "HASH")]
    if section.sort_key is not None:
        keys.append((section.sort_key, section.sort_key_type, "RANGE"))
    table = b.add(dynamodb.Table(
        "Table",
        TableName=b.physical_name(TABLE, section.purpose),
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[dynamodb.AttributeDefinition(AttributeName=name, AttributeType=kind)
                              for name, kind, _ in keys],
        KeySchema=[dynamodb.KeySchema(AttributeName=name, KeyType=role)
                   for name, _, role in keys],
        # The pipeline's customer-managed key, as the storage stage offers it.
        SSESpecification=dynamodb.SSESpecification(
            SSEEnabled=True, SSEType="KMS", KMSMasterKeyId=b.input(outputs.DATA_KEY_ARN)),
        PointInTimeRecoverySpecification=dynamodb.PointInTimeRecoverySpecification(
            PointInTimeRecoveryEnabled=True,
            RecoveryPeriodInDays=b.setting(section, "recovery_period_days")),
        DeletionProtectionEnabled=True,
        **RETAIN,
    ))
    b.output(TABLE_NAME, Ref(table))
    b.output(TABLE_ARN, GetAtt(table, "Arn"))
    return b.finish()


STAGE = ExtensionStage(config=DynamoDbConfig, build=build)
