"""edgeq validate: run the INT8 model where it will run and compare it with the float model.

The result is a ValidationResult (typed records; its JSON is the contract with the reporter), built
here and rendered elsewhere. Figures that do not apply are None, never missing.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.errors import DataError, ModelError, UsageError
from edgeq.core.fileio import sha256_of, size_of
from edgeq.core.progress import report
from edgeq.core.version import __version__
from edgeq.data.normalization import Resolved, Statement, resolve
from edgeq.data.samples import InputSpec, Preprocessing, SampleSource, fed_as_arrays, open_samples
from edgeq.frameworks.onnx import ONNX_SUFFIX
from edgeq.frameworks.pytorch import PT2_SUFFIX
from edgeq.host.machine import this_cpu
from edgeq.host.native import captured_native_stderr
from edgeq.records.manifest import Manifest, PerLayer, PreprocessingUsed
from edgeq.records.manifest_file import Described
from edgeq.records.recipe import Recipe
from edgeq.run.compiled_model import CompiledModelRunner
from edgeq.run.litert import LiteRTRunner, within_noise
from edgeq.run.pairing import pair
from edgeq.scoring.gates import evaluate, passed
from edgeq.scoring.metrics import Scorer
from edgeq.scoring.roles import Role, decide_roles
from edgeq.scoring.speed import slower_than_float, speedup
from edgeq.tflite.dispatch import dispatch_of
from edgeq.tflite.metadata import read_metadata, stated_normalization
from edgeq.tflite.model import read_tflite
from edgeq.tflite.summary import summarize
from edgeq.validation import accelerators
from edgeq.validation.accelerators import compiled_source
from edgeq.validation.feedback import Streaming, streamed
from edgeq.validation.options import ValidateOptions
from edgeq.validation.results import (
    Baseline,
    DelegateCheck,
    DeviceResult,
    Latency,
    PairedBy,
    Percentiles,
    Size,
    SourceCheck,
    TargetCheck,
    ValidationResult,
)
from edgeq.validation.streaming import Spill, int8_runs, paired_runs

log = logging.getLogger(__name__)


def validate(
    model: str | Path, reference: str | Path, data: str | Path, options: ValidateOptions | None = None
) -> ValidationResult:
    """Compare `model` with `reference` on `data` (progress goes to edgeq.core.progress listeners)."""
    options = options or ValidateOptions()
    previous = ValidationResult.read(options.baseline) if options.baseline else None  # a bad file fails before the run
    model, reference = Path(model), Path(reference)
    dispatch = dispatch_of(read_tflite(model))
    compiled = model if dispatch.compiled else None
    if compiled is not None:  # DISPATCH_OPs run through the vendor's dispatch only: the CPU runs the INT8 file it came from
        model = compiled_source(compiled, dispatch, Described.of(compiled).manifest)
    int8 = LiteRTRunner(model, options.delegate, options.threads, options.delegate_library, options.delegate_options)
    described, notes = _described(model, int8)
    manifest = described.manifest
    accelerated = accelerators.runners(options.accelerators, options.gpu_precision, options.threads, dispatch, compiled, model)
    pre = preprocessing_for(manifest, options, int8)  # once: the sweep, the source check and --per-layer feed alike
    with tempfile.TemporaryDirectory(prefix="edgeq-ref-") as scratch:
        target, int8 = _target(model, int8, options, Path(scratch)) if options.target else (None, int8)
        float_path, float_note, int8_first = _float_tflite(
            reference, int8, options, manifest, Path(scratch), data, pre.preprocessing
        )
        result = _compare(
            model, reference, data, options, int8, manifest, pre, float_path, float_note, Path(scratch), accelerated, int8_first
        )
        if reference.suffix.lower() in (PT2_SUFFIX, ONNX_SUFFIX):
            result = replace(
                result, source_check=_source_check(reference, float_path, data, options, pre.preprocessing, manifest)
            )
    result = replace(result.with_warnings(*notes), model=str(compiled or model))
    if previous is not None:
        result = replace(
            result, baseline=Baseline.compare(str(options.baseline), previous, result.accuracy, result.latency, result.size)
        )
    if target is not None:
        if target.delegate_check is not None:
            target = replace(target, delegate_check=_delegate_check(target, result.latency))
        result = replace(result.with_warnings(*target.notes), target=target)
    local = evaluate(options.gates.limits(), result.figures)
    return replace(result, gates=tuple(local), passed=passed(local) and all(d.passed is not False for d in result.devices))


def _described(model: Path, int8: LiteRTRunner) -> tuple[Described, list[str]]:
    """The model and its manifest, read once; a manifest that cannot be read or was written for
    another file is a warning, and validation goes on without it."""
    try:
        described = Described.of(model, int8.model)
    except DataError as exc:
        return Described(int8.model, None, None), [f"{exc}; the manifest is ignored"]
    return described, [described.mismatch] if described.mismatch else []


def _target(model: Path, int8: LiteRTRunner, options: ValidateOptions, scratch: Path) -> tuple[TargetCheck, LiteRTRunner]:
    """The static prediction for --target, and what the real target says where it is here.

    Edge TPU: compile with edgetpu_compiler when it is on PATH and compare its operation report;
    run the compiled model through libedgetpu.so.1 when that loads. Nothing is claimed to have
    run on hardware that did not.
    """
    from edgeq.targets import check_target
    from edgeq.targets import edgetpu_toolchain as edgetpu

    prediction = check_target(int8.model, options.target)
    section = TargetCheck(options.target, prediction.to_dict())
    if options.target == "xnnpack":
        on_xnnpack = int8.delegate == "xnnpack"
        return replace(section, ran_on_target=on_xnnpack, delegate_check=DelegateCheck.pending() if on_xnnpack else None), int8
    if options.target == "nnapi":
        return replace(
            section, notes=("NNAPI runs only on Android: this is the static prediction; validate on a phone with --device",)
        ), int8
    compiled, notes = None, []
    if shutil.which(edgetpu.COMPILER):
        report, compiled = edgetpu.compile_model(model, scratch)
        section = replace(section, compiler=replace(report, comparison=edgetpu.compare(prediction, report)))
    else:
        notes.append(
            f"{edgetpu.COMPILER} is not on PATH: the model was not compiled; the Edge TPU figures are the static prediction"
        )
    why_not = edgetpu.library_loads()
    if why_not is not None:
        notes.append(
            f"{edgetpu.LIBRARY} cannot be loaded ({why_not}): nothing ran on an Edge TPU; latency and outputs are from "
            f"{int8.delegate} on this CPU"
        )
    elif compiled is not None:
        int8 = LiteRTRunner(
            compiled, threads=options.threads, delegate_library=edgetpu.LIBRARY, delegate_options=options.delegate_options
        )
        section = replace(section, ran_on_target=True)
    else:
        notes.append(f"{edgetpu.LIBRARY} loads but there is no compiled model to run on it")
    return replace(section, notes=tuple(notes)), int8


def _delegate_check(target: TargetCheck, latency: Latency) -> DelegateCheck:
    """XNNPACK: the nodes the real delegate took against the prediction."""
    predicted_kept, predicted_delegated = target.predicted_kept()
    actual_kept = latency.cpu_fallback_ops
    return DelegateCheck(
        predicted_delegated,
        latency.delegated_nodes,
        predicted_kept,
        actual_kept,
        predicted_kept == actual_kept and predicted_delegated == latency.delegated_nodes,
    )


@dataclass(frozen=True)
class Sweep:
    """What one pass over the validation samples gave: the scores, the inputs' observed ranges,
    the first sample (for the latency runs) and, for --device runs, the spilled outputs."""

    samples: Any
    scorer: Scorer
    roles: list[Role]
    first: list
    low: list[float]
    high: list[float]
    kept: Spill | None


def _samples(int8: LiteRTRunner, data, options: ValidateOptions, pre: Preprocessing) -> SampleSource:
    metadata = read_metadata(int8.model.data)
    return open_samples(data, _specs(int8), pre, options.limit, options.seed, metadata.labels if metadata is not None else None)


def _sweep(
    int8: LiteRTRunner,
    ref: LiteRTRunner,
    data,
    options: ValidateOptions,
    pre: Preprocessing,
    to_reference: list[int],
    output_order: Sequence[int],
    scratch: Path,
    keep: bool = False,
    int8_first: list[np.ndarray] | None = None,
) -> Sweep:
    """The sample loop: INT8 and float on every sample, scored per output; one audit of the inputs.
    `int8_first`: the INT8 outputs, run while the reference was converted."""
    specs = _specs(int8)
    samples = _samples(int8, data, options, pre)
    labels = samples.labels
    roles = decide_roles(int8.output_facts(), options.output_roles, len(samples.class_names) if samples.class_names else None)
    _check_gates_have_classes(options.gates.limits(), roles)
    headline = _headline(roles, [p.shape for p in int8.output_ports], len(samples.class_names or []))
    scorer = Scorer(
        [p.label for p in int8.output_ports],
        [r.role for r in roles],
        options.top_k,
        headline,
        options.score_threshold,
        {i: r.blank for i, r in enumerate(roles) if r.blank is not None},
    )
    kept = (
        Spill(scratch, len(samples)) if options.devices or options.accelerators or keep else None
    )  # for --device runs: on disk, not in memory
    first = None
    low, high = [float("inf")] * len(specs), [float("-inf")] * len(specs)
    if options.cluster and int8_first is None:
        from edgeq.validation.cluster import paired_runs_on

        runs = paired_runs_on(options.cluster, samples, int8, ref, to_reference, output_order, len(samples))
    else:
        runs = paired_runs(samples, int8, ref, to_reference, output_order, options.jobs, int8_first)
    for i, (feeds, model_feeds, raw, want) in enumerate(runs):
        first = first or feeds
        for k, array in enumerate(feeds):
            low[k], high[k] = min(low[k], float(array.min())), max(high[k], float(array.max()))
        scorer.add(want, int8.dequantize_outputs(raw), labels[i] if labels is not None else None)
        if kept is not None:
            kept.add("inputs", i, model_feeds)
            kept.add("int8_raw", i, raw)
            kept.add("float", i, want)
        report("comparing with float", i + 1, len(samples))
    if first is None:
        raise DataError(f"{samples.describe()}: no samples to validate with")
    return Sweep(samples, scorer, roles, first, low, high, kept)


def _latency(int8: LiteRTRunner, ref: LiteRTRunner, first: list, first_reference: list, options: ValidateOptions) -> Latency:
    int8_latency = int8.time(first, options.warmup, options.runs)
    float_latency = ref.time(first_reference, options.warmup, options.runs)
    return Latency(
        delegate=int8.delegate,
        threads=options.threads,
        warmup=options.warmup,
        runs=options.runs,
        int8_ms=Percentiles.of(int8_latency),
        float_ms=Percentiles.of(float_latency),
        speedup=speedup(float_latency.p50, int8_latency.p50),
        within_noise=within_noise(int8_latency, float_latency),
        delegated_nodes=int8.delegated_nodes,
        total_nodes=int8.total_nodes,
        cpu_fallback_ops=int8.kept_ops,
        partitions=int8.partitions,
        float_delegated_nodes=ref.delegated_nodes,
        float_total_nodes=ref.total_nodes,
    )


def _compare(
    model: Path,
    reference: Path,
    data,
    options: ValidateOptions,
    int8: LiteRTRunner,
    manifest: Manifest | None,
    resolved: Resolved,
    float_path: Path,
    float_note: str,
    scratch: Path,
    accelerated: list[CompiledModelRunner],
    int8_first: list[np.ndarray] | None,
) -> ValidationResult:
    ref = LiteRTRunner(float_path, options.delegate, options.threads, options.delegate_library, options.delegate_options)
    same_source = _same_source(manifest, reference)
    inputs = pair("inputs", int8.input_ports, ref.input_ports, same_source)
    outputs = pair("outputs", int8.output_ports, ref.output_ports, same_source)
    to_reference = [0] * len(inputs.order)  # the reference's feeds in its own input order
    for i, j in enumerate(inputs.order):
        to_reference[j] = i
    pre = resolved.preprocessing
    sweep = _sweep(int8, ref, data, options, pre, to_reference, outputs.order, scratch, bool(accelerated), int8_first)
    first_reference = [sweep.first[k] for k in to_reference]
    latency = _latency(int8, ref, sweep.first, first_reference, options)
    kind = summarize(int8.model).precision
    scores = sweep.scorer.result()
    devices = (
        _on_devices(model, float_path, int8, ref, sweep, first_reference, options, accelerated)
        if options.devices or accelerated
        else []
    )
    devices = [
        replace(d, gates=tuple(g), passed=None if d.pending else passed(g))
        for d in devices
        for g in [evaluate(options.gates.limits(), d.figures)]
    ]
    devices, accelerator_warnings = _judged(devices, scores.worst_sqnr_db, ref, first_reference, kind, options)
    float_bytes = size_of(float_path)
    per_layer = _per_layer(model, reference, data, _specs(int8), options, manifest, pre) if options.per_layer else None
    streaming = _streaming(int8, ref, data, options, pre, to_reference, outputs.order) if options.feedback else None
    return ValidationResult(
        model=str(model),
        reference=str(reference),
        passed=False,
        model_kind=kind,
        edgeq_version=__version__,
        reference_tflite=float_note,
        data=sweep.samples.describe(),
        pairing=PairedBy(inputs.method, outputs.method),
        preprocessing=PreprocessingUsed(pre, resolved.origins, not fed_as_arrays(data)),
        size=Size(float_bytes, int8.model.size, round(int8.model.size / float_bytes, 4)),
        accuracy=scores.accuracy,
        outputs=tuple(
            replace(o, role_from=r.evidence, reference_name=ref.output_ports[j].label)
            for o, r, j in zip(scores.outputs, sweep.roles, outputs.order)
        ),
        worst_sqnr_db=scores.worst_sqnr_db,
        worst_slice_sqnr_db=scores.worst_slice_sqnr_db,
        latency=latency,
        warnings=resolved.conflicts
        + tuple(_warnings(options, int8, latency, kind, manifest, sweep, per_layer))
        + accelerator_warnings
        + tuple(f"not measured on {d.error}" for d in devices if d.error)
        + tuple(
            f"pending on {d.name}: AI Hub jobs {', '.join(d.pending)}; collect them with edgeq validate --resume"
            for d in devices
            if d.pending
        ),
        conversion_search=manifest.search if manifest else None,
        per_layer=per_layer,
        streaming=streaming,
        devices=tuple(devices),
    )


def _warnings(
    options: ValidateOptions,
    int8: LiteRTRunner,
    latency: Latency,
    kind: str,
    manifest: Manifest | None,
    sweep: Sweep,
    per_layer: PerLayer | None,
) -> list[str]:
    warnings: list[str] = []
    if per_layer is not None and per_layer.matches_model is False:
        warnings.append(
            f"--per-layer rebuilt the model from its manifest's recipe, and its op census differs from "
            f"{int8.path.name}: the ranking is of that rebuilt model (a manifest of an older edgeq, "
            "or a file changed after conversion)"
        )
    if options.delegate == "xnnpack" and not options.delegate_library and int8.delegated_nodes == 0:
        warnings.append(
            f"XNNPACK was asked for but took none of the {kind} model's nodes: its latency is that of LiteRT's built-in "
            f"kernels (measured {latency.speedup or 0:.2f}x the float model's speed)"
        )
    slower = _slower(latency, kind, options)
    if slower:
        warnings.append(slower)
    observed = manifest.calibration.observed_range if manifest and manifest.calibration else {}
    return warnings + _range_warnings(observed, _specs(int8), sweep.low, sweep.high)


def _streaming(
    int8: LiteRTRunner,
    ref: LiteRTRunner,
    data,
    options: ValidateOptions,
    pre: Preprocessing,
    to_reference: list[int],
    output_order: Sequence[int],
) -> Streaming:
    """The samples in the data's order (the first --limit of them), run as sequences with --feedback."""
    source = open_samples(data, _specs(int8), pre, None, options.seed)
    return streamed(
        int8,
        ref,
        source.in_data_order()[: options.limit],
        getattr(source, "starts", set()),
        options.feedback,
        to_reference,
        output_order,
    )


