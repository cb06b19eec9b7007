"""The on-device script's runner: a device with Python and a TFLite runtime (ssh, qemu, local)
gets edgeq's on_device.py copied into a scratch folder, which probes it or runs a model there
and sends back every output and the timed invokes."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.fileio import parse_json
from edgeq.core.schema import from_json
from edgeq.run.devices.profiles import Profile
from edgeq.run.devices.transports import Session
from edgeq.run.protocol import Capabilities, InvokeTimes, Measurement, Percentiles

SCRIPT = Path(__file__).with_name("on_device.py")


@dataclass(frozen=True)
class Probe:
    """What on_device.py's `probe` reports of the device (its JSON, read back typed)."""

    os: str
    machine: str
    python: str
    asimddp: bool
    cpu_features: tuple[str, ...] = ()
    runtime: str | None = None
    runtime_error: str | None = None
    delegates: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceInfo:
    """`edgeq devices check`: the profile, and what the device said of itself."""

    name: str
    transport: str
    address: str
    emulated: bool
    probe: Probe


@dataclass(frozen=True)
class ScriptRun:
    """What on_device.py's `run` wrote of its timed invokes (timings.json)."""

    runtime: str
    delegate: str
    threads: int
    warmup: int
    runs: int
    latency_ms: tuple[float, ...]
    machine: str | None = None


def _script(session: Session, *args: str, timeout: float | None = None) -> bytes:
    """Run the copied on_device.py with the device's Python and the profile's runtime."""
    profile = session.profile
    runtime = ["--runtime", profile.runtime] if profile.runtime else []
    argv = [*session.python(), session.path("on_device.py"), args[0], *runtime, *args[1:]]
    return session.transport.run(argv, timeout or max(profile.timeout, 600))


def check(profile: Profile) -> DeviceInfo:
    """Connect and report OS, CPU architecture, dot-product support, runtime and delegates."""
    with Session(profile) as session:
        session.transport.push(SCRIPT, session.path("on_device.py"))
        probe = from_json(
            Probe,
            parse_json(_script(session, "probe", timeout=profile.timeout * 4), f"{profile.name}: the device's probe output"),
            f"{profile.name} probe",
        )
    return DeviceInfo(profile.name, profile.transport, profile.address, profile.emulated, probe)


class DeviceRunner:
    """A device with Python and a TFLite runtime (ssh, qemu, local): edgeq's on_device.py runs
    there, returns every output and the timed invokes."""

    def __init__(self, profile: Profile) -> None:
        self.profile, self.name = profile, profile.name
        self.capabilities = Capabilities(scores_outputs=True, latency=not profile.emulated)

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int, delegate: str | None = None) -> Measurement:
        """Run `model` on the device over stacked inputs (model dtypes): raw outputs and timings."""
        profile = self.profile
        with tempfile.TemporaryDirectory(prefix="edgeq-device-") as tmp, Session(profile) as session:
            stacked = Path(tmp) / "inputs.npz"
            np.savez(stacked, **{f"in{i}": f for i, f in enumerate(inputs)})
            for local, name in ((SCRIPT, "on_device.py"), (model, "model.tflite"), (stacked, "inputs.npz")):
                session.transport.push(local, session.path(name))
            _script(
                session,
                "run",
                "--model",
                session.path("model.tflite"),
                "--inputs",
                session.path("inputs.npz"),
                "--outputs",
                session.path("outputs.npz"),
                "--timings",
                session.path("timings.json"),
                "--delegate",
                delegate or profile.delegates[0],
                "--threads",
                str(profile.threads),
                "--warmup",
                str(warmup),
                "--runs",
                str(runs),
            )
            outputs = np.load(io.BytesIO(session.transport.pull(session.path("outputs.npz"))))
            ran = from_json(
                ScriptRun,
                parse_json(session.transport.pull(session.path("timings.json")), f"{profile.name}: timings.json"),
                f"{profile.name} timings",
            )
        times = InvokeTimes.of(list(ran.latency_ms), ran.warmup, ran.threads)
        return Measurement(
            [outputs[f"out{k}"] for k in range(len(outputs.files))],
            Percentiles.of(times),
            ran.delegate,
            ran.threads,
            ran.warmup,
            ran.runs,
            ran.runtime,
            ran.machine,
        )
