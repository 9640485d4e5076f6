"""The delivery pipeline's CodeBuild build specs, as data (dicts the tests read), and their text.

The build (`build_spec`) checks the repository the way a reviewer would want it checked before
anything is deployed, then packages what the deploy actions need:

    install    the repository, mlops-cfn and the test tools (BuildConfig.install_commands; by
               default the mlops-cfn wheel packaging shipped, MLOPS_CFN_WHEEL, see wheel.py)
    pre_build  mlops-cfn render --check --all-envs   committed templates = what the code renders
               mlops-cfn validate <templates>         cfn-lint, quotas, checkov on every environment
               the tests                              (BuildConfig.test_commands)
    build      mlops-cfn package, once per environment, into the artifact bucket under `delivery/`,
               with --stack-name: packaged-parameters.json is parameters.json plus the stack's
               live model and image where the config leaves them empty, so a run never resets
               serving; copies each environment's packaged root and that file to <env>/ in the
               build's output artifact, which the deploy actions read;
               with retraining: the hash of the training code, exported as TRAINING_CODE_HASH.

A failing command stops the build (CodeBuild skips the later phases), so nothing is packaged
from a repository whose templates drifted or whose tests fail.

The retrain build (`retrain_spec`) starts the training pipeline when TRAINING_CODE_HASH differs
from the hash it last started a run for (kept in the artifact bucket): a content hash rather
than "files changed in this push", so a change is retrained even when the run that brought it
failed before this step, and reverting the training code retrains too.
"""

from typing import Any, Sequence

import yaml

from ..config import cicd as cicd_config
from ..config.cicd import BuildConfig

# What `mlops-cfn render` and `mlops-cfn package` write in an environment's directory (render.py;
# not imported from there, which imports the composer and so this module; a test keeps them equal).
PARAMETERS_FILE = "parameters.json"
PACKAGED_ROOT_NAME = "packaged-root"
# The template configuration each deploy action reads (`package --stack-name` writes it).
CONFIGURATION_FILE = "packaged-parameters.json"

BUILDSPEC_VERSION = 0.2
# Key prefix of the packaged templates and assets in the artifact bucket (the deploy role may
# read exactly this prefix).
PACKAGE_PREFIX = "delivery/"
# Directory of the build's output artifact: <env>/packaged-root.yaml,
# <env>/packaged-parameters.json.
OUTPUT_DIR = "delivery"
PACKAGED_ROOT_FILE = PACKAGED_ROOT_NAME + ".yaml"
# Exported by the build, read by the retrain build through the pipeline's variables.
HASH_VARIABLE = "TRAINING_CODE_HASH"
# Where the retrain build remembers the training-code hash it last started a run for.
RETRAIN_STATE_KEY = "retrain/last-training-code-hash"
# Environment variables the CodeBuild projects set.
ARTIFACT_BUCKET_VARIABLE = "ARTIFACT_BUCKET"


def region_bucket_variable(region: str) -> str:
    """The build's variable naming the artifact bucket of another region (ARTIFACT_BUCKET_<R>)."""
    return f"{ARTIFACT_BUCKET_VARIABLE}_{region.upper().replace('-', '_')}"
# The s3:// URI of the mlops-cfn wheel the build installs (wheel.py; config.cicd's default
# install commands read it), and where the install commands keep the tools.
WHEEL_VARIABLE = cicd_config.WHEEL_VARIABLE
TOOLS_DIR = "/tmp/mlops-cfn-tools"
STACK_VARIABLE = "STACK_NAME"
# What starts a training run (the wire TrainingStartArn): a SageMaker pipeline's or a CodeBuild
# project's ARN; the retrain build starts either, by the ARN's service.
TRAINING_START_VARIABLE = "TRAINING_START_ARN"


