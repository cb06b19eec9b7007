"""Judging choices on samples they were not made on: the split of --eval-data into tuning and
held-back samples, whether a candidate beats a baseline beyond what the judging samples can tell
(the worst-output SQNR of both and, where outputs decide classes, the worst agreement of their
decisions with float's; a paired bootstrap over the samples of each difference: the same resampled
samples for both, so what they share cancels), and what few samples can tell."""

from __future__ import annotations

import math
from collections.abc import Mapping, Set
from dataclasses import dataclass

import numpy as np

ROUNDS = 2000  # bootstrap resamplings
LEVEL = 0.90  # the interval's coverage: a gain is sure when its lower end is not below zero
CEILING_DB = 200.0  # an exact match counts as this: an infinite figure has no difference
HOLD_BACK_EVERY = 3  # every third sample (or sequence) of --eval-data confirms, and is not tuned on
MIN_HELD_BACK = 4  # fewer held-back samples confirm nothing: then every sample tunes, and the record says so


@dataclass(frozen=True)
class Split:
    """Sample indices of --eval-data: those choices are made on, those that confirm them."""

    tuning: tuple[int, ...]
    held_back: tuple[int, ...]

    @classmethod
    def of(cls, count: int, starts: Set[int] = frozenset()) -> Split:
        """Every HOLD_BACK_EVERY-th sample held back (every such sequence when `starts` marks where
        sequences start), so data in class order splits evenly; none when that gives fewer than
        MIN_HELD_BACK."""
        unit = np.cumsum([i > 0 and i in starts for i in range(count)]) if starts else np.arange(count)
        held = tuple(i for i in range(count) if unit[i] % HOLD_BACK_EVERY == HOLD_BACK_EVERY - 1)
        if len(held) < MIN_HELD_BACK or len(held) == count:
            return cls(tuple(range(count)), ())
        return cls(tuple(i for i in range(count) if unit[i] % HOLD_BACK_EVERY != HOLD_BACK_EVERY - 1), held)

    @staticmethod
    def starts_within(indices: tuple[int, ...], starts: Set[int]) -> set[int]:
        """Where sequences start among the samples `indices` picks (their new positions)."""
        return {n for n, i in enumerate(indices) if n == 0 or i in starts or i - 1 != indices[n - 1]}


THRESHOLD = 0.5  # a score's or a mask's decision: at or above it


def agreement(role: str, want: np.ndarray, got: np.ndarray) -> float:
    """The share of one sample's decisions that `got` takes as `want` does, by the output's role:
    classes and sequences by argmax over the last axis (per step), a score by its side of the
    threshold, a mask by the IoU of its pixels at or above it (1 where both are empty)."""
    if role in ("classes", "sequence"):
        return float(np.mean(np.argmax(want, -1) == np.argmax(got, -1)))
    wanted, given = np.asarray(want) >= THRESHOLD, np.asarray(got) >= THRESHOLD
    if role == "score":
        return float(np.mean(wanted == given))
    union = np.sum(wanted | given)
    return float(np.sum(wanted & given) / union) if union else 1.0


DECIDING = ("classes", "sequence", "score", "mask")  # the roles whose outputs are an app's decisions


@dataclass(frozen=True)
class Powers:
    """Per output and sample: the float output's sum of squares and the error's; per deciding
    output (its role one of DECIDING) and sample, how far its decisions agree with float's."""

    signal: np.ndarray  # (outputs, samples)
    noise: np.ndarray  # (outputs, samples)
    agreed: np.ndarray | None = None  # (deciding outputs, samples), None when no output decides

    @classmethod
    def of(cls, wanted: list[list[np.ndarray]], got: list[list[np.ndarray]], deciding: Mapping[int, str] | None = None) -> Powers:
        """`wanted`, `got`: per sample, the outputs (float reference, candidate) in one order;
        `deciding`: the role of each output (by position) whose decisions matter to the app."""
        signal = [[float(np.sum(np.square(w, dtype=np.float64))) for w in sample] for sample in wanted]
        noise = [
            [float(np.sum(np.square(np.asarray(g, np.float64) - w))) for w, g in zip(want, have)]
            for want, have in zip(wanted, got)
        ]
        agreed = [[agreement(role, want[k], have[k]) for want, have in zip(wanted, got)] for k, role in (deciding or {}).items()]
        return cls(np.asarray(signal).T, np.asarray(noise).T, np.asarray(agreed) if agreed else None)

    @property
    def samples(self) -> int:
        return self.signal.shape[1]

    def worst_db(self, picks: np.ndarray | None = None) -> np.ndarray:
        """The worst output's SQNR over the samples `picks` ((rounds, samples) indices; all when None)."""
        index = np.arange(self.samples)[None] if picks is None else picks
        signal, noise = self.signal[:, index].sum(-1), self.noise[:, index].sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            db = 10 * np.log10(signal / noise)
        return np.nan_to_num(np.minimum(db, CEILING_DB), nan=CEILING_DB, posinf=CEILING_DB).min(0)

    def worst_agreement(self, picks: np.ndarray | None = None) -> np.ndarray:
        """The worst deciding output's agreement with float over the samples `picks`, in points."""
        assert self.agreed is not None
        index = np.arange(self.samples)[None] if picks is None else picks
        return 100 * self.agreed[:, index].mean(-1).min(0)