def _judged(
    devices: list[DeviceResult], local_worst_db: float | None, ref: LiteRTRunner, first: list, kind: str, options: ValidateOptions
) -> tuple[list[DeviceResult], tuple[str, ...]]:
    """Each accelerator run's notes, warnings and --require-accelerated gate."""
    judged, warnings = [], []
    for device in devices:
        device, said = accelerators.judged(
            device, local_worst_db, ref, first, kind in ("int8", "int16x8"), options.require_accelerated
        )
        judged.append(device)
        warnings += said
    return judged, tuple(warnings)


def _on_devices(
    model: Path,
    float_path: Path,
    int8: LiteRTRunner,
    ref: LiteRTRunner,
    sweep: Sweep,
    first: list,
    options: ValidateOptions,
    accelerated: list[CompiledModelRunner],
) -> list[DeviceResult]:
    from edgeq.run.devices.profiles import load_profile
    from edgeq.run.runner import runner_for
    from edgeq.validation.devices import LocalRun, validate_on_devices

    kept, scorer = sweep.kept, sweep.scorer
    local = LocalRun(
        kept.stacked("inputs"),
        kept.stacked("int8_raw"),
        kept.stacked("float"),
        ref.quantize_inputs(first),
        sweep.samples.labels,
        scorer.roles,
        scorer.headline,
        options.score_threshold,
        scorer.blanks,
    )
    runners = [runner_for(load_profile(d)) for d in options.devices] + accelerated
    devices = validate_on_devices(
        runners,
        model,
        float_path,
        int8,
        ref,
        local,
        options.warmup,
        options.runs,
        options.top_k,
        options.pending_store is not None,
    )
    if options.pending_store and any(d.pending for d in devices):  # what scoring them later needs, beside the results
        from edgeq.validation.pending import save

        save(Path(options.pending_store), local, options.top_k, [r.profile for r, d in zip(runners, devices) if d.pending])  # type: ignore[attr-defined]
    return devices


