"""`stages.ingestion.ec2_consumer`: a Kinesis Client Library application on an Auto Scaling group.

The stage that builds it is mlops_cfn/stages/ingestion_ec2.py; what the instances run ships in
mlops_cfn/data/kcl_consumer/.
"""

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from .base import Model, Setting

# AWS's public parameters naming the latest Amazon Linux 2023 AMIs ("Find the latest Amazon
# Linux AMI using Systems Manager", Amazon Linux 2023 User Guide), one per kernel and
# architecture, e.g. al2023-ami-kernel-default-x86_64 or al2023-ami-kernel-6.1-arm64.
AL2023_PARAMETER = r"^/aws/service/ami-amazon-linux-latest/al2023-ami-(minimal-)?kernel-[a-z0-9.]+-(x86_64|arm64)$"
INSTANCE_TYPE = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
# Graviton families have a `g` after the generation (t4g, c7g, m7gd, c6gn): they run arm64.
_GRAVITON = re.compile(r"^[a-z]+[0-9]+[a-z]*g[a-z]*\.")


class Ec2ConsumerConfig(Model):
    enabled: Annotated[
        bool,
        Field(description="Run a Kinesis Client Library application (the bundled record "
                          "processor, mlops_cfn/data/kcl_consumer) on an Auto Scaling group in "
                          "the private subnets, beside or instead of the consumer Lambda. The "
                          "instances install Java, the CloudWatch agent and amazon_kclpy at "
                          "boot, so they need network.internet_gateway."),
    ] = False
    instance_types: Annotated[
        list[Annotated[str, Field(pattern=INSTANCE_TYPE)]],
        Field(min_length=2, max_length=4,
              description="EC2 instance types the group may launch, in order of preference: "
                          "two or more, so a shortage of one type does not stop the consumer "
                          "(AWS Control Tower's CT.AUTOSCALING.PR.6), each a Nitro type that "
                          "encrypts traffic between instances (CT.AUTOSCALING.PR.11), all of "
                          "the AMI's architecture."),
        Setting("Ec2ConsumerInstanceTypes", type="CommaDelimitedList"),
    ] = ["c6i.large", "c6a.large"]
    ami_parameter: Annotated[
        str,
        Field(pattern=AL2023_PARAMETER,
              description="AWS's public SSM parameter naming the Amazon Linux 2023 AMI to "
                          "launch (resolved when the stack is deployed); arm64 for Graviton "
                          "instance types, x86_64 for the others."),
        Setting("Ec2ConsumerAmiParameter"),
    ] = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    volume_size_gb: Annotated[
        int,
        Field(ge=8, le=1024, description="Size of each instance's root volume (encrypted with "
                                         "the data key)."),
        Setting("Ec2ConsumerVolumeGiB"),
    ] = 16
    min_size: Annotated[
        int,
        Field(ge=1, le=100, description="Fewest consumer instances; KCL spreads the stream's "
                                        "shards over them."),
        Setting("Ec2ConsumerMinSize"),
    ] = 1
    max_size: Annotated[
        int,
        Field(ge=1, le=100, description="Most consumer instances. More than the stream has "
                                        "shards stay idle: KCL leases a shard to one worker."),
        Setting("Ec2ConsumerMaxSize"),
    ] = 4
    scale_out_iterator_age_ms: Annotated[
        int,
        Field(ge=1000, le=604_800_000,
              description="Add an instance while the stream's oldest unread record is older "
                          "than this (GetRecords.IteratorAgeMilliseconds, in ms) for three "
                          "minutes."),
        Setting("Ec2ConsumerScaleOutIteratorAgeMs"),
    ] = 60_000
    scale_in_iterator_age_ms: Annotated[
        int,
        Field(ge=0, le=604_800_000,
              description="Remove an instance while the stream's oldest unread record is "
                          "younger than this for fifteen minutes (below scale_out_iterator_age_ms)."),
        Setting("Ec2ConsumerScaleInIteratorAgeMs"),
    ] = 5_000

    @field_validator("instance_types")
    @classmethod
    def _no_repeats(cls, value):
        if len(set(value)) != len(value):
            raise ValueError("must not repeat an instance type")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.min_size > self.max_size:
            raise ValueError(f"min_size {self.min_size} is above max_size {self.max_size}")
        if self.scale_in_iterator_age_ms >= self.scale_out_iterator_age_ms:
            raise ValueError("scale_in_iterator_age_ms must be below scale_out_iterator_age_ms, "
                             "or the group scales out and in at once")
        arm = self.ami_parameter.endswith("-arm64")
        wrong = [t for t in self.instance_types if bool(_GRAVITON.match(t)) != arm]
        if wrong:
            raise ValueError(f"instance_types {wrong} do not run the {'arm64' if arm else 'x86_64'} "
                             f"AMI that ami_parameter names")
        return self
