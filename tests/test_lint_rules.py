"""mlops-cfn's security rules as cfn-lint rules (mlops_cfn/lint_rules), as users run them.

Each rule has a good and a bad fixture under tests/fixtures/lint_rules/: the bad one is reported
by that rule at the listed places and by no other rule of the pack, the good one by none. Two
mutations of a rendered template show the rules catching what the templates' tests used not to:
an action family on the model role, and a trust policy losing its aws:SourceAccount.
"""

import ast
import copy
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_cfn import config, lint_rules, pipeline

from .lint_pack import findings, rule_ids

FIXTURES = Path(__file__).parent / "fixtures" / "lint_rules"
RULE_FILES = sorted(p for p in lint_rules.PATH.glob("*.py") if not p.name.startswith("_"))

BUCKET_DEFAULT = ("BucketEncryption", "ServerSideEncryptionConfiguration", 0,
                  "ServerSideEncryptionByDefault")
BAD = {
    "E9001": {
        # aws:kms without a key: S3 uses the AWS managed aws/s3 key.
        ("Resources", "AwsManagedKeyBucket", "Properties", *BUCKET_DEFAULT),
        ("Resources", "SseS3Bucket", "Properties", *BUCKET_DEFAULT, "SSEAlgorithm"),
        ("Resources", "SseS3Bucket", "Properties", *BUCKET_DEFAULT, "KMSMasterKeyID",
         "Fn::If", 2),
        ("Resources", "Queue", "Properties", "KmsMasterKeyId"),  # alias/aws/sqs
        ("Resources", "LogGroup", "Properties"),
        ("Resources", "Stream", "Properties"),
        ("Resources", "Repository", "Properties", "EncryptionConfiguration"),
        ("Resources", "Repository", "Properties", "EncryptionConfiguration", "EncryptionType"),
        ("Resources", "EndpointConfig", "Properties"),
        ("Resources", "GlueSecurity", "Properties", "EncryptionConfiguration"),
        ("Resources", "GlueSecurity", "Properties", "EncryptionConfiguration", "S3Encryptions", 0),
        ("Resources", "GlueSecurity", "Properties", "EncryptionConfiguration", "S3Encryptions", 0,
         "S3EncryptionMode"),
        ("Resources", "ReasonlessException", "Properties"),  # an exception needs its reason
        ("Resources", "BareTopic"),
    },
    "E9002": {
        ("Resources", "ModelRole", "Properties", "Policies", 0, "PolicyDocument", "Statement", 0,
         "Action", 1),  # ecr:Put*
        ("Resources", "Everything", "Properties", "PolicyDocument", "Statement", 0, "Action"),
        ("Resources", "Everything", "Properties", "PolicyDocument", "Statement", 1, "NotAction"),
        ("Resources", "QueuePolicy", "Properties", "PolicyDocument", "Statement", 0, "Action"),
    },
    "E9003": {
        ("Resources", role, "Properties", "AssumeRolePolicyDocument", "Statement", 0)
        for role in ("ModelRole", "BuildRole", "StateMachineRole")
    },
    "E9004": {
        ("Resources", "Bucket"),
        ("Resources", "Key", "DeletionPolicy"),
    },
    "E9005": {
        ("Resources", "AddressedSubnet", "Properties", "MapPublicIpOnLaunch"),
        ("Resources", "RoutedSubnet"),
    },
}


def test_the_pack_holds_one_rule_per_file_each_described_and_numbered_for_users():
    assert rule_ids() == set(BAD)
    for path in RULE_FILES:
        classes = [node for node in ast.parse(path.read_text()).body
                   if isinstance(node, ast.ClassDef)]
        assert len(classes) == 1, path.name
        rule = getattr(lint_rules, classes[0].name)()
        assert rule.id.startswith("E9") and rule.id in BAD, path.name
        assert rule.shortdesc and rule.description and rule.tags, path.name
        assert rule.source_url.startswith("https://docs.aws.amazon.com/"), path.name
    assert len(RULE_FILES) == len(BAD)


