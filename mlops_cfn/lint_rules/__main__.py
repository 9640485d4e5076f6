"""`python -m mlops_cfn.lint_rules` prints the rule pack's directory, for
`cfn-lint --append-rules "$(python -m mlops_cfn.lint_rules)" -- template.yaml`."""

from . import PATH

print(PATH)
