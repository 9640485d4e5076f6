"""The `stages.cicd` section: the delivery pipeline that tests this pipeline and deploys it to
every environment, and the continuous-training hook."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from .. import CHECKOV_VERSION
from .base import Model, Setting, StageToggle

# The s3:// URI of the mlops-cfn wheel packaging shipped (stages.cicd sets it on the build).
WHEEL_VARIABLE = "MLOPS_CFN_WHEEL"
# A CodeConnections (formerly CodeStar Connections) connection, in either ARN form.
CONNECTION_ARN_PATTERN = (r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:"
                          r"[0-9]{12}:connection/[0-9a-f-]{36}$")
# <owner>/<name> as GitHub, GitLab and Bitbucket spell it (GitLab groups may nest).
REPOSITORY_PATTERN = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$"
BRANCH_PATTERN = r"^[A-Za-z0-9._/-]{1,255}$"
# An IAM role or user of an account, as aws:PrincipalArn names it (IAM User Guide, "AWS global
# condition context keys": a role session is named by its role's ARN).
PUBLISHER_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]{1,512}$"
S3_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9!_.*'()/-]{0,1023}$"
# A path relative to the repository root: no leading slash, no shell metacharacters (the paths
# are written into build commands); `..` is refused by `_inside_repository`.
REPO_PATH_PATTERN = r"^[A-Za-z0-9_.@+=,-][A-Za-z0-9_.@+=,/-]{0,254}$"


def _inside_repository(path: str) -> str:
    if ".." in path.split("/"):
        raise ValueError(f"{path!r} leaves the repository (`..`)")
    return path


RepoPath = Annotated[str, Field(pattern=REPO_PATH_PATTERN), AfterValidator(_inside_repository)]
# Images CodeBuild offers (curated) or any image it can pull (ECR or a registry).
BUILD_IMAGE_PATTERN = r"^[a-z0-9][a-z0-9._/:@-]{2,254}$"


class SourceConfig(Model):
    provider: Annotated[
        Literal["s3", "connection"],
        Field(description="Where the pipeline's source comes from: `connection`, a Git "
                          "repository (GitHub, GitLab, Bitbucket) through an AWS "
                          "CodeConnections connection; or `s3`, a zip of the repository "
                          "uploaded to the source bucket this stage creates (the default, as "
                          "a connection has to be created and authorized in the console "
                          "first)."),
    ] = "s3"
    object_key: Annotated[
        str,
        Field(pattern=S3_KEY_PATTERN,
              description="With provider `s3`: key of the source zip in the source bucket "
                          "(output SourceBucketName), e.g. `git archive --format=zip HEAD`; "
                          "each new version starts the pipeline."),
    ] = "source/repository.zip"
    publishers: Annotated[
        list[Annotated[str, Field(pattern=PUBLISHER_ARN_PATTERN)]],
        Field(max_length=20,
              description="With provider `s3`: ARNs of the IAM roles (or users) that may "
                          "upload the source, e.g. your CI's role: the source bucket's policy "
                          "denies writing and deleting objects to every other principal, "
                          "whatever its IAM policies allow, since whoever writes the source "
                          "decides what the pipeline deploys. Empty: only the account's root "
                          "user may write (name a role here before the first upload)."),
    ] = []
    connection_arn: Annotated[
        str | None,
        Field(pattern=CONNECTION_ARN_PATTERN,
              description="With provider `connection`: ARN of an AVAILABLE CodeConnections "
                          "connection (created and authorized in the console)."),
        Setting("DeliverySourceConnectionArn"),
    ] = None
    repository: Annotated[
        str | None,
        Field(pattern=REPOSITORY_PATTERN,
              description="With provider `connection`: the repository, `<owner>/<name>`."),
    ] = None
    branch: Annotated[
        str,
        Field(pattern=BRANCH_PATTERN,
              description="With provider `connection`: the branch whose pushes start the "
                          "pipeline."),
    ] = "main"

    @model_validator(mode="after")
    def _provider_fits_fields(self):
        if self.provider == "connection":
            if self.connection_arn is None or self.repository is None:
                raise ValueError("provider 'connection' needs connection_arn and repository")
        elif self.connection_arn is not None or self.repository is not None:
            raise ValueError("connection_arn and repository are only for provider 'connection'")
        if self.provider != "s3" and self.publishers:
            raise ValueError("publishers are only for provider 's3' (a connection's pushes "
                             "are governed by the repository)")
        if len(set(self.publishers)) != len(self.publishers):
            raise ValueError("publishers lists an ARN twice")
        return self


class BuildConfig(Model):
    compute_type: Annotated[
        Literal["BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE"],
        Field(description="CodeBuild instance size of the build (the tests run in it)."),
        Setting("DeliveryBuildComputeType"),
    ] = "BUILD_GENERAL1_MEDIUM"
    image: Annotated[
        str,
        Field(pattern=BUILD_IMAGE_PATTERN,
              description="CodeBuild image of the build; it must offer python_version."),
        Setting("DeliveryBuildImage"),
    ] = "aws/codebuild/amazonlinux-x86_64-standard:5.0"
    timeout_minutes: Annotated[
        int,
        Field(ge=5, le=480, description="Longest a build may run before CodeBuild stops it."),
        Setting("DeliveryBuildTimeoutMinutes"),
    ] = 60
    python_version: Annotated[
        Literal["3.11", "3.12"],
        Field(description="Python runtime the build installs the repository with."),
    ] = "3.11"
    in_vpc: Annotated[
        bool,
        Field(description="Run the build in the private subnets. The build installs packages "
                          "from PyPI, so it needs a route to the internet: with network mode "
                          "`create` this requires network.internet_gateway (NAT). Off: "
                          "CodeBuild's own network, which reaches the internet and AWS APIs."),
    ] = False
    config_file: Annotated[
        RepoPath | None,
        Field(description="Path of the pipeline file in the repository (the build passes it "
                          "as --config); unset: ./pipeline.yaml when the repository has one, "
                          "else the bundled example."),
    ] = None
    templates_dir: Annotated[
        RepoPath,
        Field(description="Where the repository keeps the rendered templates (one directory "
                          "per environment, `mlops-cfn render --all-envs`)."),
    ] = "templates"
    install_commands: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[^\n\r]+$")]],
        Field(min_length=1, max_length=20,
              description="Shell commands that install the repository, mlops-cfn and the "
                          "test tools (checkov for `mlops-cfn validate`). The default installs "
                          "the mlops-cfn wheel that packaging shipped beside the templates "
                          "($MLOPS_CFN_WHEEL, an s3:// URI; mlops-cfn is on no package index) "
                          "and checkov into $TOOLS_DIR."),
    ] = [
        # A repository of your own: the very mlops-cfn that packaged the home environment, a
        # wheel beside its templates (mlops_cfn/wheel.py; the project is on no package index),
        # and checkov in a virtual environment of its own (it pins an old boto3). This
        # repository installs its own checkout instead.
        f'mkdir -p "$TOOLS_DIR" && aws s3 cp --only-show-errors "${WHEEL_VARIABLE}" "$TOOLS_DIR/"',
        'pip install --quiet --disable-pip-version-check "$TOOLS_DIR"/mlops_cfn-*.whl',
        f'python -m venv "$TOOLS_DIR/checkov" && "$TOOLS_DIR/checkov/bin/pip" install --quiet '
        f'--disable-pip-version-check checkov=={CHECKOV_VERSION}',
        'export MLOPS_CFN_CHECKOV="$TOOLS_DIR/checkov/bin/checkov"',
    ]
    test_commands: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[^\n\r]+$")]],
        Field(max_length=20,
              description="Shell commands that run your repository's tests after the "
                          "templates are checked and validated; [] for none."),
    ] = []


class RetrainConfig(Model):
    enabled: Annotated[
        bool,
        Field(description="Continuous training: after the home environment is deployed, start "
                          "its training pipeline when the training code changed since the last "
                          "run the delivery pipeline started (needs the training stage)."),
    ] = True
    code_paths: Annotated[
        list[RepoPath],
        Field(min_length=1, max_length=20,
              description="Files or directories, relative to the repository root, that hold "
                          "the training code; their content hash decides whether to retrain."),
    ] = ["training"]


class CicdConfig(StageToggle):
    enabled: Annotated[bool, Field(description="Render this stage.")] = True
    home_environment: Annotated[
        str | None,
        Field(description="The environment whose stack holds the delivery pipeline; in every "
                          "other environment this stage creates nothing. Unset: the first "
                          "environment of `environments`."),
    ] = None
    deploy_approved_models: Annotated[
        bool,
        Field(description="Approving a model deploys it: a package approved in an "
                          "environment's registry group (<project>-<env>-models) starts the "
                          "pipeline, and every run serves, in each environment, the package of "
                          "its group approved last (the current one while none is approved; a "
                          "model the config names wins). A push with no new approval leaves "
                          "serving as it is; approving an earlier version again rolls back to "
                          "it, and rejecting the serving version brings back the one approved "
                          "before it. Needs the training stage "
                          "(it registers the packages) and serving from model packages."),
    ] = True
    build_model_api_image: Annotated[
        bool,
        Field(description="Build the model API shipped with mlops-cfn (mlops_cfn/data/model_api) "
                          "into an image tagged by its content, push it to each environment's "
                          "API repository that lacks that tag, and deploy it (the API image "
                          "tag, unless the config names one). Needs the Fargate API "
                          "(serving.target fargate or both). The build runs in a CodeBuild "
                          "project of its own, in privileged mode (Docker needs it)."),
    ] = True
    smoke_test: Annotated[
        bool,
        Field(description="After each environment's deployment, send one sample record to what "
                          "it serves (`mlops-cfn smoke`): an error or a malformed answer fails "
                          "that environment's stage and stops the promotion. The Fargate API "
                          "behind its internal load balancer is checked when the build runs in "
                          "the VPC (build.in_vpc); otherwise the endpoint only. Needs the "
                          "serving stage."),
    ] = True
    source: SourceConfig = SourceConfig()
    build: BuildConfig = BuildConfig()
    retrain: RetrainConfig = RetrainConfig()

    def vpc_endpoints(self) -> tuple[str, ...]:
        if not self.build.in_vpc:
            return ()
        # CodeBuild writes the build's logs from inside the VPC; the retrain build calls
        # SageMaker. S3 (artifacts, packages) goes through the gateway endpoint.
        return ("logs", "sagemaker.api") if self.retrain.enabled else ("logs",)

    def problems_with(self, config: Any) -> list[str]:
        problems = []
        environments = list(config.environments)
        if self.home_environment is not None and self.home_environment not in environments:
            problems.append(
                f"stages.cicd.home_environment: {self.home_environment!r} is not one of the "
                f"environments ({', '.join(environments)})")
        if (self.build.in_vpc and config.network.mode == "create"
                and not config.network.internet_gateway):
            problems.append(
                "stages.cicd.build.in_vpc: the build installs packages from the internet, which "
                "the private subnets cannot reach: set network.internet_gateway to true, or "
                "turn in_vpc off")
        return problems
