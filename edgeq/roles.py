"""What each model output is, decided from evidence: classes (argmax means something), a score (one
probability), or values (boxes, landmarks, embeddings, feature maps).

An argmax is taken only over a `classes` output. Every role records the evidence it came from, so
a figure computed on an output can say why it was computed that way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeq.errors import UsageError

ROLES = ("classes", "score", "values")


@dataclass(frozen=True)
class Role:
    role: str  # classes | score | values
    evidence: str  # where the role came from, in words


@dataclass(frozen=True)
class OutputFacts:
    """What is known of one output without running it."""

    name: str
    shape: tuple[int, ...]
    producer: str | None = None  # the op that computes it (through QUANTIZE/DEQUANTIZE/RESHAPE)
    labels: int | None = None  # labels the model's metadata attaches to it

    @property
    def size(self) -> int:
        return math.prod(self.shape) if self.shape else 1


def parse_roles(values: list[str] | tuple[str, ...]) -> dict[str, str]:
    """--output-role KEY=classes|score|values (repeatable)."""
    given = {}
    for value in values:
        key, sep, role = value.rpartition("=")
        if not sep or not key or role not in ROLES:
            raise UsageError(f"--output-role {value!r}: use KEY=classes, KEY=score or KEY=values")
        given[key] = role
    return given


def decide_roles(outputs: list[OutputFacts], given: dict[str, str] | None = None,
                 class_count: int | None = None) -> list[Role]:
    """One role per output. `given`: the user's --output-role by output name; `class_count`: the
    number of classes labelled samples name (class folders or the model's labels), which marks the
    one output of exactly that many values as classes."""
    given = dict(given or {})
    unknown = sorted(set(given) - {o.name for o in outputs})
    if unknown:
        raise UsageError(f"--output-role {unknown[0]!r}: the model has no such output; its outputs are "
                         + ", ".join(o.name for o in outputs))
    matching = [o.name for o in outputs if class_count and class_count > 1 and o.size == class_count]
    roles = []
    for o in outputs:
        if o.name in given:
            roles.append(Role(given[o.name], "--output-role"))
        elif o.producer == "SOFTMAX" and o.size > 1:
            roles.append(Role("classes", f"SOFTMAX over {o.size} values"))
        elif o.producer == "LOGISTIC" and o.size == 1:
            roles.append(Role("score", "LOGISTIC of one value"))
        elif o.labels and o.labels == o.size and o.size > 1:
            roles.append(Role("classes", f"{o.labels} labels in the model's metadata"))
        elif matching == [o.name]:
            roles.append(Role("classes", f"{class_count} labelled classes in the data, and the only output of {class_count} values"))
        else:
            roles.append(Role("values", "no evidence of classes (no SOFTMAX, labels or --output-role)"))
    return roles
