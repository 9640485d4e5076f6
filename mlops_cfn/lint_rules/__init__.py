"""mlops-cfn's security rules as a cfn-lint rule pack, for any CloudFormation template.

The checks every template this project renders must pass, written as cfn-lint rules (one class
per file) so that templates a user changes or writes themselves are held to them too:

  E9001  data stores are encrypted with a customer-managed KMS key
  E9002  Allow statements name their actions (no wildcard beyond a documented list)
  E9003  service trust policies carry a source condition (aws:SourceAccount / aws:SourceArn)
  E9004  data stores are retained on stack deletion and replacement
  E9005  no public subnet unless asked for

cfn-lint ships no rule numbered 9xxx; its examples of custom rules use that range. Run them
with

  cfn-lint --append-rules "$(python -m mlops_cfn.lint_rules)" -- template.yaml

(the directory; the module path does not work: importing the package costs nothing
and loads no rule). `mlops-cfn validate` runs them with cfn-lint's own rules. A resource that
must break a rule says why in its Metadata (`_common.METADATA_KEY`):

  Metadata:
    mlops-cfn:
      exceptions:
        - id: E9005
          reason: ...
"""

from importlib import import_module
from pathlib import Path

from ._common import METADATA_KEY, exceptions

# The directory to give cfn-lint's --append-rules.
PATH = Path(__file__).resolve().parent

# Rule class -> its file; imported on first use, so that finding PATH does not import cfn-lint.
_CLASSES = {
    "DataStoreCustomerManagedKey": "kms_customer_key",
    "NoWildcardActions": "wildcard_actions",
    "ServiceTrustSourceCondition": "trust_source_condition",
    "DataStoreRetained": "data_store_retention",
    "NoUnaskedPublicSubnet": "public_subnets",
}

__all__ = ["METADATA_KEY", "PATH", "exceptions", *_CLASSES]


def __getattr__(name: str):
    if name in _CLASSES:
        return getattr(import_module(f"{__name__}.{_CLASSES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
