"""`package`: every nested template and asset in S3 under content-addressed keys, TemplateURLs
rewritten to virtual-hosted URLs of the bucket's region, and the packaged root beside the tree."""

import json
import re
from pathlib import Path

import cfn_flip
import pytest
from troposphere import Output, Sub
from troposphere.sqs import Queue

from mlops_cfn import config, pipeline
from mlops_cfn.assets import Asset
from mlops_cfn.errors import UserError
from mlops_cfn.package import find_root, load_template, normal_prefix, object_url, package
from mlops_cfn.pipeline import REGISTRY, StageSpec
from mlops_cfn.render import drift, render_files, write_tree
from mlops_cfn.stage import StageBuilder
from mlops_cfn.wheel import tool_wheel
from tests.helpers import config_with
from tests.template_eval import Resolver

from .conftest import BUCKET, run

pytestmark = pytest.mark.slow

GLUE_SCRIPT = b"print('transform')\n"
ASSET_KEY = Asset("job.py", GLUE_SCRIPT).key


def asset_stage(loaded):
    """A stage with one asset, standing in for the ETL stage's Glue script."""
    b = StageBuilder("assetdemo", loaded.config.project, "asset demo")
    script = b.asset("job.py", GLUE_SCRIPT)
    queue = b.add(Queue("Queue"))
    b.template.add_output(Output("ScriptLocation", Value=script.s3_uri))
    b.template.add_output(Output("ScriptArn", Value=script.object_arn))
    b.template.add_output(Output("ScriptKey", Value=script.s3_key))
    b.template.add_output(Output("QueueUrl", Value=Sub("${Queue}", Queue=queue.Ref())))
    return b.finish()


def rendered(tmp_path: Path, fmt: str = "yaml", with_asset: bool = True) -> Path:
    registry = REGISTRY + ((StageSpec("assetdemo", asset_stage, lambda c: True, "test"),)
                           if with_asset else ())
    built = pipeline.build(config_with(), file_suffix=f".{fmt}", registry=registry)
    tree = tmp_path / "dev"
    write_tree(render_files(built, fmt), tree)
    return tree


def nested_urls(root: Path) -> dict[str, str]:
    data, _ = load_template(root)
    return {name: r["Properties"]["TemplateURL"] for name, r in data["Resources"].items()
            if r["Type"] == "AWS::CloudFormation::Stack"}


def test_uploads_every_template_and_asset_and_rewrites_the_urls(aws, tmp_path):
    tree = rendered(tmp_path)
    aws.bucket()
    result = package(tree, BUCKET, s3=aws.s3)

    assert result.root_path == tree / "packaged-root.yaml"
    assert result.root_url.startswith(f"https://{BUCKET}.s3.us-east-1.amazonaws.com/templates/")
    assert result.root_url.endswith("/root.yaml")
    assert sorted(result.uploaded) == aws.keys() and not result.skipped
    urls = nested_urls(result.root_path)
    assert set(urls) == {stage.logical_id for stage in
                         pipeline.build(config_with()).stages} | {"AssetdemoStack"}
    for name, url in urls.items():
        key = url.split(".amazonaws.com/", 1)[1]
        assert key in aws.keys(), name
        uploaded = aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        local = tree / key.rsplit("/", 1)[1]
        assert uploaded == local.read_bytes(), f"{name}: nested templates go up byte for byte"
    assert aws.s3.get_object(Bucket=BUCKET, Key=ASSET_KEY)["Body"].read() == GLUE_SCRIPT
    rendered_assets = {p.relative_to(tree).as_posix() for p in (tree / "assets").rglob("*")
                       if p.is_file()}
    # And the wheel of this mlops-cfn, which the delivery build installs (wheel.py).
    assert {k for k in aws.keys() if k.startswith("assets/")} == rendered_assets | {
        tool_wheel().key}


