"""Every permission a stage grants at run time names the AWS page that requires it.

Issue 12 ("How to keep it fixed"): for every runtime role and service integration, the statement
that grants a permission carries a comment naming the AWS documentation page that requires it
(title or URL), and a permission no page asks for is removed.

Read from the source of every module of `mlops_cfn.stages` (listed from the package, so a new
stage module is checked without being named here). A permission statement is

- a `Statement(...)` that allows something to an IAM role or policy (no Principal), or to an AWS
  service in a resource policy (`Principal("Service", ...)`: a key, topic, queue or bucket policy
  letting a service in), or
- a call of a shared helper that returns such statements (`policies.use_key`,
  `assets.read_statement`, ...), found from the shared modules' code: a function annotated to
  return statements that builds one or calls another such helper.

Each has an `AWS:` comment naming a page in the comment lines right above it, or in the docstring
of the function that builds it (or, for a helper call, in the helper's own docstring). Trust
policies (`sts:AssumeRole`), denies, and statements for everyone or an account root grant no
service integration and are not counted.
"""

import ast
import importlib
import io
import pkgutil
import re
import tokenize
from pathlib import Path

import pytest

import mlops_cfn
import mlops_cfn.stages

PACKAGE = Path(mlops_cfn.__file__).parent
STAGE_MODULES = sorted(info.name for info in pkgutil.iter_modules(mlops_cfn.stages.__path__))
# Modules outside the stages whose helpers the stages call for statements (`policies.use_key`).
SHARED_MODULES = sorted(info.name for info in pkgutil.iter_modules([str(PACKAGE)])
                        if not info.ispkg)
# A citation: `AWS:` and then a quoted page title, a URL, or a pointer to the one just named
# ("same page", "that section", a managed policy's name).
CITATION = re.compile(r'AWS:\s*("[^"]+"|https://\S+|same pages?|that (page|section)|'
                      r'AWSGlueServiceRole)')


def comment_lines(source: str) -> dict[int, str]:
    return {token.start[0]: token.string for token in
            tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT}


def comment_block_above(line: int, comments: dict[int, str], lines: list[str]) -> str:
    """The comment lines right above `line` (no blank or code line between)."""
    block = []
    number = line - 1
    while number in comments and lines[number - 1].strip().startswith("#"):
        block.insert(0, comments[number])
        number -= 1
    return "\n".join(block)


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _dotted(node: ast.AST) -> str:
    """`awacs.sts.AssumeRole` for an attribute chain, `Allow` for a name, "" otherwise."""
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}".lstrip(".")
    return node.id if isinstance(node, ast.Name) else ""


def is_permission_statement(call: ast.Call) -> bool:
    """A `Statement(...)` allowing something to a role, or to an AWS service (not assuming a
    role); see the module docstring."""
    if _dotted(call.func).rsplit(".", 1)[-1] != "Statement":
        return False
    if _dotted(_keyword(call, "Effect") or ast.Name("Allow")).endswith("Deny"):
        return False
    principal = _keyword(call, "Principal")
    if principal is None:
        return True
    to_service = (isinstance(principal, ast.Call) and principal.args
                  and isinstance(principal.args[0], ast.Constant)
                  and principal.args[0].value == "Service")
    action = _keyword(call, "Action")
    actions = action.elts if isinstance(action, ast.List) else [action]
    assumes_role = all(_dotted(a).endswith("AssumeRole") for a in actions)
    return bool(to_service) and not assumes_role


def _parse(path: Path) -> tuple[ast.Module, str]:
    source = path.read_text(encoding="utf-8")
    return ast.parse(source), source


def statement_helpers() -> dict[tuple[str, str], str]:
    """(module, function) -> docstring, for each function of the shared modules that returns
    permission statements: annotated to return a `Statement` (or a list of them) and building
    one, or calling another such helper of its module."""
    candidates: dict[tuple[str, str], ast.FunctionDef] = {}
    for module in SHARED_MODULES:
        tree, _ = _parse(PACKAGE / f"{module}.py")
        for node in tree.body:
            if (isinstance(node, ast.FunctionDef) and node.returns is not None
                    and "Statement" in ast.unparse(node.returns)):
                candidates[(module, node.name)] = node
    helpers: dict[tuple[str, str], str] = {}
    changed = True
    while changed:  # a helper built on a helper (key_use_by_cloudwatch_logs) counts too
        changed = False
        for (module, name), function in candidates.items():
            if (module, name) in helpers:
                continue
            calls = [n for n in ast.walk(function) if isinstance(n, ast.Call)]
            if any(is_permission_statement(c) for c in calls) or any(
                    (module, _dotted(c.func)) in helpers for c in calls):
                helpers[(module, name)] = ast.get_docstring(function) or ""
                changed = True
    return helpers


