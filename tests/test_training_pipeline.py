"""The training pipeline's SageMaker Pipelines definition (built as data), and the scripts its
processing steps run (mlops_cfn/data/training/), run here on tiny samples.

The definition is checked as SageMaker reads it: Version 2020-12-01, typed Parameters, Steps
whose Arguments have the shape of CreateProcessingJob / CreateTrainingJob / CreateModelPackage,
and `Get` / `Std:Join` / `Std:JsonGet` expressions that point at parameters, steps, outputs and
property files that exist.
"""

import ast
import dataclasses
import importlib.util
import json
import math
import re

import pytest

from mlops_cfn.config.training import (BINARY_CLASSIFICATION_METRICS, REGRESSION_METRICS,
                                       TrainingConfig)
from mlops_cfn.stages import training_pipeline as tp
from mlops_cfn.stages.training import SCRIPTS
from mlops_cfn.stages.training_pipeline import Cfn, Refs

REFS = Refs(
    role_arn=Cfn("${PipelineRole.Arn}"),
    key_arn=Cfn("${DataKeyArn}"),
    input_uri=Cfn("s3://${ProcessedBucketName}/events/"),
    artifacts_uri=Cfn("s3://${ArtifactsBucketName}/training/"),
    model_package_group=Cfn("demo-${EnvironmentName}-models"),
    training_image=Cfn("${TrainingImageUri}"),
    processing_image=Cfn("${EvaluationImageUri}"),
    security_group_id=Cfn("${JobSecurityGroup.GroupId}"),
    subnet_ids=Cfn('["${Subnets}"]', raw=True),
    prepare_script_uri=Cfn("s3://${AssetsBucket}/assets/abc/prepare.py"),
    evaluate_script_uri=Cfn("s3://${AssetsBucket}/assets/def/evaluate.py"),
    training_instance_type=Cfn("${TrainingInstanceType}"),
    training_instance_count=Cfn("${TrainingInstanceCount}", raw=True),
    training_volume_size=Cfn("${TrainingVolumeSizeGiB}", raw=True),
    training_max_runtime=Cfn("${TrainingMaxRuntimeSeconds}", raw=True),
    processing_instance_type=Cfn("${TrainingProcessingInstanceType}"),
    processing_volume_size=Cfn("${TrainingProcessingVolumeSizeGiB}", raw=True),
    processing_max_runtime=Cfn("${TrainingProcessingMaxRuntimeSeconds}", raw=True),
    metric_threshold=Cfn("${TrainingMetricThreshold}", raw=True),
    approval_status=Cfn("${ModelApprovalStatus}"),
    training_max_wait=Cfn("${TrainingMaxWaitSeconds}", raw=True),
)

# What CloudFormation would put in place of each ${...} of the Fn::Sub text.
SUBSTITUTES = {
    "PipelineRole.Arn": "arn:aws:iam::111122223333:role/pipeline",
    "DataKeyArn": "arn:aws:kms:eu-west-1:111122223333:key/k",
    "ProcessedBucketName": "processed", "ArtifactsBucketName": "artifacts",
    "EnvironmentName": "dev", "TrainingImageUri": "1.dkr.ecr.eu-west-1.amazonaws.com/x:1",
    "EvaluationImageUri": "1.dkr.ecr.eu-west-1.amazonaws.com/x:1",
    "JobSecurityGroup.GroupId": "sg-0123", "Subnets": 'subnet-a","subnet-b',
    "AssetsBucket": "assets", "TrainingInstanceType": "ml.m5.xlarge",
    "TrainingInstanceCount": "2", "TrainingVolumeSizeGiB": "30",
    "TrainingMaxRuntimeSeconds": "3600", "TrainingMaxWaitSeconds": "7200", "TrainingProcessingInstanceType": "ml.m5.large",
    "TrainingProcessingVolumeSizeGiB": "20", "TrainingProcessingMaxRuntimeSeconds": "600",
    "TrainingMetricThreshold": "0.8", "ModelApprovalStatus": "PendingManualApproval",
    "AnalyzerAccount": "468650794304", "AWS::Region": "eu-west-1",
    "AWS::URLSuffix": "amazonaws.com",
}
# The stack's view when the monitoring stage runs Model Monitor: a baseline to write.
REFS_WITH_BASELINE = dataclasses.replace(
    REFS, baseline_uri=Cfn("s3://${ArtifactsBucketName}/monitoring/baseline/"),
    analyzer_image=Cfn("${AnalyzerAccount}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}"
                       "/sagemaker-model-monitor-analyzer"))
# The bundled record schema's label and features.
COLUMNS = tp.Columns("label", ("value",))
STEP_TYPES = {"Processing", "Training", "Tuning", "Condition", "RegisterModel", "Fail"}
NAME = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")


def config(**changes) -> TrainingConfig:
    return TrainingConfig.model_validate(changes)


def definition(with_baseline: bool = False, **changes) -> dict:
    return tp.definition(config(**changes), REFS_WITH_BASELINE if with_baseline else REFS,
                         COLUMNS)


