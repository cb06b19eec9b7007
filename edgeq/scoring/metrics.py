"""Streaming comparison metrics: accumulate per sample, read out at the end, nothing stored."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

EXACT_DB = 100.0  # above this a layer only moves values (RESHAPE, MAX_POOL_2D): no quantization error
BROKEN_DB = 10.0  # an output or slice below this is likely broken
SLICE_GAP_DB = 20.0  # a worst slice this far below its output's SQNR is flagged too
MAX_SLICE_AXIS = 256  # per-slice error along axes of at most this many entries
DIGITS = 6  # significant digits kept of every error figure


def significant(x: float | None, digits: int = DIGITS) -> float | None:
    """`x` to `digits` significant digits, whatever its scale (1e-6 stays 1e-6, not 0)."""
    return None if x is None or not math.isfinite(x) else float(f"{x:.{digits}g}")


def sqnr_db(signal: float, noise: float) -> float | None:
    """10 log10(signal / noise); inf for an exact match; None without signal."""
    if signal <= 0 or math.isnan(signal):
        return None
    if not math.isfinite(noise) or not math.isfinite(signal):  # inf or NaN among the outputs: no signal survives
        return -math.inf
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


@dataclass(frozen=True)
class Accuracy:
    samples: int | None = None
    labelled: int | None = None
    float_top1: float | None = None
    int8_top1: float | None = None
    top1_drop_pts: float | None = None
    top_k: int | None = None
    float_topk: float | None = None
    int8_topk: float | None = None
    agreement: float | None = None
    output: str | None = None  # the `classes` output these figures are about; None: the model has none


@dataclass(frozen=True)
class Slice:
    """One index along one axis of an output (e.g. axis 1, index 7: the 8th of 84 rows)."""

    axis: int
    index: int
    sqnr_db: float


@dataclass(frozen=True)
class OutputScore:
    name: str
    role: str = "values"  # classes | score | values (edgeq.scoring.roles)
    role_from: str | None = None  # the evidence for the role
    sqnr_db: float | None = None  # None with exact: INT8 equals float
    exact: bool = False
    cosine: float | None = None
    max_abs_error: float | None = None
    mean_abs_error: float | None = None
    worst_slice: Slice | None = None
    agreement: float | None = None  # classes: top-1 agreement; sequence: per step; score: same side of `threshold`
    threshold: float | None = None
    sequence_match: float | None = None  # sequence: the share of samples whose decoded argmax path equals float's
    reference_name: str | None = None

    @property
    def broken(self) -> bool:
        """Likely broken: the output, or a slice of it, below BROKEN_DB."""
        slice_db = self.worst_slice.sqnr_db if self.worst_slice is not None else None
        return any(db is not None and db < BROKEN_DB for db in (self.sqnr_db, slice_db))

    @property
    def slice_flagged(self) -> bool:
        """A slice far below the output as a whole (a class score among boxes)."""
        w = self.worst_slice
        return w is not None and (w.sqnr_db < BROKEN_DB or (self.sqnr_db is not None and w.sqnr_db < self.sqnr_db - SLICE_GAP_DB))


@dataclass(frozen=True)
class Scores:
    """What a Scorer found over all samples: the headline accuracy, each output's error."""

    accuracy: Accuracy
    outputs: tuple[OutputScore, ...]
    worst_sqnr_db: float | None = None
    worst_slice_sqnr_db: float | None = None
    exact: bool = False