def test_the_packaged_root_defaults_assets_bucket_to_the_bucket(aws, tmp_path):
    tree = rendered(tmp_path)
    aws.bucket()
    data, _ = load_template(package(tree, BUCKET, s3=aws.s3).root_path)
    assert data["Parameters"]["AssetsBucket"]["Default"] == BUCKET
    original, _ = load_template(tree / "root.yaml")
    assert "Default" not in original["Parameters"]["AssetsBucket"], "root.yaml stays as rendered"


def test_unchanged_content_is_not_uploaded_again(aws, tmp_path):
    tree = rendered(tmp_path)
    aws.bucket()
    first = package(tree, BUCKET, s3=aws.s3)
    second = package(tree, BUCKET, s3=aws.s3)
    assert second.uploaded == [] and sorted(second.skipped) == sorted(first.uploaded)
    assert second.root_url == first.root_url
    assert len(aws.keys()) == len(first.uploaded), "same content, same key: assets in S3 once"


def test_changed_content_gets_a_new_key_and_the_old_one_stays(aws, tmp_path):
    aws.bucket()
    first = package(rendered(tmp_path / "a"), BUCKET, s3=aws.s3)
    changed = pipeline.build(config_with({"stages": {"ingestion": {"consumer": {
        "enabled": False}}}}))
    tree = tmp_path / "b" / "dev"
    write_tree(render_files(changed), tree)
    second = package(tree, BUCKET, s3=aws.s3)
    ingestion = [k for k in second.uploaded if k.endswith("/ingestion.yaml")]
    assert ingestion and ingestion[0] not in first.uploaded
    assert [k for k in second.skipped if k.endswith("/storage.yaml")], "storage did not change"
    assert set(first.uploaded) <= set(aws.keys()), "a running stack's templates stay readable"


def test_an_object_under_the_key_with_other_content_is_replaced(aws, tmp_path):
    tree = rendered(tmp_path)
    aws.bucket()
    first = package(tree, BUCKET, s3=aws.s3)
    assert ASSET_KEY in first.uploaded
    aws.s3.put_object(Bucket=BUCKET, Key=ASSET_KEY, Body=b"tampered")
    second = package(tree, BUCKET, s3=aws.s3)
    assert second.uploaded == [ASSET_KEY]
    assert aws.s3.get_object(Bucket=BUCKET, Key=ASSET_KEY)["Body"].read() == GLUE_SCRIPT


# An asset key with whatever key characters stand before it (a prefix, or the bucket name
# after the `//` of a URI or the `:::` of an ARN).
ASSET_REFERENCE = re.compile(r"[0-9A-Za-z!_.*'()/-]*assets/[0-9a-f]{16}/[0-9A-Za-z_.-]+")


def named_keys(text: str, bucket: str) -> list[str]:
    """The object keys the asset references in `text` name, read as S3 would: after the
    bucket in an `s3://` URI or an object ARN, else the whole run (a bare key)."""
    keys = []
    for match in ASSET_REFERENCE.finditer(text):
        key = match.group(0).lstrip("/")
        keys.append(key[len(bucket) + 1:] if key.startswith(bucket + "/") else key)
    return keys


