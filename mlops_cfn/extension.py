"""What a package needs to add a stage to mlops-cfn: everything an extension imports, in one place.

An extension stage is an `ExtensionStage` named by an entry point of the group
`mlops_cfn.stages` in the package's pyproject.toml:

    [project.entry-points."mlops_cfn.stages"]
    dynamodb = "mlops_cfn_dynamodb:STAGE"

The entry point's name is the stage's name and the key of its section in pipeline.yaml
(`extensions.dynamodb`), checked by `STAGE.config` (a subclass of `ExtensionConfig`: unknown keys
are errors). `STAGE.build(config, section)` builds the stage with a `StageBuilder` of that name,
taking what other stages offer through their wires (`outputs`, e.g. `outputs.DATA_KEY_ARN`) and
offering its own through `StageBuilder.output`. Every verb then includes it: render, validate,
graph, deploy, servicecatalog, and `mlops-cfn schema`; the delivery pipeline's deploy role and the
Service Catalog launch role are derived from what its template contains (permissions.py), so a
new resource type needs no list updated. examples/extension/ is a complete one.
"""

from . import naming, outputs, policies
from .config.base import Setting
from .config.extensions import GROUP, ExtensionConfig, ExtensionStage
from .outputs import Wire
from .stage import Stage, StageBuilder
from .stages.common import RETAIN

__all__ = ["GROUP", "RETAIN", "ExtensionConfig", "ExtensionStage", "Setting", "Stage",
           "StageBuilder", "Wire", "naming", "outputs", "policies"]
