"""The `mlops-cfn` command: a thin shell over the library.

Each verb parses its options, calls one library function and prints. `UserError` becomes its
message on stderr and exit status 2 in one place (`_Cli.invoke`); tracebacks only with --debug.
A verb's module is imported only when that verb runs (or `--help` lists the verbs), and heavy
imports (cfn-lint, boto3, the stages) happen inside the verbs that need them, so `--help` and a
`validate` over unchanged templates start fast.
"""

import click

from .. import __version__
from ..errors import UserError

EXIT_FINDINGS = 1
EXIT_USAGE = 2


# Modules of this package that are not verbs.
_NOT_VERBS = frozenset({"options"})


class _Cli(click.Group):
    """Each verb lives in the module of its name in this package and registers itself on `cli`
    when imported; it is imported when first asked for, so a run imports only its own verb."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_verb_modules()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in _verb_modules():
            import importlib

            importlib.import_module(f"{__name__}.{name}")
            assert name in self.commands, f"{__name__}.{name} registers no verb {name!r}"
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as error:
            if ctx.obj and ctx.obj.get("debug"):
                import traceback

                traceback.print_exc()
            for problem in error.problems:
                click.echo(f"error: {problem}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlops-cfn")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Render, validate and ship CloudFormation for a complete MLOps pipeline."""
    ctx.obj = {"debug": debug}


def main() -> None:
    """The console script: like `cli()`, but a usage mistake is one line too."""
    import gc
    import sys

    # A run is short and keeps almost everything it allocates (the imported libraries, the
    # models, every template) until it exits, so the cyclic collector's frequent passes over
    # that growing heap only cost time: a tenth of a render. Passes a hundred times rarer, as
    # mypy's command does, left the peak memory of render and validate as it was. Library users'
    # processes keep their own settings: this is the command's.
    gc.set_threshold(200_000, 30, 30)

    try:
        code = cli.main(prog_name="mlops-cfn", standalone_mode=False)
    except click.UsageError as error:
        where = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
        click.echo(f"error: {error.format_message()}{where}", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _verb_modules() -> list[str]:
    import pkgutil

    return [module.name for module in pkgutil.iter_modules(__path__)
            if module.name not in _NOT_VERBS and not module.name.startswith("_")]
