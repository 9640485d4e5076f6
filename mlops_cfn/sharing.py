"""What the home account's delivery pipeline reaches in the environments of other accounts and
regions (placement.py's targets): each target's model registry group and model API repository,
and the approvals that happen there.

Why this is decided per file, not per environment: the stages of environments that differ only
in values are the very same objects (config.structure_of leaves account and region out), so a
target's training and serving templates are the home environment's. A file with targets
therefore changes those templates in every environment, and a file without (`of` is None)
renders them byte-identical to before.

What changes, with targets:
- Every environment's root gets the parameter DeliveryAccountId, the account the delivery
  pipeline runs in. No file names it (the home environment need not name its account):
  `mlops-cfn package` sets it to the account that packages, which for the pipeline's
  deployments is the home account, where its build runs; a deployment by hand keeps the
  stack's value (it is a run-time parameter, settings.left_to_run_time).
- Condition IsSharedWithDelivery: DeliveryAccountId is given and is not this stack's account.
  So it is false in the home environment (and in a target in the home account, by its region
  alone: one account's IAM policies suffice there), true in a target account.
- Under it, the training stage's ModelPackageGroup has a resource policy
  (`registry_policy`) and the serving stage's API repository one (`repository_policy`), each
  admitting one named role of the delivery account: the build (BuildRole, which reads the
  approved packages, `package --latest-approved-model`) and the image build (ImageRole, which
  pushes the model API's image). Both roles get fixed names (`build_role_name`,
  `image_role_name`) so a target can name them before they exist.
- The home cicd stack's EventBusPolicy admits the target accounts' forwarded approvals on the
  home default bus (stages/cicd.py); the bootstrap stack of each target forwards them
  (bootstrap.py).

Why the principal is the delivery account with aws:PrincipalArn rather than the role's ARN: a
resource policy naming a role is bound to that role's unique id when it is set, so a role
re-created by its stack would silently lose access ("AWS JSON policy elements: Principal", IAM
User Guide); the account as principal with aws:PrincipalArn ("AWS global condition context
keys") admits that role by name, now and after it is re-created, and no other principal of the
account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import awacs.ecr
import awacs.sagemaker
from awacs.aws import Allow, ArnEquals, Condition, PolicyDocument, Principal, Statement
from troposphere import And, Equals, Not, Parameter, Ref, Sub

from . import naming, policies

if TYPE_CHECKING:
    from .config import LoadedConfig, PipelineConfig
    from .placement import Placement
    from .stage import StageBuilder

DELIVERY_ACCOUNT = "DeliveryAccountId"
SHARED = "IsSharedWithDelivery"
# The delivery pipeline's roles a target admits, by the purpose in their names.
BUILD_ROLE_PURPOSE = "delivery-build"
IMAGE_ROLE_PURPOSE = "delivery-image"
IAM_ROLE = naming.NameRule("IAM role", 64)
# What the build reads of a target's registry group (deploy.newest_approved lists the approved
# versions and describes each; DescribeModelPackageGroup is the group's own read).
REGISTRY_READS = (awacs.sagemaker.DescribeModelPackageGroup, awacs.sagemaker.ListModelPackages,
                  awacs.sagemaker.DescribeModelPackage)
# What the image build does to a target's API repository: docker push's calls, and the two
# reads it checks the tag with first (cicd_buildspec.image_spec).
IMAGE_PUSH = (awacs.ecr.BatchCheckLayerAvailability, awacs.ecr.BatchGetImage,
              awacs.ecr.CompleteLayerUpload, awacs.ecr.DescribeImages,
              awacs.ecr.InitiateLayerUpload, awacs.ecr.PutImage, awacs.ecr.UploadLayerPart)


@dataclass(frozen=True)
class Sharing:
    """A file with targets: its home environment and the environments outside the home account
    or region (their account and region; None is the home's)."""

    home: str
    targets: tuple[Placement, ...]

    @property
    def other_accounts(self) -> tuple[str, ...]:
        """The target accounts that are not the home account, each once, in file order."""
        found: list[str] = []
        for target in self.targets:
            if target.account is not None and target.account not in found:
                found.append(target.account)
        return tuple(found)


def of(loaded: LoadedConfig) -> Sharing | None:
    """The file's sharing, or None when every environment is in the home account and region."""
    from .placement import home_of, targets

    found = targets(loaded)
    if not found:
        return None
    home = home_of(loaded)
    # A target naming the home account is in it (a target by its region alone).
    return Sharing(home.environment, tuple(
        target if target.account != home.account else
        type(target)(target.environment, None, target.region) for target in found))


def role_name(project: str, home: str, purpose: str) -> str:
    """A delivery role's fixed name, `<project>-<home>-<purpose>`: under the project's prefix,
    which the deploy role may manage (cicd.iam_name_prefix)."""
    return naming.physical_name(IAM_ROLE, project, purpose).replace(naming.ENVIRONMENT, home)


def build_role_name(project: str, home: str) -> str:
    return role_name(project, home, BUILD_ROLE_PURPOSE)


def image_role_name(project: str, home: str) -> str:
    return role_name(project, home, IMAGE_ROLE_PURPOSE)


def delivery_account_parameter() -> Parameter:
    return Parameter(
        DELIVERY_ACCOUNT, Type="String", Default="",
        Description="The account the delivery pipeline runs in (mlops-cfn package sets it); "
                    "empty or this account: nothing is shared with it",
        AllowedPattern=r"^([0-9]{12})?$",
        ConstraintDescription="twelve digits, or empty")


def shared(b: StageBuilder) -> str:
    """Declare DeliveryAccountId and the condition IsSharedWithDelivery in `b`'s template;
    returns the condition's name."""
    b._declare(delivery_account_parameter())
    if SHARED not in b.template.conditions:
        account = Ref(DELIVERY_ACCOUNT)
        b.template.add_condition(SHARED, And(Not(Equals(account, "")),
                                             Not(Equals(account, Ref("AWS::AccountId")))))
    return SHARED


def home_role_arn(name: str) -> Sub:
    """A role of the home (delivery) account, by name (not cicd.delivery_role_arn, a target's
    delivery role)."""
    return Sub(f"arn:${{AWS::Partition}}:iam::${{{DELIVERY_ACCOUNT}}}:role/{name}")


def _delivery_principal() -> Principal:
    return Principal("AWS", Sub(f"arn:${{AWS::Partition}}:iam::${{{DELIVERY_ACCOUNT}}}:root"))


def registry_policy(config: PipelineConfig, home: str) -> PolicyDocument:
    """The model package group's resource policy in a target account: the delivery build reads
    the group and its versions, nothing else.

    AWS: "Cross-account discoverability" / "Set up discoverability" (SageMaker AI Developer
    Guide, Model Registry): a group's resource policy grants DescribeModelPackageGroup on the
    group and DescribeModelPackage, ListModelPackages on its versions
    (model-package/<group>/*); "PutModelPackageGroupPolicy" (API Reference) sets it, which is
    what CloudFormation's ModelPackageGroupPolicy does.
    """
    group = naming.physical_name(naming.SAGEMAKER, config.project, "models")
    return policies.document(Statement(
        Sid="DeliveryBuildReadsApprovedModels",
        Effect=Allow,
        Principal=_delivery_principal(),
        Action=list(REGISTRY_READS),
        Resource=[policies.arn("sagemaker", f"model-package-group/{group}"),
                  policies.arn("sagemaker", f"model-package/{group}/*")],
        Condition=Condition(ArnEquals("aws:PrincipalArn", home_role_arn(
            build_role_name(config.project, home)))),
    ))


def repository_policy(config: PipelineConfig, home: str) -> PolicyDocument:
    """The API repository's policy in a target account: the delivery pipeline's image build
    pushes the model API's image, nothing else.

    AWS: "Private repository policy examples in Amazon ECR" (Example: Allow another account:
    the account as principal, the push actions) and "IAM permissions for pushing an image to an
    Amazon ECR private repository" (the actions docker push needs); a repository policy names
    no Resource ("Repository policies vs IAM policies"). ECR encrypts with the repository's own
    KMS grant, so the pusher needs no key permission ("Encryption at rest", Amazon ECR User
    Guide).
    """
    return policies.document(Statement(
        Sid="DeliveryImageBuildPushes",
        Effect=Allow,
        Principal=_delivery_principal(),
        Action=list(IMAGE_PUSH),
        Condition=Condition(ArnEquals("aws:PrincipalArn", home_role_arn(
            image_role_name(config.project, home)))),
    ))


__all__ = ["DELIVERY_ACCOUNT", "SHARED", "Sharing", "build_role_name", "image_role_name", "of",
           "registry_policy", "repository_policy", "shared"]
