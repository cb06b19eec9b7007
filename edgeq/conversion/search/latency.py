"""INT8 that is faster than float where it runs: measure the converted model against the float one
on XNNPACK (this machine, 1 thread) and, with `--optimize latency`, try keeping in float the op
types the real delegate left to LiteRT's built-in int8 kernels (PRELU, HARD_SWISH, ...), which
split the graph into partitions. Candidates are timed interleaved, in rounds, in one process.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.host.machine import this_cpu
from edgeq.records.manifest import Candidate, LatencyCheck
from edgeq.run.litert import LiteRTRunner, within_noise
from edgeq.run.protocol import InvokeTimes
from edgeq.scoring.held_back import DECIDING, Powers
from edgeq.scoring.roles import decide_roles
from edgeq.scoring.speed import speedup
from edgeq.tflite.rewrites import REWRITES, rewrite

ROUNDS = 5  # interleaved rounds: a load spike on a shared machine hits every candidate alike
FLOAT = "float"  # the float model's name among the timed ones
SETTLED = 3  # p50s this many spreads apart: a verdict more rounds would not change
BOUNDARY = {"QUANTIZE", "DEQUANTIZE"}
# a candidate that stays all int8 wins against float ops this close in p50; at float I/O XNNPACK
# takes them, so they split nothing
TIE = 1.05
SQNR_TIE_DB = 0.5  # an all-int8 rewrite wins a tie in speed only when it is as accurate, within this


def fell_off(runner: LiteRTRunner) -> dict[str, int]:
    """The op types XNNPACK left to the built-in kernels, as the real delegate decided."""
    return {op: n for op, n in runner.kept_ops.items() if op not in BOUNDARY}


def measure(
    float_model: bytes,
    models: dict[str, bytes],
    sample: list[np.ndarray],
    runs: int,
    seconds: float,
    device: Any = None,
    settle: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """The float model's timings and each model's, in ROUNDS interleaved rounds: `runs` invokes
    each, fewer when that would take longer than about `seconds` in all (here). `device`: a device
    profile to time them on instead (its runner; XNNPACK coverage still comes from this machine).
    `settle`: stop after two rounds once every model's p50 is clear of float's by SETTLED times the
    spread, where more rounds could not change the verdict."""
    with tempfile.TemporaryDirectory(prefix="edgeq-latency-") as scratch:
        runners: dict[str, LiteRTRunner] = {}
        for name, data in {FLOAT: float_model, **models}.items():
            path = Path(scratch) / f"{len(runners)}.tflite"
            path.write_bytes(data)
            runners[name] = LiteRTRunner(path, "xnnpack", 1)
        times: dict[str, list[float]] = {name: [] for name in runners}
        warm = sum(runner.time(sample, 3, 3).p50 for runner in runners.values())  # ms for one invoke of each
        per_round = max(2, min(runs, int(seconds * 1000 / max(warm, 1e-3))) // ROUNDS)
        remote = None
        if device is not None:
            from edgeq.run.runner import runner_for

            remote = runner_for(device)
        for done in range(1, ROUNDS + 1):
            for name, runner in runners.items():
                if remote is None:
                    times[name] += runner.time(sample, 1, per_round).samples_ms
                    continue
                times[name] += remote.measure(
                    runner.path, [a[None] for a in runner.quantize_inputs(sample)], 1, per_round
                ).samples_ms
            if settle and done >= 2 and all(_settled(times[name], times[FLOAT]) for name in models):
                break
        timed = {name: InvokeTimes.of(t, 2, 1) for name, t in times.items()}
        return timed.pop(FLOAT), {name: (timed[name], runners[name]) for name in models}


def _settled(a: list[float], b: list[float]) -> bool:
    def iqr(values: list[float]) -> float:
        q1, q3 = np.percentile(values, [25, 75])
        return float(q3 - q1)

    return abs(float(np.median(a)) - float(np.median(b))) > SETTLED * max(iqr(a), iqr(b))


def against_float(float_model: bytes, quantized: bytes, sample: list[np.ndarray], runs: int = 60) -> LatencyCheck:
    """INT8 against float as converted (about 2 s at most, less once the verdict is clear): the
    figures, and what fell off the delegate."""
    float_time, timed = measure(float_model, {"as converted": quantized}, sample, runs, 2.0, settle=True)
    int8_time, runner = timed["as converted"]
    return LatencyCheck(
        "xnnpack",
        1,
        float_time.p50,
        int8_time.p50,
        speedup(float_time.p50, int8_time.p50),
        within_noise(int8_time, float_time),
        fell_off(runner),
        runner.partitions,
        cpu=this_cpu().describe(),
    )


Variant = tuple[tuple[str, ...], tuple[str, ...]]  # op types kept in float, rewrites


def optimize(
    float_model: bytes,
    quantized: bytes,
    build: Callable[[list[Variant]], list[bytes]],
    sample: list[np.ndarray],
    score: Callable[[list[bytes]], list[tuple[float | None, bool | None]]],
    runs: int = 200,
    device: Any = None,
    where: str = "xnnpack (this machine)",
) -> tuple[bytes, LatencyCheck]:
    """The model as converted, or one with the op types that fell off XNNPACK kept in float (each,
    and all of them), rewritten into ops it runs (each rewrite, all, and each with the ops it does
    not cover kept in float), when that is a real win: judged by timings where they say something of the
    device (this CPU has int8 dot-product instructions, or `device` times them), else by what holds
    on every CPU, the delegate's coverage. Only candidates that meet the budget (when `score` says
    so) compete. `build` and `score` take every candidate at once (they may run them on a cluster);
    the timings are all taken here or on `device`. Returns the chosen model and the record of every candidate."""
    _, first = measure(float_model, {"as converted": quantized}, sample, 3, 1.0)
    off = fell_off(first["as converted"][1])
    keeps = [()] + [(op,) for op in off] + ([tuple(off)] if len(off) > 1 else [])
    rewrites = equal_rewrites(float_model, off, sample)
    rewritten = [(r,) for r in rewrites] + ([tuple(rewrites)] if len(rewrites) > 1 else [])
    mixed = [(rest, r) for r in rewritten if (rest := tuple(op for op in off if op not in _covered(r)))]
    variants: list[Variant] = [(k, ()) for k in keeps[1:]] + [((), r) for r in rewritten] + mixed
    names = [_name((), ())] + [_name(k, r) for k, r in variants]
    models = dict(zip(names, [quantized, *build(variants)]))
    scores = dict(zip(names, score(list(models.values()))))
    float_time, timed = measure(float_model, models, sample, runs, 10.0, device)
    plain_time = timed[_name((), ())][0]
    candidates = []
    for keep, rewritten_as in [((), ()), *variants]:
        name = _name(keep, rewritten_as)
        timing, runner = timed[name]
        sqnr, meets = scores[name]
        candidates.append(
            Candidate(
                name,
                keep,
                timing.p50,
                speedup(float_time.p50, timing.p50),
                within_noise(timing, float_time),
                runner.delegated_nodes,
                runner.total_nodes,
                runner.partitions,
                fell_off(runner),
                sqnr,
                meets,
                len(models[name]),
                None if name == "as converted" else timing.p50 < plain_time.p50 and not within_noise(timing, plain_time),
                rewritten_as,
            )
        )
    cpu = this_cpu()
    judge = "timing" if device is not None or cpu.int8_dot else "coverage"
    chosen = choose(candidates, judge)
    judged_by = (
        f"timings on {where}"
        if judge == "timing"
        else f"XNNPACK coverage (fewest partitions, most nodes delegated), not timings: this CPU ({cpu.name}) has no int8 "
        "dot-product instructions, so its INT8 timings say nothing of a phone; time on a device with --device"
    )
    return models[chosen.name], LatencyCheck(
        where,
        1,
        float_time.p50,
        rounds=ROUNDS,
        runs=runs,
        chosen=chosen.name,
        keep_ops=chosen.keep_ops,
        rewrites=chosen.rewrites,
        candidates=tuple(candidates),
        faster_than_float=chosen.speedup >= 1 or chosen.within_noise,
        judged_by=judged_by,
        cpu=cpu.describe() if device is None else None,
    )


def choose(candidates: list[Candidate], judge: str = "timing") -> Candidate:
    """The model as converted unless a candidate that meets the budget is a real win: faster
    beyond the run-to-run spread (`judge` "timing"), or, where timings say nothing of the device
    ("coverage"), fewer XNNPACK partitions. The choice is a function of the figures, so this is
    where a test fixes them."""
    plain = next(c for c in candidates if c.name == "as converted")
    eligible = [c for c in candidates if c is not plain and c.meets is not False]
    if judge == "coverage":
        better = [c for c in eligible if c.partitions < plain.partitions]
        if not better:
            return plain
        best = min((c.partitions, -c.delegated_nodes) for c in better)
        return _tie_broken([c for c in better if (c.partitions, -c.delegated_nodes) == best])
    wins = [c for c in eligible if c.beats_plain]
    if not wins:
        return plain
    fastest = min(wins, key=lambda c: c.int8_p50_ms)
    return _tie_broken([c for c in wins if c.int8_p50_ms <= fastest.int8_p50_ms * TIE])


def _tie_broken(tied: list[Candidate]) -> Candidate:
    """Of candidates that tie in speed or coverage, the most accurate; an all-int8 one (a rewrite:
    NPUs want it) where it is as accurate as that; then the faster."""
    best = max(tied, key=lambda c: (math.inf if c.worst_sqnr_db is None else c.worst_sqnr_db, -c.int8_p50_ms))
    int8 = [c for c in tied if not c.keep_ops and _as_accurate(c, best)]
    return min(int8, key=lambda c: c.int8_p50_ms) if int8 else best


def _as_accurate(candidate: Candidate, other: Candidate) -> bool:
    """`candidate`'s worst output within SQNR_TIE_DB of `other`'s (None: an exact match, or no figure)."""
    if candidate.worst_sqnr_db is None or other.worst_sqnr_db is None:
        return candidate.worst_sqnr_db is None
    return candidate.worst_sqnr_db >= other.worst_sqnr_db - SQNR_TIE_DB


REWRITE_FOR = (  # an op that fell off XNNPACK in int8, and a rewrite that keeps it on (each that applies competes)
    ("PRELU", "prelu_as_leaky_relu"),
    ("PRELU", "prelu_decomposed"),
    ("HARD_SWISH", "hard_swish_decomposed"),
    ("RELU", "relu_as_fused_mul"),
    ("RELU6", "relu_as_fused_mul"),
    ("RELU_N1_TO_1", "relu_as_fused_mul"),
    ("AVERAGE_POOL_2D", "average_pool_rewritten"),
)


def equal_rewrites(float_model: bytes, off: dict[str, int], sample: list[np.ndarray]) -> list[str]:
    """The graph rewrites that would keep the ops that fell off XNNPACK in int8 (edgeq.tflite.rewrites),
    each proven equal to the calibrated graph in float on the sample before it becomes a candidate."""
    found = []
    with tempfile.TemporaryDirectory(prefix="edgeq-rewrite-") as scratch:
        reference = Path(scratch) / "float.tflite"
        reference.write_bytes(float_model)
        want = LiteRTRunner(reference, "none", 1).run(sample)
        for op, name in REWRITE_FOR:
            data = rewrite(name, float_model) if op in off and name not in found else None
            if data is None:
                continue
            path = Path(scratch) / f"{name}.tflite"
            path.write_bytes(data)
            got = LiteRTRunner(path, "none", 1).run(sample)
            if all(np.allclose(w, g, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(w).max()))) for w, g in zip(want, got)):
                found.append(name)
    return found


def _covered(rewrites: tuple[str, ...]) -> set[str]:
    """The op types `rewrites` keep on XNNPACK."""
    return {op for op, name in REWRITE_FOR if name in rewrites}


def _name(keep: tuple[str, ...], rewrites: tuple[str, ...]) -> str:
    rewrite = "rewrite " + " + ".join(REWRITES[r] for r in rewrites) if rewrites else ""
    kept = "keep " + " + ".join(keep) + " in float" if keep else ""
    return ", ".join(part for part in (rewrite, kept) if part) or "as converted"


def sqnr_scorer(float_model: bytes, samples: list[list[np.ndarray]]) -> Callable[[bytes], tuple[float | None, None]]:
    """Worst-output SQNR against float on `samples`, for candidates when there is no budget."""
    powers = powers_scorer(float_model, samples)

    def score(model: bytes) -> tuple[float | None, None]:
        return float(powers(model).worst_db()[0]), None

    return score


def powers_scorer(
    float_model: bytes, samples: list[list[np.ndarray]], roles: Mapping[str, str] | None = None
) -> Callable[[bytes], Powers]:
    """Each output's signal and error power per sample against float on `samples` (XNNPACK, one
    thread), and how far the outputs that decide (classes, sequences, scores, masks: their role,
    `roles` as --output-role gives them) agree with float's decisions."""
    with tempfile.TemporaryDirectory(prefix="edgeq-latency-") as scratch:
        path = Path(scratch) / "float.tflite"
        path.write_bytes(float_model)
        reference = LiteRTRunner(path, "xnnpack", 1)
        wanted = [reference.run(s) for s in samples]
        found = decide_roles(reference.output_facts(), dict(roles or {}), None, [tuple(p.shape) for p in reference.input_ports])
        deciding = {k: role.role for k, role in enumerate(found) if role.role in DECIDING}

    def score(model: bytes) -> Powers:
        with tempfile.TemporaryDirectory(prefix="edgeq-latency-") as scratch:
            path = Path(scratch) / "candidate.tflite"
            path.write_bytes(model)
            runner = LiteRTRunner(path, "xnnpack", 1)
            return Powers.of(wanted, [runner.run(sample) for sample in samples], deciding)

    return score
