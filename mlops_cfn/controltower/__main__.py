"""`python -m mlops_cfn.controltower [FOLDER ...]`: check rendered environments (default
templates/) against AWS Control Tower's proactive controls; one line per problem, exit 1 when
there are any, 2 for bad input (see the package docstring and README "AWS Control Tower")."""

import sys
from pathlib import Path

from ..errors import UserError
from . import check
from .guard import find_engine


def main(argv: list[str]) -> int:
    try:
        engine = find_engine()
        found = [line for folder in (argv or ["templates"]) for line in check(Path(folder),
                                                                                engine)]
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in found:
        print(line)
    print(f"Control Tower proactive controls: {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
