"""The composer: stages wired by output name under one root template."""

from pathlib import Path

import pytest
from troposphere import (And, Condition, Equals, If, Join, Output, Ref, Select, Split, Sub, Tags,
                         sqs)

from mlops_cfn import pipeline
from mlops_cfn.config import StagesConfig, load
from mlops_cfn.errors import UserError
from mlops_cfn.outputs import Wire, presence
from mlops_cfn.pipeline import StageSpec, compose, order_stages
from mlops_cfn.stage import StageBuilder

from .helpers import config_with, foundation_config_with

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
A_OUT = Wire("AOut", "offered by a")
B_OUT = Wire("BOut", "offered by b")


def fake_stage(name, needs=(), offers=(), uses_environment=False):
    builder = StageBuilder(name, "demo", f"{name} stage")
    queue = builder.add(sqs.Queue(f"{name.capitalize()}Queue"))
    for wire in needs:
        builder.input(wire)
    for wire in offers:
        builder.output(wire, Ref(queue))
    if uses_environment:
        _ = builder.environment
    return builder.finish()


def test_stages_are_ordered_by_their_wires_not_by_the_list():
    consumer = fake_stage("b", needs=[A_OUT], offers=[B_OUT])
    producer = fake_stage("a", offers=[A_OUT])
    assert [s.name for s in order_stages([consumer, producer])] == ["a", "b"]


def test_each_input_is_fed_from_its_producers_stack_output():
    stages = order_stages([fake_stage("a", offers=[A_OUT]), fake_stage("b", needs=[A_OUT])])
    root = compose(stages, "demo", {}).to_dict()
    assert root["Resources"]["BStack"]["Properties"]["Parameters"] == {
        "AOut": {"Fn::GetAtt": ["AStack", "Outputs.AOut"]}}
    assert root["Resources"]["BStack"]["Properties"]["TemplateURL"] == "b.yaml"
    assert root["Outputs"]["AOut"]["Value"] == {"Fn::GetAtt": ["AStack", "Outputs.AOut"]}


def test_settings_become_root_parameters_with_the_base_value_as_default():
    stage = fake_stage("a", uses_environment=True)
    root = compose([stage], "demo", {"EnvironmentName": "ignored-not-a-default"}).to_dict()
    assert root["Resources"]["AStack"]["Properties"]["Parameters"] == {
        "EnvironmentName": {"Ref": "EnvironmentName"}}
    assert root["Parameters"]["EnvironmentName"]["MaxLength"] == 10


def test_an_input_nobody_offers_is_an_error():
    with pytest.raises(UserError, match="stage 'b' needs 'AOut', which no stage offers"):
        order_stages([fake_stage("b", needs=[A_OUT])])


def test_an_input_offered_only_by_a_disabled_stage_says_which_switch_to_flip():
    with pytest.raises(UserError) as raised:
        order_stages([fake_stage("b", needs=[A_OUT])], disabled=[fake_stage("a", offers=[A_OUT])],
                      toggles={"a": "stages.a.enabled", "b": "stages.b.enabled"})
    assert raised.value.problems == (
        "stage 'a' is disabled, but 'b' takes its outputs (AOut): enable it (stages.a.enabled) "
        "or disable 'b'",)


def test_every_stage_needing_a_disabled_one_is_named_on_one_line():
    with pytest.raises(UserError) as raised:
        order_stages([fake_stage("b", needs=[A_OUT, B_OUT]), fake_stage("c", needs=[A_OUT])],
                     disabled=[fake_stage("a", offers=[A_OUT, B_OUT])],
                     toggles={"a": "stages.a.enabled", "b": "stages.b.enabled"})
    # c has no switch of its own (as the network stage), so it is not offered as a fix.
    assert raised.value.problems == (
        "stage 'a' is disabled, but 'b', 'c' take its outputs (AOut, BOut): enable it "
        "(stages.a.enabled) or disable 'b'",)


def test_two_providers_of_one_output_is_an_error():
    with pytest.raises(UserError, match="output 'AOut' is offered by both stage 'a' and stage 'c'"):
        order_stages([fake_stage("a", offers=[A_OUT]), fake_stage("c", offers=[A_OUT])])


def test_a_cycle_is_an_error_that_shows_the_loop():
    with pytest.raises(UserError, match=r"stages feed each other in a cycle: (a -> b -> a|b -> a -> b)"):
        order_stages([fake_stage("a", needs=[B_OUT], offers=[A_OUT]),
                      fake_stage("b", needs=[A_OUT], offers=[B_OUT])])


def test_build_prefixes_wiring_errors_with_the_config_file():
    registry = (
        StageSpec("a", lambda c: fake_stage("a", offers=[A_OUT]), lambda c: False, "stages.a.enabled"),
        StageSpec("b", lambda c: fake_stage("b", needs=[A_OUT]), lambda c: True, "stages.b.enabled"),
    )
    with pytest.raises(UserError, match=r"^pipeline.yaml: stage 'a' is disabled, but 'b' takes"):
        pipeline.build(config_with(), registry=registry)


