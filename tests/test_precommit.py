"""pre-commit: the hooks mlops-cfn offers (.pre-commit-hooks.yaml) and the repository's own config.

The try-repo tests run what a user's repository runs: pre-commit installs this project into a
hook environment of its own and runs the hook in a git repository. They work on a committed copy
of this checkout with freshly rendered templates (never on the checkout itself), and share one
PRE_COMMIT_HOME, so the hook environment is installed once per test session and worker.
"""

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HOOKS = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
CONFIG = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
PRE_COMMIT = [sys.executable, "-m", "pre_commit"]
GIT_IDENTITY = ["-c", "user.name=mlops-cfn tests", "-c", "user.email=tests@example.com",
                "-c", "commit.gpgsign=false"]

# One worker runs this module, so the hook environment is installed once.
pytestmark = pytest.mark.xdist_group("pre-commit")


def hook(hook_id: str, hooks=None) -> dict:
    (found,) = [h for h in (hooks or HOOKS) if h["id"] == hook_id]
    return found


def local_hooks() -> list[dict]:
    (local,) = [r for r in CONFIG["repos"] if r["repo"] == "local"]
    return local["hooks"]


def matches(definition: dict, path: str) -> bool:
    """Whether pre-commit would pass `path` to the hook (its files/exclude patterns)."""
    return (re.search(definition.get("files", ""), path) is not None
            and not ("exclude" in definition and re.search(definition["exclude"], path)))


# --- what the files say -------------------------------------------------------------------------

