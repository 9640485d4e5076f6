"""The rendered output: committed templates match the code, and every template is clean.

Golden: templates/<env>/ must equal a fresh render of the bundled config; on a mismatch the
fresh text of each differing file is written to the test's temporary directory as
`<env>/<name>-result` (the failure names where) for reading the diff by hand.
Refresh with `mlops-cfn render --all-envs`, never from a test. Every example has its golden
files too, examples/templates/<example>/<env>/, refreshed with scripts/render-examples.

Clean: the bundled config and every example in examples/, in every environment, render to
templates with zero cfn-lint errors and warnings, no CloudFormation quota breach, and zero failed
checkov checks (skips only with a written reason); so do the examples' bootstrap stacks
(examples/bootstrap/).
"""

from pathlib import Path

import pytest

from mlops_cfn import config, pipeline
from mlops_cfn.render import drift, render_files, write_tree
from mlops_cfn.validate import validate

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CONFIGS = [None, *EXAMPLES]


def config_id(path):
    return "bundled-default" if path is None else path.stem


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_committed_templates_equal_a_fresh_render(env, tmp_path):
    files = render_files(pipeline.build(config.load(None, env)))
    committed = REPO / "templates" / env
    problems = drift(files, committed)
    results = tmp_path / env
    if problems:
        for name, content in files.items():
            path = committed / name
            data = content.encode() if isinstance(content, str) else content
            if not path.exists() or path.read_bytes() != data:
                result = results / (name + "-result")
                result.parent.mkdir(parents=True, exist_ok=True)
                result.write_bytes(data)
    assert not problems, "\n".join(problems + [f"fresh text of each: {results}/<name>-result",
                                               "refresh with: mlops-cfn render --all-envs"])


@pytest.mark.parametrize("config_path", EXAMPLES, ids=config_id)
def test_each_example_renders_its_committed_golden_files_byte_for_byte(config_path):
    loaded = config.load(config_path)
    golden = REPO / "examples" / "templates" / config_path.stem
    assert golden.is_dir(), f"{golden}: missing; refresh with scripts/render-examples"
    assert sorted(p.name for p in golden.iterdir()) == sorted(loaded.merged)
    problems = [problem for env in loaded.merged
                for problem in drift(render_files(pipeline.build(loaded.for_environment(env))),
                                     golden / env)]
    assert not problems, "\n".join(problems + ["refresh with: scripts/render-examples"])


def test_every_example_has_golden_files_and_no_golden_outlives_its_example():
    assert EXAMPLES, "examples/ holds the configs users start from"
    goldens = {p.name for p in (REPO / "examples" / "templates").iterdir()}
    assert goldens == {p.stem for p in EXAMPLES}


def render_all_environments(config_path, out: Path) -> list[Path]:
    first = config.load(config_path)
    trees = []
    for env in first.merged:
        target = out / config_id(config_path) / env
        write_tree(render_files(pipeline.build(first.for_environment(env))), target)
        trees.append(target)
    return trees


@pytest.fixture(scope="module")
def rendered_trees(tmp_path_factory) -> dict[str, list[Path]]:
    out = tmp_path_factory.mktemp("rendered")
    return {config_id(path): render_all_environments(path, out) for path in CONFIGS}


@pytest.mark.parametrize("config_path", CONFIGS, ids=config_id)
def test_every_template_passes_cfn_lint_and_quota_checks(rendered_trees, config_path):
    report = validate(rendered_trees[config_id(config_path)], security=False)
    assert report.ok, report.render()
    # Informational only: a body over 51,200 bytes, which matters for a template passed in the
    # request itself; packaging uploads every template to S3.
    assert {f.rule for f in report.findings} <= {"body-size-request"}, report.render()


# The bootstrap stacks of the examples' environments in other accounts (bootstrap.py), as
# committed: tests/test_bootstrap.py holds them to a fresh render.
BOOTSTRAP_TREES = sorted((REPO / "examples" / "bootstrap").glob("*/*"))


def test_every_bootstrap_stack_passes_cfn_lint_and_quota_checks():
    assert BOOTSTRAP_TREES, "examples/three-accounts.yaml has environments to bootstrap"
    report = validate(BOOTSTRAP_TREES, security=False)
    assert report.ok and not report.findings, report.render()


@pytest.mark.slow
def test_every_template_passes_checkov_with_only_reasoned_skips(rendered_trees):
    trees = [tree for group in rendered_trees.values() for tree in group] + BOOTSTRAP_TREES
    report = validate(trees, security=True)
    assert report.ok, report.render()
    assert not [f for f in report.findings if f.tool == "checkov"], report.render()
    assert all(skip.comment.strip() for skip in report.skips), report.render()