HELPERS = statement_helpers()


def helper_called(call: ast.Call) -> tuple[str, str] | None:
    """(module, function) when `call` is `<shared module>.<statement helper>(...)`."""
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        if (func.value.id, func.attr) in HELPERS:
            return func.value.id, func.attr
    return None


def permission_calls(tree: ast.AST) -> dict[ast.Call, ast.FunctionDef]:
    """Each permission statement (or statement helper call) the module builds, with its
    innermost enclosing function."""
    found: dict[ast.Call, ast.FunctionDef] = {}
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and (is_permission_statement(node)
                                               or helper_called(node)):
                current = found.get(node)
                if current is None or function.lineno > current.lineno:
                    found[node] = function
    return found


def uncited_statements(source: str, where: str) -> list[str]:
    tree = ast.parse(source)
    comments = comment_lines(source)
    lines = source.splitlines()
    uncited = []
    for call, function in permission_calls(tree).items():
        texts = [comment_block_above(call.lineno, comments, lines),
                 ast.get_docstring(function) or ""]
        if helper := helper_called(call):
            texts.append(HELPERS[helper])
        if not any(CITATION.search(text) for text in texts):
            uncited.append(f"{where} line {call.lineno} (in {function.name})")
    return uncited


@pytest.mark.parametrize("name", STAGE_MODULES)
def test_every_runtime_permission_statement_names_its_aws_page(name):
    module = importlib.import_module(f"mlops_cfn.stages.{name}")
    uncited = uncited_statements(Path(module.__file__).read_text(encoding="utf-8"),
                                 module.__name__)
    assert not uncited, "statements without an `AWS:` page: " + ", ".join(uncited)


def test_every_stage_module_is_checked_and_the_check_sees_their_statements():
    # The parametrization above is the package's listing: every file of the stages folder.
    files = sorted(p.stem for p in (PACKAGE / "stages").glob("*.py") if p.stem != "__init__")
    assert STAGE_MODULES == files
    # Where the text builds a statement, the reading above finds it (the reading cannot
    # silently see nothing, e.g. after an import style changes).
    for name in files:
        tree, source = _parse(PACKAGE / "stages" / f"{name}.py")
        builds = "Statement(" in source or any(f"{m}.{f}(" in source for m, f in HELPERS)
        assert builds == bool(permission_calls(tree)), name
    # The runtime roles of the data path and delivery are among them.
    with_statements = {n for n in files
                       if permission_calls(_parse(PACKAGE / "stages" / f"{n}.py")[0])}
    assert {"ingestion", "etl", "analytics", "training", "cicd", "network", "storage",
            "serving_sagemaker", "serving_fargate", "serving_batch",
            "monitoring"} <= with_statements


def test_the_shared_statement_helpers_are_found_from_their_code():
    # Helpers returning grants to roles or services; not trust policies, denies or the key's
    # own administration by the account.
    assert {("policies", "use_key"), ("policies", "bucket_access"),
            ("policies", "key_use_in_context"), ("policies", "key_use_by_service"),
            ("policies", "key_use_by_cloudwatch_logs"),
            ("assets", "read_statement")} <= set(HELPERS)
    assert not {("policies", "trusted_by"), ("policies", "deny_insecure_transport"),
                ("policies", "grants_only_for_aws_resources"),
                ("policies", "key_administration_by_account")} & set(HELPERS)


def test_a_statement_without_a_citation_is_found():
    # The check itself: an uncommented statement and an uncommented helper call, in a function
    # without a citing docstring; a trust statement and a deny are not counted.
    source = ("def role():\n"
              "    return [\n"
              "        # AWS: \"Some page\"\n"
              "        Statement(Effect=Allow, Action=['a:B']),\n"
              "        Statement(Effect=Allow, Action=['c:D']),\n"
              "        policies.use_key(key),\n"
              "        Statement(Effect=Allow, Principal=Principal('Service', 's'),\n"
              "                  Action=[sqs.SendMessage]),\n"
              "        Statement(Effect=Allow, Principal=Principal('Service', 's'),\n"
              "                  Action=[awacs.sts.AssumeRole]),\n"
              "        Statement(Effect=Deny, Principal=Principal('*'), Action=['e:F']),\n"
              "    ]\n")
    assert uncited_statements(source, "m") == [
        "m line 5 (in role)", "m line 6 (in role)", "m line 7 (in role)"]
