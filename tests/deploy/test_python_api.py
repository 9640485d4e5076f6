"""The public API's AWS calls on the moto sandbox, and the README's "Use it from Python" block run
exactly as written there.

The config is the foundation (network, storage, ingestion with its consumer; test_deploy.py's
`known_stages`), so a deployment takes seconds; the calls do not depend on which stages are on.
"""

import json
import os
import re
from pathlib import Path

import pytest

import mlops_cfn

from .changesets import detail, resource_change
from .conftest import BUCKET, write_config
from .test_deploy import known_stages, outputs
from . import test_upgrade

# The data guard is driven by change sets described as CloudFormation would (test_upgrade.py).
change_sets = test_upgrade.change_sets
GUARDED_STACK = test_upgrade.STACK

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Use it from Python\n"):]
    return re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)


@pytest.fixture
def foundation(tmp_path):
    return mlops_cfn.load_config(write_config(tmp_path / "pipeline.yaml", known_stages()))


def test_the_readme_example_runs_as_written(aws, tmp_path, monkeypatch, capsys):
    write_config(tmp_path / "pipeline.yaml", known_stages())
    # checkov as the suite finds it, from the repository, once the example runs elsewhere.
    if not os.environ.get("MLOPS_CFN_CHECKOV"):
        monkeypatch.setenv("MLOPS_CFN_TOOLS", os.environ.get("MLOPS_CFN_TOOLS")
                           or str(REPOSITORY / ".tools"))
    monkeypatch.chdir(tmp_path)
    aws.bucket("my-deployment-bucket")

    exec(compile(readme_example(), "README.md (Use it from Python)", "exec"),
         {"__name__": "readme_example"})

    printed = capsys.readouterr().out
    assert "['dev', 'prod']" in printed
    assert "checkov 0 failed" in printed, "the example validates with checkov"
    assert "flowchart LR" in printed
    assert "https://my-deployment-bucket.s3.us-east-1.amazonaws.com/" in printed
    assert re.search(r"^mlops-demo-dev Add +NetworkStack", printed, flags=re.MULTILINE)
    assert printed.rstrip().endswith("mlops-demo-dev CREATE_COMPLETE")
    assert aws.stacks()["mlops-demo-dev"]["StackStatus"] == "CREATE_COMPLETE"
    assert (tmp_path / "templates" / "prod" / "root.yaml").is_file()


def test_package_templates_uploads_each_file_once(aws, foundation, tmp_path):
    aws.bucket()
    tree = tmp_path / "dev"
    mlops_cfn.render_templates(mlops_cfn.build(foundation), tree)
    first = mlops_cfn.package_templates(tree, BUCKET, prefix="releases")
    assert isinstance(first, mlops_cfn.Packaged)
    assert first.root_url.startswith(f"https://{BUCKET}.s3.us-east-1.amazonaws.com/releases/")
    assert first.root_path == tree / "packaged-root.yaml" and first.root_path.is_file()
    assert first.uploaded and all(key.startswith("releases/") for key in first.uploaded)
    assert first.parameters_path is None

    again = mlops_cfn.package_templates(tree, BUCKET, prefix="releases",
                                        stack_name="mlops-demo-dev",
                                        aws=mlops_cfn.connect(region="us-east-1"))
    assert again.uploaded == () and sorted(again.skipped) == sorted(first.uploaded)
    assert again.root_url == first.root_url
    assert again.parameters_path == tree / "packaged-parameters.json"
    assert json.loads(again.parameters_path.read_text())["Parameters"]["EnvironmentName"] == "dev"


def test_preview_deployment_reads_the_change_set_and_leaves_nothing(aws, foundation):
    aws.bucket()
    heard = []
    preview = mlops_cfn.preview_deployment(foundation, "dev", bucket=BUCKET, validate=False,
                                           log=heard.append)
    assert isinstance(preview, mlops_cfn.Preview)
    assert preview.stack_name == "mlops-demo-dev" and preview.new_stack and not preview.empty
    assert {c.logical_id for c in preview.changes} == {
        "BoundaryStack", "NetworkStack", "StorageStack", "IngestionStack"}
    assert preview.refused == [] and preview.report is None
    assert preview.notes == tuple(heard)
    assert heard[-1].startswith(f"packaged into s3://{BUCKET}/: ")
    assert aws.stacks() == {}, "the change set and the new stack's shell are deleted"


def test_preview_deployment_validates_first(aws, foundation):
    aws.bucket()
    preview = mlops_cfn.preview_deployment(foundation, bucket=BUCKET, security=False)
    assert preview.report is not None and preview.report.ok
    assert any("cfn-lint 0 errors 0 warnings" in note for note in preview.notes)