@dataclass
class OutputErrors:
    """INT8 (dequantized) vs float for one output tensor, over all samples, and per slice: per index
    along every axis of at most MAX_SLICE_AXIS entries but the batch axis (a class score among
    boxes, one landmark, one channel). `skip_axis`: an axis not to slice (the class axis of a
    `classes` output, which agreement judges)."""

    name: str
    skip_axis: int | None = None
    signal: float = 0.0  # sum of reference squares: SQNR's numerator and the cosine's reference norm
    noise: float = 0.0
    dot: float = 0.0
    norm_q: float = 0.0
    max_abs: float = 0.0
    sum_abs: float = 0.0
    count: int = 0
    slices: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # axis -> (signal, noise) per index

    def add(self, reference: np.ndarray, quantized: np.ndarray) -> None:
        r64, q64 = reference.astype(np.float64), quantized.astype(np.float64)
        diff = r64 - q64
        squares, errors = r64**2, diff**2  # per element: the sums below and the slices' sums
        self.signal += float(squares.sum())
        self.noise += float(errors.sum())
        self.dot += float(r64.ravel() @ q64.ravel())
        self.norm_q += float(q64.ravel() @ q64.ravel())
        self.max_abs = max(self.max_abs, float(np.abs(diff).max(initial=0.0)))
        self.sum_abs += float(np.abs(diff).sum())
        self.count += r64.size
        for axis in self._axes(r64.shape):
            others = tuple(a for a in range(r64.ndim) if a != axis)
            s, n = squares.sum(axis=others), errors.sum(axis=others)
            if axis in self.slices:
                s, n = s + self.slices[axis][0], n + self.slices[axis][1]
            self.slices[axis] = (s, n)

    def _axes(self, shape: tuple[int, ...]) -> list[int]:
        first = 1 if len(shape) > 1 else 0  # axis 0 is the batch axis
        skip = None if self.skip_axis is None else self.skip_axis % len(shape)
        return [a for a in range(first, len(shape)) if 1 < shape[a] <= MAX_SLICE_AXIS and a != skip]

    def worst_slice(self) -> Slice | None:
        """The slice with the lowest SQNR; slices without signal or error are skipped."""
        worst = None
        for axis, (signal, noise) in self.slices.items():
            for index in np.flatnonzero((signal > 0) & (noise > 0)):
                db = sqnr_db(float(signal[index]), float(noise[index]))
                if worst is None or db < worst[2]:
                    worst = (axis, int(index), db)
        return None if worst is None else Slice(worst[0], worst[1], round(worst[2], 3))

    def score(self, role: str, agreement: float | None, threshold: float | None) -> OutputScore:
        sqnr = sqnr_db(self.signal, self.noise)
        denominator = math.sqrt(self.signal * self.norm_q)
        return OutputScore(
            name=self.name,
            role=role,
            sqnr_db=None if sqnr is None or math.isinf(sqnr) else round(sqnr, 3),
            exact=self.count > 0 and self.noise == 0,
            cosine=significant(self.dot / denominator) if denominator else None,
            max_abs_error=significant(self.max_abs),
            mean_abs_error=significant(self.sum_abs / self.count) if self.count else None,
            worst_slice=self.worst_slice(),
            agreement=agreement,
            threshold=threshold,
        )


@dataclass
class TopK:
    """Top-1/top-k accuracy of both models against labels, and their top-1 agreement."""

    k: int = 5
    classes: int = 0
    count: int = 0
    labelled: int = 0
    agree: int = 0
    float_top1: int = 0
    int8_top1: int = 0
    float_topk: int = 0
    int8_topk: int = 0

    @property
    def has_topk(self) -> bool:
        """Top-k says something only when there are more than k classes."""
        return self.classes > self.k

    def add(self, reference: np.ndarray, quantized: np.ndarray, label: int | None) -> None:
        r, q = reference.ravel(), quantized.ravel()
        self.classes = r.size
        self.count += 1
        self.agree += int(np.argmax(r) == np.argmax(q))
        if label is None:
            return
        self.labelled += 1
        self.float_top1 += int(np.argmax(r) == label)
        self.int8_top1 += int(np.argmax(q) == label)
        self.float_topk += int(label in np.argsort(r)[-self.k :])
        self.int8_topk += int(label in np.argsort(q)[-self.k :])

    @property
    def agreement(self) -> float | None:
        return self.agree / self.count if self.count else None

    def accuracy(self, output: str) -> Accuracy:
        n = self.labelled
        f1 = self.float_top1 / n if n else None
        i1 = self.int8_top1 / n if n else None
        topk = n and self.has_topk
        return Accuracy(
            samples=self.count,
            labelled=n,
            float_top1=f1,
            int8_top1=i1,
            top1_drop_pts=100 * (f1 - i1) if n else None,
            top_k=self.k if self.has_topk else None,
            float_topk=self.float_topk / n if topk else None,
            int8_topk=self.int8_topk / n if topk else None,
            agreement=self.agreement,
            output=output,
        )


