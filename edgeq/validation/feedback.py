"""Streaming validation of a stateful model (--feedback OUT=IN): the held-out samples run in their
order as sequences, each model feeding its own OUT back as the next step's IN (the INT8 model its
own, the float model its own), as an app runs a recurrent model in a loop. The data's IN values
are used at each sequence start only. A sequence starts at the first sample and wherever the
.npz's optional `starts` array is nonzero."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeq.run.litert import LiteRTRunner
from edgeq.run.sequences import fed_back, feedback_pairs
from edgeq.scoring.metrics import sqnr_db

DRIFT_POINTS = 16  # the drift series: SQNR against step index, at most this many points


@dataclass(frozen=True)
class DriftPoint:
    index: int  # the step's index in its sequence; 0: the first
    sqnr_db: float | None
    samples: int  # sequences that reached this step


@dataclass(frozen=True)
class StreamedOutput:
    name: str
    sqnr_db: float | None  # over every step of every sequence
    end_sqnr_db: float | None  # over the last step of each sequence
    first_step_sqnr_db: float | None
    drift: tuple[DriftPoint, ...] = ()


@dataclass(frozen=True)
class Streaming:
    """What the app sees when it feeds the model its own state, beside the per-window figures."""

    feedback: dict[str, str]  # output key -> the input key it feeds
    sequences: int
    steps: int
    outputs: tuple[StreamedOutput, ...]
    note: str = "per step, each model fed its own state; the per-window figures above fed the data's state to both"


def streamed(
    int8: LiteRTRunner,
    reference: LiteRTRunner,
    samples: list[list[np.ndarray]],
    starts: set[int],
    feedback: dict[str, str],
    to_reference: list[int],
    output_order: Sequence[int],
) -> Streaming:
    """Run `samples` (INT8 input order, data order) as sequences with `feedback`; score every output per step."""
    outs = [p.label for p in int8.output_ports]
    pairs = feedback_pairs(outs, [p.label for p in int8.input_ports], feedback)
    shapes = [p.shape for p in int8.output_ports]

    def floating(feeds: list[np.ndarray]) -> list[np.ndarray]:  # the reference, in the INT8 model's input and output order
        got = reference.run([feeds[k] for k in to_reference])
        return [got[j].reshape(shapes[m]) for m, j in enumerate(output_order)]

    quantized, wanted = fed_back(int8.run, samples, pairs, starts), fed_back(floating, samples, pairs, starts)
    signal: list[list] = [[] for _ in outs]  # per output, per step index: [signal, noise, sequences] sums
    ends = [[0.0, 0.0] for _ in outs]
    whole = [[0.0, 0.0] for _ in outs]
    step, sequences = 0, 0
    last_pair: list[tuple[float, float]] = []  # the last step's (signal, noise) per output: a sequence's end
    for n, (state_f, state_q) in enumerate(zip(wanted, quantized)):
        if n == 0 or n in starts:
            step, sequences = 0, sequences + 1
            if n > 0:
                _add_end(ends, last_pair)
        last_pair = []
        for m, (want, have) in enumerate(zip(state_f, state_q)):
            s, e = float(np.sum(np.square(want, dtype=np.float64))), float(np.sum(np.square(want.astype(np.float64) - have)))
            while len(signal[m]) <= step:
                signal[m].append([0.0, 0.0, 0])
            signal[m][step][0] += s
            signal[m][step][1] += e
            signal[m][step][2] += 1
            whole[m][0] += s
            whole[m][1] += e
            last_pair.append((s, e))
        step += 1
    if samples:
        _add_end(ends, last_pair)
    outputs = tuple(
        StreamedOutput(outs[m], _db(*whole[m]), _db(*ends[m]), _db(*signal[m][0][:2]) if signal[m] else None, _drift(signal[m]))
        for m in range(len(outs))
    )
    return Streaming(dict(feedback), sequences, len(samples), outputs)


def _add_end(ends: list[list[float]], last: list[tuple[float, float]]) -> None:
    for m, (s, e) in enumerate(last):
        ends[m][0] += s
        ends[m][1] += e


def _db(signal: float, noise: float) -> float | None:
    found = sqnr_db(signal, noise)
    return None if found is None or math.isinf(found) else round(found, 3)


def _drift(per_step: list[list[float]]) -> tuple[DriftPoint, ...]:
    """SQNR against step index, at up to DRIFT_POINTS evenly spaced steps (the last one included)."""
    if not per_step:
        return ()
    picks = sorted(set(np.linspace(0, len(per_step) - 1, min(DRIFT_POINTS, len(per_step))).round().astype(int)))
    return tuple(DriftPoint(int(t), _db(per_step[t][0], per_step[t][1]), int(per_step[t][2])) for t in picks)
