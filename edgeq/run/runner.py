"""Which runner a device profile gets."""

from __future__ import annotations

from edgeq.run.compiled_model import Accelerator, CompiledModelRunner
from edgeq.run.devices.benchmark_model import BenchmarkModelRunner
from edgeq.run.devices.device_script import DeviceRunner
from edgeq.run.devices.profiles import Profile
from edgeq.run.protocol import Runner


def runner_for(profile: Profile) -> Runner:
    """AI Hub: its client; adb without a device Python: benchmark_model; a local accelerator:
    LiteRT's CompiledModel; else edgeq's on-device script."""
    if profile.transport == "aihub":
        from edgeq.run.devices.aihub import AiHubRunner

        return AiHubRunner(profile)
    if profile.accelerator is not None:
        runner = CompiledModelRunner(Accelerator.parse(profile.accelerator, profile.gpu_precision), profile.threads)
        runner.name = profile.name
        return runner
    return BenchmarkModelRunner(profile) if profile.transport == "adb" and not profile.python else DeviceRunner(profile)