def test_pre_commit_accepts_the_manifest_and_the_config():
    for command, file in (("validate-manifest", ".pre-commit-hooks.yaml"),
                          ("validate-config", ".pre-commit-config.yaml")):
        done = subprocess.run([*PRE_COMMIT, command, file], cwd=REPO, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_check_hook_compares_every_environment_with_a_fresh_render():
    check = hook("mlops-cfn-check")
    assert check["entry"] == "mlops-cfn render --check --all-envs"
    assert check["language"] == "python"
    # It reads the tree itself, and drift can come from code as well as from templates.
    assert check["pass_filenames"] is False and check["always_run"] is True


def test_the_validate_hook_gets_the_changed_templates_and_nothing_else():
    validate = hook("mlops-cfn-validate")
    assert validate["entry"] == "mlops-cfn validate"
    assert validate["language"] == "python"
    assert validate.get("pass_filenames", True) is True
    assert validate["require_serial"] is True  # one checkov run over all files
    for template in ("templates/dev/root.yaml", "templates/prod/storage.yaml",
                     "templates/dev/root.json"):
        assert matches(validate, template), template
    for other in ("templates/dev/parameters.json", "templates/dev/assets/ab12/job.py",
                  "templates/dev/assets/ab12/config.json", "mlops_cfn/data/pipeline.yaml",
                  ".pre-commit-config.yaml"):
        assert not matches(validate, other), other


def test_the_repository_runs_the_offered_hooks_from_its_own_checkout():
    local = {h["id"]: h for h in local_hooks()}
    assert local.keys() == {"mlops-cfn-check", "mlops-cfn-validate"}
    for hook_id, definition in local.items():
        offered = hook(hook_id)
        # The same command, run by the checkout's code rather than an installed release.
        assert definition["entry"] == offered["entry"].replace("mlops-cfn",
                                                               "python3 -m mlops_cfn", 1)
        for key in ("files", "exclude", "pass_filenames", "always_run", "require_serial"):
            assert definition.get(key) == offered.get(key), (hook_id, key)


def test_the_repository_also_runs_cfn_lints_own_hook_on_the_templates():
    (cfn_lint,) = [r for r in CONFIG["repos"]
                   if r["repo"] == "https://github.com/aws-cloudformation/cfn-lint"]
    # The release pyproject.toml pins (the deploy roles are derived from its schemas).
    pinned = re.search(r'"cfn-lint==([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert cfn_lint["rev"] == f"v{pinned}"
    (definition,) = cfn_lint["hooks"]
    assert definition["id"] == "cfn-lint"
    assert matches(definition, "templates/prod/network.yaml")
    assert not matches(definition, "templates/prod/parameters.json")


# --- running the hooks --------------------------------------------------------------------------

def repository_files(root: Path = REPO) -> list[str]:
    """The repository's files as `git ls-files --cached --others --exclude-standard` lists
    them, without asking git: the delivery pipeline builds from an archive or CodePipeline's
    zip, neither of which has a .git (issue 12, finding 14). Every file but `.git` (a file in a
    worktree) and what the root .gitignore excludes; its patterns are names (globs) that match
    at any depth, `name/` matching directories only, the only form it uses (a test keeps it
    so)."""
    patterns = ignore_patterns(root)
    found = []
    for directory, subdirectories, files in os.walk(root):
        here = Path(directory)
        subdirectories[:] = sorted(d for d in subdirectories if not (
            (here == root and d == ".git") or _ignored(d, False, patterns)))
        found += [(here / f).relative_to(root).as_posix() for f in files
                  if not (here == root and f == ".git") and not _ignored(f, True, patterns)]
    return sorted(found)


def ignore_patterns(root: Path) -> list[str]:
    lines = (root / ".gitignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(name: str, is_file: bool, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern.rstrip("/")) for pattern in patterns
               if not (pattern.endswith("/") and is_file))


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def committed_copy(tmp_path_factory) -> tuple[Path, str]:
    """This checkout's files in a new git repository, templates freshly rendered by its own
    code and committed: what the hooks run against. Returns (path, commit)."""
    copy = tmp_path_factory.mktemp("repo")
    for name in repository_files():
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    shutil.rmtree(copy / "templates", ignore_errors=True)
    subprocess.run([sys.executable, "-m", "mlops_cfn", "render", "--all-envs"], cwd=copy,
                   check=True, capture_output=True)
    git(copy, "init", "--quiet")
    git(copy, "add", "--all")
    git(copy, "commit", "--quiet", "--no-verify", "-m", "snapshot")
    return copy, git(copy, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def pre_commit_env(tmp_path_factory) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRE_COMMIT", "GIT_"))}
    env["PRE_COMMIT_HOME"] = str(tmp_path_factory.mktemp("pre-commit-home"))
    env["MLOPS_CFN_CHECKOV"] = os.environ.get(
        "MLOPS_CFN_CHECKOV", str(REPO / ".tools" / "checkov" / "bin" / "checkov"))
    return env


def try_repo(copy: Path, commit: str, env: dict, hook_id: str, *args: str):
    # --ref: the committed snapshot, so every run shares one installed hook environment while
    # the hook itself reads the copy's working tree.
    return subprocess.run([*PRE_COMMIT, "try-repo", ".", hook_id, "--ref", commit, *args],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_try_repo_check_passes_when_the_templates_are_in_sync(committed_copy, pre_commit_env):
    copy, commit = committed_copy
    done = try_repo(copy, commit, pre_commit_env, "mlops-cfn-check", "--all-files")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"mlops-cfn templates in sync\.+Passed", done.stdout), done.stdout


@pytest.mark.slow
def test_try_repo_check_fails_when_a_template_drifted(committed_copy, pre_commit_env):
    copy, commit = committed_copy
    storage = copy / "templates" / "prod" / "storage.yaml"
    original = storage.read_text()
    storage.write_text(original + "# edited by hand\n")
    try:
        done = try_repo(copy, commit, pre_commit_env, "mlops-cfn-check", "--all-files")
    finally:
        storage.write_text(original)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "templates/prod/storage.yaml: differs from what the code renders" in done.stdout
    assert "run `mlops-cfn render --all-envs`" in done.stdout


@pytest.mark.slow
def test_try_repo_validate_checks_templates_and_skips_parameters_files(committed_copy,
                                                                        pre_commit_env):
    copy, commit = committed_copy
    clean = try_repo(copy, commit, pre_commit_env, "mlops-cfn-validate", "--verbose", "--files",
                     "templates/dev/storage.yaml", "templates/dev/parameters.json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "1 file: cfn-lint 0 errors 0 warnings" in clean.stdout, clean.stdout

    skipped = try_repo(copy, commit, pre_commit_env, "mlops-cfn-validate", "--files",
                       "templates/dev/parameters.json")
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "(no files to check)Skipped" in skipped.stdout

    bad = copy / "templates" / "dev" / "bad.yaml"
    bad.write_text("Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n")
    try:
        failed = try_repo(copy, commit, pre_commit_env, "mlops-cfn-validate", "--files",
                          "templates/dev/bad.yaml")
    finally:
        bad.unlink()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "[checkov CKV_AWS_" in failed.stdout


def test_the_repositorys_local_check_hook_runs_from_the_checkout(committed_copy, tmp_path):
    """The repository's own config, its local hooks only (cfn-lint's hook is fetched from
    GitHub, out of reach of the tests)."""
    copy, _ = committed_copy
    config = tmp_path / "local-hooks.yaml"
    config.write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": local_hooks()}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRE_COMMIT", "GIT_"))}
    env["PRE_COMMIT_HOME"] = str(tmp_path / "home")
    # The hook's `python3` is the development environment's (.pre-commit-config.yaml says it
    # needs one), as when that environment is activated; not whatever python3 PATH finds first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run([*PRE_COMMIT, "run", "--config", str(config), "mlops-cfn-check",
                           "--all-files"], cwd=copy, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Passed" in done.stdout