def test_findings_raise_validation_failed_before_anything_is_uploaded(aws, foundation,
                                                                      monkeypatch):
    import mlops_cfn.validate as validate_module
    from mlops_cfn.validate import Finding, Report

    def failing(paths, security=True, **kwargs):
        file = Path(paths[0]) / "storage.yaml"
        return Report(files=(file,), findings=(Finding("cfn-lint", "error", file, "RawBucket",
                                                       "E3001", "broken on purpose"),),
                      security=security)

    monkeypatch.setattr(validate_module, "validate", failing)
    aws.bucket()
    for call in (mlops_cfn.preview_deployment, mlops_cfn.deploy_pipeline):
        with pytest.raises(mlops_cfn.ValidationFailed) as failed:
            call(foundation, bucket=BUCKET, security=False)
        assert [f.message for f in failed.value.report.findings] == ["broken on purpose"]
    assert aws.keys() == [] and aws.stacks() == {}


def test_deploy_pipeline_shows_asks_then_executes(aws, foundation):
    aws.bucket()
    happened = []

    def shown(preview):
        happened.append(("shown", preview.stack_name))

    def declined(preview):
        happened.append(("asked", len(preview.changes)))
        return False

    refused = mlops_cfn.deploy_pipeline(foundation, "dev", bucket=BUCKET, validate=False,
                                        on_preview=shown, confirm=declined)
    assert happened == [("shown", "mlops-demo-dev"), ("asked", 4)]
    assert (refused.result, refused.ok, refused.outcome) == ("declined", False, None)
    assert aws.stacks() == {}, "declined: the change set and the empty shell are deleted"

    deployed = mlops_cfn.deploy_pipeline(foundation, "dev", bucket=BUCKET, validate=False,
                                         confirm=lambda preview: True)
    assert isinstance(deployed, mlops_cfn.Deployment)
    assert (deployed.result, deployed.ok, deployed.status) == \
        ("executed", True, "CREATE_COMPLETE")
    assert deployed.failure is None
    root = aws.stacks()["mlops-demo-dev"]
    assert root["StackStatus"] == "CREATE_COMPLETE"
    assert {"IngestStreamName", "RawBucketName"} <= set(outputs(root))

    again = mlops_cfn.deploy_pipeline(foundation, "dev", bucket=BUCKET, validate=False,
                                      confirm=lambda preview: pytest.fail("nothing to ask"))
    assert (again.result, again.ok) == ("up to date", True)


def test_deploy_pipeline_passes_parameters_and_protects_prod(aws, foundation):
    aws.bucket()
    deployed = mlops_cfn.deploy_pipeline(foundation, "prod", bucket=BUCKET, validate=False,
                                         parameters={"StreamRetentionHours": "72"})
    assert deployed.ok and deployed.preview.protected
    root = aws.cfn.describe_stacks(StackName="mlops-demo-prod")["Stacks"][0]
    assert root["EnableTerminationProtection"] is True
    assert {p["ParameterKey"]: p["ParameterValue"] for p in root["Parameters"]}[
        "StreamRetentionHours"] == "72"
    with pytest.raises(mlops_cfn.UserError, match="--parameter Nonsense"):
        mlops_cfn.preview_deployment(foundation, "prod", bucket=BUCKET, validate=False,
                                     parameters={"Nonsense": "1"})


def test_deploy_pipeline_refuses_to_replace_a_data_store(aws, tmp_path, change_sets):
    aws.bucket()
    config_file = write_config(tmp_path / "pipeline.yaml", known_stages())
    first = mlops_cfn.deploy_pipeline(mlops_cfn.load_config(config_file),
                                      stack_name=GUARDED_STACK, bucket=BUCKET, validate=False)
    assert first.ok
    raw_bucket = outputs(aws.nested(GUARDED_STACK)["StorageStack"])["RawBucketName"]
    renamed = mlops_cfn.load_config(write_config(config_file, known_stages(project="renamed")))

    def rename():
        change_sets.report({"StorageStack": [
            resource_change("Modify", "RawBucket", "AWS::S3::Bucket", replacement="True",
                            physical_id=raw_bucket, details=[detail("BucketName", "Always")])]})

    rename()
    refused = mlops_cfn.deploy_pipeline(renamed, stack_name=GUARDED_STACK, bucket=BUCKET,
                                        validate=False,
                                        confirm=lambda preview: pytest.fail("not asked"))
    assert (refused.result, refused.ok) == ("refused", False)
    assert [c.logical_id for c in refused.preview.refused] == ["RawBucket"]
    assert aws.stacks()[GUARDED_STACK]["StackStatus"] == "CREATE_COMPLETE", "nothing executed"

    rename()
    allowed = mlops_cfn.deploy_pipeline(renamed, stack_name=GUARDED_STACK, bucket=BUCKET,
                                        validate=False, allow_replacement=True,
                                        confirm=lambda preview: False)
    assert allowed.result == "declined", "the guard stepped aside; the question decided"
    assert change_sets.all_read()


def test_a_failed_execution_raises_deploy_failed(aws, foundation):
    aws.bucket()
    aws.s3.create_bucket(Bucket="mlops-demo-dev-raw-123456789012-us-east-1")
    with pytest.raises(mlops_cfn.DeployFailed, match="BucketAlreadyExists"):
        mlops_cfn.deploy_pipeline(foundation, bucket=BUCKET, validate=False)
