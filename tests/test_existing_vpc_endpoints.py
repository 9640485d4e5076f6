"""Placing the pipeline in an existing VPC: the endpoints that VPC must already provide are every
interface endpoint the enabled stages call from the private subnets and the stack does not
create, and whoever deploys reads them where they look: the ExistingVpcId parameter (console,
Service Catalog), `mlops-cfn render`'s output, and the example's comment."""

import re
from pathlib import Path

from click.testing import CliRunner

from mlops_cfn import config, pipeline
from mlops_cfn.cli import cli
from mlops_cfn.stages.network import endpoints_to_provide, needed_interface_endpoints

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "existing-vpc.yaml"


def named_endpoints(text: str) -> set[str]:
    return set(re.findall(r"com\.amazonaws\.<region>\.([a-z0-9.-]+?)(?=[,\s(])", text))


def test_the_etl_job_in_the_vpc_needs_eventbridge_for_its_new_data_event():
    # The Glue job announces what it wrote with PutEvents (mlops_cfn/data/glue/etl_job.py);
    # from the private subnets that call reaches EventBridge only through its endpoint.
    script = (REPO / "mlops_cfn" / "data" / "glue" / "etl_job.py").read_text()
    assert 'boto3.client("events")' in script and "put_events" in script
    loaded = config.load(EXAMPLE)
    assert loaded.config.stages.etl.enabled
    assert "events" in endpoints_to_provide(loaded.config)


def test_the_existing_vpc_parameter_names_every_endpoint_the_stages_call_and_none_created():
    loaded = config.load(EXAMPLE)
    assert loaded.config.network.interface_endpoints == []
    root = pipeline.build(loaded).root.to_dict()
    description = root["Parameters"]["ExistingVpcId"]["Description"]
    assert named_endpoints(description) == set(needed_interface_endpoints(loaded.config))
    assert len(description) <= 4000  # CloudFormation's limit on a parameter description


def test_render_prints_the_endpoints_an_existing_vpc_must_provide(tmp_path):
    result = CliRunner().invoke(cli, ["render", "--config", str(EXAMPLE), "--all-envs",
                                      "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 2  # dev and prod
    expected = set(needed_interface_endpoints(config.load(EXAMPLE).config))
    assert all(named_endpoints(note) == expected for note in notes)


def test_the_examples_comment_lists_the_endpoints_its_vpc_must_provide():
    text = EXAMPLE.read_text()
    comment = text[:text.index("interface_endpoints: []")].rsplit("cidr:", 1)[1]
    listed = set(re.findall(r"\b(ecr\.api|ecr\.dkr|events|glue|kms|logs|monitoring|"
                            r"sagemaker\.api|sagemaker\.runtime|sts|secretsmanager|sns|sqs|"
                            r"states|lambda|redshift-data|kinesis-firehose|kinesis-streams)\b",
                            comment))
    assert listed == set(endpoints_to_provide(config.load(EXAMPLE).config))


def test_a_created_vpc_has_nothing_to_provide():
    loaded = config.load(None)
    assert loaded.config.network.mode == "create"
    assert endpoints_to_provide(loaded.config) == []
    description = pipeline.build(loaded).root.to_dict()["Parameters"]["VpcCidr"]["Description"]
    assert not named_endpoints(description)
