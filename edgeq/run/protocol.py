"""The runner protocol: one interface for every place a model runs away from the reference.

A runner takes a model file and its samples in the model's own dtypes, per input stacked on a
new leading axis, (N, *input shape), and gives back the raw outputs stacked the same way,
(N, *output shape) (None when it cannot return any), and timings. A new axis, not the model's
batch axis: an input such as a recurrent state [layers, 1, units] has its batch elsewhere. Its capabilities say what it can serve:
a latency-only runner gives no outputs, so accuracy gates are not applicable to it; an emulated
one gives outputs but no latency figure.

Runners, one module per backend: `litert.LiteRTRunner` (the LiteRT interpreter on this machine:
XNNPACK, built-in or reference kernels, or an external delegate such as the Edge TPU's
libedgetpu), `device_script.DeviceRunner` (ssh, qemu, local: edgeq's on_device.py there) and
`benchmark_model.BenchmarkModelRunner` (adb: TFLite's benchmark_model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Capabilities:
    scores_outputs: bool = True  # False: latency only (no outputs come back)
    latency: bool = True  # False: emulated, its timings are no latency figure


@dataclass(frozen=True)
class InvokeTimes:
    """Timed invokes of one model, as measured: every run's milliseconds and their percentiles."""

    runs: int
    warmup: int
    threads: int
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    samples_ms: tuple[float, ...]

    @classmethod
    def of(cls, times_ms: list[float], warmup: int, threads: int) -> InvokeTimes:
        t = np.asarray(times_ms)
        p50, p90, p99 = (round(float(np.percentile(t, q)), 4) for q in (50, 90, 99))
        return cls(
            len(t),
            warmup,
            threads,
            p50,
            p90,
            p99,
            round(float(t.mean()), 4),
            round(float(t.std()), 4),
            tuple(round(x, 4) for x in times_ms),
        )


@dataclass(frozen=True)
class Percentiles:
    """Milliseconds per invoke; a runner fills what it measures (benchmark_model: no samples)."""

    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    p5: float | None = None
    p95: float | None = None
    samples: tuple[float, ...] = ()

    @classmethod
    def of(cls, measured: InvokeTimes) -> Percentiles:
        return cls(
            p50=measured.p50,
            p90=measured.p90,
            p99=measured.p99,
            mean=measured.mean,
            std=measured.std,
            samples=measured.samples_ms,
        )


@dataclass(frozen=True)
class AcceleratorUse:
    """What an accelerator run used, taken from evidence (the adapter the GPU environment selected,
    the dispatch library and device, the DISPATCH_OPs and partitions), never from
    is_fully_accelerated() alone, which LiteRT also reports True for some CPU-only runs."""

    asked: str  # gpu | npu:VENDOR[:SOC], as given
    ran_on: str  # gpu | npu | cpu: where the work ran, by the evidence
    adapter: str | None = None  # as the runtime names it: a Vulkan adapter, an OpenVINO device
    software: bool | None = None  # a software adapter (lavapipe) or a CPU graph backend: its timings are no latency
    precision: str | None = None  # gpu: fp16 | fp32
    fully_accelerated: bool | None = None  # LiteRT's own is_fully_accelerated(), for the record
    ops_on_accelerator: int | None = None
    ops_on_cpu: int | None = None
    cpu_op_types: dict[str, int] = field(default_factory=dict)  # the op types the accelerator named as not taken
    partitions: int | None = None
    evidence: tuple[str, ...] = ()  # the runtime's own lines it was decided from
    note: str | None = None  # why it did not run where asked, in words

    @property
    def accelerated(self) -> bool:
        """Every op ran where it was asked to."""
        return self.ran_on == self.asked.split(":")[0] and not self.ops_on_cpu and not self.cpu_op_types


@dataclass(frozen=True)
class Measurement:
    outputs: list[Any] | None  # raw outputs, (N, *output shape) each, model dtypes; None for a latency-only runner
    timings_ms: Percentiles
    delegate: str
    threads: int
    warmup: int
    runs: int
    runtime: str | None = None
    machine: str | None = None
    accelerator: AcceleratorUse | None = None

    @property
    def samples_ms(self) -> list[float]:
        """Every run's time where the runner gives them, else its p50 alone."""
        return list(self.timings_ms.samples or [self.timings_ms.p50])


@runtime_checkable
class Runner(Protocol):
    name: str
    capabilities: Capabilities

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int) -> Measurement: ...


@runtime_checkable
class FleetRunner(Runner, Protocol):
    """A runner of a device fleet (AI Hub): a job can be submitted and collected later, and a failed
    job is one device's line in the results, not the end of the run."""

    fleet: bool
    profile: Any  # the device profile (edgeq.run.devices.profiles.Profile)

    def submit(self, model: Path, inputs: list[Any]) -> str: ...