def rendered(**changes) -> dict:
    """The definition as SageMaker receives it: the Fn::Sub text with CloudFormation's values."""
    return resolve(tp.sub_body(definition(**changes)))


def resolve(text: str, substitutes: dict = SUBSTITUTES) -> dict:
    def value(match):
        name = match.group(1)
        return "${" + name[1:] + "}" if name.startswith("!") else substitutes[name]
    return json.loads(re.sub(r"\$\{([^}]*)\}", value, text))


def steps_by_name(d: dict) -> dict[str, dict]:
    """Every step, those inside a condition's branches included."""
    found = {}

    def visit(steps):
        for step in steps:
            found[step["Name"]] = step
            if step["Type"] == "Condition":
                visit(step["Arguments"].get("IfSteps", []))
                visit(step["Arguments"].get("ElseSteps", []))
    visit(d["Steps"])
    return found


def expressions(value, kind: str) -> list:
    """Every `Get` (or `Std:JsonGet`, `Std:Join`) expression in a value."""
    found = []
    if isinstance(value, dict):
        if kind in value:
            found.append(value[kind])
        for inner in value.values():
            found += expressions(inner, kind)
    elif isinstance(value, list):
        for inner in value:
            found += expressions(inner, kind)
    return found


def step(d: dict, name: str) -> dict:
    return steps_by_name(d)[name]


def args(d: dict, name: str) -> dict:
    return step(d, name)["Arguments"]


def training_jobs(d: dict) -> list[dict]:
    """What each training job runs: a Training step's arguments, or the training job
    definition of a Tuning step's jobs."""
    return [s["Arguments"] if s["Type"] == "Training"
            else s["Arguments"]["TrainingJobDefinition"]
            for s in steps_by_name(d).values() if s["Type"] in ("Training", "Tuning")]


VARIANTS = [
    {},
    {"prepare": {"enabled": False}},
    {"metric": "rmse", "hyperparameters": {"objective": "reg:squarederror"}},
    {"network_isolation": False, "inter_container_encryption": False},
    {"with_baseline": True},
    {"with_baseline": True, "prepare": {"enabled": False}},
    {"spot": {"enabled": True}},
    {"tuning": {"enabled": True}},
]


# --- the document as a whole ------------------------------------------------------------------

@pytest.mark.parametrize("changes", VARIANTS)
def test_the_rendered_body_is_valid_json_of_the_2020_12_01_format(changes):
    d = rendered(**changes)
    assert set(d) == {"Version", "Metadata", "Parameters", "Steps"}
    assert d["Version"] == "2020-12-01"
    for p in d["Parameters"]:
        assert NAME.match(p["Name"]) and p["Type"] in {"String", "Integer", "Float", "Boolean"}
    types = {"String": str, "Integer": int, "Float": (int, float)}
    for p in d["Parameters"]:
        assert isinstance(p["DefaultValue"], types[p["Type"]]), p


@pytest.mark.parametrize("changes", VARIANTS)
def test_step_names_are_unique_and_of_the_allowed_form_and_types(changes):
    d = rendered(**changes)
    all_steps = steps_by_name(d)
    names = [s["Name"] for s in d["Steps"]]
    assert names and len(names) == len(set(names))
    for name, s in all_steps.items():
        assert NAME.match(name)
        assert s["Type"] in STEP_TYPES
        assert set(s) <= {"Name", "Type", "Arguments", "PropertyFiles", "DependsOn"}


@pytest.mark.parametrize("changes", VARIANTS)
def test_every_get_names_a_parameter_a_step_property_or_the_execution(changes):
    d = rendered(**changes)
    parameters = {p["Name"] for p in d["Parameters"]}
    all_steps = steps_by_name(d)
    gets = list(expressions(d["Steps"], "Get"))
    assert gets
    for path in gets:
        kind, name, *rest = path.split(".")
        if kind == "Parameters":
            assert name in parameters, path
        elif kind == "Steps":
            assert name in all_steps and rest, path
        else:
            assert kind == "Execution" and name in {"PipelineExecutionId",
                                                    "PipelineExecutionArn"}, path


@pytest.mark.parametrize("changes", VARIANTS)
def test_a_step_only_reads_outputs_that_an_earlier_step_declares(changes):
    d = rendered(**changes)
    all_steps = steps_by_name(d)
    order = list(all_steps)
    reads = 0
    for position, name in enumerate(order):
        for path in expressions(all_steps[name].get("Arguments", {}), "Get"):
            match = re.match(r"Steps\.(\w+)\.ProcessingOutputConfig\.Outputs\['(\w+)'\]", path)
            if match:
                source, output = match.groups()
                assert order.index(source) < position, path
                outputs = all_steps[source]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
                assert output in {o["OutputName"] for o in outputs}, path
                reads += 1
    assert reads, "no step reads another's output"


