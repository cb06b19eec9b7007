"""The edgeq command line: parse options, call the library, print, map errors to exit codes.

Imports stay light here: TensorFlow is only imported inside the library calls that need it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

import edgeq
from edgeq.errors import EdgeqError, UsageError
from edgeq.escape import terminal

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Turn a trained TensorFlow/Keras model into a production INT8 TFLite model and prove it fits the edge.",
)
log = logging.getLogger("edgeq")
_state = {"verbose": False, "quiet": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeq {edgeq.__version__}")
        raise typer.Exit()


VERBOSE = typer.Option(False, "-v", "--verbose", metavar="", help="Log details; show tracebacks and TensorFlow's own log.")
QUIET = typer.Option(False, "-q", "--quiet", metavar="", help="Only errors (and the machine output asked for with --json).")


@app.callback()
def main(
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, metavar="", help="Print the version."),
) -> None:
    _state.update(verbose=False, quiet=False, json=False)  # a new invocation (tests run several in one process)
    _configure(verbose, quiet)


def _configure(verbose: bool, quiet: bool) -> None:
    """-v / -q, before or after the command name: the later call only adds to the earlier one."""
    verbose, quiet = verbose or _state["verbose"], quiet or _state["quiet"]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("edgeq: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO)
    if verbose:  # TensorFlow's and absl's own Python logs, otherwise silent
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    _state.update(verbose=verbose, quiet=quiet)


def command(target=None, name: str | None = None):
    """`app.command()` that also takes -v/-q after the command name."""
    import functools
    import inspect

    def register(fn):
        @functools.wraps(fn)
        def wrapper(*args, verbose: bool = False, quiet: bool = False, **kwargs):
            _configure(verbose, quiet)
            return fn(*args, **kwargs)

        signature = inspect.signature(fn)
        extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation="bool")
                 for n, d in (("verbose", VERBOSE), ("quiet", QUIET))]
        wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])
        wrapper.__annotations__ = {**fn.__annotations__, "verbose": "bool", "quiet": "bool"}
        return (target or app).command(name)(wrapper)

    return register


def _say(text: str) -> None:
    """Human output on stdout, which -q silences."""
    if not _state["quiet"]:
        typer.echo(text)


def _fail(exc: EdgeqError) -> None:
    if _state["verbose"]:
        import traceback

        traceback.print_exception(exc)
    typer.echo(f"edgeq: error: {terminal(exc)}", err=True)
    raise typer.Exit(exc.exit_code)


def _floats(value: Optional[str], option: str) -> Optional[tuple[float, ...]]:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"{option} takes comma-separated numbers, e.g. 127.5,127.5,127.5") from None


@command()
def convert(
    model: Path = typer.Argument(..., show_default=False, metavar="MODEL", help="Keras .keras/.h5 file, SavedModel folder or float .tflite."),
    output: Path = typer.Option(..., "--output", "-o", show_default=False, help="The .tflite to write (a .edgeq.json manifest goes beside it)."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", show_default=False, help="Calibration samples: image folder, .npy or .npz."),
    mode: str = typer.Option("int8", help="int8 (strict) | int8-fallback | int16x8 | dynamic | float16."),
    io: Optional[str] = typer.Option(None, "--io", show_default="int8 (int16 for int16x8)", help="Input/output type: int8 | uint8 | float32 (int16 for int16x8)."),
    per_tensor: bool = typer.Option(False, "--per-tensor", metavar="", help="Per-tensor instead of per-channel weight scales."),
    keep_float: list[str] = typer.Option([], "--keep-float", help="Layer name, node name or op type to keep in float (repeatable)."),
    samples: int = typer.Option(200, help="Calibration samples to use."),
    seed: int = typer.Option(0, help="Seed of the sample shuffle."),
    target: list[str] = typer.Option([], "--target", "-t", help="edgetpu | nnapi | xnnpack: warn about ops that target will not run (repeatable)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", show_default=False, help="Held-out samples: search the fewest layers to keep in float that meet the budget below."),
    max_drop: Optional[float] = typer.Option(None, show_default=False, help="Budget: top-1 drop at most PTS points (needs labels)."),
    min_agreement: Optional[float] = typer.Option(None, show_default=False, help="Budget: INT8/float top-1 agreement at least FRAC."),
    min_sqnr: Optional[float] = typer.Option(None, show_default=False, help="Budget: worst output SQNR at least DB."),
    max_float_layers: Optional[int] = typer.Option(None, show_default=False, help="Keep at most K layers in float in the search."),
    calibration: str = typer.Option("minmax", "--calibration", help="Activation ranges: minmax (TensorFlow's) | percentile[:P] | mse | entropy | auto (tries them on --eval-data)."),
    allow_int16x8: bool = typer.Option(False, "--allow-int16x8", metavar="", help="Let the search try 16-bit activations (whole model) before float layers."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Calibration processes; the result equals --jobs 1.", show_default="CPU cores"),
    color: Optional[str] = typer.Option(None, help="rgb | gray.", show_default="from the model's channel count"),
    resize: str = typer.Option("stretch", help="stretch | crop | pad."),
    value_range: Optional[str] = typer.Option(None, "--range", show_default="0,1", help="Pixel range fed to the model: 0,1 (default) | -1,1 | 0,255."),
    mean: Optional[str] = typer.Option(None, show_default=False, help="Per-channel mean subtracted from 0..255 pixels, e.g. 123.7,116.3,103.5."),
    std: Optional[str] = typer.Option(None, show_default=False, help="Per-channel std dividing after --mean."),
    signature: list[str] = typer.Option([], "--signature", help="SavedModel signature to convert (repeatable; 'all' for every one) [default: serving_default]."),
    input_shape: list[str] = typer.Option([], "--input-shape", help="Fix dynamic dims: 1,224,224,3 or NAME=1,224,224,3."),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", show_default=False, help="A .py defining the Keras model's custom classes (imported: it is your code)."),
    trust_model: bool = typer.Option(False, "--trust-model", metavar="", help="Let Keras run the Python code of Lambda layers stored in the model file."),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite an existing output."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the manifest as JSON only."),
) -> None:
    """Convert a float model (.keras/.h5, SavedModel or float .tflite) to a quantized .tflite, calibrated on real samples."""
    from edgeq.convert.converter import ConvertOptions
    from edgeq.convert.converter import convert as run_convert
    from edgeq.convert.search import Budget
    from edgeq.data.samples import Preprocessing

    try:
        options = ConvertOptions(
            mode=mode, io=io, per_tensor=per_tensor, keep_float=tuple(keep_float), samples=samples, seed=seed, jobs=jobs, targets=tuple(target),
            eval_data=str(eval_data) if eval_data else None, max_float_layers=max_float_layers, allow_int16x8=allow_int16x8,
            budget=Budget(max_drop, min_agreement, min_sqnr) if any(v is not None for v in (max_drop, min_agreement, min_sqnr)) else None,
            preprocessing=Preprocessing(color, resize, value_range, _floats(mean, "--mean"), _floats(std, "--std")),
            signatures=tuple(signature) or ("serving_default",), input_shapes=tuple(input_shape), force=force,
            custom_objects=str(custom_objects) if custom_objects else None, trust_model=trust_model, calibration=calibration,
        )
        _state["json"] = as_json
        with _progress_bar():
            result = run_convert(model, output, data, options, quiet_native=not _state["verbose"])
    except EdgeqError as exc:
        _fail(exc)
    for warning in result.warnings:
        log.warning(terminal(warning))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        from edgeq.report.text import conversion_text

        _say(conversion_text(result))
    if result.budget_met is False:
        best = result.manifest["search"]["chosen"]
        log.error(f"no mix within the bounds meets the budget; kept the best found ({best['k']} float layer(s): "
                  f"{'; '.join(best['missed'])}) as {result.output}")
        raise typer.Exit(1)


@command()
def inspect(
    model: Path = typer.Argument(..., show_default=False, metavar="MODEL", help="A .tflite model."),
    target: list[str] = typer.Option([], "--target", "-t", help="edgetpu | nnapi | xnnpack: predict which ops run there (repeatable)."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print JSON only."),
) -> None:
    """Describe a .tflite (I/O quantization, ops, weights, size, float leftovers); --target: which ops a target runs."""
    from edgeq.targets import check_target
    from edgeq.tflite.manifest import Recipe, manifest_mismatch
    from edgeq.tflite.model import read_tflite
    from edgeq.tflite.summary import summarize

    try:
        parsed = read_tflite(model)
        summary = summarize(parsed)
        reports = [check_target(parsed, t) for t in target]
    except EdgeqError as exc:
        _fail(exc)
    if as_json:
        data = summary.to_dict()
        recipe = Recipe.from_manifest(model) if manifest_mismatch(parsed) is None else None
        data["recipe"] = recipe.to_json() if recipe else None
        if reports:
            data["targets"] = {r.target: r.to_dict() for r in reports}
        typer.echo(json.dumps(data, indent=2))
        return
    from edgeq.report.text import summary_text, target_text

    _say(summary_text(summary))
    for report in reports:
        _say(target_text(report))


@contextlib.contextmanager
def _progress_bar():
    """A bar with samples/s and an ETA on an interactive terminal; nothing in CI, in pipes, with
    -q or with --json."""
    from edgeq.convert.isolation import STEP
    from edgeq.progress import reporting

    if not sys.stderr.isatty() or os.environ.get("CI") or _state["quiet"] or _state.get("json"):
        with reporting(None):
            yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    terminal_out = os.fdopen(os.dup(sys.stderr.fileno()), "w")  # the terminal, even while TensorFlow's fd 2 is captured
    with terminal_out, Progress(*columns, transient=True, console=Console(file=terminal_out)) as bar:
        tasks: dict[str, int] = {}

        def update(label: str, done: int, total: int | None) -> None:
            if label.startswith(f"{STEP}:"):  # step markers name crashes; in-process steps (per-layer) draw nothing
                return
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total, rate="")
            task = bar.tasks[tasks[label]]
            rate = f"{task.speed:.1f} samples/s" if task.speed else ""
            bar.update(tasks[label], completed=done, total=total, rate=rate)

        with reporting(update):
            yield


def _key_values(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{option} takes key=value, got {value!r}")
        pairs[key] = val
    return pairs


@command()
def validate(
    model: Path = typer.Argument(..., show_default=False, metavar="MODEL", help="The INT8 .tflite to validate."),
    reference: Path = typer.Option(..., "--reference", "-r", show_default=False, help="The float model: .tflite, .keras/.h5 or SavedModel."),
    data: Path = typer.Option(..., "--data", "-d", show_default=False, help="Held-out samples: image folder (labels from class folders) or .npy/.npz (x, optional y)."),
    delegate: str = typer.Option("xnnpack", help="xnnpack | none (built-in kernels) | ref (reference kernels) | edgetpu (libedgetpu.so.1; an Edge TPU-compiled model)."),
    delegate_library: Optional[str] = typer.Option(None, show_default=False, help="External delegate library, e.g. libedgetpu.so.1."),
    delegate_option: list[str] = typer.Option([], help="key=value for the external delegate (repeatable)."),
    threads: int = typer.Option(1, help="Interpreter threads for both models."),
    warmup: int = typer.Option(10, help="Untimed invokes before timing."),
    runs: int = typer.Option(100, help="Timed invokes."),
    limit: Optional[int] = typer.Option(None, show_default=False, help="Use at most N samples."),
    top_k: int = typer.Option(5, help="k of the top-k accuracy."),
    color: Optional[str] = typer.Option(None, help="rgb | gray.", show_default="the manifest's, else the model's channels"),
    resize: Optional[str] = typer.Option(None, show_default=False, help="stretch | crop | pad."),
    value_range: Optional[str] = typer.Option(None, "--range", show_default="0,1", help="0,1 | -1,1 | 0,255."),
    mean: Optional[str] = typer.Option(None, show_default=False, help="Per-channel mean."),
    std: Optional[str] = typer.Option(None, show_default=False, help="Per-channel std."),
    max_drop: Optional[float] = typer.Option(None, show_default=False, help="Gate: top-1 drop at most PTS points."),
    min_agreement: Optional[float] = typer.Option(None, show_default=False, help="Gate: INT8/float top-1 agreement at least FRAC."),
    min_sqnr: Optional[float] = typer.Option(None, show_default=False, help="Gate: every output's SQNR at least DB."),
    max_latency_ms: Optional[float] = typer.Option(None, show_default=False, help="Gate: INT8 p50 latency at most MS."),
    min_speedup: Optional[float] = typer.Option(None, show_default=False, help="Gate: float p50 / INT8 p50 at least X."),
    target: list[str] = typer.Option([], "--target", "-t", show_default=False, help="edgetpu | nnapi | xnnpack: predict the target's coverage and check it against the compiler/delegate present."),
    device: list[str] = typer.Option([], "--device", help="Also run the INT8 model on this device profile (name in devices/ or a .toml path; repeatable)."),
    compare_to: str = typer.Option("local", "--compare-to", help="Compare each device's raw INT8 outputs with this run: local (the only one)."),
    per_layer: bool = typer.Option(False, "--per-layer", metavar="", help="Rank layers by quantization error (QuantizationDebugger; needs a Keras/SavedModel --reference)."),
    per_layer_samples: int = typer.Option(32, help="Samples the per-layer debugger runs."),
    per_layer_csv: Optional[Path] = typer.Option(None, show_default=False, help="Write the per-layer ranking to FILE as CSV (implies --per-layer)."),
    json_out: Optional[Path] = typer.Option(None, "--json", show_default=False, help="Write the results JSON to FILE."),
    report_dir: Optional[Path] = typer.Option(None, "--report", show_default=False, help="Write report.md and report.html to DIR."),
    custom_objects: Optional[Path] = typer.Option(None, "--custom-objects", show_default=False, help="A .py defining a Keras reference's custom classes."),
    trust_model: bool = typer.Option(False, "--trust-model", metavar="", help="Let Keras run the Python code of a Keras reference's Lambda layers."),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite existing output files."),
) -> None:
    """Run the INT8 model on the target delegate and compare it with the float model. Exit 1 if a gate fails."""
    from edgeq.fileio import check_writable, write_files_atomically
    from edgeq.validate.compare import ValidateOptions
    from edgeq.validate.compare import validate as run_validate

    gates = {k: v for k, v in dict(max_drop=max_drop, min_agreement=min_agreement, min_sqnr=min_sqnr,
                                    max_latency_ms=max_latency_ms, min_speedup=min_speedup).items() if v is not None}
    outputs = {"json": json_out, "csv": per_layer_csv,
               **({"md": report_dir / "report.md", "html": report_dir / "report.html"} if report_dir else {})}
    outputs = {k: v for k, v in outputs.items() if v is not None}
    try:
        if len(target) > 1:
            raise UsageError(f"validate checks one --target per run (the Edge TPU one may run the model on it); "
                             f"got {', '.join(target)}: run validate once per target")
        if compare_to != "local":
            raise UsageError(f"--compare-to {compare_to!r}: devices are compared with the local run; use local")
        if report_dir is not None and report_dir.exists() and not report_dir.is_dir():
            raise UsageError(f"--report {report_dir}: is a file; --report names a folder for report.md and report.html")
        for path in outputs.values():
            if path.parent != report_dir or report_dir.is_dir():  # --report DIR is created on success
                check_writable(path, force, [model, reference, data])
        preprocessing = {"color": color, "resize": resize, "value_range": value_range, "mean": _floats(mean, "--mean"),
                         "std": _floats(std, "--std")}
        if delegate == "edgetpu":
            delegate, delegate_library = "xnnpack", delegate_library or "libedgetpu.so.1"
        options = ValidateOptions(delegate=delegate, delegate_library=delegate_library, target=target[0] if target else None, devices=tuple(device),
                                  delegate_options=_key_values(delegate_option, "--delegate-option"), threads=threads,
                                  warmup=warmup, runs=runs, limit=limit, top_k=top_k, preprocessing=preprocessing, gates=gates,
                                  per_layer=per_layer or per_layer_csv is not None, per_layer_samples=per_layer_samples,
                                  custom_objects=str(custom_objects) if custom_objects else None, trust_model=trust_model)
        _state["json"] = False
        with _progress_bar():
            result = run_validate(model, reference, data, options)
    except EdgeqError as exc:
        _fail(exc)
    for warning in result.warnings:
        log.warning(terminal(warning))
    if "json" in outputs:  # first: a rendering problem never loses a finished run
        write_files_atomically({outputs["json"]: _output_bytes("json", result)})
    try:
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
        write_files_atomically({path: _output_bytes(kind, result) for kind, path in outputs.items() if kind != "json"})
    except (EdgeqError, OSError) as exc:
        kept = f"; the results are in {outputs['json']}" if "json" in outputs else ""
        _fail(EdgeqError(f"writing the reports failed ({exc}){kept}"))
    from edgeq.report.text import validation_text

    _say(validation_text(result))
    if not result.passed:
        raise typer.Exit(1)


def _output_bytes(kind: str, result) -> bytes:
    from edgeq.fileio import json_bytes

    if kind == "json":
        return json_bytes(result.to_json())
    if kind == "csv":
        from edgeq.convert.debugger import write_csv

        return write_csv((result.per_layer or {}).get("layers") or [])
    from edgeq.report.documents import render

    return render(result, kind).encode()


@command()
def report(
    results: Path = typer.Argument(..., show_default=False, metavar="RESULTS", help="The results JSON of edgeq validate --json."),
    fmt: str = typer.Option("md", "--format", "-f", help="md (GitHub-flavoured, for a pull request) | html (one self-contained page)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Report file.", show_default="print Markdown; RESULTS.html for html"),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite an existing report."),
) -> None:
    """Render a validation results JSON as a Markdown or HTML report."""
    from edgeq.fileio import check_writable, write_files_atomically
    from edgeq.report.documents import load_results

    try:
        if fmt not in ("md", "html"):
            raise UsageError(f"--format {fmt!r}: use md or html")
        data = load_results(results)
        if output is None and fmt == "html":
            output = results.with_suffix(".html")
        if output is not None:
            check_writable(output, force, [results])
        text = _output_bytes(fmt, data)
    except EdgeqError as exc:
        _fail(exc)
    if output is None:
        typer.echo(text.decode(), nl=False)
    else:
        write_files_atomically({output: text})
        _say(f"wrote {output}")


devices_app = typer.Typer(help="Device profiles (devices/*.toml): list them, check one, set up ARM64 emulation.", invoke_without_command=True)
app.add_typer(devices_app, name="devices")


@devices_app.callback()
def devices_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", metavar="", help="Print JSON only.")) -> None:
    """List the device profiles."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import asdict

    from edgeq.run.devices import list_profiles

    profiles = list_profiles()
    if as_json:
        typer.echo(json.dumps([asdict(p) for p in profiles], indent=2))
        return
    for p in profiles:
        _say(terminal(f"{p.name:<28} {p.transport:<6} {p.address:<28} {p.description}"))
        _say(f"{'':<28} {terminal(p.path)}")


