"""Every statement of the data path's runtime roles names the AWS page that requires it.

Issue 12 ("How to keep it fixed"): for every runtime role, the statement that grants a
permission carries a comment naming the AWS documentation page that requires it (title or URL),
and a permission no page asks for is removed. Read from the source: each permission statement
these stage modules build (a `Statement(...)`, or a `policies.*` helper that returns one) has an
`AWS:` comment naming a page, in the comment lines just above it, or in the docstring of the
function that builds it. Trust and resource policies (a statement with a Principal) are not
runtime permissions and are not counted.
"""

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from mlops_cfn.stages import analytics, etl, ingestion, training

MODULES = (ingestion, etl, analytics, training)
# policies.py helpers that return permission statements.
STATEMENT_HELPERS = {"bucket_access", "use_key", "key_use_in_context"}
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


def permission_calls(tree: ast.AST):
    """(call, enclosing function) for every permission statement the module builds."""
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            is_statement = isinstance(func, ast.Name) and func.id == "Statement"
            is_helper = (isinstance(func, ast.Attribute) and func.attr in STATEMENT_HELPERS
                         and isinstance(func.value, ast.Name) and func.value.id == "policies")
            if is_statement and any(k.arg == "Principal" for k in node.keywords):
                continue  # a trust or resource policy
            if is_statement or is_helper:
                yield node, function


def innermost_functions(tree: ast.AST) -> dict[ast.Call, ast.FunctionDef]:
    """Each call's innermost enclosing function."""
    found: dict[ast.Call, ast.FunctionDef] = {}
    for call, function in permission_calls(tree):
        current = found.get(call)
        if current is None or function.lineno > current.lineno:
            found[call] = function
    return found


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_every_runtime_permission_statement_names_its_aws_page(module):
    source = Path(module.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    comments = comment_lines(source)
    lines = source.splitlines()
    calls = innermost_functions(tree)
    assert calls, f"{module.__name__} builds no permission statement"
    uncited = []
    for call, function in calls.items():
        above = comment_block_above(call.lineno, comments, lines)
        docstring = ast.get_docstring(function) or ""
        if not (CITATION.search(above) or CITATION.search(docstring)):
            uncited.append(f"{module.__name__} line {call.lineno} (in {function.name})")
    assert not uncited, "statements without an `AWS:` page: " + ", ".join(uncited)


def test_a_statement_without_a_citation_is_found():
    # The check itself: an uncommented statement in a function without a citing docstring.
    source = ("def role():\n"
              "    return [\n"
              "        # AWS: \"Some page\"\n"
              "        Statement(Action=['a:B']),\n"
              "        Statement(Action=['c:D']),\n"
              "    ]\n")
    tree = ast.parse(source)
    comments = comment_lines(source)
    lines = source.splitlines()
    cited = [bool(CITATION.search(comment_block_above(call.lineno, comments, lines)))
             for call in innermost_functions(tree)]
    assert sorted(cited) == [False, True]
