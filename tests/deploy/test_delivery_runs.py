"""The delivery pipeline's own commands against the moto sandbox (issue 12, findings 6 and 15).

moto models neither CodePipeline executions nor CodeBuild builds, so these tests run what they
would: the rendered build spec's commands in a shell (the repository rendered beside them), and
for the CloudFormation deploy action what AWS documents it doing with the build's output
(CHANGE_SET_REPLACE: a change set of the packaged root with the template configuration's
parameters, a parameter it does not name getting the template default; then
CHANGE_SET_EXECUTE).
"""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from mlops_cfn.package import load_template, package
from mlops_cfn.stages import cicd_buildspec as spec

from .conftest import BUCKET, run, write_config
from .test_deploy import known_stages, parameters
from tests.template_eval import Resolver

pytestmark = pytest.mark.slow

PROJECT = "mlops-demo"
MODEL_GROUP = "mlops-demo-dev-models"
BIN = Path(sys.executable).parent


def serving_config(tmp_path: Path, **cicd) -> Path:
    data = known_stages(stages={"serving": {"enabled": True, "target": "sagemaker"},
                                "cicd": {"enabled": True, **cicd}})
    return write_config(tmp_path / "pipeline.yaml", data)


def approved_package(aws) -> str:
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName=MODEL_GROUP)
    return sagemaker.create_model_package(
        ModelPackageGroupName=MODEL_GROUP, ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]


def cicd_template(repository: Path, env: str = "dev") -> dict:
    data, _ = load_template(repository / "templates" / env / "cicd.yaml")
    return data