@command(devices_app, "check")
def devices_check(
    name: str = typer.Argument(..., show_default=False, metavar="NAME", help="A profile name or a .toml path."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print JSON only."),
) -> None:
    """Connect to a device and report OS, CPU architecture, ARM dot-product, runtime and delegates."""
    from edgeq.run.devices import check, load_profile

    try:
        info = check(load_profile(name))
    except EdgeqError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    delegates = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info["delegates"].items()) or "none"
    for label, value in (("device", f"{info['name']} ({info['transport']}, {info['address']})"), ("os", info["os"]),
                         ("cpu", info["machine"]), ("dot-product", "yes (asimddp)" if info["asimddp"] else "no"),
                         ("python", info["python"]), ("runtime", info["runtime"] or info.get("runtime_error")),
                         ("delegates", delegates)):
        _say(terminal(f"{label:<12}{value}"))


@command(devices_app, "setup")
def devices_setup(name: str = typer.Argument("emulated-raspberry-pi-5", metavar="NAME", help="An emulated profile (transport qemu).")) -> None:
    """Build the ARM64 emulation (QEMU user mode, arm64 sysroot, aarch64 wheels) once into the cache."""
    from edgeq.run.devices import load_profile
    from edgeq.run.emulation import setup

    try:
        profile = load_profile(name)
        if not profile.emulated:
            raise UsageError(f"{profile.name} is a {profile.transport} device; setup builds emulated (qemu) ones")
        setup(lambda line: _state["quiet"] or typer.echo(line, err=True))
    except EdgeqError as exc:
        _fail(exc)


def _terminated(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C, so temporary files are removed on the way out."""
    raise KeyboardInterrupt


def run() -> None:
    """The console entry point: an unexpected exception is one line and exit 3, never a traceback
    (exit 1 stays "a gate failed")."""
    signal.signal(signal.SIGTERM, _terminated)
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("edgeq: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of the exit-code contract
        if _state["verbose"]:
            import traceback

            traceback.print_exception(exc)
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        typer.echo(f"edgeq: internal error: {type(exc).__name__}: {detail} (rerun with -v for the traceback)", err=True)
        sys.exit(3)


