"""`diff` shows pipeline.yaml's overrides: each override the environment's templates carry, and
the change it makes to the deployed stack, before anything is executed."""

import pytest

from .conftest import BUCKET, run, write_config
from .test_deploy import STACK, deploy, known_stages, pending_change_sets

pytestmark = pytest.mark.slow


def test_diff_names_each_override_and_shows_the_stack_it_changes(aws, tmp_path):
    aws.bucket()
    config_file = write_config(tmp_path / "pipeline.yaml", known_stages())
    assert deploy(config_file, "--yes").exit_code == 0
    write_config(config_file, known_stages(overrides={"storage": {"RawBucket": {
        "VersioningConfiguration.Status": "Suspended", "NotificationConfiguration": None}}}))

    diff = run("diff", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
               "--no-validate")

    assert diff.exit_code == 0, diff.output
    lines = diff.output.splitlines()
    assert (f'override: storage RawBucket Properties.VersioningConfiguration.Status = '
            f'"Suspended" ({config_file})') in lines
    assert (f"override: storage RawBucket Properties.NotificationConfiguration deleted "
            f"({config_file})") in lines
    assert any("Modify" in line and "StorageStack" in line for line in lines), diff.output
    assert not any("Modify" in line and "IngestionStack" in line for line in lines)
    assert "nothing executed; the change set was deleted" in diff.output
    assert pending_change_sets(aws) == []
