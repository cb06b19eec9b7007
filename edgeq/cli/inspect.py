"""edgeq inspect: what is inside a .tflite, and which ops a target runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgeq.cli.common import FORCE, STDOUT, check_json, choice, command, emit_json, fail, json_option, say
from edgeq.core.errors import EdgeqError
from edgeq.targets import TARGETS


@command(
    examples=(
        "edgeq inspect model_int8.tflite",
        "edgeq inspect model_int8.tflite --target edgetpu --target xnnpack",
        "edgeq inspect model_int8.tflite --json | jq .ops",
    )
)
def inspect(
    model: Path = typer.Argument(..., show_default=False, metavar="MODEL", help="A .tflite model."),
    target: list[str] = typer.Option(
        [], "--target", "-t", click_type=choice(TARGETS), help="Predict which ops run there (repeatable)."
    ),
    as_json: str | None = json_option("The description"),
    force: bool = FORCE,
) -> None:
    """Describe a .tflite (I/O quantization, ops, weights, size, float leftovers); --target: which ops a target runs."""
    from edgeq.core.schema import to_json
    from edgeq.records.manifest_file import Described
    from edgeq.targets import check_target
    from edgeq.tflite.dispatch import dispatch_of
    from edgeq.tflite.metadata import read_metadata

    try:
        check_json(as_json, force, (model,))
        described = Described.of(model)
        summary = described.summary()
        reports = [check_target(described.model, t) for t in target]
        metadata = read_metadata(described.model.data)
        recipe = described.manifest.recipe if described.manifest else None
        dispatch = dispatch_of(described.model)
        compiled = described.manifest.npu if described.manifest else None
    except EdgeqError as exc:
        fail(exc)
    if as_json is not None:
        data = summary.to_dict()
        data["recipe"] = to_json(recipe) if recipe else None
        data["metadata"] = (
            None
            if metadata is None
            else {
                **{k: v for k, v in to_json(metadata).items() if k != "files"},
                "labels": metadata.labels,
                "files": sorted(metadata.files),
            }
        )
        if reports:
            data["targets"] = {r.target: r.to_dict() for r in reports}
        if dispatch.compiled:
            data["npu"] = {**to_json(dispatch), "compiled": to_json(compiled) if compiled else None}
        emit_json(as_json, json.dumps(data, indent=2))
        if as_json == STDOUT:
            return
    from edgeq.report.text import dispatch_text, metadata_text, summary_text, target_text

    say(summary_text(summary))
    if dispatch.compiled:
        say(dispatch_text(dispatch, compiled))
    if metadata is not None:
        say(metadata_text(metadata))
    for report in reports:
        say(target_text(report))
