"""TFLite's benchmark_model as a runner: an Android device without Python, reached over adb,
gives latency (no outputs). The parser reads the binary's own output, as recorded from real
runs (tests/fixtures/benchmark_model)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeq.errors import UsageError
from edgeq.run.profiles import Profile
from edgeq.run.protocol import Capabilities, Measurement, Percentiles
from edgeq.run.transports import DeviceError, Session, Transport

FLAGS = {"xnnpack": ["--use_xnnpack=true"], "nnapi": ["--use_nnapi=true"], "gpu": ["--use_gpu=true"],
         "none": ["--use_xnnpack=false"]}

_RUN_LINE = re.compile(r"^count=(\d+) first=(\S+) curr=\S+ min=(\S+) max=(\S+) avg=(\S+) std=(\S+)"
                       r"(?: p5=(\S+) median=(\S+) p95=(\S+))?")
_SUMMARY = re.compile(r"Inference timings in us: Init: (\S+), First inference: (\S+), Warmup \(avg\): (\S+), "
                      r"Inference \(avg\): (\S+)")
_PREFIX = re.compile(r"^(?:[VDIWEF] tflite\s*:\s*|INFO:\s*)")


@dataclass(frozen=True)
class BenchmarkFigures:
    """The measured run of benchmark_model, in milliseconds (p50/p5/p95 only where it prints them)."""

    runs: int
    mean: float
    std: float
    min: float
    max: float
    p50: float | None
    p5: float | None
    p95: float | None
    init_ms: float
    first_ms: float
    inference_avg_ms: float

    def percentiles(self) -> Percentiles:
        return Percentiles(p50=self.p50, mean=self.mean, std=self.std, min=self.min, max=self.max, p5=self.p5, p95=self.p95)


def parse_benchmark_model(text: str) -> BenchmarkFigures:
    """The measured run of TFLite's benchmark_model. The last `count=... first=` line before the
    summary is the measured run (the ones before it are warm-up); the op-profiling
    "Timings (microseconds): count=" lines are not runs."""
    runs, summary = [], None
    for raw in text.splitlines():
        line = _PREFIX.sub("", raw.strip())
        if summary is None and (m := _RUN_LINE.match(line)):
            runs.append(m)
        elif m := _SUMMARY.search(line):
            summary = m
    if not runs or summary is None:
        raise DeviceError("benchmark_model printed no timing summary; run it by hand to see why")
    m = runs[-1]
    us = lambda s: round(float(s) / 1000.0, 4) if s is not None else None  # noqa: E731 - microseconds -> ms
    return BenchmarkFigures(int(m.group(1)), us(m.group(5)), us(m.group(6)), us(m.group(3)), us(m.group(4)), us(m.group(8)),
                            us(m.group(7)), us(m.group(9)), us(summary.group(1)), us(summary.group(2)), us(summary.group(4)))


class BenchmarkModelRunner:
    """An Android device without Python: TFLite's benchmark_model over adb, timings only."""

    def __init__(self, profile: Profile, through: Transport | None = None) -> None:
        """`through`: the transport to the device (default: adb, as the profile says)."""
        self.profile, self.name, self.through = profile, profile.name, through
        self.capabilities = Capabilities(scores_outputs=False, latency=True)

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int) -> Measurement:
        profile = self.profile
        if not profile.benchmark_binary:
            raise UsageError(f"device {profile.name}: set benchmark_binary (the path of benchmark_model on the device)")
        delegate = profile.delegates[0]
        with Session(profile, self.through) as session:
            session.transport.push(model, session.path("model.tflite"))
            out = session.transport.run([profile.benchmark_binary, f"--graph={session.path('model.tflite')}",
                                         f"--num_threads={profile.threads}", f"--num_runs={runs}", f"--warmup_runs={warmup}",
                                         *FLAGS.get(delegate, [])], max(profile.timeout, 600))
        found = parse_benchmark_model(out.decode(errors="replace"))
        return Measurement(None, found.percentiles(), delegate, profile.threads, warmup, found.runs, "benchmark_model")