SOURCE_CHECK_SAMPLES = 64


def _source_check(
    reference: Path, float_path: Path, data, options: ValidateOptions, pre: Preprocessing, manifest: Manifest | None
) -> SourceCheck:
    """The float .tflite against PyTorch itself, or the ONNX model in ONNX Runtime, on the first
    samples: the conversion's own error."""
    from edgeq.frameworks.onnx import run_onnx
    from edgeq.frameworks.pytorch import run_program
    from edgeq.host.isolation import run_isolated

    ref = LiteRTRunner(float_path, options.delegate, options.threads)
    specs = [InputSpec(p.label, p.shape) for p in ref.input_ports]
    samples = list(open_samples(data, specs, pre, min(options.limit or SOURCE_CHECK_SAMPLES, SOURCE_CHECK_SAMPLES), options.seed))
    onnx = reference.suffix.lower() == ONNX_SUFFIX
    runtime = "ONNX Runtime" if onnx else "PyTorch"
    if onnx:
        torch_outputs = run_isolated(quietly, run_onnx, reference, samples, _channels_last(manifest), what=runtime)
    else:
        torch_outputs = run_isolated(
            quietly, run_program, reference, samples, _channels_last(manifest), options.trust_model, what=runtime
        )
    names = [p.label for p in ref.output_ports]
    scorer = Scorer(names, ["values"] * len(names))
    for sample, want in zip(samples, torch_outputs):
        scorer.add([w.reshape(p.shape) for w, p in zip(want, ref.output_ports)], ref.run(sample), None)
    scores = scorer.result()
    return SourceCheck(f"{runtime} ({reference.name})", len(samples), scores.outputs, scores.worst_sqnr_db)


