"""Whether a candidate beats a baseline on samples neither was fitted on, beyond what those few
samples can tell: the worst-output SQNR of both, and a paired bootstrap over the samples of its
difference (the same resampled samples for both, so what they share cancels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROUNDS = 2000  # bootstrap resamplings
LEVEL = 0.90  # the interval's coverage: a gain is sure when its lower end is above zero
CEILING_DB = 200.0  # an exact match counts as this: an infinite figure has no difference


@dataclass(frozen=True)
class Powers:
    """Per output and sample: the float output's sum of squares and the error's."""

    signal: np.ndarray  # (outputs, samples)
    noise: np.ndarray  # (outputs, samples)

    @classmethod
    def of(cls, wanted: list[list[np.ndarray]], got: list[list[np.ndarray]]) -> Powers:
        """`wanted`, `got`: per sample, the outputs (float reference, candidate) in one order."""
        signal = [[float(np.sum(np.square(w, dtype=np.float64))) for w in sample] for sample in wanted]
        noise = [
            [float(np.sum(np.square(np.asarray(g, np.float64) - w))) for w, g in zip(want, have)]
            for want, have in zip(wanted, got)
        ]
        return cls(np.asarray(signal).T, np.asarray(noise).T)

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


@dataclass(frozen=True)
class Gain:
    """A candidate's worst-output SQNR minus the baseline's, on the judging samples, with its interval."""

    db: float
    low_db: float
    high_db: float
    samples: int

    @property
    def sure(self) -> bool:
        """Better beyond what the samples can tell: the interval lies above zero."""
        return self.low_db > 0

    def describe(self) -> str:
        return (
            f"{self.db:+.2f} dB ({LEVEL:.0%} interval {self.low_db:+.2f} to {self.high_db:+.2f} dB over {self.samples} samples)"
        )


def gain(baseline: Powers, candidate: Powers, rounds: int = ROUNDS, seed: int = 0) -> Gain:
    """The paired bootstrap of `candidate`'s worst-output SQNR gain over `baseline`'s."""
    picks = np.random.default_rng(seed).integers(0, baseline.samples, (rounds, baseline.samples))
    differences = candidate.worst_db(picks) - baseline.worst_db(picks)
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(differences, [tail, 1 - tail])
    return Gain(float(candidate.worst_db()[0] - baseline.worst_db()[0]), float(low), float(high), baseline.samples)
