"""The partitions the delivery pipeline cannot run in, and the rule that refuses them.

AWS: "AWS CodeBuild - Getting Started with Amazon Web Services in China" (feature availability
and implementation differences): "AWS CodePipeline is not available in the Beijing and Ningxia
Regions", and AWS CodeConnections has no resource types there either. The cicd stage is a
CodePipeline pipeline, so in the `aws-cn` partition its stack would fail half-way through the
deployment. Templates do not know their region when rendered, so the refusal is a `Rules`
assertion on the partition: CloudFormation checks it at change-set creation, the root carries it
(pipeline.py), and `mlops-cfn deploy` evaluates it before uploading anything (rules.py), as it
does the image tables' region rules (stages/image_registries.py).
"""

from troposphere import Equals, Not, Ref

from ..stage import StageBuilder

RULE = "DeliveryPipelinePartition"
UNAVAILABLE_IN = "aws-cn"


def assertion() -> dict:
    return {
        "Assert": Not(Equals(Ref("AWS::Partition"), UNAVAILABLE_IN)).to_dict(),
        "AssertDescription": (
            "mlops-cfn: the delivery pipeline (stages.cicd) is an AWS CodePipeline pipeline, "
            "and CodePipeline is not available in the China regions: deploy with "
            "stages.cicd.enabled: false there"),
    }


def refuse_unavailable_partitions(b: StageBuilder) -> None:
    b.template.add_rule(RULE, {"Assertions": [assertion()]})