def _channels_last(manifest: Manifest | None) -> bool:
    return bool(manifest and manifest.recipe.channels_last)


def _per_layer(
    model: Path,
    reference: Path,
    data,
    specs: list[InputSpec],
    options: ValidateOptions,
    manifest: Manifest | None,
    pre: Preprocessing,
) -> PerLayer:
    """The debugger's samples go through the preprocessing the main sweep resolved (flags, manifest,
    or the model's metadata), so both judge the same inputs."""
    from edgeq.analysis.per_layer import per_layer_errors

    samples = list(open_samples(data, specs, pre, options.per_layer_samples, options.seed))
    return per_layer_errors(
        model, reference, samples, specs, options.signature, options.custom_objects, options.trust_model, manifest
    )


def _range_warnings(
    seen: dict[str, tuple[float, float]], specs: list[InputSpec], low: list[float], high: list[float]
) -> list[str]:
    """Validation data on another scale than the calibration data (e.g. 0..255 against 0..1)."""
    found = []
    for spec, lo, hi in zip(specs, low, high):
        ref = seen.get(spec.name)
        if not ref or len(ref) != 2:
            continue
        span = max(ref[1] - ref[0], 1e-6)
        if lo < ref[0] - 0.5 * span or hi > ref[1] + 0.5 * span:
            found.append(
                f"input '{spec.name}' spans [{lo:.4g}, {hi:.4g}] here but [{ref[0]:.4g}, {ref[1]:.4g}] in the "
                "calibration data: check --range/--mean/--std"
            )
    return found


