"""Validation on devices: the INT8 model runs on each device (concurrently), the float reference
stays on this machine, and every device's outputs are scored like a local run and compared
with the local INT8 outputs bit for bit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.run.devices import Profile, benchmark_over_adb, run_model
from edgeq.metrics import Scorer, speedup
from edgeq.run.litert import Latency, LiteRTRunner


@dataclass
class LocalRun:
    """What the local validation kept for the devices: stacked inputs (model dtypes), raw local
    INT8 outputs, float reference outputs, labels."""

    inputs: list[np.ndarray]
    int8_raw: list[np.ndarray]
    float_outputs: list[np.ndarray]
    float_feeds_first: list[np.ndarray]
    labels: list[int] | None
    classify: bool


def validate_on_devices(profiles: list[Profile], model: Path, float_model: Path, int8: LiteRTRunner,
                        float_runner: LiteRTRunner, local: LocalRun, warmup: int, runs: int, top_k: int) -> list[dict[str, Any]]:
    def one(profile: Profile) -> dict[str, Any]:
        if profile.transport == "adb" and not profile.python:
            return latency_only(profile, benchmark_over_adb(profile, model, warmup, runs),
                                benchmark_over_adb(profile, float_model, warmup, runs))
        raw, timings = run_model(profile, model, local.inputs, warmup, runs)
        _, float_timings = run_model(profile, float_model, float_runner.quantize_inputs(local.float_feeds_first), warmup, runs)
        return score(profile, int8, raw, timings, float_timings, local, top_k)

    with ThreadPoolExecutor(max_workers=max(1, len(profiles))) as pool:
        return list(pool.map(one, profiles))


def score(profile: Profile, int8: LiteRTRunner, raw: list[np.ndarray], timings: dict[str, Any],
          float_timings: dict[str, Any], local: LocalRun, top_k: int) -> dict[str, Any]:
    names = [d["name"] for d in int8.outputs]
    scorer = Scorer(names, local.classify, top_k)
    for i in range(raw[0].shape[0]):
        got = int8.dequantize_outputs([r[i:i + 1] for r in raw])
        scorer.add([f[i:i + 1] for f in local.float_outputs], got, local.labels[i] if local.labels is not None else None)
    int8_ms = Latency.of(timings["latency_ms"], timings["warmup"], timings["threads"])
    float_ms = Latency.of(float_timings["latency_ms"], float_timings["warmup"], float_timings["threads"])
    return {
        "name": profile.name, "transport": profile.transport, "address": profile.address,
        "runtime": timings.get("runtime"), "machine": timings.get("machine"), "emulated": profile.emulated,
        "capabilities": {"scores_outputs": True, "latency": not profile.emulated},
        **scorer.result(),
        "latency": {"delegate": timings["delegate"], "threads": timings["threads"], "warmup": timings["warmup"],
                    "runs": timings["runs"], "int8_ms": int8_ms.to_dict(), "float_ms": float_ms.to_dict(),
                    "speedup": speedup(float_ms.p50, int8_ms.p50)},
        "vs_local": bit_exactness(names, raw, local.int8_raw),
    }


def latency_only(profile: Profile, int8: dict[str, Any], floating: dict[str, Any]) -> dict[str, Any]:
    """An adb device without Python: benchmark_model's timings, and no outputs to score."""
    keys = ("p50", "mean", "std", "min", "max", "p5", "p95")
    return {
        "name": profile.name, "transport": profile.transport, "address": profile.address, "runtime": "benchmark_model",
        "machine": None, "emulated": False, "capabilities": {"scores_outputs": False, "latency": True},
        "accuracy": {"samples": 0, "agreement": None, "int8_top1": None},
        "outputs": [], "worst_sqnr_db": None, "vs_local": None,
        "latency": {"delegate": int8["delegate"], "threads": int8["threads"], "runs": int8["runs"],
                    "int8_ms": {k: int8[k] for k in keys}, "float_ms": {k: floating[k] for k in keys},
                    "speedup": speedup(floating["p50"], int8["p50"])},
        "note": "latency only: no Python on the device, so no outputs to score (set python in the profile for accuracy)",
    }


def bit_exactness(names: list[str], device: list[np.ndarray], local: list[np.ndarray]) -> dict[str, Any]:
    """Element-by-element comparison of raw outputs; integer outputs also give the largest LSB gap."""
    per_output = []
    for name, d, l in zip(names, device, local):
        diff = d != l
        gap = int(np.abs(d.astype(np.int64) - l.astype(np.int64)).max()) if np.issubdtype(d.dtype, np.integer) and d.size else None
        per_output.append({"name": name, "elements": int(d.size), "mismatches": int(diff.sum()), "max_lsb_diff": gap})
    mismatches = sum(o["mismatches"] for o in per_output)
    return {"bit_exact": mismatches == 0, "mismatches": mismatches,
            "max_lsb_diff": max((o["max_lsb_diff"] or 0 for o in per_output), default=0),
            "outputs_differing": [o["name"] for o in per_output if o["mismatches"]], "outputs": per_output}

