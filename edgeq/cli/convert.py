"""edgeq convert: a float model and samples in, a quantized .tflite and its manifest out."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgeq.cli.common import (
    STDOUT,
    Panel,
    check_json,
    choice,
    command,
    emit_json,
    fail,
    floats,
    fraction,
    json_option,
    log,
    points,
    progress_bar,
    say,
    state,
)
from edgeq.core.errors import EdgeqError, UsageError
from edgeq.core.escape import terminal
from edgeq.data.samples import COLORS, LAYOUTS, RANGES, RESIZES
from edgeq.records.recipe import REFINEMENTS, Method, Mode, Recipe
from edgeq.targets import TARGETS
from edgeq.tflite.metadata import KINDS

RECIPE = Recipe()  # the defaults of the recipe's settings: their one owner
SIGNATURES = ", ".join(RECIPE.signatures)


def slower_hint(latency, served: bool = False) -> str | None:
    """INT8 slower than float here (an edgeq.records.manifest.LatencyCheck): the figures (`served`:
    measured by the run that made the cached conversion) and the exact command that fixes it."""
    import shlex
    import sys

    from edgeq.host.machine import this_cpu
    from edgeq.scoring.speed import slower_than_float

    if not latency or latency.optimized:
        return None
    command = shlex.join(["edgeq", *sys.argv[1:], "--optimize", "latency"])
    cached = ", measured by the run this conversion was cached from" if served else ""
    return slower_than_float(
        "INT8",
        latency.speedup,
        latency.within_noise,
        f"XNNPACK on this machine ({this_cpu().describe()})",
        latency.off_delegate,
        latency.partitions,
        [f"to keep those ops in float where that is faster, run: {terminal(command)}"],
        f"p50 {latency.int8_p50_ms:.3f} vs {latency.float_p50_ms:.3f} ms, 1 thread{cached}",
    )


@command(
    examples=(
        "edgeq convert model.keras --data calib/ --output model_int8.tflite",
        "edgeq convert model.pt2 -d samples.npy -o model_int8.tflite --eval-data held_out.npz --min-sqnr 30",
        "edgeq convert detector.tflite -d photos/ -o detector_int8.tflite --calibration auto --eval-data held_out/",
        "edgeq convert model.onnx -d samples.npy -o model_int8.tflite --optimize latency",
    )
)
def convert(
    ctx: typer.Context,
    model: Path = typer.Argument(
        ...,
        show_default=False,
        metavar="MODEL",
        help="Keras .keras/.h5 file, SavedModel folder, float .tflite, PyTorch torch.export program (.pt2) "
        "or ONNX model (.onnx).",
        rich_help_panel=Panel.FILES,
    ),
    recipe_file: Path | None = typer.Option(
        None,
        "--recipe",
        show_default=False,
        help="A manifest (.edgeq.json): convert again with the recipe it records as carried out (the layers a search "
        "kept in float included); with the same samples, the same bytes. --data defaults to the recorded samples.",
        rich_help_panel=Panel.RECIPE,
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        show_envvar=False,
        show_default=False,
        help="The .tflite to write (a .edgeq.json manifest goes beside it).",
        rich_help_panel=Panel.FILES,
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        "-d",
        show_default=False,
        help="Calibration samples: image folder, .npy or .npz.",
        rich_help_panel=Panel.FILES,
    ),
    mode: str = typer.Option(
        RECIPE.mode.value,
        click_type=choice(m.value for m in Mode),
        help="int8 is strict: every op int8, or an error.",
        rich_help_panel=Panel.RECIPE,
    ),
    io: str | None = typer.Option(
        None,
        "--io",
        show_default="int8 (int16 for int16x8)",
        click_type=choice(("int8", "uint8", "float32", "int16")),
        help="Input/output type (int16 goes with int16x8).",
        rich_help_panel=Panel.RECIPE,
    ),
    per_tensor: bool = typer.Option(
        False, "--per-tensor", metavar="", help="Per-tensor instead of per-channel weight scales.", rich_help_panel=Panel.RECIPE
    ),
    keep_float: list[str] = typer.Option(
        [], "--keep-float", help="Layer name, node name or op type to keep in float (repeatable).", rich_help_panel=Panel.RECIPE
    ),
    samples: int | None = typer.Option(
        None, show_default=str(RECIPE.samples), help="Calibration samples to use.", rich_help_panel=Panel.RECIPE
    ),
    seed: int = typer.Option(RECIPE.seed, help="Seed of the sample shuffle.", rich_help_panel=Panel.RECIPE),
    target: list[str] = typer.Option(
        [],
        "--target",
        "-t",
        click_type=choice(TARGETS),
        help="Warn about ops that target will not run (repeatable).",
        rich_help_panel=Panel.LATENCY,
    ),
    eval_data: Path | None = typer.Option(
        None,
        "--eval-data",
        show_default=False,
        help="Held-out samples: search the fewest layers to keep in float that meet the budget below.",
        rich_help_panel=Panel.BUDGET,
    ),
    max_drop: float | None = typer.Option(
        None,
        show_default=False,
        parser=points,
        metavar="PTS",
        help="Budget: top-1 drop at most PTS points (needs labels).",
        rich_help_panel=Panel.BUDGET,
    ),
    min_agreement: float | None = typer.Option(
        None,
        show_default=False,
        parser=fraction,
        metavar="FRAC|PCT%",
        help="Budget: INT8/float top-1 agreement at least FRAC (0.98) or PCT% (98%).",
        rich_help_panel=Panel.BUDGET,
    ),
    min_sqnr: float | None = typer.Option(
        None, show_default=False, help="Budget: worst output SQNR at least DB.", rich_help_panel=Panel.BUDGET
    ),
    min_iou: float | None = typer.Option(
        None,
        show_default=False,
        parser=fraction,
        metavar="FRAC|PCT%",
        help="Budget: every mask output's IoU with float's mask at least FRAC (0.95) or PCT%.",
        rich_help_panel=Panel.BUDGET,
    ),
    max_float_layers: int | None = typer.Option(
        None, show_default=False, help="Keep at most K layers in float in the search.", rich_help_panel=Panel.BUDGET
    ),
    search_seconds: float | None = typer.Option(
        None,
        show_default=False,
        min=0,
        metavar="S",
        help="Refine the search's first answer (its region) for at most S seconds, then take the best found "
        "(0: the region itself; default: no bound). For large models, where a candidate takes seconds.",
        rich_help_panel=Panel.BUDGET,
    ),
    calibration: str = typer.Option(
        str(RECIPE.calibration),
        "--calibration",
        help="Activation ranges: minmax (TensorFlow's) | percentile[:P] | mse | entropy | moving-average "
        "(ai-edge-quantizer's) | auto (tries them on --eval-data).",
        rich_help_panel=Panel.CALIBRATION,
    ),
    refine: str = typer.Option(
        RECIPE.refine,
        "--refine",
        click_type=choice(REFINEMENTS),
        help="bias: take each layer's weight-rounding shift out of its int32 bias (measured on the calibration samples) | "
        "rounding: round each int8 weight up or down to fit the float layer's output, refitting the bias | auto: keep the "
        "best of these and the model as converted on held-back samples.",
        rich_help_panel=Panel.CALIBRATION,
    ),
    feedback: list[str] = typer.Option(
        [],
        "--feedback",
        show_default=False,
        help="OUT=IN: a stateful model; the budget judges --eval-data streamed in order, each model feeding its own OUT back as "
        "the next step's IN (repeatable).",
        rich_help_panel=Panel.BUDGET,
    ),
    output_role: list[str] = typer.Option(
        [],
        "--output-role",
        show_default=False,
        help="KEY=classes|sequence|ctc:BLANK|score|mask|values: what an output is, for the budget (e.g. a logits output without "
        "SOFTMAX is classes); repeatable.",
        rich_help_panel=Panel.OUTPUTS,
    ),
    optimize: str | None = typer.Option(
        None,
        "--optimize",
        show_default=False,
        click_type=choice(("latency",)),
        help="latency: time INT8 against float on XNNPACK and keep in float the op types that make it slower "
        "(within the budget).",
        rich_help_panel=Panel.LATENCY,
    ),
    device: str | None = typer.Option(
        None,
        "--device",
        show_default=False,
        help="With --optimize latency: time the candidates on this device profile (name in devices/ or a .toml path).",
        rich_help_panel=Panel.LATENCY,
    ),
    allow_int16x8: bool = typer.Option(
        False,
        "--allow-int16x8",
        metavar="",
        help="Let the search try 16-bit activations (whole model) before float layers.",
        rich_help_panel=Panel.BUDGET,
    ),
    cluster: str | None = typer.Option(
        None,
        "--cluster",
        show_default=False,
        help="Build and judge the candidates of the search, --calibration auto, --refine auto and --optimize latency on a Ray "
        "cluster: local (a runtime for this run) or what ray.init takes (127.0.0.1:6379, ray://host:10001, auto); the bytes "
        "equal a local run's. Needs pip install 'edgeq[ray]'.",
        rich_help_panel=Panel.RUNTIME,
    ),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        "-j",
        help="Calibration threads (XNNPACK; processes for TensorFlow's calibrator and histograms); the result equals --jobs 1.",
        show_default="CPU cores; 1 for a graph under 1 MiB",
        rich_help_panel=Panel.CALIBRATION,
    ),
    color: str | None = typer.Option(
        None,
        click_type=choice(COLORS),
        help="Color of the model's input.",
        show_default="from the model's channel count",
        rich_help_panel=Panel.PREPROCESSING,
    ),
    resize: str = typer.Option(
        RECIPE.preprocessing.resize,
        click_type=choice(RESIZES),
        help="How images take the input's size.",
        rich_help_panel=Panel.PREPROCESSING,
    ),
    value_range: str | None = typer.Option(
        None,
        "--range",
        show_default="what the model states, else 0,1",
        click_type=choice(RANGES),
        help="Pixel range fed to the model.",
        rich_help_panel=Panel.PREPROCESSING,
    ),
    mean: str | None = typer.Option(
        None,
        show_default=False,
        help="Per-channel mean subtracted from 0..255 pixels, e.g. 123.7,116.3,103.5.",
        rich_help_panel=Panel.PREPROCESSING,
    ),
    std: str | None = typer.Option(
        None, show_default=False, help="Per-channel std dividing after --mean.", rich_help_panel=Panel.PREPROCESSING
    ),
    layout: str | None = typer.Option(
        None,
        "--layout",
        show_default="from the input's shape",
        click_type=choice(LAYOUTS),
        help="Image input layout.",
        rich_help_panel=Panel.PREPROCESSING,
    ),
    signature: list[str] = typer.Option(
        [],
        "--signature",
        help=f"SavedModel signature to convert (repeatable; 'all' for every one) [default: {SIGNATURES}].",
        rich_help_panel=Panel.RECIPE,
    ),
    channels_last: bool = typer.Option(
        False,
        "--channels-last",
        metavar="",
        help="A PyTorch (.pt2) or ONNX source's 4-D inputs as NHWC (litert-torch's to_channel_last_io).",
        rich_help_panel=Panel.RECIPE,
    ),
    input_shape: list[str] = typer.Option(
        [], "--input-shape", help="Fix dynamic dims: 1,224,224,3 or NAME=1,224,224,3.", rich_help_panel=Panel.RECIPE
    ),
    custom_objects: Path | None = typer.Option(
        None,
        "--custom-objects",
        show_default=False,
        help="A .py defining the Keras model's custom classes (imported: it is your code).",
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
    labels: Path | None = typer.Option(
        None,
        "--labels",
        show_default=False,
        help="Embed TFLite Model Metadata with these labels (one per line, in the output's order).",
        rich_help_panel=Panel.METADATA,
    ),
    metadata: str | None = typer.Option(
        None,
        "--metadata",
        show_default="image-classifier with --labels",
        click_type=choice(KINDS),
        help="Embed TFLite Model Metadata of this kind.",
        rich_help_panel=Panel.METADATA,
    ),
    name: str | None = typer.Option(
        None, "--name", show_default=False, help="Metadata: the model's name.", rich_help_panel=Panel.METADATA
    ),
    description: str | None = typer.Option(
        None, "--description", show_default=False, help="Metadata: what the model does.", rich_help_panel=Panel.METADATA
    ),
    version: str | None = typer.Option(
        None, "--model-version", show_default=False, help="Metadata: the model's version.", rich_help_panel=Panel.METADATA
    ),
    old_version: str | None = typer.Option(None, "--version", hidden=True, help="The old name of --model-version."),
    author: str | None = typer.Option(
        None, "--author", show_default=False, help="Metadata: author.", rich_help_panel=Panel.METADATA
    ),
    license_: str | None = typer.Option(
        None, "--license", show_default=False, help="Metadata: license.", rich_help_panel=Panel.METADATA
    ),
    bundle_dir: Path | None = typer.Option(
        None,
        "--bundle",
        show_default=False,
        help="Also write the app bundle (see edgeq bundle) into DIR.",
        rich_help_panel=Panel.FILES,
    ),
    no_cache: bool = typer.Option(
        False,
        "--no-cache",
        metavar="",
        help="Neither reuse nor keep calibrations and conversions in the cache folder ($EDGEQ_CACHE_DIR, else ~/.cache/edgeq).",
        rich_help_panel=Panel.FILES,
    ),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite an existing output.", rich_help_panel=Panel.FILES),
    as_json: str | None = json_option("The manifest"),
) -> None:
    """Convert a float model (.keras/.h5, SavedModel, float .tflite, PyTorch .pt2 or ONNX) to a
    quantized .tflite, calibrated on real samples."""
    if old_version is not None:
        if version is not None:
            fail(UsageError("--version is the old name of --model-version: give one of them"))
        log.warning("convert --version is now --model-version (edgeq --version is the tool's version)")
        version = old_version
    from edgeq.conversion.converter import convert as run_convert
    from edgeq.conversion.options import ConvertOptions
    from edgeq.data.samples import Preprocessing
    from edgeq.records.budget import Budget
    from edgeq.scoring.roles import parse_feedback, parse_roles
    from edgeq.tflite.metadata import Description, read_labels

    try:
        recorded = _recorded_recipe(ctx, recipe_file) if recipe_file is not None else None
        if recorded is not None and data is None and recorded.data is not None:
            data = Path(recorded.data)
        preprocessing = Preprocessing(
            color=color,
            resize=resize,
            value_range=value_range,
            mean=floats(mean, "--mean"),
            std=floats(std, "--std"),
            layout=layout,
        )
        recipe = Recipe(
            mode=Mode.parse(mode),
            io=io,
            per_tensor=per_tensor,
            keep_float=tuple(keep_float),
            calibration=Method.parse(calibration),
            signatures=tuple(signature) or RECIPE.signatures,
            preprocessing=preprocessing,
            samples=RECIPE.samples if samples is None else samples,
            seed=seed,
            channels_last=channels_last,
            refine=refine,
        )
        options = ConvertOptions(
            recipe=recorded or recipe,
            budget=Budget.given(max_drop, min_agreement, min_sqnr, min_iou),
            eval_data=str(eval_data) if eval_data else None,
            max_float_layers=max_float_layers,
            search_seconds=search_seconds,
            allow_int16x8=allow_int16x8,
            optimize=optimize,
            device=device,
            output_roles=parse_roles(output_role),
            feedback=parse_feedback(tuple(feedback)),
            targets=tuple(target),
            custom_objects=str(custom_objects) if custom_objects else None,
            trust_model=trust_model,
            input_shapes=tuple(input_shape),
            jobs=jobs,
            cluster=cluster,
            cache=not no_cache,
            samples_given=samples is not None or recorded is not None,
        )
        if bundle_dir is not None:
            from edgeq.packaging.bundle import check_bundle

            check_bundle(bundle_dir, force)
        check_json(as_json, force, tuple(Path(p) for p in (model, output, data, eval_data, recipe_file) if p))
        about = None
        if labels or metadata or any((name, description, version, author, license_)):
            about = Description(
                metadata or "image-classifier",
                read_labels(labels) if labels else (),
                name or "",
                description or "",
                version or "",
                author or "",
                license_ or "",
            )
        state["json"] = as_json == STDOUT
        with progress_bar():
            result = run_convert(model, output, data, options, quiet_native=not state["verbose"], force=force, about=about)
        if bundle_dir is not None and result.budget_met is not False:
            from edgeq.packaging.bundle import bundle

            bundle(result.output, bundle_dir, None, force)
    except EdgeqError as exc:
        fail(exc)
    for warning in result.warnings:
        log.warning(terminal(warning))
    manifest = result.manifest
    slower = slower_hint(manifest.latency, manifest.cache is not None and manifest.cache.conversion == "hit")
    if slower:
        log.warning(slower)
    from edgeq.report.text import timings_line

    log.debug(timings_line(manifest.timings))
    emit_json(as_json, json.dumps(result.to_json(), indent=2))
    if as_json != STDOUT:
        from edgeq.report.text import conversion_text

        say(conversion_text(result))
    if result.budget_met is False:
        search = manifest.search
        best, held = search.chosen, search.held_back
        if best.meets and held is not None:
            said = (
                f"the choice ({best.k} float layer(s)) met the budget on the {search.eval_samples} samples it was made on "
                f"and misses it on the {search.held_back_samples} held back ({terminal('; '.join(held.missed))}); kept it"
            )
        else:
            missing = terminal("; ".join(best.missed))
            said = f"no mix within the bounds meets the budget; kept the best found ({best.k} float layer(s), missing: {missing})"
        log.error(f"{said} as {result.output}")
        raise typer.Exit(1)


RECIPE_FLAGS = (
    "mode",
    "io",
    "per_tensor",
    "keep_float",
    "samples",
    "seed",
    "signature",
    "channels_last",
    "calibration",
    "refine",
    "color",
    "resize",
    "value_range",
    "mean",
    "std",
    "layout",
)


def _recorded_recipe(ctx: typer.Context, path: Path) -> Recipe:
    """The recipe a manifest records; the flags that would change it are refused beside it."""
    from click.core import ParameterSource

    from edgeq.core.fileio import read_json
    from edgeq.records.manifest import Manifest

    given = [name for name in RECIPE_FLAGS if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
    if given:
        flag = "--range" if given[0] == "value_range" else f"--{given[0].replace('_', '-')}"
        raise UsageError(f"--recipe {path} sets the recipe: drop {flag}, or convert without --recipe")
    return Manifest.from_json(read_json(path), path.name).recipe