@dataclass(frozen=True)
class Gain:
    """A candidate's worst-output SQNR minus the baseline's, on the judging samples, with its
    interval; and where outputs decide, the worst agreement's difference in points, with its own."""

    db: float
    low_db: float
    high_db: float
    samples: int
    points: tuple[float, float, float] | None = None  # agreement difference, low, high; None when no output decides

    @property
    def sure(self) -> bool:
        """Better beyond what the samples can tell: better on the samples, and worse on none of the
        resamplings the interval covers (a lower end of exactly zero: those resamplings tie, as where
        the worst output is one both compute alike). Where outputs decide, a candidate that surely
        agrees with float's decisions less often is never better, whatever its SQNR (the OCR model
        whose SQNR rose while its sequences agreed 10 points less); one that surely agrees more is.
        A difference within the interval (near-ties flip both ways) leaves the SQNR to judge."""
        by_sqnr = self.db > 0 and self.low_db >= 0
        if self.points is None:
            return by_sqnr
        points, low, high = self.points
        return not (points < 0 and high < 0) and (by_sqnr or (points > 0 and low >= 0))

    def describe(self) -> str:
        figure = f"{self.db:+.2f} dB ({LEVEL:.0%} interval {self.low_db:+.2f} to {self.high_db:+.2f} dB"
        if self.points is not None:
            points, low, high = self.points
            figure += f"), decisions agreeing with float {points:+.2f} pts ({low:+.2f} to {high:+.2f} pts"
        return f"{figure} over {self.samples} samples)"


def gain(baseline: Powers, candidate: Powers, rounds: int = ROUNDS, seed: int = 0) -> Gain:
    """The paired bootstrap of `candidate`'s worst-output SQNR gain over `baseline`'s (and of its
    worst agreement's, where outputs decide)."""
    picks = np.random.default_rng(seed).integers(0, baseline.samples, (rounds, baseline.samples))
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(candidate.worst_db(picks) - baseline.worst_db(picks), [tail, 1 - tail])
    points = None
    if baseline.agreed is not None and candidate.agreed is not None:
        spread = np.quantile(candidate.worst_agreement(picks) - baseline.worst_agreement(picks), [tail, 1 - tail])
        difference = candidate.worst_agreement()[0] - baseline.worst_agreement()[0]
        points = (float(difference), float(spread[0]), float(spread[1]))
    return Gain(float(candidate.worst_db()[0] - baseline.worst_db()[0]), float(low), float(high), baseline.samples, points)


FEW_SAMPLES = 32  # an SQNR judged on fewer samples moves by dB on the next ones


def proportion_interval(share: float, samples: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of a share (an agreement) seen on `samples` samples."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    centre = (share + z * z / (2 * samples)) / (1 + z * z / samples)
    half = z * math.sqrt(share * (1 - share) / samples + z * z / (4 * samples * samples)) / (1 + z * z / samples)
    return max(0.0, centre - half), min(1.0, centre + half)


def few_samples_notes(budget: dict[str, float | None], agreements: list[float], samples: int, which: str = "") -> list[str]:
    """What a budget judged on `samples` samples can tell: an agreement whose interval reaches below
    the limit it met, an SQNR judged on fewer than FEW_SAMPLES samples."""
    notes, counted = [], f"{samples} {which}".strip()
    limit = budget.get("min_agreement")
    if limit is not None and agreements:
        low, high = proportion_interval(min(agreements), samples)
        if low < limit <= min(agreements):
            notes.append(
                f"the agreement budget was judged on {counted} --eval-data samples: {min(agreements):.4f} there has a "
                f"{LEVEL:.0%} interval of {low:.4f} to {high:.4f}, which reaches below the {limit:g} asked; it may miss on "
                f"the next samples: judge on more (validate on held-out data)"
            )
    if budget.get("min_sqnr") is not None and samples < FEW_SAMPLES:
        notes.append(
            f"the SQNR budget was judged on {counted} --eval-data samples (fewer than {FEW_SAMPLES}): on the next samples "
            "the figure may differ by dB; judge on more (validate on held-out data)"
        )
    return notes