def build_spec(environments: Sequence[str], build: BuildConfig,
               training_code_paths: Sequence[str] | None = None,
               stacks: dict[str, str] | None = None,
               approved_models: bool = False,
               model_api_image: bool = False,
               buckets: dict[str, str] | None = None,
               registries: dict[str, tuple[str | None, str | None]] | None = None,
               places: dict[str, tuple[str | None, str | None]] | None = None
               ) -> dict[str, Any]:
    """The build's spec; `training_code_paths` adds the training-code hash (retraining on);
    `stacks` names each environment's stack (default `<env>`); `approved_models` serves each
    environment's latest approved model package (package --latest-approved-model), read from
    the account and region `registries` gives an environment in another one (sharing.py);
    `buckets` names, for an environment deployed in another region, the variable holding that
    region's artifact bucket (CloudFormation reads a stack's nested templates and Lambda its
    code from a bucket of the stack's region; default: ARTIFACT_BUCKET); `places` the account
    and region of an environment's stack outside the build's own (None: the build's), read
    there (package --stack-account, --stack-region)."""
    templates = build.templates_dir
    config_option = f" --config {build.config_file}" if build.config_file else ""
    checks = [
        f"mlops-cfn render --check --all-envs --out {templates}{config_option}",
        f"mlops-cfn validate {templates}",
        *build.test_commands,
    ]
    package = []
    for env in environments:
        stack = (stacks or {}).get(env, env)
        where = (registry_options(*(registries or {}).get(env, (None, None)))
                 if approved_models else "")
        package += [
            # --stack-name: the template configuration keeps the stack's live model and image
            # (package.template_configuration).
            f'mlops-cfn package --bucket "${(buckets or {}).get(env, ARTIFACT_BUCKET_VARIABLE)}" '
            f"--prefix {PACKAGE_PREFIX} "
            f"--stack-name {stack}"
            f"{stack_options(*(places or {}).get(env, (None, None)))}"
            f"{' --latest-approved-model' if approved_models else ''}"
            f"{where}"
            f"{' --model-api-image' if model_api_image else ''} {templates}/{env}",
            f"mkdir -p {OUTPUT_DIR}/{env}",
            f"cp {templates}/{env}/{PACKAGED_ROOT_FILE} {templates}/{env}/{CONFIGURATION_FILE} "
            f"{OUTPUT_DIR}/{env}/",
        ]
    env: dict[str, Any] = {"shell": "bash", "variables": {"TOOLS_DIR": TOOLS_DIR}}
    if training_code_paths:
        package.append(training_code_hash_command(training_code_paths))
        env["exported-variables"] = [HASH_VARIABLE]
    return {
        "version": BUILDSPEC_VERSION,
        "env": env,
        "phases": {
            "install": {
                "runtime-versions": {"python": build.python_version},
                "commands": list(build.install_commands),
            },
            "pre_build": {"commands": checks},
            "build": {"commands": package},
        },
        "artifacts": {"base-directory": OUTPUT_DIR, "files": ["**/*"]},
    }


def stack_options(account: str | None, region: str | None) -> str:
    """`package` options naming where an environment's stack is, when not in the build's own
    account and region."""
    return (f"{f' --stack-account {account}' if account else ''}"
            f"{f' --stack-region {region}' if region else ''}")


def registry_options(account: str | None, region: str | None) -> str:
    """`package` options naming where an environment's registry group is, when not in the
    build's own account and region."""
    return (f"{f' --registry-account {account}' if account else ''}"
            f"{f' --registry-region {region}' if region else ''}")


def training_code_hash_command(paths: Sequence[str]) -> str:
    """Sets HASH_VARIABLE to a SHA-256 over the paths and contents of every file under
    `paths`, in a fixed order (missing paths count as empty, so adding the code later changes
    the hash)."""
    quoted = " ".join(f"'{p}'" for p in paths)
    return (f"export {HASH_VARIABLE}=\"$(find {quoted} -type f -print0 2>/dev/null "
            "| LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -c1-64)\"")


def retrain_spec() -> dict[str, Any]:
    state = f"s3://${ARTIFACT_BUCKET_VARIABLE}/{RETRAIN_STATE_KEY}"
    remember = f'printf "%s" "${HASH_VARIABLE}" | aws s3 cp - "{state}"'
    return _action_spec(
        _required(HASH_VARIABLE, "the build exported"),
        f'last="$(aws s3 cp "{state}" - 2>/dev/null || true)"',
        f'if [ "$last" = "${HASH_VARIABLE}" ]; then echo "training code unchanged '
        f'(${HASH_VARIABLE}): no retraining"; else {start_training_command()} && {remember}; fi',
    )


def start_training_command() -> str:
    """Starts one training run of whichever engine trains: the name is the ARN's last part
    (`pipeline/<name>`, `project/<name>`), the service its third."""
    name = f'"${{{TRAINING_START_VARIABLE}##*/}}"'
    pipeline = ("aws sagemaker start-pipeline-execution"
                f" --pipeline-name {name}"
                f' --pipeline-execution-display-name "ci-${{{HASH_VARIABLE}:0:12}}"'
                f' --pipeline-execution-description "Started by the delivery pipeline: '
                f'training code ${HASH_VARIABLE}"')
    build = f"aws codebuild start-build --project-name {name}"
    return (f'case "${TRAINING_START_VARIABLE}" in arn:*:codebuild:*) {build};; '
            f"*) {pipeline};; esac")


def protect_spec() -> dict[str, Any]:
    """Termination protection for the stack the action names (what `mlops-cfn deploy` turns on
    for a protected environment; CloudFormation's pipeline actions cannot)."""
    return _action_spec(
        _required(STACK_VARIABLE, "the action named"),
        "aws cloudformation update-termination-protection --enable-termination-protection"
        f' --stack-name "${STACK_VARIABLE}"',
    )


ENVIRONMENT_VARIABLE = "ENVIRONMENT_NAME"
# The base image of the model API's image: Docker's official Python image through ECR Public's
# mirror (no Docker Hub pull limits from CodeBuild's shared addresses).
MODEL_API_BASE_IMAGE = "public.ecr.aws/docker/library/python:3.11-slim-bookworm"


Destination = tuple[str, str | None, str | None]


