"""`validate --no-wait` and `--resume`: fleet jobs (AI Hub) left running, collected later.

`--no-wait` writes the results with each phone's pending job ids, and beside them
`RESULTS.pending.npz`: what the local run kept for scoring devices (inputs, INT8 and float outputs,
labels, roles) and each pending phone's profile, as plain arrays and JSON (no pickle). `--resume`
collects the jobs that have finished, scores and gates them exactly as a waiting run would have,
and writes the results again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.errors import DataError
from edgeq.core.fileio import json_text, parse_json
from edgeq.core.schema import from_json, to_json
from edgeq.run.devices.profiles import Profile
from edgeq.scoring.gates import evaluate, passed
from edgeq.validation.devices import LocalRun, device_result
from edgeq.validation.results import DeviceResult, ValidationResult

SUFFIX = ".pending.npz"
GROUPS = ("inputs", "int8_raw", "float_outputs", "float_feeds_first")


def store_path(results: Path) -> Path:
    return results.with_name(results.name + SUFFIX)


@dataclass(frozen=True)
class Pending:
    """What the store's JSON part holds (the arrays are beside it, named `<group>_<k>`)."""

    counts: dict[str, int]
    labels: tuple[int, ...] | None
    roles: tuple[str, ...]
    headline: int | None
    threshold: float
    blanks: dict[str, int]
    top_k: int
    profiles: tuple[Profile, ...]


def save(path: Path, local: LocalRun, top_k: int, profiles: list[Profile]) -> None:
    arrays: dict[str, Any] = {f"{group}_{k}": np.asarray(a) for group in GROUPS for k, a in enumerate(getattr(local, group))}
    meta = Pending(
        {group: len(getattr(local, group)) for group in GROUPS},
        tuple(local.labels) if local.labels is not None else None,
        tuple(local.roles),
        local.headline,
        local.threshold,
        {str(k): v for k, v in local.blanks.items()},
        top_k,
        tuple(profiles),
    )
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json_text(to_json(meta), indent=None)), **arrays)


def load(path: Path) -> tuple[LocalRun, int, dict[str, Profile]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = from_json(Pending, parse_json(str(archive["meta"]), str(path)), str(path))
            groups = {g: [archive[f"{g}_{k}"] for k in range(meta.counts.get(g, 0))] for g in GROUPS}
    except FileNotFoundError:
        raise DataError(f"{path}: missing; --resume needs the file --no-wait wrote beside the results") from None
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a pending-jobs file of edgeq validate --no-wait ({exc})") from None
    inputs, int8_raw, float_outputs, float_feeds_first = (groups[g] for g in GROUPS)
    local = LocalRun(
        inputs,
        int8_raw,
        float_outputs,
        float_feeds_first,
        list(meta.labels) if meta.labels is not None else None,
        list(meta.roles),
        meta.headline,
        meta.threshold,
        {int(k): v for k, v in meta.blanks.items()},
    )
    return local, meta.top_k, {p.name: p for p in meta.profiles}


def resume(results_path: Path) -> ValidationResult:
    """The results with every finished pending job collected, scored and gated."""
    from edgeq.run.devices.aihub import AiHubRunner
    from edgeq.run.devices.transports import DeviceError
    from edgeq.run.litert import LiteRTRunner

    results = ValidationResult.read(results_path)
    if not any(d.pending for d in results.devices):
        raise DataError(f"{results_path}: no pending jobs to collect (it was not written by validate --no-wait, or was resumed)")
    local, top_k, profiles = load(store_path(results_path))
    int8 = LiteRTRunner(Path(results.model))
    limits = {g.name: g.limit for g in results.gates}
    devices: list[DeviceResult] = []
    for device in results.devices:
        if not device.pending or device.name not in profiles:
            devices.append(device)
            continue
        runner = AiHubRunner(profiles[device.name])
        int8_job, float_job = device.pending
        try:
            measured = runner.collect(int8_job, len(int8.output_names), local.inputs[0].shape[0], wait=False)
            floating = runner.collect(float_job, len(int8.output_names), 1, wait=False) if measured is not None else None
        except DeviceError as exc:
            devices.append(replace(device, pending=(), error=str(exc)))
            continue
        if measured is None or floating is None:
            devices.append(device)  # still running: collected by the next --resume
            continue
        done = device_result(runner, int8, measured, floating, local, top_k)
        gates = evaluate(limits, done.figures)
        devices.append(replace(done, gates=tuple(gates), passed=passed(gates)))
    warnings = tuple(w for w in results.warnings if not w.startswith("pending on ")) + tuple(
        f"pending on {d.name}: AI Hub jobs {', '.join(d.pending)}; collect them with edgeq validate --resume"
        for d in devices
        if d.pending
    )
    return replace(
        results,
        devices=tuple(devices),
        warnings=warnings,
        passed=passed(list(results.gates)) and all(d.passed is not False for d in devices),
    )
