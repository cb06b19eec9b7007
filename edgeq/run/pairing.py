"""Pair the inputs and outputs of a model with those of its reference: by signature key, else by
tensor name (as is, then without what converters add), else by unique shape, and by position only when both come from one source.

Two converters can list one model's outputs in different orders, so position alone would compare
the wrong tensors (and, when their shapes agree, report a wrong SQNR without any error).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from edgeq.core.errors import ModelError


@dataclass(frozen=True)
class Endpoint:
    """One input or output as the pairing sees it."""

    key: str | None  # signature key, when the model has a SignatureDef
    name: str  # tensor name
    shape: tuple[int, ...]

    @property
    def label(self) -> str:
        return self.key if self.key is not None else self.name


@dataclass(frozen=True)
class Pairing:
    method: str  # "signature key" | "tensor name" | "shape" | "position (same source)"
    order: tuple[int, ...]  # order[i]: the reference port paired with model port i


def plain_name(name: str) -> str:
    """A tensor name without what converters add: a `serving_default_` prefix, `:0`, `_N` copies."""
    name = name.split(";")[0]
    name = re.sub(r"^serving_default_", "", name)
    base, colon, index = name.partition(":")
    base = re.sub(r"_\d+$", "", base)
    return base + (colon + index if index not in ("", "0") else "")


def pair(side: str, model: list[Endpoint], reference: list[Endpoint], same_source: bool) -> Pairing:
    """Raise ModelError (exit 2) with both sides' keys and shapes when no rule pairs every port."""
    if len(model) != len(reference):
        raise ModelError(
            f"the model has {len(model)} {side} but the reference has {len(reference)}: "
            f"model {_describe(model)}; reference {_describe(reference)}"
        )
    for method, ident in (
        ("signature key", lambda p: p.key),
        ("tensor name", lambda p: p.name),
        ("tensor name", lambda p: plain_name(p.name)),
        ("shape", lambda p: p.shape),
    ):
        order = _by(model, reference, ident)
        if order is not None:
            return _checked(side, Pairing(method, order), model, reference)
    if same_source:
        return _checked(side, Pairing("position (same source)", tuple(range(len(model)))), model, reference)
    raise ModelError(
        f"cannot pair the {side} of the model with the reference by key, name or unique shape: "
        f"model {_describe(model)}; reference {_describe(reference)}; give a reference with the same "
        "signature keys (e.g. the Keras/SavedModel source)"
    )


def _by(model: list[Endpoint], reference: list[Endpoint], ident) -> tuple[int, ...] | None:
    """The pairing by `ident` when it is unique and present on both sides, else None."""
    mine, theirs = [ident(p) for p in model], [ident(p) for p in reference]
    if any(i is None for i in mine + theirs) or len(set(mine)) != len(mine) or set(mine) != set(theirs):
        return None
    if len(set(theirs)) != len(theirs):
        return None
    return tuple(theirs.index(i) for i in mine)


def _checked(side: str, pairing: Pairing, model: list[Endpoint], reference: list[Endpoint]) -> Pairing:
    for mine, j in zip(model, pairing.order):
        theirs = reference[j]
        if math.prod(mine.shape) != math.prod(theirs.shape):
            raise ModelError(
                f"{side} '{mine.label}' {list(mine.shape)} is paired by {pairing.method} with the reference's "
                f"'{theirs.label}' {list(theirs.shape)}, which has another element count; is it the right reference?"
            )
    return pairing


def _describe(ports: list[Endpoint]) -> str:
    return "[" + ", ".join(f"{p.label} {list(p.shape)}" for p in ports) + "]"