def test_the_default_pipeline_has_one_nested_stack_per_enabled_stage():
    built = pipeline.build(config_with())
    stacks = {k for k, r in built.root.to_dict()["Resources"].items()
              if r["Type"] == "AWS::CloudFormation::Stack"}
    # And the permissions boundary of their roles (boundary.py).
    assert stacks == {"NetworkStack", "StorageStack", "IngestionStack", "EtlStack",
                      "AnalyticsStack", "TrainingStack", "ServingStack", "MonitoringStack",
                      "CicdStack", "BoundaryStack"}


def test_disabling_ingestion_removes_its_stack_and_wires():
    built = pipeline.build(foundation_config_with({"stages": {"ingestion": {"enabled": False}}}))
    assert {s.name for s in built.stages} == {"network", "storage", "boundary"}
    assert "IngestStreamName" not in built.root.to_dict().get("Outputs", {})


def test_disabling_storage_is_refused_while_ingestion_needs_it():
    with pytest.raises(UserError, match="stage 'storage' is disabled, but 'network', "
                                        "'ingestion', .* take its outputs"):
        pipeline.build(config_with({"stages": {"storage": {"enabled": False}}}))


def test_parameters_file_holds_the_environments_values_and_the_root_defaults_the_base():
    from mlops_cfn.assets import PACKAGING_PARAMETERS
    built = pipeline.build(config_with(env="prod"))
    assert built.parameters["EnvironmentName"] == "prod"
    assert built.parameters["StreamRetentionHours"] == "168"
    root = built.root.to_dict()
    assert root["Parameters"]["StreamRetentionHours"]["Default"] == "24"
    assert "Default" not in root["Parameters"]["EnvironmentName"]
    # Every root parameter has this environment's value, except where packaging put the assets.
    assert set(built.parameters) == set(root["Parameters"]) - set(PACKAGING_PARAMETERS)
    assert "Default" not in root["Parameters"]["AssetsBucket"]
    assert root["Parameters"]["AssetsPrefix"]["Default"] == ""


def test_environments_differing_only_in_values_render_identical_templates():
    dev, prod = (pipeline.build(config_with(env=e)) for e in ("dev", "prod"))
    assert dev.root.to_json() == prod.root.to_json()
    for a, b in zip(dev.stages, prod.stages, strict=True):
        assert a.template.to_json() == b.template.to_json(), a.name
    assert dev.parameters != prod.parameters


def test_a_stage_asset_is_content_addressed_and_named_through_the_assets_bucket_parameter():
    from mlops_cfn.assets import zip_files
    builder = StageBuilder("a", "demo", "a stage")
    script = builder.asset("job.py", b"print('hi')\n")
    same = builder.asset("job.py", b"print('hi')\n")
    other = builder.asset("job.py", b"print('bye')\n")
    stage = builder.finish()
    assert script.key == same.key != other.key
    assert script.key.startswith("assets/") and script.key.endswith("/job.py")
    assert len(stage.assets) == 2
    assert script.s3_uri.to_dict() == {
        "Fn::Sub": f"s3://${{AssetsBucket}}/${{AssetsPrefix}}{script.key}"}
    assert script.s3_key.to_dict() == {"Fn::Sub": f"${{AssetsPrefix}}{script.key}"}
    assert {"AssetsBucket", "AssetsPrefix"} <= set(stage.settings)
    root = compose([stage], "demo", {}).to_dict()
    assert "Default" not in root["Parameters"]["AssetsBucket"]
    assert zip_files({"b.py": b"2", "a.py": b"1"}) == zip_files({"a.py": b"1", "b.py": b"2"})


def test_render_writes_assets_beside_the_templates_and_checks_them_for_drift(tmp_path):
    from mlops_cfn.render import drift, render_files, write_tree
    builder = StageBuilder("a", "demo", "a stage")
    asset = builder.asset("job.py", b"print('hi')\n")
    stage = builder.finish()
    built = pipeline.Pipeline("dev", False, compose([stage], "demo", {}), (stage,), {}, {})
    files = render_files(built)
    write_tree(files, tmp_path / "out")
    assert (tmp_path / "out" / asset.key).read_bytes() == b"print('hi')\n"
    assert drift(files, tmp_path / "out") == []
    (tmp_path / "out" / asset.key).write_bytes(b"changed")
    assert drift(files, tmp_path / "out") == [f"{tmp_path / 'out' / asset.key}: differs from what "
                                              "the code renders"]
    write_tree(files, tmp_path / "out")  # a directory holding assets/ may be replaced


