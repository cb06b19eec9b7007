"""Which input scaling a conversion uses, and where it came from: the user's flags, what the model
states about itself (TFLite Model Metadata, a Keras Rescaling/Normalization layer at its input),
or the default. A model that states its normalization is never calibrated at another range silently.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgeq.data.samples import FIELDS, Preprocessing

SCALE_FIELDS = ("value_range", "mean", "std")


@dataclass(frozen=True)
class Statement:
    """The input scaling a model states, and the evidence (e.g. "model metadata")."""

    preprocessing: Preprocessing
    origin: str


def resolve(given: Preprocessing, stated: Statement | None) -> tuple[Preprocessing, dict[str, str], list[str]]:
    """The preprocessing to calibrate with, each field's origin, and a warning where a flag
    contradicts what the model states (the flag wins: the user may know better)."""
    scale_given = given.value_range is not None or given.mean is not None
    origins = {f: "flag" if getattr(given, f) not in (None, Preprocessing().resize) else "default" for f in FIELDS}
    if stated is None:
        return given, origins, []
    if not scale_given:
        s = stated.preprocessing
        origins.update({f: stated.origin for f in SCALE_FIELDS if getattr(s, f) is not None})
        return replace(given, value_range=s.value_range, mean=s.mean, std=s.std), origins, []
    mine, theirs = given.expected_range(), stated.preprocessing.expected_range()
    if mine and theirs and any(abs(a - b) > 1e-3 * max(1.0, abs(b)) for a, b in zip(mine, theirs)):
        return given, origins, [f"the flags scale inputs to [{mine[0]:.4g}, {mine[1]:.4g}] ({given.describe()}), but the "
                                f"{stated.origin} states [{theirs[0]:.4g}, {theirs[1]:.4g}] ({stated.preprocessing.describe()}); "
                                "using the flags"]
    return given, origins, []
