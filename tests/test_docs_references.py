"""Code cites documents of this repository only: its architecture page and the other pages
under docs/, each of which exists. (The first design brief lived outside the repository; what
it said that still holds is docs/architecture.md, as the code implements it.)"""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*REPO.glob("mlops_cfn/**/*.py"), *REPO.glob("tests/**/*.py"),
                  *(p for p in REPO.glob("scripts/*") if p.is_file())])
# Names of the documents outside the repository that comments once cited.
OUTSIDE = re.compile(r"DESIGN\.md|\bseeds/|\.\./shared|/work/shared")


def test_no_source_file_cites_a_document_outside_the_repository():
    this = Path(__file__).resolve()
    citing = [f"{p.relative_to(REPO)}:{n}" for p in SOURCES if p != this
              for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
              if OUTSIDE.search(line)]
    assert citing == []


def test_every_docs_page_the_code_cites_exists():
    # (tests make repositories of their own, with pages of their own)
    cited = {name for p in SOURCES if p.relative_to(REPO).parts[0] != "tests"
             for name in re.findall(r"docs/[\w.-]+\.md", p.read_text(encoding="utf-8"))}
    assert "docs/architecture.md" in cited
    assert sorted(name for name in cited if not (REPO / name).is_file()) == []
