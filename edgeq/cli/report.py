"""edgeq report: a results JSON rendered as Markdown or HTML."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeq.cli.common import command, fail, say
from edgeq.core.errors import EdgeqError, UsageError


@command(
    examples=(
        "edgeq report results.json",
        "edgeq report results.json --format html --output report.html",
    )
)
def report(
    results: Path = typer.Argument(..., show_default=False, metavar="RESULTS", help="The results JSON of edgeq validate --json."),
    fmt: str = typer.Option(
        "md", "--format", "-f", help="md (GitHub-flavoured, for a pull request) | html (one self-contained page)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Report file.", show_default="print Markdown; RESULTS.html for html"
    ),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite an existing report."),
) -> None:
    """Render a validation results JSON as a Markdown or HTML report."""
    from edgeq.core.fileio import check_writable, write_files_atomically
    from edgeq.report.files import file_bytes
    from edgeq.validation.results import ValidationResult

    try:
        if fmt not in ("md", "html"):
            raise UsageError(f"--format {fmt!r}: use md or html")
        data = ValidationResult.read(results)
        if output is None and fmt == "html":
            output = results.with_suffix(".html")
        if output is not None:
            check_writable(output, force, [results])
        text = file_bytes(fmt, data)
    except EdgeqError as exc:
        fail(exc)
    if output is None:
        typer.echo(text.decode(), nl=False)
    else:
        write_files_atomically({output: text})
        say(f"wrote {output}")
