"""The dynamodb extension stage on its own: its section, its table, and a clean lint.

(How mlops-cfn finds it through its entry point, and what every verb does with it, is
tests/test_extensions.py in mlops-cfn.)
"""

import json

import cfnlint.api
import pytest
from pydantic import ValidationError

import mlops_cfn_dynamodb
from mlops_cfn.config import load
from mlops_cfn.extension import ExtensionConfig, ExtensionStage
from mlops_cfn_dynamodb import STAGE, TABLE_ARN, TABLE_NAME, DynamoDbConfig


def built(**section):
    return STAGE.build(load(None).config, DynamoDbConfig(**section))


def table(**section) -> dict:
    return built(**section).template.to_dict()["Resources"]["Table"]


def test_the_entry_points_object_is_an_extension_stage_with_a_strict_section():
    assert isinstance(STAGE, ExtensionStage)
    assert issubclass(STAGE.config, ExtensionConfig)
    with pytest.raises(ValidationError, match="billing"):
        DynamoDbConfig(billing="cheap")


def test_the_table_is_encrypted_with_the_key_the_storage_stage_offers():
    stage = built()
    assert [wire.name for wire in stage.inputs] == ["DataKeyArn"]
    assert table()["Properties"]["SSESpecification"] == {
        "SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Ref": "DataKeyArn"}}


def test_the_table_can_be_recovered_to_a_point_in_time_and_outlives_its_stack():
    resource = table()
    assert resource["Properties"]["PointInTimeRecoverySpecification"][
        "PointInTimeRecoveryEnabled"] is True
    assert resource["DeletionPolicy"] == "Retain"
    assert resource["UpdateReplacePolicy"] == "Retain"
    assert resource["Properties"]["DeletionProtectionEnabled"] is True


def test_the_recovery_period_is_a_parameter_so_environments_share_the_template():
    stage = built(recovery_period_days=7)
    assert stage.template.to_dict() == built(recovery_period_days=35).template.to_dict()
    assert "FeatureTableRecoveryDays" in stage.settings


def test_the_keys_follow_the_section():
    resource = table(partition_key="entity_id", sort_key="event_time", sort_key_type="N")
    assert resource["Properties"]["KeySchema"] == [
        {"AttributeName": "entity_id", "KeyType": "HASH"},
        {"AttributeName": "event_time", "KeyType": "RANGE"}]
    assert resource["Properties"]["AttributeDefinitions"] == [
        {"AttributeName": "entity_id", "AttributeType": "S"},
        {"AttributeName": "event_time", "AttributeType": "N"}]
    assert len(table()["Properties"]["KeySchema"]) == 1


def test_the_stage_offers_its_table_by_name():
    assert [wire.name for wire in built().outputs] == [TABLE_NAME.name, TABLE_ARN.name]


def test_the_docstring_names_the_stages_wires():
    stage = built()
    doc = mlops_cfn_dynamodb.__doc__
    assert f"Inputs: {', '.join(w.name for w in stage.inputs)}." in doc
    assert f"Outputs: {', '.join(w.name for w in stage.outputs)}." in doc


def test_the_template_is_lint_clean():
    template = built(sort_key="event_time").template.to_dict()
    # Errors and warnings, in the regions mlops-cfn validates for by default.
    assert cfnlint.api.lint(json.dumps(template), config=cfnlint.api.ManualArgs(
        regions=["us-east-1", "eu-west-1"])) == []
