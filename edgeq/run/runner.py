"""The runner protocol: one interface for every place a model runs away from the reference.

A runner takes a model file and a batch of inputs in the model's own dtypes, and gives back the
raw outputs (None when it cannot return any) and timings. Its capabilities say what it can serve:
a latency-only runner (adb with TFLite's benchmark_model) gives no outputs, so accuracy gates are
not applicable to it; an emulated one gives outputs but no latency figure.

The local LiteRT runner (`litert.LiteRTRunner`) runs sample by sample for the reference
comparison; the runners here reach devices through their profile's transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgeq.run.devices import Profile, benchmark_over_adb, run_model
from edgeq.run.litert import Timings


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


class Runner(Protocol):
    name: str
    capabilities: Capabilities

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int) -> Measurement: ...


class DeviceRunner:
    """A device with Python and a TFLite runtime (ssh, qemu, local): edgeq's device_runner.py runs
    there, returns every output and the timed invokes."""

    def __init__(self, profile: Profile) -> None:
        self.profile, self.name = profile, profile.name
        self.capabilities = Capabilities(scores_outputs=True, latency=not profile.emulated)

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int) -> Measurement:
        outputs, timings = run_model(self.profile, model, inputs, warmup, runs)
        t = Timings.of(timings["latency_ms"], timings["warmup"], timings["threads"])
        figures = {"p50": t.p50, "p90": t.p90, "p99": t.p99, "mean": t.mean, "std": t.std, "samples": list(t.samples_ms)}
        return Measurement(outputs, figures, timings["delegate"], timings["threads"], timings["warmup"], timings["runs"],
                           timings.get("runtime"), timings.get("machine"))


class BenchmarkModelRunner:
    """An Android device without Python: TFLite's benchmark_model over adb, timings only."""

    def __init__(self, profile: Profile) -> None:
        self.profile, self.name = profile, profile.name
        self.capabilities = Capabilities(scores_outputs=False, latency=True)

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int) -> Measurement:
        found = benchmark_over_adb(self.profile, model, warmup, runs)
        return Measurement(None, {k: found[k] for k in ("p50", "mean", "std", "min", "max", "p5", "p95")},
                           found["delegate"], found["threads"], warmup, found["runs"], "benchmark_model")


def runner_for(profile: Profile) -> Runner:
    return BenchmarkModelRunner(profile) if profile.transport == "adb" and not profile.python else DeviceRunner(profile)
