"""Qualcomm AI Hub: real Snapdragon phones through Qualcomm's own `qai_hub` client
(`pip install 'edgeq[aihub]'`). A run uploads the model and the samples (in the model's input
dtypes, as the app feeds them), runs an inference job with profiling on the named phone, and
downloads every output and the phone's own timings and per-layer compute units.

The API token is the client's business: edgeq never reads, writes or prints it (the client takes
it from `qai-hub configure`'s ~/.qai_hub/client.ini, or the file $QAIHUB_CLIENT_INI names).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.errors import EdgeqError, UsageError
from edgeq.run.devices.profiles import Profile
from edgeq.run.devices.transports import DeviceError
from edgeq.run.protocol import AcceleratorUse, Capabilities, InvokeTimes, Measurement, Percentiles
from edgeq.tflite.model import read_tflite

INSTALL = "pip install 'edgeq[aihub]'"
UNITS = ("npu", "gpu", "cpu")


def require_aihub() -> Any:
    """The qai_hub module, configured; one line naming what to do when it is not."""
    if importlib.util.find_spec("qai_hub") is None:
        raise UsageError(f"AI Hub devices need Qualcomm's qai-hub client, which this install lacks: {INSTALL}")
    import qai_hub
    from qai_hub import api_utils

    if not Path(api_utils.get_config_path()).is_file():
        raise UsageError(
            "the AI Hub client is not configured: run `qai-hub configure --api_token YOUR_TOKEN` (edgeq never handles the token)"
        )
    return qai_hub


def _client() -> Any:
    """A client of its own per run, configured from the client's file as it is now (qai_hub's
    module-level client keeps the first configuration it read)."""
    return require_aihub().Client()


@dataclass(frozen=True)
class HubDevice:
    name: str
    os: str
    chipset: str
    tflite: bool


def list_devices() -> list[HubDevice]:
    """The phones the account can reach, with their chipset and whether they run TFLite."""
    found = _call(_client().get_devices, "listing devices")
    return [
        HubDevice(
            d.name,
            d.os,
            next((a.split(":", 1)[1] for a in d.attributes if a.startswith("chipset:")), "?"),
            "framework:tflite" in d.attributes,
        )
        for d in found
    ]


def _call(function: Any, what: str, *args: Any, **kwargs: Any) -> Any:
    """A client call; the client's own errors (it retries 5xx and rate limits itself) as one line."""
    try:
        return function(*args, **kwargs)
    except (EdgeqError, TimeoutError):
        raise
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DeviceError(f"AI Hub, {what}: {detail}") from None


class AiHubRunner:
    """A phone on Qualcomm AI Hub. Its latency is the phone's own (the profile's per-run times);
    where the layers ran (NPU, GPU, CPU) becomes the run's accelerator record."""

    concurrent = True  # jobs wait in AI Hub's queue: devices side by side
    fleet = True  # a failed job is that phone's line in the results, not the end of the run

    def __init__(self, profile: Profile) -> None:
        self.profile, self.name = profile, profile.name
        self.capabilities = Capabilities(scores_outputs=True, latency=True)

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int) -> Measurement:
        measured = self.collect(self.submit(model, inputs), len(read_tflite(model).outputs), inputs[0].shape[0], wait=True)
        assert measured is not None  # waited for
        return measured

    def submit(self, model: Path, inputs: list[Any]) -> str:
        """An inference job with profiling of `model` on every sample (stacked, model dtypes); its id."""
        hub, client = require_aihub(), _client()
        profile = self.profile
        device = _call(hub.Device, "naming the device", profile.device, profile.os or "")
        parsed = read_tflite(model)
        names = [parsed.tensors[i].name for i in parsed.inputs]
        entries = {name: [np.ascontiguousarray(array[i]) for i in range(array.shape[0])] for name, array in zip(names, inputs)}
        job = _call(
            client.submit_inference_job,
            f"submitting {model.name} to {profile.device}",
            model=str(model),
            device=device,
            inputs=entries,
            name=f"edgeq {model.name}",
            options=f"--compute_unit {profile.compute_unit}",
        )
        return str(job.job_id)

    def collect(self, job_id: str, outputs_expected: int, samples: int, wait: bool) -> Measurement | None:
        """The job's outputs and the phone's timings; None when it has not finished and `wait` is off."""
        profile = self.profile
        job = _call(_client().get_job, f"looking up job {job_id}", job_id)
        where = f"{profile.name}: AI Hub job {job.job_id} ({job.url})"
        if not wait and not _call(job.get_status, f"asking for job {job_id}'s status").finished:
            return None
        try:
            status = _call(job.wait, f"waiting for job {job.job_id}", timeout=int(profile.timeout))
        except TimeoutError:
            raise DeviceError(
                f"{where} did not finish within {profile.timeout:g} s (the profile's timeout); AI Hub's queue can take hours"
            ) from None
        if not status.success:
            raise DeviceError(f"{where} failed: {' '.join(str(status.message or status.code).split())[:200]}")
        data = _call(job.download_output_data, f"downloading job {job.job_id}'s outputs")
        if not data:
            raise DeviceError(f"{where} returned no output data")
        outputs = [
            np.stack([np.asarray(a) for a in data[key]]) for key in data
        ]  # (N, *output shape), as the runner protocol says
        if len(outputs) != outputs_expected or any(o.shape[0] != samples for o in outputs):
            raise DeviceError(
                f"{where} returned {len(outputs)} outputs of {[o.shape[0] for o in outputs]} samples; "
                f"the model has {outputs_expected} and {samples} were sent"
            )
        details = _call(job.download_profile, f"downloading job {job.job_id}'s profile")
        summary = details.get("execution_summary", {})
        times_us = summary.get("all_inference_times") or [summary.get("estimated_inference_time")]
        times = InvokeTimes.of([t / 1000.0 for t in times_us if t], 0, 1) if any(times_us) else None
        return Measurement(
            outputs,
            Percentiles.of(times) if times else Percentiles(),
            f"aihub:{profile.compute_unit}",
            1,
            0,
            len(times_us),
            runtime="AI Hub TFLite",
            machine=f"{profile.device} ({where.split(': ', 1)[1]})",
            accelerator=_layers(profile.compute_unit, details.get("execution_detail", [])),
        )


def _layers(asked: str, layers: list[dict]) -> AcceleratorUse:
    """Where the phone ran the layers, from the profile's per-layer compute unit."""
    units = Counter(str(layer.get("compute_unit", "")).lower() for layer in layers)
    on_cpu = Counter(str(layer.get("type", "?")) for layer in layers if str(layer.get("compute_unit", "")).lower() == "cpu")
    ran_on = units.most_common(1)[0][0] if units else "unknown"
    return AcceleratorUse(
        asked=asked,
        ran_on=ran_on,
        ops_on_accelerator=sum(n for u, n in units.items() if u == asked),
        ops_on_cpu=units.get("cpu", 0) if asked != "cpu" else 0,
        cpu_op_types=dict(on_cpu) if asked != "cpu" else {},
        evidence=tuple(f"{unit.upper()}: {count} layer(s)" for unit, count in sorted(units.items())),
        note=None if units else "the profile named no layers",
    )
