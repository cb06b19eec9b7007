"""Which input scaling a conversion uses, and where it came from: the user's flags, what the model
states about itself (TFLite Model Metadata, a Keras Rescaling/Normalization layer at its input),
or the default. A model that states its normalization is never calibrated at another range silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.data.samples import FIELDS, Preprocessing, PreprocessingOverride

SCALE_FIELDS = ("value_range", "mean", "std")


@dataclass(frozen=True)
class Statement:
    """The input scaling a model states, and the evidence (e.g. "model metadata")."""

    preprocessing: Preprocessing
    origin: str


@dataclass(frozen=True)
class Resolved:
    """The preprocessing samples go through, each setting's origin, and what contradicted it."""

    preprocessing: Preprocessing
    origins: dict[str, str]  # setting -> FLAG | MANIFEST | what the model states ("model metadata", a Keras layer) | DEFAULT
    conflicts: tuple[str, ...] = ()


FLAG, MANIFEST, DEFAULT = "flag", "manifest", "default"


def given_flags(preprocessing: Preprocessing) -> PreprocessingOverride:
    """The settings of `preprocessing` that differ from the defaults: what a user's flags set."""
    default = Preprocessing()
    return PreprocessingOverride(
        **{f: getattr(preprocessing, f) for f in FIELDS if getattr(preprocessing, f) != getattr(default, f)}
    )


def resolve(flags: PreprocessingOverride, recorded: Preprocessing | None = None, stated: Statement | None = None) -> Resolved:
    """The one resolver of every command: the flags, field by field, over the manifest's
    preprocessing (`recorded`: what the model was calibrated with), else over the scaling the model
    states about itself, else over the defaults. A flag's scale that contradicts the model's
    statement wins, with a warning (the user may know better)."""
    if recorded is not None:
        base, origin = recorded, MANIFEST
    elif stated is not None:
        base, origin = stated.preprocessing, stated.origin
    else:
        base, origin = Preprocessing(), DEFAULT
    merged, sources = base.merged(flags)
    origins = {
        k: FLAG
        if v == "given"
        else origin
        if origin == MANIFEST or (k in SCALE_FIELDS and getattr(base, k) is not None)
        else DEFAULT
        for k, v in sources.items()
    }
    conflicts: list[str] = []
    if stated is not None and recorded is None and (flags.value_range is not None or flags.mean is not None):
        mine, theirs = merged.expected_range(), stated.preprocessing.expected_range()
        if mine and theirs and any(abs(a - b) > 1e-3 * max(1.0, abs(b)) for a, b in zip(mine, theirs)):
            conflicts.append(
                f"the flags scale inputs to [{mine[0]:.4g}, {mine[1]:.4g}] ({merged.describe()}), but the "
                f"{stated.origin} states [{theirs[0]:.4g}, {theirs[1]:.4g}] ({stated.preprocessing.describe()}); "
                "using the flags"
            )
    return Resolved(merged, origins, tuple(conflicts))