def _slower(latency: Latency, kind: str, options: ValidateOptions) -> str | None:
    """Why the quantized model ran slower than float on this delegate, on this machine's CPU, and what may help."""
    remedies = []
    if kind == "int16x8":
        remedies.append("int16x8 runs on LiteRT's built-in kernels only; int8 with a few float layers may be faster")
    elif latency.cpu_fallback_ops:
        remedies.append(
            "reconvert with edgeq convert ... --optimize latency, which times keeping those op types in "
            "float against float and writes the fastest model that keeps your accuracy budget"
        )
    where = latency.delegate if options.delegate_library else f"{latency.delegate} on this machine ({this_cpu().describe()})"
    return slower_than_float(
        kind, latency.speedup, bool(latency.within_noise), where, latency.cpu_fallback_ops, latency.partitions, remedies
    )


def _headline(roles: list[Role], shapes: list[tuple[int, ...]], class_count: int) -> int | None:
    """The classes output the headline accuracy is about: the one with as many values as the
    labelled classes, else the first."""
    classes = [i for i, r in enumerate(roles) if r.role == "classes"]
    counted = [i for i in classes if math.prod(shapes[i]) == class_count]
    return (counted or classes or [None])[0]


def _check_gates_have_classes(gates: dict[str, float], roles: list[Role]) -> None:
    needing = [
        g
        for g in ("max_drop", "min_agreement", "max_regression_pts")
        if g in gates
        if not (g == "min_agreement" and any(r.role == "sequence" for r in roles))
    ]
    if needing and not any(r.role == "classes" for r in roles):
        evidence = "; ".join(f"{r.evidence}" for r in roles[:3])
        raise UsageError(
            f"--{needing[0].replace('_', '-')} judges a classes output, and this model has none ({evidence}); "
            "gate with --min-sqnr/--min-slice-sqnr, or name one with --output-role KEY=classes"
        )


