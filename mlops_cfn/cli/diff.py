"""`mlops-cfn diff`: the change set `deploy` would execute, shown and deleted again
(api.preview_deployment)."""

from . import cli
from .deploy import console, preview_options, run_preview, show_preview
from .options import reports_failures


@cli.command()
@preview_options
@reports_failures
def diff(**options):
    """Show what deploying would change (every nested stack), without executing anything."""
    from ..api import preview_deployment

    out = console()
    preview = run_preview(out, preview_deployment, **options)
    show_preview(out, preview)
    if preview.empty:
        out.print(f"no changes: {preview.stack_name} is up to date")
        return
    if preview.refused:
        out.print(f"[bold red]{len(preview.refused)} change(s) would replace or remove data[/] "
                  f"(marked above): deploy refuses them without --allow-replacement")
    out.print("nothing executed; the change set was deleted")