def walk(node, path=()):
    """(path, string) for every string in a resolved template fragment."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from walk(item, (*path, str(key)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from walk(item, (*path, str(index)))


def test_with_a_prefix_every_asset_reference_of_every_packaged_template_names_an_uploaded_object(
        aws, tmp_path):
    """URIs, object ARNs, s3:prefix conditions, bare keys and the training pipeline's definition
    all name the keys packaging uploaded, read with the values the packaged root passes down."""
    tree = rendered(tmp_path)
    aws.bucket()
    result = package(tree, BUCKET, prefix="/team/ml/", s3=aws.s3)
    uploaded = set(aws.keys())
    assert all(key.startswith("team/ml/") for key in uploaded)
    root, _ = load_template(result.root_path)
    assert root["Parameters"]["AssetsPrefix"]["Default"] == "team/ml/"
    assert root["Parameters"]["AssetsBucket"]["Default"] == BUCKET
    root_values = Resolver(root, {})
    referenced: dict[str, set[str]] = {}
    for stack, url in nested_urls(result.root_path).items():
        given = {name: root_values.value(value) for name, value in
                 root["Resources"][stack]["Properties"].get("Parameters", {}).items()}
        body = aws.s3.get_object(Bucket=BUCKET, Key=url.split(".com/", 1)[1])["Body"].read()
        nested = cfn_flip.load_yaml(body.decode())
        resolver = Resolver(nested, given)
        for section in ("Resources", "Outputs"):
            for path, text in walk(resolver.value(nested.get(section) or {}), (section,)):
                for key in named_keys(text, BUCKET):
                    assert key in uploaded, f"{stack}: {'/'.join(path)} names {key}"
                    referenced.setdefault(key, set()).add(f"{stack}:{'/'.join(path)}")
    where = {place for places in referenced.values() for place in places}

    def found(stack: str, *parts: str) -> bool:
        return any(p.startswith(stack + ":") and all(part in p for part in parts) for p in where)

    assert found("EtlStack", "EtlJob", "ScriptLocation"), "a Glue script URI"
    assert found("EtlStack", "JobRole", "Resource"), "an object ARN"
    assert found("TrainingStack", "Condition", "s3:prefix"), "an s3:prefix condition"
    assert found("TrainingStack", "TrainingPipeline", "PipelineDefinitionBody"), "a definition"
    assert found("AssetdemoStack", "ScriptKey"), "a bare key"
    assets = {k for k in uploaded if k.startswith("team/ml/assets/")}
    assert assets and set(referenced) == assets, "every uploaded asset is referenced"


def test_urls_name_the_region_of_the_bucket(aws, tmp_path):
    tree = rendered(tmp_path, with_asset=False)
    aws.bucket("mlops-cfn-frankfurt", region="eu-central-1")
    result = package(tree, "mlops-cfn-frankfurt", s3=aws.s3)
    assert result.root_url.startswith("https://mlops-cfn-frankfurt.s3.eu-central-1.amazonaws.com/")
    assert all(url.startswith("https://mlops-cfn-frankfurt.s3.eu-central-1.amazonaws.com/")
               for url in nested_urls(result.root_path).values())


def test_object_urls():
    assert object_url("b-1", "us-east-1", "templates/ab/root.yaml") == \
        "https://b-1.s3.us-east-1.amazonaws.com/templates/ab/root.yaml"
    assert object_url("b-1", "cn-north-1", "k") == "https://b-1.s3.cn-north-1.amazonaws.com.cn/k"
    assert object_url("b-1", "eu-west-1", "a b/c+d") == \
        "https://b-1.s3.eu-west-1.amazonaws.com/a%20b/c%2Bd"


def test_prefixes_are_normalised():
    assert normal_prefix("") == ""
    assert normal_prefix("/a//b/") == "a/b/"
    with pytest.raises(UserError, match="'..'"):
        normal_prefix("a/../b")


def test_json_trees_are_packaged_as_json(aws, tmp_path):
    tree = rendered(tmp_path, fmt="json", with_asset=False)
    aws.bucket()
    result = package(tree, BUCKET, s3=aws.s3)
    assert result.root_path.name == "packaged-root.json"
    data = json.loads(result.root_path.read_text())
    assert all(url.startswith("https://") for url in nested_urls(result.root_path).values())
    assert data["Resources"]


def test_a_missing_bucket_is_refused_clearly(aws, tmp_path):
    tree = rendered(tmp_path, with_asset=False)
    with pytest.raises(UserError, match="bucket 'no-such-bucket-here' does not exist"):
        package(tree, "no-such-bucket-here", s3=aws.s3)
    assert not (tree / "packaged-root.yaml").exists()


def test_a_directory_without_a_root_is_refused(tmp_path):
    with pytest.raises(UserError, match="no root.yaml or root.json"):
        find_root(tmp_path)
    with pytest.raises(UserError, match="not a directory"):
        find_root(tmp_path / "missing")


def test_a_missing_nested_template_is_refused(aws, tmp_path):
    tree = rendered(tmp_path, with_asset=False)
    (tree / "storage.yaml").unlink()
    aws.bucket()
    with pytest.raises(UserError, match="StorageStack: TemplateURL storage.yaml names no file"):
        package(tree, BUCKET, s3=aws.s3)


def test_the_packaged_root_is_no_drift_and_the_next_render_removes_it(aws, tmp_path):
    tree = rendered(tmp_path, with_asset=False)
    aws.bucket()
    package(tree, BUCKET, s3=aws.s3)
    files = render_files(pipeline.build(config_with()))
    assert drift(files, tree) == []
    write_tree(files, tree)
    assert not (tree / "packaged-root.yaml").exists()


def test_the_packaged_root_lints_clean(aws, tmp_path):
    from mlops_cfn.validate import validate

    tree = rendered(tmp_path, with_asset=False)
    aws.bucket()
    result = package(tree, BUCKET, s3=aws.s3)
    report = validate([result.root_path], security=False)
    assert not report.findings, report.render()


# --- through the CLI, the default pipeline ---------------------------------------------------

def test_cli_packages_the_default_pipeline(aws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("render").exit_code == 0
    aws.bucket()
    result = run("package", "--bucket", BUCKET)
    assert result.exit_code == 0, result.output
    tree = tmp_path / "templates" / "dev"
    assert "wrote templates/dev/packaged-root.yaml" in result.output
    built = pipeline.build(config.load(None, "dev"))
    stage_templates = {f"{stage.name}.yaml" for stage in built.stages}
    uploaded = {key.rsplit("/", 1)[1] for key in aws.keys() if key.startswith("templates/")}
    assert uploaded == stage_templates | {"root.yaml"}
    assets = sorted(p.relative_to(tree).as_posix() for p in (tree / "assets").rglob("*")
                    if p.is_file()) if (tree / "assets").is_dir() else []
    # With the delivery pipeline: beside them, the wheel of this mlops-cfn its build installs.
    wheel = tool_wheel().key
    assert [k for k in aws.keys() if k.startswith("assets/")] == sorted(assets + [wheel])
    packaged, _ = load_template(tree / "packaged-root.yaml")
    assert packaged["Parameters"]["ToolWheelKey"]["Default"] == wheel
    again = run("package", "--bucket", BUCKET, str(tree))
    assert again.exit_code == 0
    assert f"uploaded 0, unchanged {len(aws.keys())}" in again.output
    assert run("render", "--check").exit_code == 0, "packaging leaves the tree in sync"


def test_cli_writes_the_template_configuration_of_the_stack_it_packages_for(aws, tmp_path,
                                                                          monkeypatch):
    """--stack-name: parameters.json plus the live stack's run-time values; a stack not yet
    created has none (the template defaults apply)."""
    monkeypatch.chdir(tmp_path)
    assert run("render").exit_code == 0
    aws.bucket()
    result = run("package", "--bucket", BUCKET, "--stack-name", "mlops-demo-dev")
    assert result.exit_code == 0, result.output
    assert "wrote templates/dev/packaged-parameters.json" in result.output
    tree = tmp_path / "templates" / "dev"
    assert json.loads((tree / "packaged-parameters.json").read_text()) == json.loads(
        (tree / "parameters.json").read_text())
    assert run("render", "--check").exit_code == 0, "no drift: a product of packaging"


GROUP = "mlops-demo-dev-models"  # the training stage's registry group in dev


def register(aws, status: str) -> str:
    """A package version in dev's group, then set to `status` (as a person approving does)."""
    sagemaker = aws.client("sagemaker")
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]
    if status != "PendingManualApproval":
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status)
    return arn