@pytest.mark.parametrize("rule", sorted(BAD))
def test_the_bad_fixture_is_reported_by_its_rule_where_it_breaks_it(rule):
    assert findings(FIXTURES / f"{rule}-bad.yaml") == {(rule, path) for path in BAD[rule]}


@pytest.mark.parametrize("rule", sorted(BAD))
def test_the_good_fixture_passes_every_rule(rule):
    assert findings(FIXTURES / f"{rule}-good.yaml") == set()


def _rendered(stage_name: str) -> dict:
    (stage,) = [s for s in pipeline.build(config.load(None)).stages if s.name == stage_name]
    return copy.deepcopy(stage.template.to_dict())


def test_an_action_family_on_the_model_role_is_reported():
    template = _rendered("serving")
    assert findings(template) == set()
    policy = template["Resources"]["ModelRole"]["Properties"]["Policies"][0]
    statement = policy["PolicyDocument"]["Statement"][0]
    statement["Action"] = [*statement["Action"], "ecr:Put*"]
    where = ("Resources", "ModelRole", "Properties", "Policies", 0, "PolicyDocument",
             "Statement", 0, "Action", len(statement["Action"]) - 1)
    assert findings(template) == {("E9002", where)}


def test_a_trust_policy_losing_its_source_account_is_reported():
    template = _rendered("serving")
    trust = template["Resources"]["ModelRole"]["Properties"]["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    del statement["Condition"]
    assert findings(template) == {("E9003", ("Resources", "ModelRole", "Properties",
                                             "AssumeRolePolicyDocument", "Statement", 0))}


def test_python_m_prints_the_directory_cfn_lint_appends():
    done = subprocess.run([sys.executable, "-m", "mlops_cfn.lint_rules"], capture_output=True,
                          text=True, check=True)
    assert Path(done.stdout.strip()) == lint_rules.PATH


def test_cfn_lint_run_as_the_readme_says_fails_a_bad_template_and_passes_a_good_one():
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    command = [str(cfn_lint), "--append-rules", str(lint_rules.PATH), "--"]
    bad = subprocess.run([*command, str(FIXTURES / "E9002-bad.yaml")], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "E9002" in bad.stdout and "ecr:Put*" in bad.stdout
    # cfn-lint's own rules too: the good fixtures are valid templates.
    good = subprocess.run([*command, *map(str, sorted(FIXTURES.glob("*-good.yaml")))],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr


def test_validate_reports_the_packs_findings_and_a_changed_rule_invalidates_its_cache(
        tmp_path, monkeypatch):
    from mlops_cfn import validate as validating

    bad = FIXTURES / "E9002-bad.yaml"
    report = validating.validate([bad], security=False, cache_dir=tmp_path / "cache")
    assert not report.ok
    assert {(f.tool, f.rule, f.resource) for f in report.findings if f.rule == "E9002"} == {
        ("cfn-lint", "E9002", "ModelRole"), ("cfn-lint", "E9002", "Everything"),
        ("cfn-lint", "E9002", "QueuePolicy")}
    # The cache key holds the pack's code: another rule set never reads a stale result.
    from mlops_cfn.validate.lint import lint_identity

    before = lint_identity()
    monkeypatch.setattr(lint_rules, "PATH", FIXTURES)  # no rule files there: another pack
    assert lint_identity() != before


def test_the_pre_commit_hook_runs_cfn_lint_with_the_pack_on_the_files_it_is_given():
    import yaml

    hooks = yaml.safe_load((Path(__file__).parents[1] / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "mlops-cfn-rules"]
    assert hook["language"] == "python" and hook.get("pass_filenames", True)
    program, *arguments = hook["entry"].split()
    assert program == "python"  # the hook environment's, where pre-commit installed mlops-cfn
    command = [sys.executable, *arguments]
    bad = subprocess.run([*command, str(FIXTURES / "E9003-bad.yaml")], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "E9003" in bad.stdout
    good = subprocess.run([*command, str(FIXTURES / "E9003-good.yaml")], capture_output=True,
                          text=True)
    assert good.returncode == 0, good.stdout + good.stderr
