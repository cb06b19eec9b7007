"""edgeq bundle: the folder an app build copies (model, manifest, labels, ops, report, checksums)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeq.cli.common import command, fail, say
from edgeq.core.errors import EdgeqError
from edgeq.core.escape import terminal


@command(examples=("edgeq bundle model_int8.tflite --output app/src/main/assets/model/ --results results.json",))
def bundle(
    model: Path = typer.Argument(
        ..., show_default=False, metavar="MODEL", help="A .tflite (its .edgeq.json manifest beside it, if any)."
    ),
    output: Path = typer.Option(..., "--output", "-o", show_envvar=False, show_default=False, help="The bundle's folder."),
    results: Path | None = typer.Option(
        None, "--results", show_default=False, help="A results JSON of edgeq validate: adds report.md."
    ),
    force: bool = typer.Option(False, "--force", metavar="", help="Replace files already in the folder."),
) -> None:
    """Write the bundle an app build copies as is: model.tflite, model.edgeq.json, labels.txt, ops.txt, report.md, SHA256SUMS."""
    from edgeq.packaging.bundle import bundle as write_bundle

    try:
        made = write_bundle(model, output, results, force)
    except EdgeqError as exc:
        fail(exc)
    say(f"bundle    {terminal(made.folder)}: {', '.join(made.files)}")