def test_rendered_yaml_is_the_cfn_yaml_text_of_the_template():
    from mlops_cfn import cfn_yaml
    from mlops_cfn.render import template_text
    built = pipeline.build(config_with())
    for template in [built.root, *(s.template for s in built.stages)]:
        assert template_text(template, "yaml") == cfn_yaml.dump(template.to_dict())


def test_list_parameters_travel_to_nested_stacks_comma_joined():
    # CloudFormation refuses a list as a nested stack parameter value.
    built = pipeline.build(config_with({"network": {
        "mode": "existing", "vpc_id": "vpc-0123456789abcdef0", "cidr": "10.9.0.0/16",
        "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1",
                       "subnet-0123456789abcdef2"],
        "subnet_zones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"]}}))
    root = built.root.to_dict()
    passed = root["Resources"]["NetworkStack"]["Properties"]["Parameters"]
    assert passed["ExistingSubnetIds"] == {"Fn::Join": [",", {"Ref": "ExistingSubnetIds"}]}
    assert passed["ExistingVpcId"] == {"Ref": "ExistingVpcId"}


@pytest.mark.parametrize("stage", [name for name in StagesConfig.model_fields
                                   if name != "storage"])
def test_any_one_stage_can_be_switched_off_and_the_rest_still_wire(stage):
    built = pipeline.build(config_with({"stages": {stage: {"enabled": False}}}))
    names = {s.name for s in built.stages}
    assert stage not in names and {"network", "storage"} <= names
    offered = {w.name for s in built.stages for w in s.outputs}
    assert all(w.name in offered for s in built.stages for w in s.inputs)


# --- conditional wires ---------------------------------------------------------------------------
# A wire naming something its producer creates only under a condition carries that condition
# (outputs.py); the composer refuses a consumer that uses it ungated.

THING = Wire("ThingName", "named before it exists",
             presence=presence("ThingExists", "the thing", "HasThing"))


def thing_producer():
    builder = StageBuilder("producer", "demo", "makes a thing once asked")
    builder.template.add_condition("Asked", Equals(builder.environment, "prod"))
    builder.add(sqs.Queue("Thing", Condition="Asked", QueueName="thing"))
    builder.output(THING, "thing", condition="Asked")
    return builder.finish()


def thing_consumer(*uses):
    """A consumer whose queue policy (or output) uses THING as `uses` says."""
    builder = StageBuilder("consumer", "demo", "watches the thing")
    name = builder.input(THING)
    queue = builder.add(sqs.Queue("Watcher"))
    for use in uses:
        use(builder, name, queue)
    return builder.finish()


def tagged(condition=None, value=lambda name: name):
    def use(builder, name, queue):
        extra = {"Condition": condition} if condition else {}
        builder.add(sqs.Queue(f"Tagged{len(builder.template.resources)}", **extra,
                              Tags=Tags(watches=value(name))))
    return use


def registry_of(consumer):
    return (StageSpec("producer", lambda c: thing_producer(), lambda c: True, "producer"),
            StageSpec("consumer", lambda c: consumer, lambda c: True, "consumer"))


def test_a_consumer_using_a_conditional_wire_ungated_is_refused_in_one_line():
    with pytest.raises(UserError) as raised:
        pipeline.build(config_with(), registry=registry_of(thing_consumer(tagged())))
    assert raised.value.problems == (
        "stage 'consumer': resource Tagged1 uses wire 'ThingName' outside condition 'HasThing' "
        "(what ThingName names may not exist: give Tagged1 Condition HasThing, or use the wire "
        "only inside Fn::If [HasThing, ...])",)


@pytest.mark.parametrize("use", [
    tagged(value=lambda name: Sub("watching ${ThingName}")),
    tagged(value=lambda name: Join("-", [Select(0, Split(",", name)), "x"])),
    tagged(value=lambda name: If("HasThing", "nothing", name)),  # the false branch
    tagged("Other", lambda name: name),  # a condition that does not imply HasThing
], ids=["sub", "inside-join-select", "false-branch", "unrelated-condition"])
def test_every_kind_of_ungated_mention_is_found(use):
    def other_condition(builder, name, queue):
        builder.template.add_condition("Other", Equals(builder.environment, "dev"))
    consumer = thing_consumer(other_condition, use)
    with pytest.raises(UserError, match=r"resource Tagged\d+ uses wire 'ThingName'"):
        pipeline.build(config_with(), registry=registry_of(consumer))


def test_an_ungated_output_is_refused_too():
    def output(builder, name, queue):
        builder.template.add_output(Output("Echo", Value=name))
    with pytest.raises(UserError, match="stage 'consumer': output Echo uses wire 'ThingName'"):
        pipeline.build(config_with(), registry=registry_of(thing_consumer(output)))