@dataclass
class Steps:
    """A sequence output ([1, T, C]): INT8 against float at each step (argmax over the last axis),
    and whole sequences: each argmax path decoded (with a CTC blank: repeats merged, blanks
    dropped) and compared."""

    blank: int | None = None
    steps: int = 0
    agree: int = 0
    sequences: int = 0
    same: int = 0

    def add(self, reference: np.ndarray, quantized: np.ndarray) -> None:
        want = reference.reshape(-1, reference.shape[-1]).argmax(-1)
        got = quantized.reshape(-1, quantized.shape[-1]).argmax(-1)
        self.steps += want.size
        self.agree += int(np.sum(want == got))
        self.sequences += 1
        self.same += int(self.decoded(want) == self.decoded(got))

    def decoded(self, path: np.ndarray) -> tuple[int, ...]:
        if self.blank is None:
            return tuple(int(c) for c in path)
        merged = [int(c) for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
        return tuple(c for c in merged if c != self.blank)

    @property
    def agreement(self) -> float | None:
        return self.agree / self.steps if self.steps else None

    @property
    def match(self) -> float | None:
        return self.same / self.sequences if self.sequences else None


@dataclass
class Decision:
    """A score output: how often INT8 and float fall on the same side of the threshold."""

    threshold: float = 0.5
    count: int = 0
    agree: int = 0

    def add(self, reference: np.ndarray, quantized: np.ndarray) -> None:
        self.count += reference.size
        self.agree += int(np.sum((reference.ravel() >= self.threshold) == (quantized.ravel() >= self.threshold)))

    @property
    def agreement(self) -> float | None:
        return self.agree / self.count if self.count else None


class Scorer:
    """Every output's error, and per role: top-1/top-k and agreement for each `classes` output
    (labels score the headline one), per-step agreement and sequence match for each `sequence`
    output, decision agreement for each `score` output. No argmax is taken over a `values`
    output. One place for local and on-device runs alike."""

    def __init__(
        self,
        names: list[str],
        roles: list[str],
        top_k: int = 5,
        headline: int | None = None,
        threshold: float = 0.5,
        blanks: dict[int, int] | None = None,
    ):
        self.names, self.roles, self.blanks = names, roles, dict(blanks or {})
        self.errors = [OutputErrors(n, -1 if r in ("classes", "sequence") else None) for n, r in zip(names, roles)]
        self.topks = {i: TopK(top_k) for i, r in enumerate(roles) if r == "classes"}
        self.sequences = {i: Steps(self.blanks.get(i)) for i, r in enumerate(roles) if r == "sequence"}
        self.decisions = {i: Decision(threshold) for i, r in enumerate(roles) if r == "score"}
        self.headline = headline if headline is not None else next(iter(self.topks), None)
        self.count = 0

    def add(self, reference: list[np.ndarray], quantized: list[np.ndarray], label: int | None) -> None:
        for acc, r, q in zip(self.errors, reference, quantized):
            acc.add(r, q)
        for i, topk in self.topks.items():
            topk.add(reference[i], quantized[i], label if i == self.headline else None)
        for i, steps in self.sequences.items():
            steps.add(reference[i], quantized[i])
        for i, decision in self.decisions.items():
            decision.add(reference[i], quantized[i])
        self.count += 1

    def result(self) -> Scores:
        outputs = []
        for i, (error, role) in enumerate(zip(self.errors, self.roles)):
            per_role = self.topks.get(i) or self.sequences.get(i) or self.decisions.get(i)
            score = error.score(
                role, per_role.agreement if per_role else None, self.decisions[i].threshold if i in self.decisions else None
            )
            outputs.append(replace(score, sequence_match=self.sequences[i].match) if i in self.sequences else score)
        head = self.topks.get(self.headline) if self.headline is not None else None
        first_sequence = next(iter(self.sequences), None)
        accuracy = (
            head.accuracy(self.names[self.headline])
            if head is not None
            else Accuracy(
                samples=self.count, agreement=self.sequences[first_sequence].agreement, output=self.names[first_sequence]
            )
            if first_sequence is not None
            else Accuracy(samples=self.count)
        )
        sqnrs = [o.sqnr_db for o in outputs if o.sqnr_db is not None]
        slices = [o.worst_slice.sqnr_db for o in outputs if o.worst_slice]
        return Scores(
            accuracy,
            tuple(outputs),
            min(sqnrs) if sqnrs else None,
            min(slices) if slices else None,
            bool(outputs) and all(o.exact for o in outputs),
        )