def test_json_get_reads_a_property_file_the_evaluation_step_declares():
    d = rendered()
    evaluate = step(d, tp.EVALUATE)
    [report] = evaluate["PropertyFiles"]
    outputs = {o["OutputName"] for o in evaluate["Arguments"]["ProcessingOutputConfig"]["Outputs"]}
    assert report == {"PropertyFileName": "EvaluationReport", "OutputName": "evaluation",
                      "FilePath": "evaluation.json"}
    assert report["OutputName"] in outputs
    [json_get] = expressions(d["Steps"], "Std:JsonGet")
    assert json_get["PropertyFile"] == {"Get": "Steps.EvaluateModel.PropertyFiles.EvaluationReport"}


# --- parameters --------------------------------------------------------------------------------

def test_pipeline_parameters_default_to_the_stacks_settings():
    d = definition()
    defaults = {p["Name"]: p["DefaultValue"] for p in d["Parameters"]}
    assert defaults == {
        "InputDataUri": Cfn("s3://${ProcessedBucketName}/events/"),
        "TrainingInstanceType": Cfn("${TrainingInstanceType}"),
        "TrainingInstanceCount": Cfn("${TrainingInstanceCount}", raw=True),
        "ProcessingInstanceType": Cfn("${TrainingProcessingInstanceType}"),
        "MetricThreshold": Cfn("${TrainingMetricThreshold}", raw=True),
        "ModelApprovalStatus": Cfn("${ModelApprovalStatus}"),
    }


