"""TFLite's benchmark_model as a runner: an Android device without Python, reached over adb.

Latency from its timing lines (the parser reads the binary's own output, as recorded from real
runs in tests/fixtures/benchmark_model). Accuracy from its input and output files: each sample's
inputs are pushed as raw files of exactly the tensor's size (`--input_layer`,
`--input_layer_shape`, `--input_layer_value_files`, names with ':' escaped as '::'), one
invocation per sample writes every output's raw bytes, concatenated in output order, to
`--output_filepath`; all invocations run from one script in one shell call, and their outputs
come back concatenated in one pull. Each invocation reloads the model, so the profile bounds the
samples (`device_samples`)."""

from __future__ import annotations

import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.errors import UsageError
from edgeq.run.devices.profiles import Profile
from edgeq.run.devices.transports import DeviceError, Session, Transport
from edgeq.run.protocol import Capabilities, Measurement, Percentiles
from edgeq.tflite.model import TfliteModel, read_tflite

FLAGS = {
    "xnnpack": ["--use_xnnpack=true"],
    "nnapi": ["--use_nnapi=true"],
    "gpu": ["--use_gpu=true"],
    "none": ["--use_xnnpack=false"],
}

_RUN_LINE = re.compile(
    r"^count=(\d+) first=(\S+) curr=\S+ min=(\S+) max=(\S+) avg=(\S+) std=(\S+)"
    r"(?: p5=(\S+) median=(\S+) p95=(\S+))?"
)
_SUMMARY = re.compile(
    r"Inference timings in us: Init: (\S+), First inference: (\S+), Warmup \(avg\): (\S+), "
    r"Inference \(avg\): (\S+)"
)
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

    def us(s):  # microseconds -> ms
        return round(float(s) / 1000.0, 4) if s is not None else None

    return BenchmarkFigures(
        int(m.group(1)),
        us(m.group(5)),
        us(m.group(6)),
        us(m.group(3)),
        us(m.group(4)),
        us(m.group(8)),
        us(m.group(7)),
        us(m.group(9)),
        us(summary.group(1)),
        us(summary.group(2)),
        us(summary.group(4)),
    )


class BenchmarkModelRunner:
    """An Android device without Python: TFLite's benchmark_model over adb; its outputs for the
    first `device_samples` samples (0: latency only)."""

    def __init__(self, profile: Profile, through: Transport | None = None) -> None:
        """`through`: the transport to the device (default: adb, as the profile says)."""
        self.profile, self.name, self.through = profile, profile.name, through
        self.capabilities = Capabilities(scores_outputs=profile.device_samples > 0, latency=True)

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int) -> Measurement:
        profile = self.profile
        if not profile.benchmark_binary:
            raise UsageError(f"device {profile.name}: set benchmark_binary (the path of benchmark_model on the device)")
        delegate = profile.delegates[0]
        flags = [f"--num_threads={profile.threads}", *FLAGS.get(delegate, [])]
        with Session(profile, self.through) as session:
            session.transport.push(model, session.path("model.tflite"))
            graph = f"--graph={session.path('model.tflite')}"
            outputs = (
                self._outputs(session, read_tflite(model), inputs, [graph, *flags])
                if self.capabilities.scores_outputs and inputs
                else None
            )
            out = session.transport.run(
                [profile.benchmark_binary, graph, *flags, f"--num_runs={runs}", f"--warmup_runs={warmup}"],
                max(profile.timeout, 600),
            )
        found = parse_benchmark_model(out.decode(errors="replace"))
        return Measurement(outputs, found.percentiles(), delegate, profile.threads, warmup, found.runs, "benchmark_model")

    def _outputs(self, session: Session, model: TfliteModel, inputs: list[np.ndarray], flags: list[str]) -> list[np.ndarray]:
        """Every output of the first `device_samples` samples, one benchmark_model invocation each."""
        count = min(self.profile.device_samples, inputs[0].shape[0])
        ports = [model.tensors[t] for t in model.inputs]
        outs = [model.tensors[t] for t in model.outputs]
        with tempfile.TemporaryDirectory(prefix="edgeq-adb-") as scratch:
            folder = Path(scratch) / "inputs"
            folder.mkdir()
            for i in range(count):
                for k, array in enumerate(inputs):
                    (folder / f"{i}_{k}.bin").write_bytes(np.ascontiguousarray(array[i]).tobytes())
            script = Path(scratch) / "run.sh"
            script.write_text(
                sample_script(
                    self.profile.benchmark_binary,
                    flags,
                    ports,
                    count,
                    session.path("inputs"),
                    session.path("out"),
                    session.path("outputs.bin"),
                )
            )
            session.transport.push(folder, session.path("inputs"))
            session.transport.push(script, session.path("run.sh"))
        try:
            session.transport.run(["sh", session.path("run.sh")], max(self.profile.timeout, 600) * max(1, count // 10))
        except DeviceError as exc:
            raise DeviceError(f"{self.profile.name}: benchmark_model refused the samples: {_fatal(str(exc))}") from None
        return split_outputs(session.transport.pull(session.path("outputs.bin")), outs, count)


def sample_script(binary: str, flags: list[str], ports: list, count: int, inputs: str, out: str, joined: str) -> str:
    """The device-side script: one invocation per sample (exit at the first failure), then every
    sample's output file concatenated into one."""
    names = ",".join(p.name for p in ports)
    shapes = ":".join(",".join(str(d) for d in p.shape) for p in ports)
    lines = ["set -e"]
    for i in range(count):
        files = ",".join(f"{p.name.replace(':', '::')}:{inputs}/{i}_{k}.bin" for k, p in enumerate(ports))
        lines.append(
            shlex.join(
                [
                    binary,
                    *flags,
                    f"--input_layer={names}",
                    f"--input_layer_shape={shapes}",
                    f"--input_layer_value_files={files}",
                    f"--output_filepath={out}_{i}.bin",
                    "--num_runs=1",
                    "--warmup_runs=0",
                ]
            )
        )
    lines.append(f"cat {' '.join(shlex.quote(f'{out}_{i}.bin') for i in range(count))} > {shlex.quote(joined)}")
    return "\n".join(lines) + "\n"


def split_outputs(data: bytes, outputs: list, count: int) -> list[np.ndarray]:
    """The concatenated raw outputs of `count` samples, each sample's outputs in output order."""
    sizes = [int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize for t in outputs]
    if len(data) != count * sum(sizes):
        raise DeviceError(
            f"benchmark_model wrote {len(data)} output bytes for {count} sample(s); "
            f"the model's outputs take {sum(sizes)} bytes a sample"
        )
    found: list[list[np.ndarray]] = [[] for _ in outputs]
    offset = 0
    for _ in range(count):
        for k, (t, size) in enumerate(zip(outputs, sizes)):
            found[k].append(np.frombuffer(data[offset : offset + size], np.dtype(t.dtype)).reshape(t.shape))
            offset += size
    return [np.stack(column) for column in found]


def _fatal(message: str) -> str:
    """benchmark_model's own fatal line (e.g. "The size of X is N bytes. It should be M bytes.")."""
    found = re.search(r"The size of .*? bytes\.? It should be \d+ bytes\.?", message)
    return found.group(0) if found else message
