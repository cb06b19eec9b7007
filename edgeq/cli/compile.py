"""edgeq compile: an INT8 .tflite compiled ahead of time for an NPU (LiteRT's AOT, the vendor's plugin)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgeq.cli.common import STDOUT, check_json, command, emit_json, fail, json_option, say, state
from edgeq.core.errors import EdgeqError
from edgeq.core.escape import terminal


@command(examples=("edgeq compile model_int8.tflite --npu intel --output model_intel.tflite",))
def compile(
    model: Path = typer.Argument(
        ..., show_default=False, metavar="MODEL", help="An INT8 .tflite (its .edgeq.json beside it carries over)."
    ),
    npu: str = typer.Option(
        ...,
        "--npu",
        show_default=False,
        help="VENDOR[:SOC]: intel[:LNL|PTL], qualcomm:SM8650, mediatek:MT6989, google-tensor:G3.",
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        show_envvar=False,
        show_default=False,
        help="The compiled .tflite to write (its manifest goes beside it).",
    ),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite existing output files."),
    as_json: str | None = json_option("The compile record"),
) -> None:
    """Compile an INT8 model for an NPU: the ops the vendor's compiler takes become DISPATCH_OP
    partitions, the rest stays on the CPU."""
    from edgeq.core.schema import to_json
    from edgeq.packaging.npu import compile_file

    try:
        state["json"] = as_json == STDOUT
        check_json(as_json, force, (model, output))
        made = compile_file(model, npu, output, force)
    except EdgeqError as exc:
        fail(exc)
    record = made.record
    if as_json is not None:
        emit_json(
            as_json,
            json.dumps(
                {
                    "output": str(made.output),
                    "manifest": str(made.manifest_path) if made.manifest_path else None,
                    **to_json(record),
                },
                indent=2,
            ),
        )
        if as_json == STDOUT:
            return
    on_cpu = ", ".join(f"{k} x{v}" for k, v in record.ops_on_cpu.items()) or "none"
    say(
        terminal(
            f"compiled  {made.output} for {record.target}"
            + (f" ({record.stamp})" if record.stamp else "")
            + f": {record.ops_offloaded} of {record.ops_total} ops in {record.partitions} NPU partition(s); on the CPU: {on_cpu}"
        )
    )
    if record.note:
        say(terminal(f"note      {record.note}"))
    say(
        terminal(
            "manifest  "
            + (
                str(made.manifest_path)
                if made.manifest_path
                else f"none: {model.name} has no manifest to carry over, so validate cannot find the INT8 file it came from"
            )
        )
    )
