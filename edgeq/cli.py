"""The edgeq command line: parse options, call the library, print, map errors to exit codes.

Imports stay light here: TensorFlow is only imported inside the library calls that need it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

import edgeq
from edgeq.errors import EdgeqError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Turn a trained TensorFlow/Keras model into a production INT8 TFLite model and prove it fits the edge.",
)
log = logging.getLogger("edgeq")
_state = {"verbose": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeq {edgeq.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Log details; show tracebacks and TensorFlow's own log."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("edgeq: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO)
    if verbose:  # TensorFlow's and absl's own Python logs, otherwise silent
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    _state["verbose"] = verbose


def _fail(exc: EdgeqError) -> None:
    if _state["verbose"]:
        import traceback

        traceback.print_exception(exc)
    typer.echo(f"edgeq: error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


def _floats(value: Optional[str], option: str) -> Optional[tuple[float, ...]]:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"{option} takes comma-separated numbers, e.g. 127.5,127.5,127.5") from None


@app.command()
def convert(
    model: Path = typer.Argument(..., help="Keras .keras/.h5 file or SavedModel folder."),
    output: Path = typer.Option(..., "--output", "-o", help="The .tflite to write (a .edgeq.json manifest goes beside it)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Calibration samples: image folder, .npy or .npz."),
    mode: str = typer.Option("int8", help="int8 (strict) | int8-fallback | int16x8 | dynamic | float16."),
    io: Optional[str] = typer.Option(None, "--io", help="Input/output type: int8 | uint8 | float32 (int16 for int16x8)."),
    per_tensor: bool = typer.Option(False, "--per-tensor", help="Per-tensor instead of per-channel weight scales."),
    keep_float: list[str] = typer.Option([], "--keep-float", help="Layer name, node name or op type to keep in float (repeatable)."),
    samples: int = typer.Option(200, help="Calibration samples to use."),
    seed: int = typer.Option(0, help="Seed of the sample shuffle."),
    color: Optional[str] = typer.Option(None, help="rgb | gray (default: from the model's channel count)."),
    resize: str = typer.Option("stretch", help="stretch | crop | pad."),
    value_range: Optional[str] = typer.Option(None, "--range", help="Pixel range fed to the model: 0,1 (default) | -1,1 | 0,255."),
    mean: Optional[str] = typer.Option(None, help="Per-channel mean subtracted from 0..255 pixels, e.g. 123.7,116.3,103.5."),
    std: Optional[str] = typer.Option(None, help="Per-channel std dividing after --mean."),
    signature: str = typer.Option("serving_default", help="SavedModel signature to convert."),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Fix dynamic dims: 1,224,224,3 or NAME=1,224,224,3."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON only."),
) -> None:
    """Convert a float model to a quantized .tflite, calibrated on real samples."""
    from edgeq.converter import ConvertOptions, convert as run_convert
    from edgeq.samples import Preprocessing

    try:
        options = ConvertOptions(
            mode=mode, io=io, per_tensor=per_tensor, keep_float=tuple(keep_float), samples=samples, seed=seed,
            preprocessing=Preprocessing(color, resize, value_range, _floats(mean, "--mean"), _floats(std, "--std")),
            signature=signature, input_shapes=tuple(input_shape), force=force,
        )
        result = run_convert(model, output, data, options, quiet_native=not _state["verbose"])
    except EdgeqError as exc:
        _fail(exc)
    for warning in result.warnings:
        log.warning(warning)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    from edgeq.render import conversion_text

    typer.echo(conversion_text(result))


@app.command()
def inspect(
    model: Path = typer.Argument(..., help="A .tflite model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
) -> None:
    """Describe a .tflite: I/O quantization, op and dtype census, weights, size, float leftovers."""
    from edgeq.inspection import inspect_model

    try:
        summary = inspect_model(model)
    except EdgeqError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    from edgeq.render import summary_text

    typer.echo(summary_text(summary))


def run() -> None:
    app()


if __name__ == "__main__":
    run()