def test_gated_uses_pass_and_the_presence_is_wired_from_the_producer():
    def both(builder, name, queue):
        builder.template.add_condition("Other", Equals(builder.environment, "dev"))
        builder.template.add_condition("HasThingAndOther", And(Condition("HasThing"),
                                                                Condition("Other")))
    consumer = thing_consumer(
        both,
        tagged("HasThing"),
        tagged("HasThingAndOther"),
        tagged(value=lambda name: If("HasThing", Sub("watching ${ThingName}"), "nothing")),
        tagged(value=lambda name: Sub("${!ThingName} is literal text")),
    )
    built = pipeline.build(config_with(), registry=registry_of(consumer))
    passed = built.root.to_dict()["Resources"]["ConsumerStack"]["Properties"]["Parameters"]
    assert {k: v for k, v in passed.items() if k.startswith("Thing")} == {
        "ThingName": {"Fn::GetAtt": ["ProducerStack", "Outputs.ThingName"]},
        "ThingExists": {"Fn::GetAtt": ["ProducerStack", "Outputs.ThingExists"]}}
    producer, consumer_stage = (s.template.to_dict() for s in built.stages)
    assert producer["Outputs"]["ThingExists"]["Value"] == {"Fn::If": ["Asked", "true", "false"]}
    assert producer["Outputs"]["ThingName"]["Value"] == "thing"
    assert consumer_stage["Parameters"]["ThingExists"]["AllowedValues"] == ["true", "false"]
    assert consumer_stage["Conditions"]["HasThing"] == {
        "Fn::Equals": [{"Ref": "ThingExists"}, "true"]}


def test_a_conditional_wire_is_offered_only_with_its_condition_and_a_plain_one_without():
    builder = StageBuilder("producer", "demo", "makes a thing")
    builder.template.add_condition("Asked", Equals(builder.environment, "prod"))
    with pytest.raises(ValueError, match="ThingName names a resource created under a condition"):
        builder.output(THING, "thing")
    with pytest.raises(ValueError, match="AOut is not conditional"):
        builder.output(A_OUT, "a", condition="Asked")
    with pytest.raises(ValueError, match="no condition 'Missing'"):
        builder.output(THING, "thing", condition="Missing")
    builder.output(THING, "thing", condition=True)
    assert builder.finish().template.to_dict()["Outputs"]["ThingExists"]["Value"] == "true"


def test_the_examples_below_are_there():
    assert len(list(EXAMPLES.glob("*.yaml"))) >= 5


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_stage_of_every_example_gates_the_conditional_wires_it_uses(example):
    loaded = load(EXAMPLES / example)
    for built in pipeline.build_all(loaded, loaded.merged):
        for stage in built.stages:
            assert pipeline.ungated_uses(stage) == [], stage.name


def test_the_bundled_default_gates_the_endpoint_and_the_api_service():
    built = pipeline.build(config_with())
    monitoring = next(s for s in built.stages if s.name == "monitoring")
    assert {w.name for w in monitoring.inputs if w.presence} == {"EndpointName",
                                                                  "EcsServiceName"}
    assert pipeline.ungated_uses(monitoring) == []


# --- values chosen at run time (issue 12, finding 6) -----------------------------------------

# And the account the delivery pipeline runs in, which packaging sets (sharing.py).
RUN_TIME = {"ModelPackageArn", "ModelDataUrl", "ModelImageUri", "ApiImageTag",
            "DeliveryAccountId"}


def test_the_model_and_the_image_are_the_values_chosen_at_run_time():
    from mlops_cfn.settings import run_time_parameters

    assert run_time_parameters() == RUN_TIME


def test_the_parameters_file_never_carries_a_model_or_image_the_config_leaves_empty():
    """The pipeline deploys with it: an empty model there would tear serving down on every run
    (CloudFormation applies what the file says, and gives what it omits the template default,
    so the deployment passes the live value instead: package.template_configuration)."""
    import json

    from mlops_cfn.render import render_files

    given = json.loads(render_files(pipeline.build(config_with()))["parameters.json"])
    assert not RUN_TIME & set(given["Parameters"])
    assert given["Parameters"]["EndpointInstanceType"] == "ml.m5.large", "other values stay"
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-demo-dev-models/3"
    chosen = config_with({"stages": {"serving": {"model_package_arn": arn}}})
    given = json.loads(render_files(pipeline.build(chosen))["parameters.json"])
    assert given["Parameters"]["ModelPackageArn"] == arn, "a model the config names is applied"


def test_the_registry_is_the_network_then_every_stages_section_of_the_config():
    # One list of stages: the config model's `stages` sections; the composer follows it.
    assert [spec.name for spec in pipeline.REGISTRY] == ["network", *StagesConfig.model_fields]
    assert [spec.toggle for spec in pipeline.REGISTRY[1:]] == [
        f"stages.{name}.enabled" for name in StagesConfig.model_fields]
