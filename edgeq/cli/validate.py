"""edgeq validate: the INT8 model against the float one, with gates; exit 1 when a gate fails."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeq.cli.common import (
    STDOUT,
    Panel,
    choice,
    command,
    fail,
    floats,
    fraction,
    json_option,
    key_values,
    log,
    points,
    progress_bar,
    say,
    state,
)
from edgeq.core.errors import EdgeqError, UsageError
from edgeq.core.escape import terminal
from edgeq.data.samples import COLORS, LAYOUTS, RANGES, RESIZES
from edgeq.targets import TARGETS
from edgeq.validation.options import DELEGATE_CHOICES, GPU_PRECISIONS, ValidateOptions

DEFAULTS = ValidateOptions(jobs=1)  # the defaults of validate's settings: their one owner


@command(
    examples=(
        "edgeq validate model_int8.tflite -r model.keras -d val/ --min-agreement 0.98 --json results.json --report report/",
        "edgeq validate model_int8.tflite -r model.keras -d val/ --device raspberry-pi-5 --device 'aihub:Samsung Galaxy S24'",
        "edgeq validate model_int8.tflite -r model.keras -d val/ --accelerator gpu --require-accelerated",
        "edgeq validate model_int8.tflite -r model.keras -d val/ --cluster 127.0.0.1:6379",
    )
)
def validate(
    model: Path | None = typer.Argument(
        None, show_default=False, metavar="MODEL", help="The INT8 .tflite to validate.", rich_help_panel=Panel.FILES
    ),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        "-r",
        show_envvar=False,
        show_default=False,
        help="The float model: .tflite, .keras/.h5, SavedModel, PyTorch .pt2 or ONNX (.onnx).",
        rich_help_panel=Panel.FILES,
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        "-d",
        show_envvar=False,
        show_default=False,
        help="Held-out samples: image folder (labels from class folders) or .npy/.npz (x, optional y).",
        rich_help_panel=Panel.FILES,
    ),
    no_wait: bool = typer.Option(
        False,
        "--no-wait",
        metavar="",
        help="Submit the AI Hub jobs and write the results with their ids without waiting (needs --json); collect them "
        "later with "
        "--resume.",
        rich_help_panel=Panel.FILES,
    ),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        show_default=False,
        help="A results JSON written with --no-wait: collect the AI Hub jobs that have finished, score and gate them, and write "
        "it again.",
        rich_help_panel=Panel.FILES,
    ),
    delegate: str = typer.Option(
        DEFAULTS.delegate,
        click_type=choice(DELEGATE_CHOICES),
        help="none: LiteRT's built-in kernels; ref: its reference kernels; edgetpu: libedgetpu.so.1 (an Edge TPU-compiled "
        "model).",
        rich_help_panel=Panel.RUNTIME,
    ),
    delegate_library: str | None = typer.Option(
        None, show_default=False, help="External delegate library, e.g. libedgetpu.so.1.", rich_help_panel=Panel.RUNTIME
    ),
    delegate_option: list[str] = typer.Option(
        [], help="key=value for the external delegate (repeatable).", rich_help_panel=Panel.RUNTIME
    ),
    threads: int = typer.Option(DEFAULTS.threads, help="Interpreter threads for both models.", rich_help_panel=Panel.RUNTIME),
    no_cache: bool = typer.Option(
        False,
        "--no-cache",
        metavar="",
        help="Convert a Keras/SavedModel/PyTorch reference to float TFLite again instead of reusing it from the cache folder.",
        rich_help_panel=Panel.FILES,
    ),
    cluster: str | None = typer.Option(
        None,
        "--cluster",
        show_default=False,
        help="Run the sample loop on a Ray cluster: local (a runtime for this run) or what ray.init takes (127.0.0.1:6379, "
        "ray://host:10001, auto); the figures equal a local run's. Needs pip install 'edgeq[ray]'.",
        rich_help_panel=Panel.RUNTIME,
    ),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        "-j",
        show_default="CPU cores",
        help="INT8/float interpreter pairs run concurrently on the samples; the figures equal --jobs 1 (latency is timed alone).",
        rich_help_panel=Panel.RUNTIME,
    ),
    warmup: int = typer.Option(DEFAULTS.warmup, help="Untimed invokes before timing.", rich_help_panel=Panel.RUNTIME),
    runs: int = typer.Option(DEFAULTS.runs, help="Timed invokes.", rich_help_panel=Panel.RUNTIME),
    limit: int | None = typer.Option(None, show_default=False, help="Use at most N samples.", rich_help_panel=Panel.RUNTIME),
    top_k: int = typer.Option(DEFAULTS.top_k, help="k of the top-k accuracy.", rich_help_panel=Panel.RUNTIME),
    color: str | None = typer.Option(
        None,
        click_type=choice(COLORS),
        help="Color of the model's input.",
        show_default="the manifest's, else the model's channels",
        rich_help_panel=Panel.PREPROCESSING,
    ),
    resize: str | None = typer.Option(
        None,
        click_type=choice(RESIZES),
        show_default="the manifest's",
        help="How images take the input's size.",
        rich_help_panel=Panel.PREPROCESSING,
    ),
    value_range: str | None = typer.Option(
        None,
        "--range",
        show_default="the manifest's, else what the model states, else 0,1",
        click_type=choice(RANGES),
        help="Pixel range fed to the model.",
        rich_help_panel=Panel.PREPROCESSING,
    ),
    mean: str | None = typer.Option(None, show_default=False, help="Per-channel mean.", rich_help_panel=Panel.PREPROCESSING),
    std: str | None = typer.Option(None, show_default=False, help="Per-channel std.", rich_help_panel=Panel.PREPROCESSING),
    layout: str | None = typer.Option(
        None,
        "--layout",
        show_default="from the input's shape",
        click_type=choice(LAYOUTS),
        help="Image input layout.",
        rich_help_panel=Panel.PREPROCESSING,
    ),
    output_role: list[str] = typer.Option(
        [],
        "--output-role",
        show_default=False,
        help="KEY=classes|sequence|ctc:BLANK|score|mask|values: what an output is (repeatable); default: from the model's "
        "evidence.",
        rich_help_panel=Panel.OUTPUTS,
    ),
    score_threshold: float = typer.Option(
        DEFAULTS.score_threshold, help="Decision threshold of a score output (its agreement).", rich_help_panel=Panel.OUTPUTS
    ),
    max_drop: float | None = typer.Option(
        None,
        show_default=False,
        parser=points,
        metavar="PTS",
        help="Gate: top-1 drop at most PTS points.",
        rich_help_panel=Panel.GATES,
    ),
    min_agreement: float | None = typer.Option(
        None,
        show_default=False,
        parser=fraction,
        metavar="FRAC|PCT%",
        help="Gate: INT8/float top-1 agreement at least FRAC (0.98) or PCT% (98%).",
        rich_help_panel=Panel.GATES,
    ),
    min_sqnr: float | None = typer.Option(
        None, show_default=False, help="Gate: every output's SQNR at least DB.", rich_help_panel=Panel.GATES
    ),
    min_iou: float | None = typer.Option(
        None,
        show_default=False,
        parser=fraction,
        metavar="FRAC|PCT%",
        help="Gate: every mask output's IoU with float's mask at least FRAC (0.95) or PCT%.",
        rich_help_panel=Panel.GATES,
    ),
    min_slice_sqnr: float | None = typer.Option(
        None,
        show_default=False,
        help="Gate: every slice's SQNR (per index along each output axis of at most 256) at least DB.",
        rich_help_panel=Panel.GATES,
    ),
    max_latency_ms: float | None = typer.Option(
        None, show_default=False, help="Gate: INT8 p50 latency at most MS.", rich_help_panel=Panel.GATES
    ),
    min_speedup: float | None = typer.Option(
        None, show_default=False, help="Gate: float p50 / INT8 p50 at least X.", rich_help_panel=Panel.GATES
    ),
    baseline: Path | None = typer.Option(
        None,
        "--baseline",
        show_default=False,
        help="A previous results JSON (the last release's): compare with it.",
        rich_help_panel=Panel.GATES,
    ),
    max_regression_pts: float | None = typer.Option(
        None, show_default=False, help="Gate: top-1 at most PTS points below the baseline's.", rich_help_panel=Panel.GATES
    ),
    max_latency_regression: float | None = typer.Option(
        None, show_default=False, help="Gate: INT8 p50 at most PCT % slower than the baseline's.", rich_help_panel=Panel.GATES
    ),
    max_size_growth: float | None = typer.Option(
        None, show_default=False, help="Gate: model at most PCT % larger than the baseline's.", rich_help_panel=Panel.GATES
    ),
    target: list[str] = typer.Option(
        [],
        "--target",
        "-t",
        show_default=False,
        click_type=choice(TARGETS),
        help="Predict the target's coverage and check it against the compiler/delegate present.",
        rich_help_panel=Panel.DEVICES,
    ),
    device: list[str] = typer.Option(
        [],
        "--device",
        help="Also run the INT8 model on this device profile (name in devices/ or a .toml path; repeatable).",
        rich_help_panel=Panel.DEVICES,
    ),
    accelerator: list[str] = typer.Option(
        [],
        "--accelerator",
        show_default=False,
        help="Also run the model on LiteRT's accelerator here: gpu, or npu:VENDOR[:SOC] (npu:intel); repeatable. Which one "
        "ran is taken from evidence.",
        rich_help_panel=Panel.DEVICES,
    ),
    gpu_precision: str = typer.Option(
        DEFAULTS.gpu_precision,
        "--gpu-precision",
        click_type=choice(GPU_PRECISIONS),
        help="fp16 is how phones run LiteRT's GPU accelerator.",
        rich_help_panel=Panel.DEVICES,
    ),
    require_accelerated: bool = typer.Option(
        False,
        "--require-accelerated",
        metavar="",
        help="Gate: exit 1 if an accelerator run left any op to the CPU, or did not run there at all.",
        rich_help_panel=Panel.GATES,
    ),
    feedback: list[str] = typer.Option(
        [],
        "--feedback",
        show_default=False,
        help="OUT=IN: a stateful model; run the samples in order as sequences, each model feeding its own OUT back as the next "
        "step's IN (repeatable).",
        rich_help_panel=Panel.OUTPUTS,
    ),
    per_layer: bool = typer.Option(
        False,
        "--per-layer",
        metavar="",
        help="Rank layers by quantization error (QuantizationDebugger; needs a Keras/SavedModel --reference).",
        rich_help_panel=Panel.OUTPUTS,
    ),
    per_layer_samples: int = typer.Option(
        DEFAULTS.per_layer_samples, help="Samples the per-layer debugger runs.", rich_help_panel=Panel.OUTPUTS
    ),
    per_layer_csv: Path | None = typer.Option(
        None,
        show_default=False,
        help="Write the per-layer ranking to FILE as CSV (implies --per-layer).",
        rich_help_panel=Panel.FILES,
    ),
    json_arg: str | None = json_option("The results"),
    report_dir: Path | None = typer.Option(
        None, "--report", show_default=False, help="Write report.md and report.html to DIR.", rich_help_panel=Panel.FILES
    ),
    custom_objects: Path | None = typer.Option(
        None,
        "--custom-objects",
        show_default=False,
        help="A .py defining a Keras reference's custom classes.",
        rich_help_panel=Panel.TRUST,
    ),
    trust_model: bool = typer.Option(
        False,
        "--trust-model",
        metavar="",
        help="Load a model file that holds code (a Keras Lambda, SavedModel file or Python ops, a .pt2 that needs pickle): only "
        "for files you trust (docs/security.md).",
        rich_help_panel=Panel.TRUST,
    ),
    force: bool = typer.Option(
        False, "--force", metavar="", help="Overwrite existing output files.", rich_help_panel=Panel.FILES
    ),
) -> None:
    """Run the INT8 model on the target delegate and compare it with the float model. Exit 1 if a gate fails."""
    if resume is not None:
        return _resume(resume, Path(json_arg) if json_arg and json_arg != STDOUT else None)
    missing = [name for name, value in (("MODEL", model), ("--reference", reference), ("--data", data)) if value is None]
    if missing:
        fail(
            UsageError(
                f"Missing option {' and '.join(missing)}: validate needs MODEL, --reference and --data (or --resume RESULTS.json)"
            )
        )
    to_stdout = json_arg == STDOUT
    json_out = Path(json_arg) if json_arg and not to_stdout else None
    if no_wait and json_out is None:
        fail(UsageError("--no-wait writes the pending jobs into the results: add --json RESULTS.json"))
    from edgeq.data.samples import PreprocessingOverride
    from edgeq.records.manifest_file import manifest_for
    from edgeq.scoring.gates import Gates
    from edgeq.scoring.roles import parse_feedback, parse_roles
    from edgeq.validation.compare import validate as run_validate

    outputs = {
        "json": json_out,
        "csv": per_layer_csv,
        **({"md": report_dir / "report.md", "html": report_dir / "report.html"} if report_dir else {}),
    }
    outputs = {k: v for k, v in outputs.items() if v is not None}
    try:
        _check_usage(
            target,
            report_dir,
            outputs,
            force,
            [model, reference, data, manifest_for(model), manifest_for(reference)] + ([baseline] if baseline else []),
        )
        options = ValidateOptions(
            delegate=delegate,
            delegate_library=delegate_library,
            target=target[0] if target else None,
            devices=tuple(device),
            delegate_options=key_values(delegate_option, "--delegate-option"),
            threads=threads,
            jobs=jobs,
            cluster=cluster,
            cache=not no_cache,
            pending_store=str(json_out.with_name(json_out.name + ".pending.npz")) if no_wait and json_out else None,
            accelerators=tuple(accelerator),
            gpu_precision=gpu_precision,
            require_accelerated=require_accelerated,
            feedback=parse_feedback(feedback),
            warmup=warmup,
            runs=runs,
            limit=limit,
            top_k=top_k,
            gates=Gates(
                max_drop=max_drop,
                min_agreement=min_agreement,
                min_sqnr=min_sqnr,
                min_iou=min_iou,
                min_slice_sqnr=min_slice_sqnr,
                max_latency_ms=max_latency_ms,
                min_speedup=min_speedup,
                max_regression_pts=max_regression_pts,
                max_latency_regression=max_latency_regression,
                max_size_growth=max_size_growth,
            ),
            preprocessing=PreprocessingOverride(color, resize, value_range, floats(mean, "--mean"), floats(std, "--std"), layout),
            output_roles=parse_roles(output_role),
            score_threshold=score_threshold,
            per_layer=per_layer or per_layer_csv is not None,
            per_layer_samples=per_layer_samples,
            custom_objects=str(custom_objects) if custom_objects else None,
            trust_model=trust_model,
            baseline=str(baseline) if baseline else None,
        )
        state["json"] = to_stdout
        with progress_bar():
            result = run_validate(model, reference, data, options)
    except EdgeqError as exc:
        fail(exc)
    for warning in result.warnings:
        log.warning(terminal(warning))
    _write(result, outputs, report_dir)
    if to_stdout:
        from edgeq.report.files import file_bytes

        typer.echo(file_bytes("json", result).decode(), nl=False)
    else:
        from edgeq.report.text import validation_text

        say(validation_text(result))
    if not result.passed:
        raise typer.Exit(1)


def _resume(results: Path, json_out: Path | None) -> None:
    """--resume: the finished jobs collected; the results written again (atomically, to --json if given)."""
    from edgeq.core.fileio import write_files_atomically
    from edgeq.report.files import file_bytes
    from edgeq.report.text import validation_text
    from edgeq.validation.pending import resume as collect

    try:
        result = collect(results)
    except EdgeqError as exc:
        fail(exc)
    for warning in result.warnings:
        log.warning(terminal(warning))
    write_files_atomically({json_out or results: file_bytes("json", result)})
    say(validation_text(result))
    if not result.passed:
        raise typer.Exit(1)


def _check_usage(target: list[str], report_dir: Path | None, outputs: dict[str, Path], force: bool, inputs: list[Path]) -> None:
    """Before the run: the flags go together and every file to write may be written."""
    from edgeq.core.fileio import check_writable

    if len(target) > 1:
        raise UsageError(
            f"validate checks one --target per run (the Edge TPU one may run the model on it); "
            f"got {', '.join(target)}: run validate once per target"
        )
    if report_dir is not None and report_dir.exists() and not report_dir.is_dir():
        raise UsageError(f"--report {report_dir}: is a file; --report names a folder for report.md and report.html")
    for path in outputs.values():
        if path.parent != report_dir or report_dir.is_dir():  # --report DIR is created on success
            check_writable(path, force, inputs)


def _write(result, outputs: dict[str, Path], report_dir: Path | None) -> None:
    """The results JSON first (a rendering problem never loses a finished run), then the reports."""
    from edgeq.core.fileio import write_files_atomically
    from edgeq.report.files import file_bytes

    if "json" in outputs:
        write_files_atomically({outputs["json"]: file_bytes("json", result)})
    try:
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
        write_files_atomically({path: file_bytes(kind, result) for kind, path in outputs.items() if kind != "json"})
    except (EdgeqError, OSError) as exc:
        kept = f"; the results are in {outputs['json']}" if "json" in outputs else ""
        fail(EdgeqError(f"writing the reports failed ({exc}){kept}"))
