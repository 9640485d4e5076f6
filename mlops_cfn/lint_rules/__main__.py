"""`python -m mlops_cfn.lint_rules`: with no argument, print the rule pack's directory (for
`cfn-lint --append-rules "$(python -m mlops_cfn.lint_rules)" -- template.yaml`); with arguments,
run cfn-lint on them with the pack appended, as the `mlops-cfn-rules` pre-commit hook does
(a hook's entry is not run through a shell, so it cannot ask for the directory itself)."""

import sys

from . import PATH

if len(sys.argv) > 1:
    from cfnlint.runner import main

    # Last: --append-rules takes every value up to the next option.
    sys.argv = ["cfn-lint", *sys.argv[1:], "--append-rules", str(PATH)]
    main()
else:
    print(PATH)
