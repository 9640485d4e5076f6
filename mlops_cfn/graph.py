"""Pictures of a built pipeline: its nested stacks, every wire between them, and the main
resources of each, as a Mermaid flowchart (GitHub renders it in Markdown) or Graphviz dot."""

import re
from collections import defaultdict

from .pipeline import Pipeline

# Plumbing: resources that exist to connect or permit the ones a reader cares about.
_PLUMBING = re.compile(
    r"^AWS::(IAM::|EC2::(Route|SubnetRouteTableAssociation|SecurityGroup|EIP|VPCGatewayAttachment"
    r"|VPCEndpoint$)|S3::BucketPolicy|SQS::QueuePolicy|SNS::TopicPolicy|Logs::LogStream"
    r"|Lambda::Permission|KMS::Alias|ApplicationAutoScaling::ScalingPolicy|Logs::LogGroup"
    r"|EC2::FlowLog"
    r"|ElasticLoadBalancingV2::ListenerRule|Events::Rule|CloudWatch::Alarm|Glue::Trigger"
    r"|ApiGatewayV2::(Stage|Integration|Route))")


def wires(pipeline: Pipeline) -> list[tuple[str, str, str]]:
    """(producer stage, wire name, consumer stage) for every wire, in a stable order."""
    producers = {wire.name: stage.name for stage in pipeline.stages for wire in stage.outputs}
    return sorted((producers[wire.name], wire.name, stage.name)
                  for stage in pipeline.stages for wire in stage.inputs)


def main_resources(pipeline: Pipeline) -> dict[str, list[tuple[str, str]]]:
    """Stage name -> (logical id, short type) of the resources worth drawing."""
    found: dict[str, list[tuple[str, str]]] = {}
    for stage in pipeline.stages:
        resources = stage.template.to_dict().get("Resources", {})
        found[stage.name] = sorted(
            (logical_id, resource["Type"].removeprefix("AWS::"))
            for logical_id, resource in resources.items()
            if not _PLUMBING.match(resource["Type"]))
    return found


def mermaid(pipeline: Pipeline) -> str:
    lines = ["flowchart LR"]
    for stage, resources in main_resources(pipeline).items():
        lines.append(f'  subgraph {stage}["{stage} stack"]')
        lines.append("    direction TB")
        for logical_id, kind in resources:
            lines.append(f'    {stage}_{logical_id}["{logical_id}<br/><small>{kind}</small>"]')
        lines.append("  end")
    for producer, wire, consumer in wires(pipeline):
        lines.append(f"  {producer} -->|{wire}| {consumer}")
    return "\n".join(lines) + "\n"


def dot(pipeline: Pipeline) -> str:
    lines = ["digraph pipeline {", "  rankdir=LR;", "  compound=true;",
             '  node [shape=box, fontname="Helvetica", fontsize=10];']
    anchors = {}
    for stage, resources in main_resources(pipeline).items():
        lines.append(f'  subgraph cluster_{stage} {{')
        lines.append(f'    label="{stage} stack";')
        for logical_id, kind in resources:
            lines.append(f'    "{stage}.{logical_id}" [label="{logical_id}\\n{kind}"];')
        anchor = f"{stage}.{resources[0][0]}" if resources else f"{stage}.stack"
        if not resources:
            lines.append(f'    "{anchor}" [label="{stage}", shape=plaintext];')
        anchors[stage] = anchor
        lines.append("  }")
    edges = defaultdict(list)
    for producer, wire, consumer in wires(pipeline):
        edges[(producer, consumer)].append(wire)
    for (producer, consumer), names in sorted(edges.items()):
        label = "\\n".join(names)
        lines.append(f'  "{anchors[producer]}" -> "{anchors[consumer]}" '
                     f'[ltail=cluster_{producer}, lhead=cluster_{consumer}, label="{label}", '
                     f'fontsize=8];')
    lines.append("}")
    return "\n".join(lines) + "\n"
