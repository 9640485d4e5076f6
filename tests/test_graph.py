"""`mlops-cfn graph`: every wire drawn once, main resources inside their stack."""

from click.testing import CliRunner

from mlops_cfn import pipeline
from mlops_cfn.cli import cli
from mlops_cfn.graph import dot, main_resources, mermaid, wires

from .helpers import config_with


def built():
    return pipeline.build(config_with())


def test_every_wire_of_the_pipeline_is_an_edge_from_producer_to_consumer():
    built_pipeline = built()
    text = mermaid(built_pipeline)
    expected = [(w_producer, w.name, stage.name) for stage in built_pipeline.stages
                for w in stage.inputs
                for w_producer in [next(s.name for s in built_pipeline.stages
                                        if w in s.outputs)]]
    assert sorted(expected) == wires(built_pipeline)
    for producer, wire, consumer in expected:
        assert f"  {producer} -->|{wire}| {consumer}" in text.splitlines()


def test_main_resources_are_drawn_and_plumbing_is_left_out():
    resources = dict(main_resources(built()))
    storage = dict(resources["storage"])
    assert storage["DataKey"] == "KMS::Key" and storage["RawBucket"] == "S3::Bucket"
    drawn_types = {kind for stage in resources.values() for _, kind in stage}
    assert not any(kind.startswith("IAM::") for kind in drawn_types)
    assert "S3::BucketPolicy" not in drawn_types


def test_each_stage_is_a_subgraph_in_mermaid_and_a_cluster_in_dot():
    built_pipeline = built()
    text, graph = mermaid(built_pipeline), dot(built_pipeline)
    for stage in built_pipeline.stages:
        assert f'  subgraph {stage.name}["{stage.name} stack"]' in text
        assert f"subgraph cluster_{stage.name} {{" in graph
    assert text.startswith("flowchart LR\n")
    assert graph.startswith("digraph pipeline {") and graph.rstrip().endswith("}")


def test_the_graph_command_prints_the_default_pipeline():
    result = CliRunner().invoke(cli, ["graph"])
    assert result.exit_code == 0
    assert result.output.startswith("flowchart LR")
    result = CliRunner().invoke(cli, ["graph", "--format", "dot"])
    assert result.output.startswith("digraph pipeline {")


def test_the_readme_embeds_the_default_pipelines_current_diagram():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"```mermaid\n{mermaid(pipeline.build(config_with()))}```" in readme, \
        "refresh the README's diagram with the output of `mlops-cfn graph`"
