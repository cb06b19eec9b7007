"""The runner protocol: one interface for every place a model runs away from the reference.

A runner takes a model file and a batch of inputs in the model's own dtypes, and gives back the
raw outputs (None when it cannot return any) and timings. Its capabilities say what it can serve:
a latency-only runner (adb with TFLite's benchmark_model) gives no outputs, so accuracy gates are
not applicable to it; an emulated one gives outputs but no latency figure.

Runners: `litert.LiteRTRunner` (this machine: XNNPACK, built-in or reference kernels, or an
external delegate such as the Edge TPU's libedgetpu), `runner.DeviceRunner` (ssh, qemu, local:
edgeq's on_device.py there) and `runner.BenchmarkModelRunner` (adb: TFLite's benchmark_model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Capabilities:
    scores_outputs: bool = True  # False: latency only (no outputs come back)
    latency: bool = True  # False: emulated, its timings are no latency figure


@dataclass(frozen=True)
class Measurement:
    outputs: list[Any] | None  # raw outputs over the batch, model dtypes; None for a latency-only runner
    timings_ms: dict[str, Any]  # p50 and the other figures the runner gives, plus "samples" where it has them
    delegate: str
    threads: int
    warmup: int
    runs: int
    runtime: str | None = None
    machine: str | None = None

    @property
    def samples_ms(self) -> list[float]:
        """Every run's time where the runner gives them, else its p50 alone."""
        return list(self.timings_ms.get("samples") or [self.timings_ms["p50"]])


@runtime_checkable
class Runner(Protocol):
    name: str
    capabilities: Capabilities

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int) -> Measurement: ...
