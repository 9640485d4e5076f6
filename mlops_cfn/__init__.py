"""Production-grade AWS CloudFormation for a complete MLOps pipeline, as nested stacks.

The public API (README, "Use it from Python") is importable from here: load a config, build one
or all environments, render, validate, package, preview and deploy, each one call (api.py).
Names are resolved on first use (PEP 562), so `import mlops_cfn` and the CLI's `--help` load
nothing heavy.
"""

__version__ = "0.1.0"

# The checkov release the security checks are written against (scripts/install-checkov pins
# the same; a test keeps them equal).
CHECKOV_VERSION = "3.3.30"

# Public name -> the module that defines it.
_PUBLIC = {
    "load_config": "api", "build": "api", "build_all": "api", "render_templates": "api",
    "outdated_templates": "api", "validate_templates": "api", "package_templates": "api",
    "preview_deployment": "api", "deploy_pipeline": "api", "diagram": "api", "connect": "api",
    "Rendered": "api", "Packaged": "api", "Preview": "api", "Deployment": "api",
    "ValidationFailed": "api", "UserError": "errors", "DeployFailed": "deploy",
    "LoadedConfig": "config", "Pipeline": "pipeline", "Report": "validate", "Aws": "deploy",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