def _specs(runner: LiteRTRunner) -> list[InputSpec]:
    """The model's inputs, named by signature key where it has one (the keys of a .npz)."""
    return [InputSpec(p.label, p.shape) for p in runner.input_ports]


def _same_source(manifest: Manifest | None, reference: Path) -> bool:
    """Whether `reference` is the very file the model's manifest says it was converted from."""
    if manifest is None or not manifest.source.sha256 or not reference.exists():
        return False
    try:
        return manifest.source.sha256 == sha256_of(reference)
    except OSError:
        return False


def preprocessing_for(manifest: Manifest | None, options: ValidateOptions, int8: LiteRTRunner) -> Resolved:
    """The flags given to validate over the manifest's preprocessing, else over the normalization
    the model's own metadata states (edgeq.data.normalization.resolve, as convert does)."""
    if manifest is not None:
        return resolve(options.preprocessing, manifest.recipe.preprocessing)
    stated = stated_normalization(read_metadata(int8.model.data))
    return resolve(options.preprocessing, stated=Statement(stated, "model metadata") if stated is not None else None)


def signature_of(recipe: Recipe | None, asked: str) -> str:
    """The signature the model was converted from (its manifest's recipe), else the one asked for."""
    return recipe.signatures[0] if recipe is not None and recipe.signatures != ("all",) else asked