# --- without git (issue 12, finding 14) ---------------------------------------------------------

def test_the_gitignore_holds_only_patterns_the_file_listing_reads():
    patterns = ignore_patterns(REPO)
    assert patterns
    for pattern in patterns:
        assert re.fullmatch(r"[^/!\\]+/?", pattern) and "**" not in pattern, pattern


def test_the_file_listing_lists_what_git_lists(tmp_path):
    """In a repository made here (git itself need not know the checkout under test)."""
    shutil.copy(REPO / ".gitignore", tmp_path / ".gitignore")
    kept = ["pyproject.toml", "mlops_cfn/cli/main.py", "templates/dev/root.yaml",
            "templates/dev/assets/ab12/job.py", ".pre-commit-config.yaml", "docs/build.md"]
    ignored = ["mlops_cfn/__pycache__/cli.cpython-311.pyc", "mlops_cfn.egg-info/PKG-INFO",
               "build/lib/x.py", "dist/x.whl", ".venv/bin/python", ".tools/checkov/bin/checkov",
               ".mlops-cfn-cache/x", ".pytest_cache/v/x", ".hypothesis/examples/x",
               "sub/build/x.txt"]
    for name in kept + ignored:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    git(tmp_path, "init", "--quiet")
    listed = git(tmp_path, "ls-files", "--cached", "--others", "--exclude-standard").split("\n")
    assert sorted(listed) == sorted(kept + [".gitignore"])
    assert repository_files(tmp_path) == sorted(listed)
    shutil.rmtree(tmp_path / ".git")
    assert repository_files(tmp_path) == sorted(listed), "the same without .git"


@pytest.mark.slow
def test_the_hook_tests_pass_in_a_copy_of_the_repository_without_git(tmp_path):
    """What the delivery build has: the repository's files, unpacked from an archive."""
    copy = tmp_path / "unpacked"
    for name in repository_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, copy / name)
    assert not (copy / ".git").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRE_COMMIT", "GIT_",
                                                                    "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
         str(tmp_path / "inner"),
         "tests/test_precommit.py::test_the_repositorys_local_check_hook_runs_from_the_checkout"],
        cwd=copy, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout


def test_pre_commit_is_part_of_the_test_extra():
    requirements = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^\s*"pre-commit>=[\d.]+",$', requirements, re.MULTILINE)
    assert version("pre-commit")