def shell(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """One build-spec command as CodeBuild runs it (bash, stop at the first failure)."""
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def build_environment(**variables: str) -> dict:
    """This process's environment (the sandbox's endpoint and credentials) with this
    interpreter's scripts first on PATH, as CodeBuild's runtime is."""
    return {**os.environ, "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
            **variables}


def deploy_action(aws, repository: Path, template: dict, env: str,
                  role_arn: str | None = None) -> dict[str, dict]:
    """What the pipeline's Deploy-<env> stage does with the build's output artifact: a change
    set on the stack (CHANGE_SET_REPLACE creates the stack when there is none), executed, with
    the deploy role when `role_arn` is given. Returns the stage's actions' configurations (a
    protected environment's manual approval is given, as its approver would)."""
    stage = next(s for s in template["Resources"]["DeliveryPipeline"]["Properties"]["Stages"]
                 if s["Name"] == f"Deploy-{env}")
    actions = {a["Name"]: a["Configuration"] for a in stage["Actions"]}
    create = actions["CreateChangeSet"]
    exists = create["StackName"] in aws.stacks()
    artifact = repository / spec.OUTPUT_DIR

    def path(reference: str) -> Path:
        name, _, file_name = reference.partition("::")
        assert name == "Delivery"
        return artifact / file_name

    configuration = json.loads(path(create["TemplateConfiguration"]).read_text())
    aws.cfn.create_change_set(
        StackName=create["StackName"], ChangeSetName=create["ChangeSetName"],
        ChangeSetType="UPDATE" if exists else "CREATE",
        TemplateBody=path(create["TemplatePath"]).read_text(),
        **({"RoleARN": role_arn} if role_arn else {}),
        # Parameters the file leaves out are not passed: CloudFormation gives them the
        # template's default (API Reference, "Parameter"); the action has no UsePreviousValue.
        Parameters=[{"ParameterKey": k, "ParameterValue": v}
                    for k, v in configuration["Parameters"].items()],
        Tags=[{"Key": k, "Value": v} for k, v in configuration.get("Tags", {}).items()],
        Capabilities=create["Capabilities"].split(","))
    aws.cfn.get_waiter("change_set_create_complete").wait(
        StackName=create["StackName"], ChangeSetName=create["ChangeSetName"],
        WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    execute = actions["ExecuteChangeSet"]
    aws.cfn.execute_change_set(StackName=execute["StackName"],
                               ChangeSetName=execute["ChangeSetName"])
    aws.cfn.get_waiter("stack_update_complete" if exists else "stack_create_complete").wait(
        StackName=execute["StackName"], WaiterConfig={"Delay": 1, "MaxAttempts": 300})
    return actions


def serving_state(aws, stack: str) -> tuple[str, set[str]]:
    """The model the stack serves and the serving stage's resources."""
    root = aws.stacks()[stack]
    resources = set(aws.resources(aws.nested(stack)["ServingStack"]["StackId"]))
    return parameters(root)["ModelPackageArn"], resources


def test_a_pipeline_run_with_no_new_model_leaves_serving_as_it_is(aws, tmp_path):
    """Finding 6: deployed with a model by hand, then the pipeline's own build and deploy
    commands run again with nothing new: same model, same endpoint."""
    config_file = serving_config(tmp_path)
    stack = f"{PROJECT}-dev"
    aws.bucket()
    model = approved_package(aws)
    first = run("deploy", "--config", config_file, "--env", "dev", "--bucket", BUCKET,
                "--no-validate", "--yes", "--latest-approved-model")
    assert first.exit_code == 0, first.output
    served, resources = serving_state(aws, stack)
    assert served == model and {"Model", "Endpoint"} <= resources

    # The build: the repository rendered as committed, then the spec's build phase.
    repository = tmp_path / "repository"
    repository.mkdir()
    rendered = run("render", "--config", config_file, "--all-envs", "--out",
                   repository / "templates")
    assert rendered.exit_code == 0, rendered.output
    template = cicd_template(repository)
    build_spec = yaml.safe_load(template["Resources"]["BuildProject"]["Properties"]["Source"][
        "BuildSpec"])
    artifacts = aws.resources(aws.nested(stack)["CicdStack"]["StackId"])["ArtifactBucket"][
        "PhysicalResourceId"]
    environment = build_environment(ARTIFACT_BUCKET=artifacts)
    for command in build_spec["phases"]["build"]["commands"]:
        if spec.HASH_VARIABLE not in command:
            shell(command, repository, environment)

    deploy_action(aws, repository, template, "dev")
    assert serving_state(aws, stack) == (model, resources), "the run left serving as it was"

    # And `mlops-cfn deploy` without a model option keeps it too.
    again = run("deploy", "--config", config_file, "--env", "dev", "--bucket", BUCKET,
                "--no-validate", "--yes")
    assert again.exit_code == 0, again.output
    assert f"keeping ModelPackageArn={model}" in again.output
    assert serving_state(aws, stack) == (model, resources)


def test_the_build_installs_mlops_cfn_on_a_fresh_python_from_the_packaged_wheel(aws, tmp_path):
    """Finding 15: the default install commands, run as rendered in a new virtual environment,
    install the wheel package shipped beside the templates (PyPI serves the dependencies and
    checkov; the wheel comes from the sandbox's S3)."""
    data = known_stages(stages={"cicd": {"enabled": True}})
    data["stages"]["cicd"].pop("build", None)  # a user's repository: the default commands
    config_file = write_config(tmp_path / "pipeline.yaml", data)
    rendered = run("render", "--config", config_file, "--all-envs", "--out",
                   tmp_path / "templates")
    assert rendered.exit_code == 0, rendered.output
    aws.bucket()
    packaged = package(tmp_path / "templates" / "dev", BUCKET, prefix="bootstrap", s3=aws.s3)
    root, _ = load_template(packaged.root_path)
    values = {name: p["Default"] for name, p in root["Parameters"].items() if "Default" in p}
    cicd, _ = load_template(tmp_path / "templates" / "dev" / "cicd.yaml")
    project = Resolver(cicd, values).value(cicd["Resources"]["BuildProject"]["Properties"])
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    assert variables["MLOPS_CFN_WHEEL"].startswith(f"s3://{BUCKET}/bootstrap/assets/")
    build_spec = yaml.safe_load(project["Source"]["BuildSpec"])

    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=True)
    environment = {**os.environ, **build_spec["env"]["variables"],
                   # The spec's tools directory, inside this test's own.
                   "TOOLS_DIR": str(tmp_path / "tools"),
                   "PATH": os.pathsep.join([str(fresh / "bin"), os.environ.get("PATH", "")]),
                   "MLOPS_CFN_WHEEL": variables["MLOPS_CFN_WHEEL"]}
    environment.pop("VIRTUAL_ENV", None)
    environment.pop("PYTHONPATH", None)
    script = "\n".join(build_spec["phases"]["install"]["commands"]
                       + ['"$MLOPS_CFN_CHECKOV" --version', "mlops-cfn --version",
                          'python -c "import mlops_cfn, sys; print(mlops_cfn.__file__)"'])
    done = shell(script, tmp_path, environment)
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith(str(fresh)), "mlops-cfn comes from the fresh environment"
    from mlops_cfn import CHECKOV_VERSION, __version__
    assert __version__ in lines[-2]
    assert CHECKOV_VERSION in lines[-3]
