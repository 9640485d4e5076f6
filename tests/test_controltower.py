"""AWS Control Tower's proactive controls, checked the way their hooks would check a deployment.

Control Tower evaluates its `CT.*.PR.*` Guard rules on each resource a stack creates, with the
properties resolved (AWS Control Tower Controls Reference Guide, "Proactive controls"). These
tests run AWS's own rule files with AWS's Guard engine (scripts/install-cfn-guard) on every
environment of the bundled example and of every example, as rendered and with the run-time
values supplied, and hold each control the templates once failed to a fixture that fails
without its fix.
"""

import copy
import fnmatch
from pathlib import Path

import pytest

from mlops_cfn import config, pipeline
from mlops_cfn.controltower import (RUN_TIME_VALUES, State, check, environment_states, evaluate,
                                    evaluate_resources, problems)
from mlops_cfn.controltower.deployed import ACCOUNT_ID, DeployedResource, deployed_resources
from mlops_cfn.controltower.guard import find_engine, read_controls
from mlops_cfn.errors import UserError
from mlops_cfn.render import render_environments, write_tree

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
GOLDEN = REPO / "templates"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine():
    return find_engine()


def render(path: Path | None, out: Path) -> Path:
    """Every environment of a config, rendered as `mlops-cfn render --all-envs` writes it."""
    loaded = config.load(path)
    environments = list(loaded.merged)
    built = [pipeline.build(loaded.for_environment(env)) for env in environments]
    for env, files in zip(environments, render_environments(built)):
        write_tree(files, out / env)
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Each config rendered once for the module: `rendered(path)` is its folder."""
    folders: dict = {}

    def folder(path: Path | None) -> Path:
        if path not in folders:
            name = "default" if path is None else path.stem
            folders[path] = render(path, tmp_path_factory.mktemp(name))
        return folders[path]
    return folder


@pytest.fixture(scope="module")
def golden_dev() -> list[DeployedResource]:
    return deployed_resources(GOLDEN / "dev", RUN_TIME_VALUES)


def resource(resources: list[DeployedResource], logical_id: str) -> DeployedResource:
    [found] = [r for r in resources if r.logical_id == logical_id]
    return found


def changed(original: DeployedResource, change) -> DeployedResource:
    properties = copy.deepcopy(original.properties)
    change(properties)
    return DeployedResource(original.template, original.logical_id, original.type, properties,
                            {})


def status(engine, item: DeployedResource, control: str) -> str:
    state = State("fixture", "as given", Path("."), {})
    [evaluation] = [e for e in evaluate_resources([(state, item)], engine)
                    if e.control.id == control]
    return evaluation.status


# --- every environment passes ------------------------------------------------------------------

def test_the_bundled_example_passes_every_control_or_records_why_in_every_environment(engine):
    states = environment_states(GOLDEN)
    assert {(s.environment, s.name) for s in states} == {
        ("dev", "as rendered"), ("dev", "serving"), ("prod", "as rendered"), ("prod", "serving")}
    assert problems(evaluate(states, engine)) == []


def test_the_examples_below_are_there():
    assert len(EXAMPLES) >= 5  # the parametrization below is the examples folder


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_passes_every_control_or_records_why_in_every_environment(
        engine, example, rendered):
    assert check(rendered(example), engine) == []


def test_the_bootstrap_stacks_of_the_examples_pass_every_control(engine):
    # examples/bootstrap/<example>/<env>/: the roles of environments in other accounts.
    folders = sorted((REPO / "examples" / "bootstrap").iterdir())
    assert folders
    for folder in folders:
        assert check(folder, engine) == [], folder
        controls = {e.control.id for e in evaluate(environment_states(folder), engine)}
        assert {"CT.IAM.PR.1", "CT.IAM.PR.3"} <= controls  # the roles and their policies


def test_examples_are_checked_with_the_controls_of_every_resource_type_they_contain(engine):
    # Guard on: a resource type no rule file names would pass vacuously.
    controls = read_controls(engine.rules)
    covered = {t for c in controls for t in c.resource_types}
    checked = {"AWS::S3::Bucket", "AWS::KMS::Key", "AWS::SQS::Queue", "AWS::Logs::LogGroup",
               "AWS::CloudWatch::Alarm", "AWS::ECS::TaskDefinition",
               "AWS::ElasticLoadBalancingV2::Listener", "AWS::ElasticLoadBalancingV2::LoadBalancer",
               "AWS::Redshift::Cluster", "AWS::ApiGateway::Stage", "AWS::Lambda::Function",
               "AWS::IAM::Role", "AWS::CodeBuild::Project", "AWS::StepFunctions::StateMachine"}
    assert checked <= covered
    assert len(controls) > 200  # the whole catalogue of guard rules, not a sample


# --- the failures found before, each with a fixture that fails without its fix ------------------

def test_log_groups_keep_a_year_in_dev_too(engine, golden_dev):
    group = resource(golden_dev, "FlowLogGroup")
    assert group.properties["RetentionInDays"] == 365
    assert status(engine, group, "CT.CLOUDWATCH.PR.2") == "pass"
    thirty = changed(group, lambda p: p.update(RetentionInDays=30))
    assert status(engine, thirty, "CT.CLOUDWATCH.PR.2") == "fail"


@pytest.mark.parametrize("queue", ["ConsumerDeadLetterQueue", "ConsumerFailureQueue",
                                   "TriggerDeadLetterQueue", "LoadDeadLetterQueue",
                                   "RetrainDeadLetterQueue"])
def test_dead_letter_queues_are_marked_as_such(engine, golden_dev, queue):
    dead_letters = resource(golden_dev, queue)
    assert status(engine, dead_letters, "CT.SQS.PR.1") != "fail"
    unmarked = changed(dead_letters, lambda p: p.pop("RedriveAllowPolicy"))
    assert status(engine, unmarked, "CT.SQS.PR.1") == "fail"


def test_the_api_container_has_a_memory_hard_limit(engine, golden_dev):
    task = resource(golden_dev, "ApiTaskDefinition")
    assert status(engine, task, "CT.ECS.PR.7") == "pass"
    unlimited = changed(task, lambda p: p["ContainerDefinitions"][0].pop("Memory"))
    assert status(engine, unlimited, "CT.ECS.PR.7") == "fail"


def test_the_data_key_denies_grants_that_are_not_for_aws_resources(engine, golden_dev):
    key = resource(golden_dev, "DataKey")
    assert status(engine, key, "CT.KMS.PR.3") == "pass"

    def without_deny(properties):
        statements = properties["KeyPolicy"]["Statement"]
        statements[:] = [s for s in statements if s["Effect"] != "Deny"]

    assert status(engine, changed(key, without_deny), "CT.KMS.PR.3") == "fail"


def test_every_bucket_sends_event_notifications(engine, golden_dev):
    buckets = [r for r in golden_dev if r.type == "AWS::S3::Bucket"]
    assert {b.logical_id for b in buckets} >= {"AccessLogsBucket", "ArtifactBucket"}
    for bucket in buckets:
        assert status(engine, bucket, "CT.S3.PR.4") == "pass", bucket.where
    quiet = changed(resource(golden_dev, "AccessLogsBucket"),
                    lambda p: p.pop("NotificationConfiguration"))
    assert status(engine, quiet, "CT.S3.PR.4") == "fail"


def test_with_a_certificate_plain_http_redirects_to_https(engine, rendered):
    fargate = REPO / "examples" / "serving-fargate-api.yaml"
    resources = deployed_resources(rendered(fargate) / "dev", RUN_TIME_VALUES)
    listener = resource(resources, "HttpListener")
    assert status(engine, listener, "CT.ELASTICLOADBALANCING.PR.1") == "pass"
    assert not listener.metadata.get("controltower")

    def forward(properties):
        properties["DefaultActions"] = [{"Type": "forward", "TargetGroupArn": "x"}]

    assert status(engine, changed(listener, forward), "CT.ELASTICLOADBALANCING.PR.1") == "fail"


def test_redshift_snapshots_are_kept_a_week_in_every_environment(engine, rendered):
    example = REPO / "examples" / "redshift-provisioned-csv.yaml"
    for state in environment_states(rendered(example)):
        cluster = resource(deployed_resources(state.folder), "Warehouse")
        assert status(engine, cluster, "CT.REDSHIFT.PR.2") == "pass", state


# --- exceptions ----------------------------------------------------------------------------------

EXCEPTED = {
    # (template, logical id): controls excepted with a reason in its Metadata
    ("storage.yaml", "RawBucket"): {"CT.S3.PR.9"},
    ("storage.yaml", "ProcessedBucket"): {"CT.S3.PR.9"},
    ("storage.yaml", "ArtifactsBucket"): {"CT.S3.PR.9"},
    ("storage.yaml", "AccessLogsBucket"): {"CT.S3.PR.2", "CT.S3.PR.9", "CT.S3.PR.10"},
    ("cicd.yaml", "ArtifactBucket"): {"CT.S3.PR.9"},
    ("cicd.yaml", "SourceBucket"): {"CT.S3.PR.9"},
    ("serving.yaml", "LoadBalancer"): {"CT.ELASTICLOADBALANCING.PR.5"},
    ("serving.yaml", "HttpListener"): {"CT.ELASTICLOADBALANCING.PR.1"},
    ("serving.yaml", "EndpointErrorAlarm"): {"CT.CLOUDWATCH.PR.1"},
    ("serving.yaml", "EndpointLatencyAlarm"): {"CT.CLOUDWATCH.PR.1"},
    ("monitoring.yaml", "Endpoint5xxErrorsAlarm"): {"CT.CLOUDWATCH.PR.1"},
    ("monitoring.yaml", "EndpointModelLatencyAlarm"): {"CT.CLOUDWATCH.PR.1"},
    ("monitoring.yaml", "LoadBalancer5xxErrorsAlarm"): {"CT.CLOUDWATCH.PR.1"},
    ("monitoring.yaml", "Target5xxErrorsAlarm"): {"CT.CLOUDWATCH.PR.1"},
    ("monitoring.yaml", "TargetResponseTimeAlarm"): {"CT.CLOUDWATCH.PR.1"},
    ("boundary.yaml", "PermissionsBoundary"): {"CT.IAM.PR.3"},
    ("cicd.yaml", "ImageProject"): {"CT.CODEBUILD.PR.4"},
}


def test_the_bundled_example_records_exactly_the_documented_exceptions(golden_dev):
    recorded = {(r.template, r.logical_id): {e["id"] for e in
                                             r.metadata["controltower"]["exceptions"]}
                for r in golden_dev if "controltower" in r.metadata}
    assert recorded == EXCEPTED
    readme = (REPO / "README.md").read_text()
    for controls in EXCEPTED.values():
        for control in controls:
            assert control in readme, f"{control} is excepted but not in the README"


def test_an_exception_without_a_reason_is_not_honoured(engine, golden_dev):
    bucket = resource(golden_dev, "RawBucket")
    silent = DeployedResource(bucket.template, bucket.logical_id, bucket.type,
                              bucket.properties,
                              {"controltower": {"exceptions": [{"id": "CT.S3.PR.9"}]}})
    state = State("dev", "as rendered", GOLDEN / "dev", {})
    [line] = problems(evaluate_resources([(state, silent)], engine))
    assert "CT.S3.PR.9" in line and "records no reason" in line


def test_without_its_exception_a_failing_control_is_reported(engine, golden_dev):
    bucket = resource(golden_dev, "RawBucket")
    bare = DeployedResource(bucket.template, bucket.logical_id, bucket.type, bucket.properties)
    state = State("dev", "as rendered", GOLDEN / "dev", {})
    [line] = problems(evaluate_resources([(state, bare)], engine))
    assert line.startswith("dev (as rendered): storage.yaml RawBucket (AWS::S3::Bucket) fails "
                           "CT.S3.PR.9: ")
    assert "s3-rules.html" in line


def test_an_exception_no_state_needs_is_reported_as_stale(engine, golden_dev):
    key = resource(golden_dev, "DataKey")
    excused = DeployedResource(key.template, key.logical_id, key.type, key.properties,
                               {"controltower": {"exceptions": [
                                   {"id": "CT.KMS.PR.3", "reason": "no longer true"}]}})
    state = State("dev", "as rendered", GOLDEN / "dev", {})
    [line] = problems(evaluate_resources([(state, excused)], engine))
    assert "stale" in line and "CT.KMS.PR.3" in line


# --- the hook's view: resolved as CloudFormation resolves -----------------------------------------

def test_parameters_reach_nested_stacks_resolved_and_typed():
    dev = deployed_resources(GOLDEN / "dev")
    prod = deployed_resources(GOLDEN / "prod")
    consumer = resource(dev, "ConsumerFunction")
    assert consumer.properties["ReservedConcurrentExecutions"] == 10
    assert resource(prod, "ConsumerFunction").properties["ReservedConcurrentExecutions"] == 50
    # A nested stack's output read back through the root: the storage stack's key ARN.
    assert resource(dev, "FlowLogGroup").properties["KmsKeyId"] == (
        f"arn:aws:kms:us-east-1:{ACCOUNT_ID}:key/root-storagestack-datakey-example")


def test_resources_whose_condition_is_false_are_not_deployed():
    rendered = {r.logical_id for r in deployed_resources(GOLDEN / "dev")}
    serving = {r.logical_id for r in deployed_resources(GOLDEN / "dev", RUN_TIME_VALUES)}
    assert "Endpoint" not in rendered and "ApiTaskDefinition" not in rendered
    assert {"Endpoint", "ApiTaskDefinition"} <= serving
    # The delivery pipeline lives in the home environment only.
    prod = {r.logical_id for r in deployed_resources(GOLDEN / "prod")}
    assert "DeliveryPipeline" in rendered and "DeliveryPipeline" not in prod


def test_a_folder_without_parameters_json_is_refused(tmp_path):
    with pytest.raises(UserError, match="parameters.json"):
        deployed_resources(tmp_path)


# --- the key's log groups: CloudWatch Logs may encrypt exactly the project's ----------------------

def key_log_group_patterns(resources: list[DeployedResource]) -> list[str]:
    key = resource(resources, "DataKey")
    [logs] = [s for s in key.properties["KeyPolicy"]["Statement"]
              if s.get("Sid") == "KeyUseByCloudWatchLogs"]
    return logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]


def log_group_arn(name: str) -> str:
    return f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:log-group:{name}"


def admitted(patterns: list[str], name: str) -> bool:
    # ArnLike: `*` matches any run of characters (log group names hold no colon).
    return any(fnmatch.fnmatchcase(log_group_arn(name), p) for p in patterns)


@pytest.mark.parametrize("example", [None, *EXAMPLES],
                         ids=lambda p: "default" if p is None else p.stem)
def test_the_key_admits_every_log_group_the_templates_encrypt_with_it(example, rendered):
    for state in environment_states(rendered(example)):
        resources = deployed_resources(state.folder, state.overrides)
        patterns = key_log_group_patterns(resources)
        groups = [r for r in resources if r.type == "AWS::Logs::LogGroup"]
        assert groups
        for group in groups:
            assert admitted(patterns, group.properties["LogGroupName"]), (state, group.where)


def test_the_key_admits_no_log_group_of_another_project_or_environment(golden_dev):
    patterns = key_log_group_patterns(golden_dev)
    for name in ("/mlops/other-project/dev/consumer", "/mlops/mlops-demo/prod/consumer",
                 "/aws/redshift/other-dev-warehouse/userlog",
                 "/aws/sagemaker/Endpoints/other-dev-endpoint",
                 "/aws/lambda/anything", "/aws-glue/jobs/output"):
        assert not admitted(patterns, name), name