def _float_tflite(
    reference: Path,
    int8: LiteRTRunner,
    options: ValidateOptions,
    manifest: Manifest | None,
    scratch: Path,
    data,
    pre: Preprocessing,
) -> tuple[Path, str, list[np.ndarray] | None]:
    """The float model as a .tflite, so both run in the same runtime on the same delegate, and what
    was described of it; with the INT8 model's raw outputs on every sample when the reference had to
    be converted, since those ran meanwhile.

    A Keras/SavedModel or PyTorch reference is converted to float TFLite in a child process
    (TensorFlow is never imported here), while the INT8 model runs on the samples.
    """
    if not reference.exists():
        raise ModelError(f"{reference}: no such reference model; pass the float .tflite, .keras/.h5 or SavedModel")
    if reference.suffix == ".tflite":
        return reference, "given", None
    cache, key = None, None
    if options.cache:
        from edgeq.core.cache import Cache, cache_key

        cache = Cache.open()
        key = cache_key(
            {
                "reference": sha256_of(reference),
                "suffix": reference.suffix.lower(),
                "signature": options.signature,
                "inputs": [(p.label, p.shape) for p in int8.input_ports],
                "channels_last": _channels_last(manifest),
                "custom_objects": sha256_of(Path(options.custom_objects)) if options.custom_objects else None,
                "trust_model": options.trust_model,
            }
        )
        entry = cache.find("reference", key)
        if entry is not None:
            path = scratch / (reference.stem + "_float.tflite")
            path.write_bytes(entry.blobs["tflite"])
            return path, entry.header["described"] + " (kept in the conversion cache by an earlier run)", None
    if options.cluster:  # the cluster runs both sides: nothing to run here while the reference converts
        path, note = _converted_reference(reference, int8, options, manifest, scratch)
        if cache is not None:
            cache.store("reference", key, {"described": note}, {"tflite": path.read_bytes()})
        return path, note, None
    with ThreadPoolExecutor(1) as pool:  # the thread waits on the converting child; this process runs the INT8 side
        converting = pool.submit(_converted_reference, reference, int8, options, manifest, scratch)
        samples = _samples(int8, data, options, pre)
        spill = Spill(scratch, len(samples))
        int8_runs(samples, int8, max(1, options.jobs - 1), spill)  # one core stays the converting child's: it is the longer
        path, note = converting.result()
    if cache is not None:
        cache.store("reference", key, {"described": note}, {"tflite": path.read_bytes()})
    return path, note, spill.stacked("int8_first") if spill.columns else None


def _converted_reference(
    reference: Path, int8: LiteRTRunner, options: ValidateOptions, manifest: Manifest | None, scratch: Path
) -> tuple[Path, str]:
    if reference.suffix.lower() == ONNX_SUFFIX:
        from edgeq.frameworks.onnx import require_onnx, to_float_tflite, versions
        from edgeq.host.isolation import run_isolated

        require_onnx(f"an ONNX reference ({reference.name})")
        path = scratch / (reference.stem + "_float.tflite")
        path.write_bytes(
            run_isolated(quietly, to_float_tflite, reference, _channels_last(manifest), what="onnx2torch and litert-torch")
        )
        return path, f"converted from {reference.name} to float TFLite by onnx2torch and litert-torch ({versions()})"
    if reference.suffix.lower() == PT2_SUFFIX:
        from edgeq.frameworks.pytorch import require_torch, to_float_tflite, versions
        from edgeq.host.isolation import run_isolated

        require_torch(f"a PyTorch reference ({reference.name})")
        path = scratch / (reference.stem + "_float.tflite")
        path.write_bytes(
            run_isolated(quietly, to_float_tflite, reference, _channels_last(manifest), options.trust_model, what="litert-torch")
        )
        return path, f"converted from {reference.name} to float TFLite by litert-torch ({versions()})"
    from edgeq.frameworks.sources import KerasCode, require_tensorflow
    from edgeq.host.isolation import run_isolated

    require_tensorflow(f"a {'SavedModel' if reference.is_dir() else 'Keras'} reference ({reference.name})")
    shapes = [f"{p.label}=" + ",".join(map(str, p.shape)) for p in int8.input_ports]
    signature = signature_of(manifest.recipe if manifest else None, options.signature)
    path = scratch / (reference.stem + "_float.tflite")
    path.write_bytes(
        run_isolated(
            quietly,
            float_tflite_of,
            reference,
            signature,
            shapes if len(shapes) > 1 else [shapes[0].split("=", 1)[1]],
            KerasCode(options.custom_objects, options.trust_model),
        )
    )
    return path, f"converted from {reference.name} to float TFLite"


def float_tflite_of(reference: Path, signature: str, shapes: list[str], code) -> bytes:
    """The plain converter's float .tflite of a Keras model or SavedModel."""
    from edgeq.frameworks.sources import load_source

    return load_source(reference, (signature,), shapes, code).make_converter().convert()


def quietly(function, *args):
    """`function(*args)` with the chatter of TensorFlow, torch or litert-torch (stderr, and stdout,
    where litert-torch prints its progress) captured: run in the converting child, so the parent's
    own progress goes on meanwhile."""
    with captured_native_stderr(stdout=True):
        return function(*args)
