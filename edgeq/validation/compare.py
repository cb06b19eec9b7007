"""edgeq validate: run the INT8 model where it will run and compare it with the float model.

The result is a ValidationResult (typed records; its JSON is the contract with the reporter), built
here and rendered elsewhere. Figures that do not apply are None, never missing.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeq.core.errors import DataError
from edgeq.core.fileio import size_of
from edgeq.core.timing import phase
from edgeq.core.version import __version__
from edgeq.data.normalization import Resolved
from edgeq.data.samples import fed_as_arrays
from edgeq.frameworks.onnx import ONNX_SUFFIX
from edgeq.frameworks.pytorch import PT2_SUFFIX
from edgeq.host.machine import this_cpu
from edgeq.records.manifest import Manifest, PerLayer, PreprocessingUsed
from edgeq.records.manifest_file import Described
from edgeq.run.compiled_model import CompiledModelRunner
from edgeq.run.litert import LiteRTRunner
from edgeq.run.pairing import pair
from edgeq.run.protocol import FleetRunner
from edgeq.scoring.gates import evaluate, passed
from edgeq.scoring.speed import slower_than_float
from edgeq.tflite.dispatch import dispatch_of
from edgeq.tflite.model import read_tflite
from edgeq.tflite.summary import summarize
from edgeq.validation import accelerators
from edgeq.validation.accelerators import compiled_source
from edgeq.validation.checks import check_source, check_target, delegate_check_of, per_layer_of
from edgeq.validation.options import ValidateOptions
from edgeq.validation.reference import float_reference, preprocessing_for, range_warnings, same_source
from edgeq.validation.results import (
    Baseline,
    DeviceResult,
    Latency,
    PairedBy,
    Size,
    ValidationResult,
)
from edgeq.validation.sweep import Sweep, run_streaming, run_sweep, specs_of, time_latency

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
        target, int8 = check_target(model, int8, options, Path(scratch)) if options.target else (None, int8)
        with phase("float reference"):
            float_path, float_note, int8_first = float_reference(
                reference, int8, options, manifest, Path(scratch), data, pre.preprocessing
            )
        result = _compare(
            model, reference, data, options, int8, manifest, pre, float_path, float_note, Path(scratch), accelerated, int8_first
        )
        if reference.suffix.lower() in (PT2_SUFFIX, ONNX_SUFFIX):
            with phase("source check"):
                source_check = check_source(reference, float_path, data, options, pre.preprocessing, manifest)
            result = replace(result, source_check=source_check)
    result = replace(result.with_warnings(*notes), model=str(compiled or model))
    if previous is not None:
        result = replace(
            result, baseline=Baseline.compare(str(options.baseline), previous, result.accuracy, result.latency, result.size)
        )
    if target is not None:
        if target.delegate_check is not None:
            target = replace(target, delegate_check=delegate_check_of(target, result.latency))
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
    one_source = same_source(manifest, reference)
    inputs = pair("inputs", int8.input_ports, ref.input_ports, one_source)
    outputs = pair("outputs", int8.output_ports, ref.output_ports, one_source)
    to_reference = [0] * len(inputs.order)  # the reference's feeds in its own input order
    for i, j in enumerate(inputs.order):
        to_reference[j] = i
    pre = resolved.preprocessing
    with phase("comparison with float"):
        sweep = run_sweep(int8, ref, data, options, pre, to_reference, outputs.order, scratch, bool(accelerated), int8_first)
    first_reference = [sweep.first[k] for k in to_reference]
    with phase("latency"):
        latency = time_latency(int8, ref, sweep.first, first_reference, options)
    kind = summarize(int8.model).precision
    scores = sweep.scorer.result()
    with phase("devices and accelerators"):
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
    devices, accelerator_warnings = _judged(devices, scores.worst_sqnr_db, ref, first_reference, kind, options, int8, sweep.first)
    float_bytes = size_of(float_path)
    with phase("per-layer"):
        per_layer = per_layer_of(model, reference, data, specs_of(int8), options, manifest, pre) if options.per_layer else None
    streaming = run_streaming(int8, ref, data, options, pre, to_reference, outputs.order) if options.feedback else None
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
    return warnings + range_warnings(observed, specs_of(int8), sweep.low, sweep.high)


def _judged(
    devices: list[DeviceResult],
    local_worst_db: float | None,
    ref: LiteRTRunner,
    first: list,
    kind: str,
    options: ValidateOptions,
    subject: LiteRTRunner,
    subject_first: list,
) -> tuple[list[DeviceResult], tuple[str, ...]]:
    """Each accelerator run's notes, warnings and --require-accelerated gate; `subject`: the file validated."""
    judged, warnings = [], []
    for device in devices:
        device, said = accelerators.judged(
            device, local_worst_db, ref, first, kind in ("int8", "int16x8"), options.require_accelerated, subject, subject_first
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

        fleet = [r.profile for r, d in zip(runners, devices) if d.pending and isinstance(r, FleetRunner)]
        save(Path(options.pending_store), local, options.top_k, fleet)
    return devices


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
