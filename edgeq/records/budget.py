"""The accuracy budget a conversion is held to (--max-drop, --min-agreement, --min-sqnr, --min-iou),
and how it judges one candidate's scores, output by output."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeq.core.errors import UsageError
from edgeq.core.units import number
from edgeq.scoring.gates import AccuracyLimits
from edgeq.scoring.metrics import Scores


@dataclass(frozen=True)
class Budget(AccuracyLimits):
    """The accuracy limits a conversion's candidates are held to, at least one of them."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_drop is None and self.min_agreement is None and self.min_sqnr is None and self.min_iou is None:
            raise UsageError("--eval-data needs a budget: --max-drop PTS, --min-agreement FRAC, --min-sqnr DB or --min-iou FRAC")

    @classmethod
    def given(
        cls, max_drop: float | None, min_agreement: float | None, min_sqnr: float | None, min_iou: float | None = None
    ) -> Budget | None:
        """The budget of these limits, or None when none is given."""
        if max_drop is None and min_agreement is None and min_sqnr is None and min_iou is None:
            return None
        return cls(max_drop, min_agreement, min_sqnr, min_iou)

    def judged_by_sqnr(self, role: str) -> bool:
        """A classes (or sequence) output is judged by agreement when the budget has such a criterion,
        a mask by its IoU when it has --min-iou; by SQNR otherwise."""
        if role == "mask" and self.min_iou is not None:
            return False
        return self.min_sqnr is not None and (
            role not in ("classes", "sequence") or (self.min_agreement is None and self.max_drop is None)
        )

    def judged(self, scores: Scores) -> list[tuple[str, float, str]]:
        """Each criterion applied to each output: (output, margin, what a miss reads as). The margin
        is >= 0 when met: dB for SQNR, points for agreement and for the top-1 drop (which belongs to
        the headline classes output)."""
        acc, found = scores.accuracy, []
        for out in scores.outputs:
            name = out.name
            if self.judged_by_sqnr(out.role):
                margin = math.inf if out.exact else -math.inf if out.sqnr_db is None else out.sqnr_db - self.min_sqnr
                found.append((name, margin, f"{name}: SQNR {_fmt(out.sqnr_db)} dB < {self.min_sqnr:g}"))
            if out.role in ("classes", "sequence") and self.min_agreement is not None and out.agreement is not None:
                found.append(
                    (
                        name,
                        100 * (out.agreement - self.min_agreement),
                        f"{name}: agreement {_fmt(out.agreement, 4)} < {self.min_agreement:g}",
                    )
                )
            if out.role == "mask" and self.min_iou is not None and out.iou is not None:
                found.append((name, 100 * (out.iou - self.min_iou), f"{name}: IoU {_fmt(out.iou, 4)} < {self.min_iou:g}"))
            if self.max_drop is not None and name == acc.output:
                drop = acc.top1_drop_pts
                found.append(
                    (
                        name,
                        -math.inf if drop is None else self.max_drop - drop,
                        f"{name}: top-1 drop {_fmt(drop)} pts > {self.max_drop:g}",
                    )
                )
        return found

    def margins(self, scores: Scores) -> dict[str, float]:
        """Each judged output's worst margin over the budget (>= 0 meets)."""
        found: dict[str, float] = {}
        for name, margin, _ in self.judged(scores):
            found[name] = min(margin, found.get(name, math.inf))
        return found

    def missed(self, scores: Scores) -> list[str]:
        """What a model's scores miss, per output; empty when it meets the budget."""
        return [miss for _, margin, miss in self.judged(scores) if margin < 0]

    def quality(self, scores: Scores) -> float:
        """Higher is better: the worst output's margin. Picks the best of models that all miss."""
        margins = self.margins(scores)
        return min(margins.values()) if margins else -math.inf


def _fmt(x: float | None, digits: int = 2) -> str:
    return number(x, f".{digits}f")
