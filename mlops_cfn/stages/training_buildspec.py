"""The CodeBuild training build's spec, as data (a dict the tests read) and its text.

One build does what the SageMaker pipeline's steps do, with the same scripts
(mlops_cfn/data/training/), in one working directory of the build's source (the scripts' zip):

    download   the input location (INPUT_URI) to input/           register.py download
    prepare    input/ -> splits/{train,validation,test}/           prepare.py (with prepare on;
               off: input/ already holds the three splits)
    train      splits/train, splits/validation -> model/model.tar.gz   train.py
    evaluate   model/, splits/test -> evaluation/evaluation.json       evaluate.py
    upload     the model and the report under the artifacts prefix,    register.py upload
               models/ and evaluation/ of `codebuild-<build uuid>`, with the data key
    register   the metric against METRIC_THRESHOLD; passing, a model   register.py register
               package in MODEL_PACKAGE_GROUP with MODEL_APPROVAL_STATUS; missing, the build fails

Structural values (columns, fractions, the metric) are written into the commands, quoted for
bash; values that may differ per environment or are known at deploy time travel as the
project's environment variables (ENVIRONMENT below).
"""

import shlex
from typing import Any

from ..config.training import LOWER_IS_BETTER, TrainingConfig, metric_kind
from .cicd_buildspec import BUILDSPEC_VERSION, as_text
from .training_pipeline import EVALUATION_FILE, metric_path

# The project's environment variables (stages/training_codebuild.py sets each).
INPUT_URI = "INPUT_URI"                  # s3://processed/prefix/
ARTIFACTS_URI = "ARTIFACTS_URI"          # s3://artifacts/prefix/
DATA_KEY_ARN = "DATA_KEY_ARN"
MODEL_PACKAGE_GROUP = "MODEL_PACKAGE_GROUP"
INFERENCE_IMAGE = "INFERENCE_IMAGE"
METRIC_THRESHOLD = "METRIC_THRESHOLD"
MODEL_APPROVAL_STATUS = "MODEL_APPROVAL_STATUS"
HYPERPARAMETERS = "HYPERPARAMETERS"
ENVIRONMENT = (INPUT_URI, ARTIFACTS_URI, DATA_KEY_ARN, MODEL_PACKAGE_GROUP, INFERENCE_IMAGE,
               METRIC_THRESHOLD, MODEL_APPROVAL_STATUS, HYPERPARAMETERS)
# Set by the first command: this build's folder name, from CodeBuild's CODEBUILD_BUILD_ID
# (<project>:<uuid>).
RUN = "RUN"

# The scripts the build's source zip holds.
SCRIPTS = ("prepare.py", "train.py", "evaluate.py", "register.py")


def model_uri() -> str:
    return f"${{{ARTIFACTS_URI}}}models/${{{RUN}}}/model.tar.gz"


def report_uri() -> str:
    return f"${{{ARTIFACTS_URI}}}evaluation/${{{RUN}}}/{EVALUATION_FILE}"


def build_spec(config: TrainingConfig, label: str, features: tuple[str, ...],
               input_format: str) -> dict[str, Any]:
    q = shlex.quote
    splits = "splits" if config.prepare.enabled else "input"
    commands = [
        f'export {RUN}="codebuild-${{CODEBUILD_BUILD_ID#*:}}"',
        f'python3 register.py download "${INPUT_URI}" input',
    ]
    if config.prepare.enabled:
        prepare = config.prepare
        commands.append(
            f"python3 prepare.py --input-format {q(input_format)} --label-column {q(label)} "
            f"--feature-columns {q(','.join(features))} "
            f"--validation-fraction {prepare.validation_fraction!r} "
            f"--test-fraction {prepare.test_fraction!r} --input-dir input --output-dir splits")
    commands += [
        f'python3 train.py --hyperparameters "${HYPERPARAMETERS}" --train-dir {splits}/train '
        f"--validation-dir {splits}/validation --model-dir model",
        f"python3 evaluate.py --kind {metric_kind(config.metric)} --model-dir model "
        f"--test-dir {splits}/test --output-dir evaluation",
        f'python3 register.py upload model/model.tar.gz "{model_uri()}" '
        f'--kms-key-id "${DATA_KEY_ARN}"',
        f'python3 register.py upload evaluation/{EVALUATION_FILE} "{report_uri()}" '
        f'--kms-key-id "${DATA_KEY_ARN}"',
        "python3 register.py register "
        f"--evaluation evaluation/{EVALUATION_FILE} --metric-path {q(metric_path(config))} "
        f'--threshold "${METRIC_THRESHOLD}"'
        + (" --lower-is-better" if config.metric in LOWER_IS_BETTER else "")
        + f' --group "${MODEL_PACKAGE_GROUP}" --image "${INFERENCE_IMAGE}" '
        f'--model-data "{model_uri()}" --metrics "{report_uri()}" '
        f'--approval-status "${MODEL_APPROVAL_STATUS}" '
        '--description "Trained by CodeBuild build ${CODEBUILD_BUILD_ARN}" '
        f'--token "${{{RUN}#codebuild-}}"',
    ]
    return {
        "version": BUILDSPEC_VERSION,
        # bash for ${VAR#pattern}; a failing command stops the build (CodeBuild skips the
        # commands after it), so nothing is registered from a failed step.
        "env": {"shell": "bash"},
        "phases": {"build": {"commands": commands}},
    }


__all__ = ["as_text", "build_spec"]
