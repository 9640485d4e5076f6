"""`mlops_cfn.cfn_yaml`: CloudFormation YAML through libyaml's C emitter, short-form tags,
the same bytes for the same data, and read back as the same template by cfn-lint."""

import json
from pathlib import Path

import pytest
import yaml
from cfnlint.decode import decode

from mlops_cfn import cfn_yaml, pipeline
from mlops_cfn.config import load

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def every_template_of(config_path: Path | None) -> list[dict]:
    loaded = load(config_path and str(config_path))
    built = pipeline.build_all(loaded, list(loaded.base.environments))
    return [template.to_dict() for one in built
            for template in [one.root, *(stage.template for stage in one.stages)]]


def read_back(text: str, tmp_path: Path) -> dict:
    """The template as cfn-lint (and so validate) reads the text."""
    path = tmp_path / "template.yaml"
    path.write_text(text)
    data, problems = decode(str(path))
    assert problems == []
    return json.loads(json.dumps(data))


def test_render_writes_through_libyaml_which_this_installation_has():
    # Without it, the fallback writes the same bytes (below), only slower.
    assert issubclass(cfn_yaml._DUMPER, yaml.CDumper)


@pytest.mark.parametrize("config_path", [None, *sorted(EXAMPLES.glob("*.yaml"))],
                         ids=lambda p: p.stem if p else "default")
def test_every_rendered_template_reads_back_as_the_same_template(config_path, tmp_path):
    for data in every_template_of(config_path):
        assert read_back(cfn_yaml.dump(data), tmp_path) == data


@pytest.mark.parametrize("config_path", [None, *sorted(EXAMPLES.glob("*.yaml"))],
                         ids=lambda p: p.stem if p else "default")
def test_without_libyaml_the_python_emitter_writes_the_same_bytes(config_path):
    for data in every_template_of(config_path):
        assert cfn_yaml.dump(data, python_emitter=True) == cfn_yaml.dump(data)


def test_intrinsic_functions_take_their_short_form():
    text = cfn_yaml.dump({
        "Value": {"Fn::GetAtt": ["Bucket", "Arn"]},
        "Name": {"Ref": "AWS::StackName"},
        "Url": {"Fn::Sub": "https://${Host}/x"},
        "Either": {"Fn::If": ["IsProd", {"Ref": "A"}, {"Ref": "AWS::NoValue"}]},
        "Both": {"Fn::And": [{"Condition": "A"}, {"Condition": "B"}]},
    })
    assert text == (
        "Both: !And\n- !Condition A\n- !Condition B\n"
        "Either: !If\n- IsProd\n- !Ref A\n- !Ref AWS::NoValue\n"
        "Name: !Ref AWS::StackName\n"
        "Url: !Sub https://${Host}/x\n"
        "Value: !GetAtt Bucket.Arn\n")


@pytest.mark.parametrize("python_emitter", [False, True])
def test_a_function_of_a_short_form_keeps_its_long_form(python_emitter):
    # A YAML node takes one tag: `!Base64 !Sub ...` would drop the Sub (user data).
    data = {"UserData": {"Fn::Base64": {"Fn::Sub": "echo ${Name}"}}}
    text = cfn_yaml.dump(data, python_emitter=python_emitter)
    assert text == "UserData:\n  Fn::Base64: !Sub echo ${Name}\n"
    assert decode_text(text) == data


def decode_text(text: str) -> dict:
    """The YAML as cfn-lint (CloudFormation's own reading of short forms) decodes it."""
    from cfnlint.decode.cfn_yaml import loads
    return json.loads(json.dumps(loads(text)))


def test_a_mapping_that_only_looks_like_a_function_stays_a_mapping():
    # An IAM statement's Condition block, and keys CloudFormation has no short form for.
    data = {"Condition": {"StringEquals": {"aws:SourceAccount": "1"}},
            "Other": {"Fn::Unknown": "x"}}
    text = cfn_yaml.dump(data)
    assert "!" not in text
    assert yaml.safe_load(text) == data


def test_strings_yaml_would_read_as_something_else_stay_strings(tmp_path):
    data = {"Account": "012345678901", "Mode": "0755", "Version": "2012-10-17", "Yes": "yes",
            "Port": "5439", "Empty": "", "Ratio": "1e3", "Bool": True, "Int": 3, "Float": 0.5,
            "Null": None}
    text = cfn_yaml.dump(data)
    assert "Account: '012345678901'" in text and "Mode: '0755'" in text
    assert "Ratio: '1e3'" in text  # PyYAML would write it plain; YAML 1.2 reads a float
    assert read_back(text, tmp_path) == data


def test_a_multi_line_string_is_a_literal_block_and_a_long_line_is_not_folded():
    script = "set -e\necho one\necho two\n"
    long = "arn:aws:iam::123456789012:role/" + "x" * 300
    text = cfn_yaml.dump({"Script": script, "Long": long})
    assert text == f"Long: {long}\nScript: |\n  set -e\n  echo one\n  echo two\n"


def test_keys_are_sorted_for_render_and_kept_in_order_for_a_loaded_template():
    data = {"b": 1, "a": {"d": 2, "c": 3}}
    assert cfn_yaml.dump(data) == "a:\n  c: 3\n  d: 2\nb: 1\n"
    assert cfn_yaml.dump(data, sort_keys=False) == "b: 1\na:\n  d: 2\n  c: 3\n"


def test_the_same_data_gives_the_same_bytes_whatever_its_insertion_order():
    one = {"Resources": {"B": {"Type": "X", "Properties": {"z": 1, "y": [1, 2]}}, "A": {}}}
    other = {"Resources": {"A": {}, "B": {"Properties": {"y": [1, 2], "z": 1}, "Type": "X"}}}
    assert cfn_yaml.dump(one) == cfn_yaml.dump(other)


def test_a_value_yaml_cannot_hold_is_refused():
    with pytest.raises(TypeError, match="cannot write set"):
        cfn_yaml.dump({"A": {1, 2}})