def package_latest_approved(tree: Path) -> tuple[str, str]:
    """What the delivery build runs for an environment (cicd_buildspec.build_spec)."""
    result = run("package", "--bucket", BUCKET, "--stack-name", "mlops-demo-dev",
                 "--latest-approved-model", str(tree))
    assert result.exit_code == 0, result.output
    chosen = json.loads((tree / "packaged-parameters.json").read_text())["Parameters"]
    return chosen.get("ModelPackageArn", ""), result.output


def test_the_build_serves_the_package_approved_last_never_a_pending_or_rejected_one(
        aws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("render").exit_code == 0
    aws.bucket()
    tree = tmp_path / "templates" / "dev"
    aws.client("sagemaker").create_model_package_group(ModelPackageGroupName=GROUP)
    # Before any approval: nothing chosen, the stack keeps what it has (nothing, at first).
    chosen, output = package_latest_approved(tree)
    assert chosen == "" and f"no approved package in {GROUP} yet" in output
    first, second = register(aws, "Approved"), register(aws, "Approved")
    register(aws, "PendingManualApproval")
    register(aws, "Rejected")
    chosen, output = package_latest_approved(tree)
    assert chosen == second and f"{second} (approved last in {GROUP})" in output
    # Rolling back: reject the serving version; the one approved before it serves again.
    sagemaker = aws.client("sagemaker")
    sagemaker.update_model_package(ModelPackageArn=second, ModelApprovalStatus="Rejected")
    assert package_latest_approved(tree)[0] == first
    # Approving a version again makes it the one served, however old it is.
    sagemaker.update_model_package(ModelPackageArn=second, ModelApprovalStatus="Approved")
    assert package_latest_approved(tree)[0] == second
    sagemaker.update_model_package(ModelPackageArn=first, ModelApprovalStatus="Rejected")
    sagemaker.update_model_package(ModelPackageArn=first, ModelApprovalStatus="Approved")
    assert package_latest_approved(tree)[0] == first, "approving the earlier one rolls back"


def test_a_model_the_config_names_is_not_replaced_by_the_registry(aws, tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    named = "arn:aws:sagemaker:us-east-1:123456789012:model-package/mlops-demo-dev-models/7"
    data = yaml.safe_load(config.DEFAULT_CONFIG.read_text())
    data["stages"].setdefault("serving", {})["model_package_arn"] = named
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert run("render").exit_code == 0
    aws.bucket()
    aws.client("sagemaker").create_model_package_group(ModelPackageGroupName=GROUP)
    register(aws, "Approved")
    chosen, output = package_latest_approved(tmp_path / "templates" / "dev")
    assert chosen == named and "set by the config" in output


def test_the_model_api_image_is_the_shipped_apps_content_tag_unless_the_config_names_one(
        aws, tmp_path, monkeypatch):
    import yaml

    from mlops_cfn.model_api import image_tag

    monkeypatch.chdir(tmp_path)
    assert run("render").exit_code == 0
    aws.bucket()
    tree = tmp_path / "templates" / "dev"
    result = run("package", "--bucket", BUCKET, "--stack-name", "mlops-demo-dev",
                 "--model-api-image", str(tree))
    assert result.exit_code == 0, result.output
    chosen = json.loads((tree / "packaged-parameters.json").read_text())["Parameters"]
    assert chosen["ApiImageTag"] == image_tag()
    data = yaml.safe_load(config.DEFAULT_CONFIG.read_text())
    data["stages"].setdefault("serving", {}).setdefault("fargate", {})["image_tag"] = "mine-1"
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert run("render").exit_code == 0
    assert run("package", "--bucket", BUCKET, "--stack-name", "mlops-demo-dev",
               "--model-api-image", str(tree)).exit_code == 0
    chosen = json.loads((tree / "packaged-parameters.json").read_text())["Parameters"]
    assert chosen["ApiImageTag"] == "mine-1"


def test_latest_approved_model_needs_the_stack_it_configures(aws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("render").exit_code == 0
    result = run("package", "--bucket", BUCKET, "--latest-approved-model")
    assert result.exit_code == 2
    assert "--latest-approved-model needs --stack-name" in result.output


def test_cli_refuses_a_missing_bucket_with_exit_2(aws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("render")
    result = run("package", "--bucket", "not-created-yet")
    assert result.exit_code == 2
    assert "error: bucket 'not-created-yet' does not exist" in result.output


def test_cli_takes_the_endpoint_from_the_option(aws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("render")
    aws.bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    result = run("package", "--bucket", BUCKET, "--endpoint-url", aws.url)
    assert result.exit_code == 0, result.output


# --- the assets bucket's key -----------------------------------------------------------------

def encrypt_bucket(aws, key_id: str | None, algorithm: str = "aws:kms") -> None:
    default = {"SSEAlgorithm": algorithm, **({"KMSMasterKeyID": key_id} if key_id else {})}
    aws.s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": default}]})


def packaged_key(aws, tree) -> str:
    data, _ = load_template(package(tree, BUCKET, s3=aws.s3,
                                    kms_for=lambda region: aws.client("kms", region)).root_path)
    return data["Parameters"]["AssetsKeyArn"]["Default"]


@pytest.mark.parametrize("named_by", ["KeyId", "Arn", "alias"])
def test_the_packaged_root_names_the_customer_key_the_bucket_encrypts_with(aws, tmp_path,
                                                                          named_by):
    """The roles reading the assets are granted that key (assets.key_policies); the bucket's
    default encryption may name it by id, ARN or alias."""
    tree = rendered(tmp_path)
    aws.bucket()
    kms = aws.client("kms")
    key = kms.create_key(Description="the team's bucket key")["KeyMetadata"]
    kms.create_alias(AliasName="alias/team-bucket", TargetKeyId=key["KeyId"])
    encrypt_bucket(aws, {"KeyId": key["KeyId"], "Arn": key["Arn"],
                         "alias": "alias/team-bucket"}[named_by])
    assert packaged_key(aws, tree) == key["Arn"]
    original, _ = load_template(tree / "root.yaml")
    assert original["Parameters"]["AssetsKeyArn"]["Default"] == "", "root.yaml stays as rendered"


@pytest.mark.parametrize("algorithm, key_id", [("AES256", None), ("aws:kms", None)])
def test_no_key_is_named_for_sse_s3_or_the_aws_managed_key(aws, tmp_path, algorithm, key_id):
    """SSE-S3 needs no key permission; the AWS managed key aws/s3 lets every principal of the
    account decrypt through S3."""
    tree = rendered(tmp_path)
    aws.bucket()
    encrypt_bucket(aws, key_id, algorithm)
    assert packaged_key(aws, tree) == ""


def test_an_object_encrypted_with_another_key_than_the_buckets_is_uploaded_again(aws, tmp_path):
    """Roles are granted the bucket's current key only: an asset left under an older key would
    be unreadable to them."""
    tree = rendered(tmp_path)
    aws.bucket()
    kms = aws.client("kms")
    old, new = (kms.create_key()["KeyMetadata"] for _ in range(2))
    encrypt_bucket(aws, old["Arn"])
    package(tree, BUCKET, s3=aws.s3)
    encrypt_bucket(aws, new["Arn"])
    again = package(tree, BUCKET, s3=aws.s3)
    assert ASSET_KEY in again.uploaded
    assert aws.s3.head_object(Bucket=BUCKET, Key=ASSET_KEY)["SSEKMSKeyId"].endswith(
        new["KeyId"])
    assert package(tree, BUCKET, s3=aws.s3).uploaded == [], "then it is not uploaded again"
