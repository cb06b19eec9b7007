"""The runners that reach devices through their profile's transport (see run/protocol.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeq.run.devices import Profile, benchmark_over_adb, run_model
from edgeq.run.litert import InvokeTimes
from edgeq.run.protocol import Capabilities, Measurement, Runner


class DeviceRunner:
    """A device with Python and a TFLite runtime (ssh, qemu, local): edgeq's on_device.py runs
    there, returns every output and the timed invokes."""

    def __init__(self, profile: Profile) -> None:
        self.profile, self.name = profile, profile.name
        self.capabilities = Capabilities(scores_outputs=True, latency=not profile.emulated)

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int) -> Measurement:
        outputs, timings = run_model(self.profile, model, inputs, warmup, runs)
        figures = InvokeTimes.of(timings["latency_ms"], timings["warmup"], timings["threads"]).to_dict()
        return Measurement(outputs, figures, timings["delegate"], timings["threads"], timings["warmup"], timings["runs"],
                           timings.get("runtime"), timings.get("machine"))


class BenchmarkModelRunner:
    """An Android device without Python: TFLite's benchmark_model over adb, timings only."""

    def __init__(self, profile: Profile, through=None) -> None:
        """`through`: the transport to the device (default: adb, as the profile says)."""
        self.profile, self.name, self.through = profile, profile.name, through
        self.capabilities = Capabilities(scores_outputs=False, latency=True)

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int) -> Measurement:
        found = benchmark_over_adb(self.profile, model, warmup, runs, self.through)
        return Measurement(None, {k: found[k] for k in ("p50", "mean", "std", "min", "max", "p5", "p95")},
                           found["delegate"], found["threads"], warmup, found["runs"], "benchmark_model")


def runner_for(profile: Profile) -> Runner:
    return BenchmarkModelRunner(profile) if profile.transport == "adb" and not profile.python else DeviceRunner(profile)
