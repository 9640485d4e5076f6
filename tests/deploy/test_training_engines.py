"""The CodeBuild training engine deploys, wires its start into its starters and deletes, on moto;
so do the SageMaker pipeline's variants (tuning, spot training) of their examples.

The training-codebuild example's training settings, with the stages training reads from: the
training stack is created with the project, its role and log group, and the output
TrainingStartArn (what the delivery pipeline's retrain build and the triggers start) names the
CodeBuild project. What moto cannot show, in one line: moto's CloudFormation does not model
AWS::CodeBuild::Project (a placeholder with its ARN stands in, moto_support.placeholders) and no
build runs, so the build itself runs in tests/stages/test_training_codebuild.py.
"""

from pathlib import Path

import pytest
import yaml

from .conftest import BUCKET, run, write_config
from .test_deploy import known_stages, outputs

pytestmark = pytest.mark.slow

STACK = "mlops-demo-dev"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "training-codebuild.yaml"


def test_the_codebuild_engine_deploys_names_its_project_as_what_starts_a_run_and_deletes(
        aws, tmp_path):
    example = yaml.safe_load(EXAMPLE.read_text())["stages"]
    data = known_stages(stages={"training": {"enabled": True, **example["training"],
                                             "triggers": ["schedule"]}})
    config_file = write_config(tmp_path / "pipeline.yaml", data)
    aws.bucket()
    result = run("deploy", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
                 "--no-validate", "--yes")
    assert result.exit_code == 0, result.output
    training = aws.nested(STACK)["TrainingStack"]
    created = set(aws.resources(training["StackId"]))
    assert {"TrainingProject", "TrainingBuildRole", "TrainingLogGroup", "ModelPackageGroup",
            "ScheduleRule", "TriggerRole"} <= created
    assert "TrainingPipeline" not in created
    start = outputs(training)["TrainingStartArn"]
    assert start.startswith("arn:aws:codebuild:us-east-1:") and ":project/" in start
    assert outputs(aws.stacks()[STACK])["TrainingStartArn"] == start

    aws.cfn.delete_stack(StackName=STACK)
    assert not [name for name in aws.stacks() if name.startswith(STACK)]


@pytest.mark.parametrize("example", ["training-tuning", "training-spot"])
def test_tuning_and_spot_training_deploy_their_pipeline_and_delete(aws, tmp_path, example):
    # The examples' training settings (a tuning step; spot capacity with checkpoints) change
    # the SageMaker pipeline's definition only: the stack deploys as the default one does. What
    # moto cannot show, in one line: no pipeline execution runs, so the steps' requests are
    # read in tests/test_training_pipeline.py.
    path = EXAMPLE.parent / f"{example}.yaml"
    settings = yaml.safe_load(path.read_text())["stages"]["training"]
    data = known_stages(stages={"training": {"enabled": True, **settings,
                                             "triggers": ["schedule"]}})
    config_file = write_config(tmp_path / "pipeline.yaml", data)
    aws.bucket()
    result = run("deploy", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
                 "--no-validate", "--yes")
    assert result.exit_code == 0, result.output
    training = aws.nested(STACK)["TrainingStack"]
    created = set(aws.resources(training["StackId"]))
    assert {"TrainingPipeline", "ModelPackageGroup", "ScheduleRule"} <= created
    assert "TrainingProject" not in created
    assert ":pipeline/" in outputs(training)["TrainingStartArn"]

    aws.cfn.delete_stack(StackName=STACK)
    assert not [name for name in aws.stacks() if name.startswith(STACK)]
