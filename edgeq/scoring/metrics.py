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
    iou: float | None = None  # mask: the INT8 mask's intersection over union with float's, at `threshold`
    boundary_f: float | None = None  # mask: F-score of the INT8 mask's boundary against float's, within one pixel
    ties: int | None = None  # mask: INT8 pixels exactly at `threshold` (the >= rule, not the model, decides them)
    iou_ties_out: float | None = None  # mask: the IoU with those pixels counted as background instead

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


@dataclass
class Mask:
    """A mask output (a probability per pixel): per-pixel agreement at the threshold, the IoU of the
    INT8 mask with float's, the INT8 pixels exactly at the threshold, and the F-score of the INT8
    mask's boundary against float's (a boundary pixel within one pixel of the other's counts)."""

    threshold: float = 0.5
    count: int = 0
    agree: int = 0
    both: int = 0
    either: int = 0
    ties: int = 0
    strict: list[int] = field(default_factory=lambda: [0, 0])  # both and either with INT8 ties as background
    boundary: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # INT8 hits, INT8 pixels, float hits, float pixels

    def add(self, reference: np.ndarray, quantized: np.ndarray) -> None:
        want, got = reference >= self.threshold, quantized >= self.threshold
        self.count += want.size
        self.agree += int(np.sum(want == got))
        self.both += int(np.sum(want & got))
        self.either += int(np.sum(want | got))
        self.ties += int(np.sum(quantized == self.threshold))
        above = quantized > self.threshold
        self.strict = [self.strict[0] + int(np.sum(want & above)), self.strict[1] + int(np.sum(want | above))]
        a, b = _edges(_planes(got)), _edges(_planes(want))
        self.boundary = [
            self.boundary[0] + int(np.sum(a & _grown(b))),
            self.boundary[1] + int(a.sum()),
            self.boundary[2] + int(np.sum(b & _grown(a))),
            self.boundary[3] + int(b.sum()),
        ]

    @property
    def agreement(self) -> float | None:
        return self.agree / self.count if self.count else None

    @property
    def iou(self) -> float | None:
        return self.both / self.either if self.either else (1.0 if self.count else None)

    @property
    def iou_ties_out(self) -> float | None:
        return self.strict[0] / self.strict[1] if self.strict[1] else (1.0 if self.count else None)

    @property
    def boundary_f(self) -> float | None:
        hits_q, pixels_q, hits_f, pixels_f = self.boundary
        if not pixels_q and not pixels_f:
            return 1.0 if self.count else None
        precision, recall = (hits_q / pixels_q if pixels_q else 0.0), (hits_f / pixels_f if pixels_f else 0.0)
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _planes(mask: np.ndarray) -> np.ndarray:
    """A mask as (maps, height, width): its size-1 axes dropped, leading axes stacked."""
    kept = [d for d in mask.shape if d != 1] or [1]
    return mask.reshape((-1, *kept[-2:]) if len(kept) >= 2 else (1, 1, kept[0]))


def _edges(maps: np.ndarray) -> np.ndarray:
    """The pixels of each map that differ from a 4-neighbour: the mask's boundary."""
    edge = np.zeros_like(maps)
    down, right = maps[:, 1:, :] != maps[:, :-1, :], maps[:, :, 1:] != maps[:, :, :-1]
    edge[:, 1:, :] |= down
    edge[:, :-1, :] |= down
    edge[:, :, 1:] |= right
    edge[:, :, :-1] |= right
    return edge


def _grown(maps: np.ndarray) -> np.ndarray:
    """Each map dilated by one pixel (3x3)."""
    padded = np.pad(maps, ((0, 0), (1, 1), (1, 1)))
    height, width = maps.shape[1:]
    out = np.zeros_like(maps)
    for dy in range(3):
        for dx in range(3):
            out |= padded[:, dy : dy + height, dx : dx + width]
    return out


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
        self.masks = {i: Mask(threshold) for i, r in enumerate(roles) if r == "mask"}
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
        for i, mask in self.masks.items():
            mask.add(reference[i], quantized[i])
        self.count += 1

    def result(self) -> Scores:
        outputs = []
        for i, (error, role) in enumerate(zip(self.errors, self.roles)):
            per_role = self.topks.get(i) or self.sequences.get(i) or self.decisions.get(i) or self.masks.get(i)
            threshold = per_role.threshold if isinstance(per_role, (Decision, Mask)) else None
            score = error.score(role, per_role.agreement if per_role else None, threshold)
            if i in self.sequences:
                score = replace(score, sequence_match=self.sequences[i].match)
            if i in self.masks:
                mask = self.masks[i]
                score = replace(
                    score,
                    iou=significant(mask.iou),
                    boundary_f=significant(mask.boundary_f),
                    ties=mask.ties,
                    iou_ties_out=significant(mask.iou_ties_out),
                )
            outputs.append(score)
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