def image_spec(build: BuildConfig,
               destinations: Sequence[str | Destination]) -> dict[str, Any]:
    """Build the model API's image shipped with the installed mlops-cfn once, tagged by its
    content (model_api.image_tag), and push it to each environment's repository that does not
    hold that tag yet: an unchanged app is neither rebuilt nor pushed again.

    A destination is a repository name, or (name, account, region) with None for the build's
    own account or region: a repository of an environment in another account or region is
    reached through its registry there (`aws ecr` with --registry-id and --region, and a login
    to that registry; the repository's policy admits the image build, sharing.py)."""
    placed = [(d, None, None) if isinstance(d, str) else tuple(d) for d in destinations]
    if any(account or region for _, account, region in placed):
        return _installing_spec(build, [*_image_preamble(),
                                        *(_push_command(*d) for d in placed)])
    repositories = [name for name, _, _ in placed]
    python = "python3 -c 'from mlops_cfn import model_api as m; print(m.{})'"
    return _installing_spec(build, [
                f'tag="$({python.format("image_tag()")})"',
                f'app="$({python.format("APP_DIR")})"',
                'account="$(aws sts get-caller-identity --query Account --output text)"',
                'registry="$account.dkr.ecr.$AWS_REGION.amazonaws.com"',
                'aws ecr get-login-password | docker login --username AWS --password-stdin '
                '"$registry"',
                'built=""',
                f"for repository in {' '.join(repositories)}; do "
                'if aws ecr describe-images --repository-name "$repository" '
                '--image-ids imageTag="$tag" >/dev/null 2>&1; then '
                'echo "$repository:$tag is there: not rebuilt"; continue; fi; '
                'if [ -z "$built" ]; then docker build --build-arg '
                f'BASE_IMAGE={MODEL_API_BASE_IMAGE} --tag "model-api:$tag" "$app"; built=1; fi; '
                'docker tag "model-api:$tag" "$registry/$repository:$tag"; '
                'docker push "$registry/$repository:$tag"; done',
    ])


def _image_preamble() -> list[str]:
    python = "python3 -c 'from mlops_cfn import model_api as m; print(m.{})'"
    return [f'tag="$({python.format("image_tag()")})"',
            f'app="$({python.format("APP_DIR")})"',
            'account="$(aws sts get-caller-identity --query Account --output text)"',
            'built=""']


def _push_command(repository: str, account: str | None, region: str | None) -> str:
    """One destination: skipped when its repository holds the tag, else logged in to its
    registry, the image built (once) and pushed."""
    return (f'registry_account="{account or "$account"}"; region="{region or "$AWS_REGION"}"; '
            'registry="$registry_account.dkr.ecr.$region.amazonaws.com"; '
            f'if aws ecr describe-images --region "$region" --registry-id "$registry_account" '
            f'--repository-name {repository} --image-ids imageTag="$tag" >/dev/null 2>&1; '
            f'then echo "$registry/{repository}:$tag is there: not rebuilt"; else '
            'aws ecr get-login-password --region "$region" | docker login --username AWS '
            '--password-stdin "$registry" && '
            '{ [ -n "$built" ] || { docker build --build-arg '
            f'BASE_IMAGE={MODEL_API_BASE_IMAGE} --tag "model-api:$tag" "$app" '
            '&& built=1; }; } && '
            f'docker tag "model-api:$tag" "$registry/{repository}:$tag" && '
            f'docker push "$registry/{repository}:$tag"; fi')


def smoke_spec(build: BuildConfig, endpoint_only: bool) -> dict[str, Any]:
    """After an environment's deployment: install mlops-cfn as the build does, then send one
    sample record to what the environment named by the action serves (`mlops-cfn smoke`, which
    exits 1 on a bad answer and so fails the action)."""
    config_option = f" --config {build.config_file}" if build.config_file else ""
    only = " --endpoint-only" if endpoint_only else ""
    return _installing_spec(build, [
                _required(ENVIRONMENT_VARIABLE, "the action named"),
                f'mlops-cfn smoke --env "${ENVIRONMENT_VARIABLE}"{config_option}{only}',
    ])


def _installing_spec(build: BuildConfig, commands: list[str]) -> dict[str, Any]:
    """A spec that installs mlops-cfn as the build does (its install phase), then runs
    `commands`."""
    return {
        "version": BUILDSPEC_VERSION,
        "env": {"shell": "bash", "variables": {"TOOLS_DIR": TOOLS_DIR}},
        "phases": {
            "install": {"runtime-versions": {"python": build.python_version},
                        "commands": list(build.install_commands)},
            "build": {"commands": commands},
        },
    }


def _action_spec(*commands: str) -> dict[str, Any]:
    """A one-phase bash build spec: what the pipeline's small actions run."""
    return {"version": BUILDSPEC_VERSION, "env": {"shell": "bash"},
            "phases": {"build": {"commands": list(commands)}}}


def _required(variable: str, who: str) -> str:
    """A command failing the build, with a reason, when `variable` is empty."""
    return f'test -n "${variable}" || {{ echo "{who} no {variable}"; exit 1; }}'


def as_text(spec: dict[str, Any]) -> str:
    """The spec as CodeBuild reads it (YAML), the same text for the same spec."""
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=False, width=1000)
