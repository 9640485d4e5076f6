"""What serves where: per environment, the model package, the API image, and the state of the
SageMaker endpoint and the Fargate service.

The answer comes from the live stacks, not from files: a pipeline run or a `deploy
--latest-approved-model` changes what serves, and only the stacks know the result. Each
environment's root stack (`<project>-<env>`, as the delivery pipeline names it) gives the
chosen values (its `ModelPackageArn`, `ModelDataUrl` and `ApiImageTag` parameters) and where
they run (its `EndpointName`/`EndpointExists` and `EcsClusterName`/`EcsServiceName`/
`ApiServiceExists` outputs); SageMaker and ECS give their state. An environment not deployed yet
says so; nothing here changes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .deploy import Aws, aws_errors, describe_stack

MODEL_PARAMETERS = ("ModelPackageArn", "ModelDataUrl")
IMAGE_PARAMETER = "ApiImageTag"


@dataclass(frozen=True)
class Serving:
    """One environment's serving, as its live stack and the services say."""

    environment: str
    stack_name: str
    stack_status: str | None  # None: no such stack
    model: str = ""  # the package ARN (or archive URL) the stack serves; "" before the first
    model_version: str = ""  # the package's version in its group
    model_approval: str = ""  # its approval status now (a package may be rejected later)
    image_tag: str = ""
    endpoint: str = ""
    endpoint_status: str = ""  # SageMaker's EndpointStatus, or "" when there is no endpoint
    service: str = ""
    service_state: str = ""  # "ACTIVE, 2/2 tasks running" or ""

    @property
    def deployed(self) -> bool:
        return self.stack_status is not None


def environment_status(aws: Aws, environment: str, stack_name: str) -> Serving:
    cfn = aws.client("cloudformation")
    with aws_errors(f"reading stack {stack_name}"):
        stack = describe_stack(cfn, stack_name)
    if stack is None:
        return Serving(environment, stack_name, None)
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "")
                  for p in stack.get("Parameters", [])}
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    model = next((parameters[n] for n in MODEL_PARAMETERS if parameters.get(n)), "")
    version = approval = ""
    if parameters.get("ModelPackageArn"):
        with aws_errors(f"describing model package {model}"):
            package = aws.client("sagemaker").describe_model_package(ModelPackageName=model)
        version = str(package.get("ModelPackageVersion", ""))
        approval = package.get("ModelApprovalStatus", "")
    endpoint = endpoint_status = ""
    if outputs.get("EndpointExists") == "true" and outputs.get("EndpointName"):
        endpoint = outputs["EndpointName"]
        with aws_errors(f"describing endpoint {endpoint}"):
            endpoint_status = aws.client("sagemaker").describe_endpoint(
                EndpointName=endpoint)["EndpointStatus"]
    service = service_state = ""
    if outputs.get("ApiServiceExists") == "true" and outputs.get("EcsServiceName"):
        service = outputs["EcsServiceName"]
        with aws_errors(f"describing ECS service {service}"):
            found = aws.client("ecs").describe_services(
                cluster=outputs.get("EcsClusterName", ""), services=[service])["services"]
        if found:
            one = found[0]
            service_state = (f"{one.get('status', '?')}, {one.get('runningCount', 0)}/"
                             f"{one.get('desiredCount', 0)} tasks running")
        else:
            service_state = "missing"
    return Serving(environment, stack_name, stack["StackStatus"], model=model,
                   model_version=version, model_approval=approval,
                   image_tag=parameters.get(IMAGE_PARAMETER, ""), endpoint=endpoint,
                   endpoint_status=endpoint_status, service=service,
                   service_state=service_state)


def status(aws: Aws, project: str, environments: Sequence[str]) -> list[Serving]:
    """Every environment's serving, in the file's order."""
    from .stages.cicd import stack_name

    return [environment_status(aws, env, stack_name(project, env)) for env in environments]