def test_numeric_settings_arrive_as_json_numbers():
    d = rendered()
    defaults = {p["Name"]: p["DefaultValue"] for p in d["Parameters"]}
    assert defaults["TrainingInstanceCount"] == 2
    assert defaults["MetricThreshold"] == 0.8
    resources = args(d, tp.TRAIN)["ResourceConfig"]
    assert resources["VolumeSizeInGB"] == 30
    assert args(d, tp.TRAIN)["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}


# --- the steps ---------------------------------------------------------------------------------

def test_steps_run_prepare_train_evaluate_then_the_condition():
    assert [(s["Name"], s["Type"]) for s in definition()["Steps"]] == [
        ("PrepareData", "Processing"), ("TrainModel", "Training"),
        ("EvaluateModel", "Processing"), ("CheckMetric", "Condition")]
    assert [s["Name"] for s in definition(prepare={"enabled": False})["Steps"]] == [
        "TrainModel", "EvaluateModel", "CheckMetric"]


def test_prepare_reads_the_processed_location_and_writes_splits_to_the_artifacts_bucket():
    a = args(rendered(), tp.PREPARE)
    [data, code] = a["ProcessingInputs"]
    assert data["S3Input"]["S3Uri"] == {"Get": "Parameters.InputDataUri"}
    assert code["S3Input"]["S3Uri"] == "s3://assets/assets/abc/prepare.py"
    assert a["AppSpecification"]["ContainerEntrypoint"] == [
        "python3", "/opt/ml/processing/input/code/prepare.py"]
    outputs = {o["OutputName"]: o["S3Output"] for o in a["ProcessingOutputConfig"]["Outputs"]}
    assert set(outputs) == {"train", "validation", "test"}
    assert outputs["test"]["S3Uri"] == {"Std:Join": {"On": "/", "Values": [
        "s3://artifacts/training/data", {"Get": "Execution.PipelineExecutionId"}, "test"]}}
    assert outputs["test"]["LocalPath"] == "/opt/ml/processing/output/test"


def test_prepare_is_told_the_format_label_features_and_split_fractions():
    c = config(prepare={"validation_fraction": 0.15, "test_fraction": 0.05})
    columns = tp.Columns("churned", ("age", "visits"))
    a = tp.definition(c, REFS, columns, input_format="csv")["Steps"][0]["Arguments"]
    assert a["AppSpecification"]["ContainerArguments"] == [
        "--input-format", "csv", "--label-column", "churned", "--feature-columns", "age,visits",
        "--validation-fraction", "0.15", "--test-fraction", "0.05"]


def test_training_reads_the_prepared_splits():
    channels = args(rendered(), tp.TRAIN)["InputDataConfig"]
    assert [(c["ChannelName"], c["ContentType"], c["DataSource"]["S3DataSource"]["S3Uri"])
            for c in channels] == [
        ("train", "text/csv",
         {"Get": "Steps.PrepareData.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}),
        ("validation", "text/csv",
         {"Get": "Steps.PrepareData.ProcessingOutputConfig.Outputs['validation'].S3Output.S3Uri"}),
    ]


def test_without_prepare_training_reads_the_processed_location_directly():
    d = rendered(prepare={"enabled": False})
    uris = [c["DataSource"]["S3DataSource"]["S3Uri"] for c in args(d, tp.TRAIN)["InputDataConfig"]]
    input_uri = {"Get": "Parameters.InputDataUri"}
    assert uris == [{"Std:Join": {"On": "", "Values": [input_uri, "train/"]}},
                    {"Std:Join": {"On": "", "Values": [input_uri, "validation/"]}}]
    test_input = args(d, tp.EVALUATE)["ProcessingInputs"][1]["S3Input"]["S3Uri"]
    assert test_input == {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.InputDataUri"},
                                                            "test/"]}}
    defaults = {p["Name"]: p["DefaultValue"] for p in d["Parameters"]}
    assert defaults["InputDataUri"] == "s3://processed/events/"


def test_training_job_has_the_shape_of_create_training_job():
    a = args(rendered(), tp.TRAIN)
    assert set(a) == {"AlgorithmSpecification", "HyperParameters", "InputDataConfig",
                      "OutputDataConfig", "ResourceConfig", "RoleArn", "StoppingCondition",
                      "VpcConfig", "EnableNetworkIsolation",
                      "EnableInterContainerTrafficEncryption", "ProfilerConfig"}
    assert a["AlgorithmSpecification"] == {"TrainingImage": SUBSTITUTES["TrainingImageUri"],
                                           "TrainingInputMode": "File"}
    assert a["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
    assert a["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    assert a["RoleArn"] == SUBSTITUTES["PipelineRole.Arn"]
    assert all(isinstance(v, str) for v in a["HyperParameters"].values())


def test_the_model_goes_to_the_artifacts_bucket_encrypted_with_the_data_key():
    a = args(rendered(), tp.TRAIN)
    assert a["OutputDataConfig"] == {"S3OutputPath": "s3://artifacts/training/models",
                                     "KmsKeyId": SUBSTITUTES["DataKeyArn"]}


@pytest.mark.parametrize("changes", VARIANTS)
def test_every_job_encrypts_its_volumes_and_outputs_with_the_data_key(changes):
    d = rendered(**changes)
    key = SUBSTITUTES["DataKeyArn"]
    assert len(training_jobs(d)) == 1
    for job in training_jobs(d):
        assert job["ResourceConfig"]["VolumeKmsKeyId"] == key
        assert job["OutputDataConfig"]["KmsKeyId"] == key
    for s in steps_by_name(d).values():
        if s["Type"] == "Processing":
            assert s["Arguments"]["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == key
            assert s["Arguments"]["ProcessingOutputConfig"]["KmsKeyId"] == key


@pytest.mark.parametrize("changes", VARIANTS)
def test_every_job_runs_in_the_private_subnets_with_the_job_security_group(changes):
    d = rendered(**changes)
    c = config(**{k: v for k, v in changes.items() if k != "with_baseline"})
    vpc = {"SecurityGroupIds": ["sg-0123"], "Subnets": ["subnet-a", "subnet-b"]}
    assert len(training_jobs(d)) == 1
    for a in training_jobs(d):
        assert a["VpcConfig"] == vpc
        assert a["EnableNetworkIsolation"] is c.network_isolation
        assert a["EnableInterContainerTrafficEncryption"] is c.inter_container_encryption
    for s in steps_by_name(d).values():
        if s["Type"] == "Processing":
            assert s["Arguments"]["NetworkConfig"] == {
                "VpcConfig": vpc, "EnableNetworkIsolation": c.network_isolation,
                "EnableInterContainerTrafficEncryption": c.inter_container_encryption}


def test_isolation_and_encryption_are_on_by_default():
    a = args(rendered(), tp.TRAIN)
    assert a["EnableNetworkIsolation"] is True
    assert a["EnableInterContainerTrafficEncryption"] is True


def test_evaluation_scores_the_trained_model_on_the_test_split():
    a = args(rendered(), tp.EVALUATE)
    inputs = {i["InputName"]: i["S3Input"] for i in a["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"] == {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"}
    assert inputs["model"]["LocalPath"] == "/opt/ml/processing/input/model"
    assert inputs["test"]["S3Uri"] == {
        "Get": "Steps.PrepareData.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"}
    assert inputs["code"]["S3Uri"] == "s3://assets/assets/def/evaluate.py"
    assert a["AppSpecification"] == {
        "ImageUri": SUBSTITUTES["EvaluationImageUri"],
        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/evaluate.py"],
        "ContainerArguments": ["--kind", "binary_classification"]}
    [output] = a["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["LocalPath"] == "/opt/ml/processing/evaluation"


@pytest.mark.parametrize("metric, comparison", [
    ("auc", "GreaterThanOrEqualTo"), ("f1", "GreaterThanOrEqualTo"),
    ("r2", "GreaterThanOrEqualTo"), ("rmse", "LessThanOrEqualTo"), ("mae", "LessThanOrEqualTo"),
])
def test_the_condition_compares_the_metric_with_the_threshold_parameter(metric, comparison):
    objective = "reg:squarederror" if metric in REGRESSION_METRICS else "binary:logistic"
    d = rendered(metric=metric, hyperparameters={"objective": objective})
    kind = "regression" if metric in REGRESSION_METRICS else "binary_classification"
    [condition] = args(d, tp.CHECK)["Conditions"]
    assert condition == {
        "Type": comparison,
        "LeftValue": {"Std:JsonGet": {
            "PropertyFile": {"Get": "Steps.EvaluateModel.PropertyFiles.EvaluationReport"},
            "Path": f"{kind}_metrics.{metric}.value"}},
        "RightValue": {"Get": "Parameters.MetricThreshold"},
    }
    assert args(d, tp.EVALUATE)["AppSpecification"]["ContainerArguments"] == ["--kind", kind]


def test_a_passing_model_is_registered_into_the_group_and_a_failing_one_fails_the_run():
    a = args(rendered(), tp.CHECK)
    [register] = a["IfSteps"]
    [fail] = a["ElseSteps"]
    assert register["Type"] == "RegisterModel"
    r = register["Arguments"]
    assert r["ModelPackageGroupName"] == "demo-dev-models"
    assert r["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    assert r["InferenceSpecification"]["Containers"] == [{
        "Image": SUBSTITUTES["TrainingImageUri"],
        "ModelDataUrl": {"Get": "Steps.TrainModel.ModelArtifacts.S3ModelArtifacts"}}]
    assert r["InferenceSpecification"]["SupportedContentTypes"] == ["text/csv"]
    assert r["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json",
        "S3Uri": {"Std:Join": {"On": "/", "Values": [
            {"Get": "Steps.EvaluateModel.ProcessingOutputConfig.Outputs['evaluation']"
                    ".S3Output.S3Uri"},
            "evaluation.json"]}}}
    assert fail["Type"] == "Fail" and "ErrorMessage" in fail["Arguments"]


def test_without_model_monitor_there_is_no_baseline_step_or_output():
    assert tp.BASELINE not in steps_by_name(definition())
    outputs = args(rendered(), tp.PREPARE)["ProcessingOutputConfig"]["Outputs"]
    assert "baseline" not in {o["OutputName"] for o in outputs}


def test_a_registered_model_gets_a_model_monitor_baseline_of_its_training_features():
    d = rendered(with_baseline=True)
    register, baseline = args(d, tp.CHECK)["IfSteps"]
    assert register["Name"] == tp.REGISTER and baseline["Name"] == tp.BASELINE
    assert baseline["Type"] == "Processing"
    a = baseline["Arguments"]
    # What the SageMaker SDK's suggest_baseline asks of the analyzer image.
    assert a["AppSpecification"] == {"ImageUri": "468650794304.dkr.ecr.eu-west-1.amazonaws.com"
                                                 "/sagemaker-model-monitor-analyzer"}
    assert a["Environment"] == {
        "dataset_format": '{"csv": {"header": false}}',
        "dataset_source": "/opt/ml/processing/input/baseline_dataset_input",
        "output_path": "/opt/ml/processing/output",
        "publish_cloudwatch_metrics": "Disabled"}
    [dataset] = a["ProcessingInputs"]
    assert dataset["S3Input"]["S3Uri"] == {
        "Get": "Steps.PrepareData.ProcessingOutputConfig.Outputs['baseline'].S3Output.S3Uri"}
    assert dataset["S3Input"]["LocalPath"] == "/opt/ml/processing/input/baseline_dataset_input"
    [report] = a["ProcessingOutputConfig"]["Outputs"]
    # Where the monitoring schedule reads statistics.json and constraints.json.
    assert report["S3Output"] == {"S3Uri": "s3://artifacts/monitoring/baseline/",
                                  "LocalPath": "/opt/ml/processing/output",
                                  "S3UploadMode": "EndOfJob"}
    prepared = args(d, tp.PREPARE)["ProcessingOutputConfig"]["Outputs"]
    assert {o["OutputName"] for o in prepared} == {"train", "validation", "test", "baseline"}


def test_without_prepare_the_baseline_reads_baseline_under_the_input_location():
    a = args(rendered(with_baseline=True, prepare={"enabled": False}), tp.BASELINE)
    assert a["ProcessingInputs"][0]["S3Input"]["S3Uri"] == {"Std:Join": {"On": "", "Values": [
        {"Get": "Parameters.InputDataUri"}, "baseline/"]}}


def test_the_evaluation_report_path_is_where_the_script_writes_the_metric():
    evaluate = load_script("evaluate.py")
    for metric in BINARY_CLASSIFICATION_METRICS + REGRESSION_METRICS:
        objective = "reg:linear" if metric in REGRESSION_METRICS else "binary:logistic"
        c = config(metric=metric, hyperparameters={"objective": objective})
        if metric in REGRESSION_METRICS:
            result = evaluate.report("regression", [1.0, 2.0, 4.0], [1.5, 2.0, 3.0])
        else:
            result = evaluate.report("binary_classification", [0.0, 1.0, 1.0], [0.2, 0.7, 0.4])
        value = result
        for part in tp.metric_path(c).split("."):
            value = value[part]
        assert isinstance(value, float)


# --- rendering into Fn::Sub text ---------------------------------------------------------------

def test_literal_dollar_braces_are_escaped_and_placeholders_are_not():
    text = tp.sub_body({"a": "cost ${x}", "b": Cfn("${Real}"), "c": Cfn("${N}", raw=True),
                        "d": [Cfn('["${L}"]', raw=True)]})
    assert '"cost ${!x}"' in text
    assert '"${Real}"' in text
    assert '"c": ${N}' in text
    assert '["${L}"]' in text
    assert resolve(text, {"Real": "r", "N": "3", "L": 'p","q'}) == {
        "a": "cost ${x}", "b": "r", "c": 3, "d": [["p", "q"]]}


def test_hyperparameters_with_dollar_braces_survive_substitution():
    d = rendered(hyperparameters={"objective": "binary:logistic", "note": "${not-a-ref}"})
    assert args(d, tp.TRAIN)["HyperParameters"]["note"] == "${not-a-ref}"


def test_a_nul_in_literal_text_is_refused():
    with pytest.raises(ValueError, match="NUL"):
        tp.sub_body({"a": "x\x00"})


# --- the shipped scripts -----------------------------------------------------------------------

def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), SCRIPTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["evaluate.py", "prepare.py"])
def test_scripts_compile_for_the_containers_python(name):
    source = (SCRIPTS / name).read_text(encoding="utf-8")
    # The XGBoost containers run Python 3.8 or later.
    ast.parse(source, filename=name, feature_version=(3, 8))
    compile(source, name, "exec")


@pytest.fixture(scope="module")
def evaluate():
    return load_script("evaluate.py")


@pytest.fixture(scope="module")
def prepare():
    return load_script("prepare.py")


def test_auc_is_the_share_of_positive_negative_pairs_ranked_right(evaluate):
    # Pairs (positive, negative): (0.8, 0.1) right, (0.8, 0.4) right, (0.35, 0.1) right,
    # (0.35, 0.4) wrong: 3 of 4.
    assert evaluate.auc([1, 0, 1, 0], [0.8, 0.1, 0.35, 0.4]) == 0.75
    assert evaluate.auc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts half
    assert evaluate.auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0


def test_classification_metrics_at_the_half_threshold(evaluate):
    labels = [1, 1, 1, 0, 0]
    scores = [0.9, 0.6, 0.3, 0.7, 0.2]  # TP 2, FN 1, FP 1, TN 1
    m = evaluate.binary_classification_metrics(labels, scores)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(4 / 6)  # 4 of the 6 positive-negative pairs


def test_precision_without_positive_predictions_is_zero(evaluate):
    m = evaluate.binary_classification_metrics([1, 0], [0.1, 0.2])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_regression_metrics(evaluate):
    m = evaluate.regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0])
    assert m["mse"] == 1.0
    assert m["rmse"] == 1.0
    assert m["mae"] == 0.5
    assert m["r2"] == pytest.approx(1 - 4 / 5)


@pytest.mark.parametrize("call, message", [
    (lambda e: e.auc([1, 1], [0.2, 0.3]), "only one class"),
    (lambda e: e.binary_classification_metrics([2, 0], [0.2, 0.3]), "0 or 1"),
    (lambda e: e.regression_metrics([3.0, 3.0], [1.0, 2.0]), "every test label"),
    (lambda e: e.regression_metrics([1.0], [1.0, 2.0]), "1 labels but 2"),
    (lambda e: e.report("multiclass", [1.0], [1.0]), "unknown kind"),
])
def test_undefined_metrics_fail_the_step_with_a_reason(evaluate, call, message):
    with pytest.raises(evaluate.EvaluationError, match=message):
        call(evaluate)


def test_evaluate_reads_the_test_csv_and_writes_the_model_quality_report(evaluate, tmp_path):
    (tmp_path / "part-0.csv").write_text("1,0.5,3\n0,,1\n")
    (tmp_path / "part-1.csv").write_text("1,2,2\n0,1,9\n")
    (tmp_path / "_SUCCESS").write_text("")
    seen = []

    def predict(rows):
        seen.extend(rows)
        return [0.9 if row[1] in (3.0, 2.0) else 0.1 for row in rows]

    result = evaluate.evaluate("binary_classification", tmp_path, predict)
    assert len(seen) == 4 and math.isnan(seen[1][0])
    assert result["test_rows"] == 4
    assert result["binary_classification_metrics"]["auc"] == {"value": 1.0}
    assert set(result["binary_classification_metrics"]) == set(BINARY_CLASSIFICATION_METRICS)
    json.dumps(result, allow_nan=False)


def test_evaluate_refuses_an_empty_test_split(evaluate, tmp_path):
    with pytest.raises(evaluate.EvaluationError, match="no test rows"):
        evaluate.evaluate("regression", tmp_path, lambda rows: [])


def test_model_archives_that_escape_their_folder_are_refused(evaluate, tmp_path):
    import io
    import tarfile
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(evaluate.EvaluationError, match="refusing"):
        evaluate.extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape").exists()


def test_a_rows_split_depends_only_on_its_content(prepare):
    row = ["1", "0.5", "3"]
    assert prepare.assign_split(row, 0.2, 0.1) == prepare.assign_split(list(row), 0.2, 0.1)
    counts = {"train": 0, "validation": 0, "test": 0}
    for i in range(5000):
        counts[prepare.assign_split([str(i % 2), str(i)], 0.2, 0.1)] += 1
    assert 0.17 < counts["validation"] / 5000 < 0.23
    assert 0.08 < counts["test"] / 5000 < 0.12


def test_prepare_writes_label_first_headerless_splits_of_the_numeric_columns(prepare, tmp_path):
    data = tmp_path / "in" / "year=2024"
    data.mkdir(parents=True)
    lines = ["id,age,label,city,visits"] + [
        f"u{i},{20 + i % 50},{i % 2},Paris,{i % 7 if i % 5 else ''}" for i in range(300)]
    (data / "part-0.csv").write_text("\n".join(lines) + "\n")
    (data / "_SUCCESS").write_text("")
    counts = prepare.prepare(tmp_path / "in", tmp_path / "out", "csv", "label", None, 0.2, 0.1)
    assert sum(counts.values()) == 300 and all(counts.values())
    train = (tmp_path / "out" / "train" / "data.csv").read_text().splitlines()
    assert len(train) == counts["train"]
    # label, then age and visits (id and city are text); a missing visit stays empty.
    first = train[0].split(",")
    assert len(first) == 3 and first[0] in ("0", "1")
    assert any(line.endswith(",") for line in train)
    # The training rows once more without the label: what the endpoint will be sent.
    baseline = (tmp_path / "out" / "baseline" / "data.csv").read_text().splitlines()
    assert baseline == [line.split(",", 1)[1] for line in train]


def test_prepare_takes_configured_features_in_their_order(prepare, tmp_path):
    (tmp_path / "in").mkdir()
    rows = ["a,b,y"] + [f"{i},{i * 2},{i % 2}" for i in range(100)]
    (tmp_path / "in" / "d.csv").write_text("\n".join(rows))
    prepare.prepare(tmp_path / "in", tmp_path / "out", "csv", "y", ["b", "a"], 0.2, 0.1)
    lines = [line for split in ("train", "validation", "test")
             for line in (tmp_path / "out" / split / "data.csv").read_text().splitlines()]
    assert len(lines) == 100
    for line in lines:
        y, b, a = (int(v) for v in line.split(","))
        assert b == 2 * a and y == a % 2


def test_prepare_refuses_text_in_a_feature_and_a_missing_column(prepare, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "d.csv").write_text("a,y\n1,0\nx,1\n")
    with pytest.raises(prepare.PrepareError, match="column 'a' holds 'x'"):
        prepare.prepare(tmp_path / "in", tmp_path / "out", "csv", "y", ["a"], 0.2, 0.1)
    with pytest.raises(prepare.PrepareError, match="no column 'b'"):
        prepare.prepare(tmp_path / "in", tmp_path / "out", "csv", "y", ["b"], 0.2, 0.1)


def test_prepare_keeps_headerless_csv_as_it_is_and_needs_rows_for_every_split(prepare, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "d.csv").write_text("1,2,3\n")
    with pytest.raises(prepare.PrepareError, match="too few rows"):
        prepare.prepare(tmp_path / "in", tmp_path / "out", "csv_headerless", "", None, 0.2, 0.1)
    with pytest.raises(prepare.PrepareError, match="no data files"):
        prepare.prepare(tmp_path / "empty", tmp_path / "out", "csv", "y", None, 0.2, 0.1)


# --- managed spot training -----------------------------------------------------------------------

def test_spot_training_checkpoints_each_execution_and_waits_at_most_the_configured_time():
    """AWS: "Managed Spot Training in Amazon SageMaker AI": EnableManagedSpotTraining, a
    MaxWaitTimeInSeconds not below MaxRuntimeInSeconds, and checkpoints in S3 to resume from."""
    train = args(rendered(spot={"enabled": True}), tp.TRAIN)
    assert train["EnableManagedSpotTraining"] is True
    assert train["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600,
                                          "MaxWaitTimeInSeconds": 7200}
    checkpoints = train["CheckpointConfig"]
    assert checkpoints["LocalPath"] == "/opt/ml/checkpoints"
    assert checkpoints["S3Uri"] == {"Std:Join": {"On": "/", "Values": [
        "s3://artifacts/training/checkpoints", {"Get": "Execution.PipelineExecutionId"},
        ""]}}, (
        "under the artifacts prefix the pipeline role reads and writes, one folder per run")


def test_on_demand_training_has_no_spot_settings():
    train = args(rendered(), tp.TRAIN)
    assert "EnableManagedSpotTraining" not in train and "CheckpointConfig" not in train
    assert train["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}


def test_a_spot_wait_shorter_than_the_runtime_is_refused():
    with pytest.raises(ValueError, match=r"spot.max_wait_seconds \(3000\) must be at least "
                                         r"max_runtime_seconds \(3600\)"):
        config(max_runtime_seconds=3600, spot={"enabled": True, "max_wait_seconds": 3000})


# --- automatic model tuning ----------------------------------------------------------------------

TUNED = {"tuning": {"enabled": True, "strategy": "Random", "max_jobs": 12,
                    "max_parallel_jobs": 3, "early_stopping": False,
                    "ranges": {"eta": {"min": 0.01, "max": 0.3, "scaling": "Logarithmic"},
                               "max_depth": {"min": 3, "max": 9, "integer": True},
                               "booster": {"values": ["gbtree", "dart"]}}}}


def test_tuning_replaces_the_training_job_and_keeps_the_steps_around_it():
    assert [(s["Name"], s["Type"]) for s in definition(**TUNED)["Steps"]] == [
        ("PrepareData", "Processing"), ("TuneModel", "Tuning"),
        ("EvaluateModel", "Processing"), ("CheckMetric", "Condition")]


def test_the_tuning_job_searches_the_ranges_for_the_xgboost_validation_metric():
    """AWS: "Tune an XGBoost Model" (validation:auc is maximized) and CreateHyperParameterTuning
    Job's ParameterRanges (values as text)."""
    config = args(rendered(**TUNED), tp.TUNE)["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Random"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize",
                                                          "MetricName": "validation:auc"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 12,
                                        "MaxParallelTrainingJobs": 3}
    assert config["TrainingJobEarlyStoppingType"] == "Off"
    assert config["ParameterRanges"] == {
        "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "3", "MaxValue": "9",
                                    "ScalingType": "Auto"}],
        "ContinuousParameterRanges": [{"Name": "eta", "MinValue": "0.01", "MaxValue": "0.3",
                                       "ScalingType": "Logarithmic"}],
        "CategoricalParameterRanges": [{"Name": "booster", "Values": ["gbtree", "dart"]}]}


def test_tuned_hyperparameters_are_not_also_fixed():
    job = args(rendered(**TUNED), tp.TUNE)["TrainingJobDefinition"]
    fixed = job["StaticHyperParameters"]
    assert "eta" not in fixed and "max_depth" not in fixed
    assert fixed["eval_metric"] == "auc" and fixed["num_round"] == "200"
    assert "HyperParameters" not in job and "ProfilerConfig" not in job, (
        "fields HyperParameterTrainingJobDefinition does not have")


def test_the_best_tuned_model_is_evaluated_and_registered():
    d = rendered(**TUNED)
    best = {"Std:Join": {"On": "/", "Values": [
        "s3://artifacts/training/models",
        {"Get": "Steps.TuneModel.TrainingJobSummaries[0].TrainingJobName"},
        "output/model.tar.gz"]}}
    [model] = [i for i in args(d, tp.EVALUATE)["ProcessingInputs"] if i["InputName"] == "model"]
    assert model["S3Input"]["S3Uri"] == best
    [container] = args(d, tp.REGISTER)["InferenceSpecification"]["Containers"]
    assert container["ModelDataUrl"] == best
    assert args(d, tp.TUNE)["TrainingJobDefinition"]["OutputDataConfig"]["S3OutputPath"] == (
        "s3://artifacts/training/models"), "where the join looks for the best job's model"


@pytest.mark.parametrize("changes, expected", [
    ({"tuning": {"enabled": True, "objective_metric": "validation:rmse"}},
     "tuning optimizes validation:rmse, which XGBoost reports only as "
     "hyperparameters.eval_metric 'rmse' (it is 'auc')"),
    ({"tuning": {"enabled": True}, "hyperparameters": {"objective": "binary:logistic",
                                                        "eval_metric": "poisson-nloglik"}},
     "'validation:poisson-nloglik' is not a metric the built-in XGBoost reports"),
    ({"tuning": {"enabled": True}, "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"},
     "an image of your own needs the metric definitions"),
    ({"tuning": {"enabled": True}, "spot": {"enabled": True}},
     "would share one checkpoint folder"),
    ({"tuning": {"enabled": True, "max_jobs": 2, "max_parallel_jobs": 3}},
     "max_parallel_jobs (3) exceeds max_jobs (2)"),
    ({"tuning": {"enabled": True, "ranges": {"eta": {"min": 0.5, "max": 0.1}}}},
     "min (0.5) must be below max (0.1)"),
    ({"tuning": {"enabled": True, "ranges": {"eta": {"min": 0, "max": 1,
                                                     "scaling": "Logarithmic"}}}},
     "Logarithmic scaling needs min above 0"),
    ({"tuning": {"enabled": True, "ranges": {"booster": {"values": ["a"], "min": 1}}}},
     "values (categorical) take no min"),
])
def test_what_a_tuning_job_cannot_do_is_a_config_error(changes, expected):
    with pytest.raises(ValueError) as raised:
        config(**changes)
    assert expected in str(raised.value)
