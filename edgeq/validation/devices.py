"""Validation on devices: the INT8 model runs on each device's runner (concurrently), the float
reference stays on this machine, and every device's outputs are scored like a local run and
compared with the local INT8 outputs bit for bit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeq.run.devices.transports import DeviceError
from edgeq.run.litert import LiteRTRunner
from edgeq.run.protocol import FleetRunner, Measurement, Runner
from edgeq.scoring.metrics import OutputErrors, OutputScore, Scorer
from edgeq.scoring.speed import speedup
from edgeq.validation.results import Accuracy, BitExactness, Capabilities, DeviceResult, Latency, OutputMatch

LATENCY_ONLY = "latency only: no Python on the device, so no outputs to score (set python in the profile for accuracy)"


@dataclass
class LocalRun:
    """What the local validation kept for the devices: stacked inputs (model dtypes), raw local
    INT8 outputs, float reference outputs, labels."""

    inputs: list[np.ndarray]
    int8_raw: list[np.ndarray]
    float_outputs: list[np.ndarray]
    float_feeds_first: list[np.ndarray]
    labels: list[int] | None
    roles: list[str]
    headline: int | None
    threshold: float
    blanks: dict[int, int]  # CTC sequence outputs: their blank class


def validate_on_devices(
    runners: list[Runner],
    model: Path,
    float_model: Path,
    int8: LiteRTRunner,
    float_runner: LiteRTRunner,
    local: LocalRun,
    warmup: int,
    runs: int,
    top_k: int,
    no_wait: bool = False,
) -> list[DeviceResult]:
    """`no_wait`: fleet devices' jobs are submitted, not waited for (validate --no-wait)."""
    float_inputs = [a[None] for a in float_runner.quantize_inputs(local.float_feeds_first)]

    def one(runner: Runner) -> DeviceResult:
        if no_wait and isinstance(runner, FleetRunner):
            unmeasured = DeviceResult(runner.name, "aihub", capabilities=Capabilities(False, False), accuracy=Accuracy(samples=0))
            try:
                return replace(
                    unmeasured,
                    pending=(
                        runner.submit(model, local.inputs),
                        runner.submit(float_model, float_inputs),
                    ),
                )
            except DeviceError as exc:
                return replace(unmeasured, error=str(exc))
        try:
            measured = runner.measure(model, local.inputs, warmup, runs)
            floating = runner.measure(float_model, float_inputs, warmup, runs)
        except DeviceError as exc:
            if not getattr(runner, "fleet", False):
                raise
            # one phone of a fleet that failed its job: one line for it, the others are kept
            return DeviceResult(
                runner.name,
                getattr(getattr(runner, "profile", None), "transport", "local"),
                capabilities=Capabilities(False, False),
                accuracy=Accuracy(samples=0),
                error=str(exc),
            )
        return device_result(runner, int8, measured, floating, local, top_k)

    remote = [r for r in runners if getattr(r, "concurrent", True)]
    with ThreadPoolExecutor(max_workers=max(1, len(remote))) as pool:  # devices wait on their transports: side by side
        done = dict(zip(map(id, remote), pool.map(one, remote)))
    return [done[id(r)] if id(r) in done else one(r) for r in runners]  # accelerators: one at a time, in this thread


def device_result(
    runner: Runner, int8: LiteRTRunner | None, measured: Measurement, floating: Measurement, local: LocalRun | None, top_k: int
) -> DeviceResult:
    """A runner's measurements as a device result: scored where outputs came back, timed where
    the runner gives latency, speedup always float p50 over INT8 p50."""
    profile = getattr(runner, "profile", None) or runner
    int8_ms, float_ms = measured.timings_ms, floating.timings_ms
    latency = Latency(
        delegate=measured.delegate,
        threads=measured.threads,
        warmup=measured.warmup,
        runs=measured.runs,
        int8_ms=int8_ms,
        float_ms=float_ms,
        speedup=speedup(float_ms.p50, int8_ms.p50),
    )
    capabilities = Capabilities(runner.capabilities.scores_outputs, runner.capabilities.latency)
    common = dict(
        name=runner.name,
        transport=getattr(profile, "transport", "local"),
        address=getattr(profile, "address", None),
        runtime=measured.runtime,
        machine=measured.machine,
        emulated=not capabilities.latency,
        capabilities=capabilities,
        latency=latency,
        accelerator=measured.accelerator,
    )
    if measured.outputs is None or int8 is None or local is None:
        return DeviceResult(**common, accuracy=Accuracy(samples=0), note=LATENCY_ONLY)
    names = int8.output_names
    scorer = Scorer(names, local.roles, top_k, local.headline, local.threshold, local.blanks)
    raw = measured.outputs
    count = raw[0].shape[0]  # a device may run fewer samples than the local run (benchmark_model: device_samples)
    local_raw = [l[:count] for l in local.int8_raw]
    for i in range(raw[0].shape[0]):
        got = int8.dequantize_outputs([r[i] for r in raw])
        scorer.add([f[i] for f in local.float_outputs], got, local.labels[i] if local.labels is not None else None)
    scores = scorer.result()
    return DeviceResult(
        **common,
        accuracy=scores.accuracy,
        outputs=scores.outputs,
        worst_sqnr_db=scores.worst_sqnr_db,
        worst_slice_sqnr_db=scores.worst_slice_sqnr_db,
        vs_local=bit_exactness(names, raw, local_raw, int8.dequantize_outputs(raw), int8.dequantize_outputs(local_raw)),
    )


def _against(reference: np.ndarray, got: np.ndarray) -> OutputScore:
    errors = OutputErrors("vs local")
    errors.add(reference, got)
    return errors.score("values", None, None)


def bit_exactness(
    names: list[str],
    device: list[np.ndarray],
    local: list[np.ndarray],
    device_real: list[np.ndarray] | None = None,
    local_real: list[np.ndarray] | None = None,
) -> BitExactness:
    """Element-by-element comparison of raw outputs: how many differ and, for integer outputs, the
    largest gap in quantization steps; with the dequantized outputs, the largest real difference
    and the SQNR of the device's outputs against the local run's."""
    per_output = []
    for k, (name, d, l) in enumerate(zip(names, device, local)):
        diff = d != l
        gap = (
            int(np.abs(d.astype(np.int64) - l.astype(np.int64)).max()) if np.issubdtype(d.dtype, np.integer) and d.size else None
        )
        real: tuple[float | None, float | None] = (None, None)
        if device_real is not None and local_real is not None and d.size:
            score = _against(local_real[k], device_real[k])
            real = (score.max_abs_error, score.sqnr_db)
        per_output.append(OutputMatch(name, int(d.size), int(diff.sum()), gap, *real))
    mismatches = sum(o.mismatches for o in per_output)
    return BitExactness(
        mismatches == 0,
        mismatches,
        max((o.max_lsb_diff or 0 for o in per_output), default=0),
        tuple(o.name for o in per_output if o.mismatches),
        tuple(per_output),
    )
