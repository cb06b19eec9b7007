"""Validation on this machine's accelerators through LiteRT's CompiledModel: the runners for
--accelerator (and a compiled file's own NPU), what each run used (by evidence), the fp16 trouble
of a GPU run named, and the --require-accelerated gate."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeq.analysis.culprit import Culprit
from edgeq.core.errors import EdgeqError, UsageError
from edgeq.records.manifest import Manifest
from edgeq.run.compiled_model import Accelerator, CompiledModelRunner
from edgeq.run.litert import LiteRTRunner
from edgeq.run.npu import VENDORS
from edgeq.scoring.gates import GateResult
from edgeq.tflite.dispatch import Dispatch
from edgeq.validation.results import DeviceResult

FP16_MAX = 65504.0
BROKEN_VS_CPU_DB = 20.0  # an accelerator output this far from the CPU run's is no rounding difference


def compiled_source(model: Path, dispatch: Dispatch, manifest: Manifest | None) -> Path:
    """The INT8 file an NPU-compiled `model` was compiled from (its manifest says which, by sha256):
    the CPU run validate compares the NPU's with. DISPATCH_OPs run only through the vendor's dispatch."""
    record = manifest.npu if manifest is not None else None
    if record is None:
        raise UsageError(
            f"{model}: compiled for an NPU ({dispatch.partitions} DISPATCH_OP partition(s)) with no manifest naming "
            "the INT8 file it came from; validate that INT8 file with --accelerator npu:VENDOR instead"
        )
    source = model.parent / record.source
    if not source.is_file() or hashlib.sha256(source.read_bytes()).hexdigest() != record.source_sha256:
        raise UsageError(
            f"{model}: its manifest names {record.source} as the INT8 file it was compiled from, and "
            f"{source} {'is not that file (sha256 differs)' if source.is_file() else 'does not exist'}; "
            "put it back beside the compiled file, or compile again"
        )
    return source


def runners(
    asked: tuple[str, ...], gpu_precision: str, threads: int, dispatch: Dispatch | None, compiled: Path | None, source: Path
) -> list[CompiledModelRunner]:
    """One runner per --accelerator; a compiled file adds its own NPU (from its stamp) and runs there."""
    accelerators = [Accelerator.parse(a, gpu_precision) for a in asked]
    if compiled is not None and dispatch is not None and not any(a.kind == "npu" for a in accelerators):
        accelerators.append(
            Accelerator.parse(
                f"npu:{stamp_vendor(dispatch)}" + (f":{dispatch.stamp.soc}" if dispatch.stamp and dispatch.stamp.soc else "")
            )
        )
    return [
        CompiledModelRunner(a, threads, (source, compiled) if compiled is not None and a.kind == "npu" else None)
        for a in accelerators
    ]


def stamp_vendor(dispatch: Dispatch) -> str:
    """edgeq's name of the vendor a compiled file's stamp names (IntelOpenVINO -> intel, Google_Tensor -> google-tensor)."""
    letters = "".join(c for c in (dispatch.stamp.vendor if dispatch.stamp else "").lower() if c.isalpha())
    return next((name for name in VENDORS if letters.startswith(name.replace("-", ""))), "intel")


def judged(
    device: DeviceResult,
    local_worst_db: float | None,
    reference: LiteRTRunner,
    first: list[np.ndarray],
    int8_on_gpu: bool,
    require_accelerated: bool,
    subject: LiteRTRunner | None = None,
    subject_first: list[np.ndarray] | None = None,
) -> tuple[DeviceResult, list[str]]:
    """An accelerator run's notes and gate: fp16 trouble named, an INT8 file on the GPU said to run
    dequantized, a run that did not happen where asked said in words, and --require-accelerated."""
    use = device.accelerator
    if use is None:
        return device, []
    if device.transport == "aihub":  # a phone's own runtime: its profile says where each layer ran, nothing here to add
        if require_accelerated:
            gate = accelerated_gate(device)
            device = replace(device, gates=device.gates + (gate,), passed=bool(device.passed is not False and gate.passed))
        return device, []
    if use.ran_on != use.asked.split(":")[0]:  # named by what ran, never as the accelerator asked for
        device = replace(device, name=f"{use.ran_on} (instead of {use.asked})")
    warnings = [f"{device.name}: {use.note}"] if use.note and use.ran_on == "cpu" else []
    notes = [use.note] if use.note else []
    if use.asked == "gpu" and use.ran_on == "gpu":
        if int8_on_gpu:
            notes.append(
                "an INT8 model runs dequantized on LiteRT's GPU accelerator: its arithmetic is the GPU's float "
                f"({use.precision}), re-quantized at the outputs, not the int8 kernels of the CPU or an NPU"
            )
        trouble = gpu_trouble(
            device, local_worst_db, reference, first, use.precision or "fp16", int8_on_gpu, subject, subject_first
        )
        if trouble:
            warnings.append(trouble)
            notes.append(trouble)
    if require_accelerated:
        gate = accelerated_gate(device)
        device = replace(device, gates=device.gates + (gate,), passed=bool(device.passed is not False and gate.passed))
    return replace(device, note="; ".join([device.note] * bool(device.note) + notes) or None), warnings


def accelerated_gate(device: DeviceResult) -> GateResult:
    use = device.accelerator
    if use.ran_on != use.asked.split(":")[0]:
        return GateResult(
            "require_accelerated",
            "every op on the accelerator",
            0,
            use.ops_on_cpu,
            "failed",
            False,
            f"{use.asked} was asked for and the work ran on the {use.ran_on}",
        )
    named = ", ".join(f"{k} x{v}" for k, v in use.cpu_op_types.items())
    ok = use.accelerated
    return GateResult(
        "require_accelerated",
        "every op on the accelerator",
        0,
        use.ops_on_cpu or 0,
        "passed" if ok else "failed",
        ok,
        None if ok else f"{use.ops_on_cpu} op(s) ran on the CPU" + (f" ({named})" if named else ""),
    )


def gpu_trouble(
    device: DeviceResult,
    local_worst_db: float | None,
    reference: LiteRTRunner,
    first: list[np.ndarray],
    precision: str,
    int8: bool = False,
    subject: LiteRTRunner | None = None,
    subject_first: list[np.ndarray] | None = None,
) -> str | None:
    """ "Likely broken on the GPU" where an output is not finite or far from the CPU run's, and why:
    a float-model tensor past fp16's range; else, run again at fp32 (`subject`, the file validated,
    on `subject_first`, its first sample): fp16 rounding where fp32 is close, else the first op the
    GPU computes wrongly (edgeq.analysis.culprit), not a precision issue."""
    exact = device.vs_local
    broken = [o for o in device.outputs if o.sqnr_db is None and not o.exact and o.max_abs_error is None]  # inf or NaN
    far = [m for m in (exact.outputs if exact else ()) if m.mismatches and (m.sqnr_db is None or m.sqnr_db < BROKEN_VS_CPU_DB)]
    if (
        not broken
        and not far
        and not (local_worst_db and device.worst_sqnr_db is not None and device.worst_sqnr_db < local_worst_db - BROKEN_VS_CPU_DB)
    ):
        return None
    names = ", ".join(sorted({o.name for o in broken} | {m.name for m in far})) or "its outputs"
    over = fp16_overflow(reference, first) if precision == "fp16" else None
    culprit, at_fp32 = None, None
    if over is None and subject is not None and subject_first is not None:
        try:
            culprit, at_fp32 = _culprit(subject, subject_first, precision)
        except EdgeqError as exc:  # a cut model the accelerator or LiteRT refuses: the cause stays unnamed, and why
            at_fp32 = f"; the search for the op at fault stopped: {exc}"
    if culprit is not None:
        return (
            f"{device.name}: {names} likely broken on the GPU ({'not finite' if broken else 'far from the CPU run'}): not a "
            f"precision issue: at fp32 {culprit.describe()} (found by bisection, {culprit.runs} cut models run on the GPU "
            f"and the CPU); remedy: keep that {culprit.op_type} off the GPU (run the model on the CPU, or build it with "
            f"ops the GPU computes right in place of the {culprit.op_type})"
        )
    why = (
        f"the float model's tensor '{over[0]}' reaches {over[1]:.3g}, past fp16's largest value {FP16_MAX:.0f}"
        if over
        else f"fp16 rounding (no tensor of the float model passes 65504 on the first sample{at_fp32 or ''})"
        if precision == "fp16"
        else "not fp16 (it ran in fp32), and no single op differs alone"
    )
    if int8 and not over:
        why += (
            "; the GPU runs an INT8 model dequantized, in float from end to end, while the CPU's int8 kernels "
            "requantize at every layer, so the two drift apart"
        )
    remedies = (
        (["--gpu-precision fp32 (GpuOptions(enforce_f32=True) in the app)"] if precision == "fp16" else [])
        + (["ship the float model to the GPU (a phone's GPU runs float models natively)"] if int8 else [])
        + ["keep that part of the model off the GPU"]
    )
    return (
        f"{device.name}: {names} likely broken on the GPU ({'not finite' if broken else 'far from the CPU run'}): {why}; "
        f"remedies: {', or '.join(remedies)}"
    )


def _culprit(subject: LiteRTRunner, first: list[np.ndarray], precision: str) -> tuple[Culprit | None, str | None]:
    """The op the GPU computes wrongly at fp32, where the whole model is still far from the CPU at
    fp32 (else None, and what fp32 gave: fp16 is the cause)."""
    from edgeq.analysis.culprit import first_wrong_op, worst_output_db

    sample = subject.quantize_inputs(first)
    fp32 = Accelerator.parse("gpu", "fp32")
    if precision == "fp16":
        worst = worst_output_db(subject.path, sample, fp32)
        if worst is not None and worst >= BROKEN_VS_CPU_DB:
            return None, f"; at fp32 the GPU run is {worst:.1f} dB from the CPU's"
    return first_wrong_op(subject.path, sample, fp32, BROKEN_VS_CPU_DB), None


def fp16_overflow(reference: LiteRTRunner, first: list[np.ndarray]) -> tuple[str, float] | None:
    """The float model's intermediate tensor with the largest magnitude, where it is past fp16's range."""
    name, peak = reference.largest_tensor(first)
    return (name, peak) if peak > FP16_MAX else None
