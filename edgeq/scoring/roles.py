"""What each model output is, decided from evidence: classes (argmax means something), a sequence
(a class per step: [1, T, C], e.g. a CTC recognizer), a score (one probability), a mask (a
probability per pixel of a map the input's size: segmentation), or values (boxes, landmarks,
embeddings, feature maps).

An argmax is taken only over a `classes` output, and over the last axis of each step of a
`sequence` one: never over a flattened multi-axis tensor. Every role records the evidence it came from, so
a figure computed on an output can say why it was computed that way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeq.core.errors import UsageError

ROLES = ("classes", "sequence", "score", "mask", "values")


@dataclass(frozen=True)
class Role:
    role: str  # classes | sequence | score | values
    evidence: str  # where the role came from, in words
    blank: int | None = None  # a CTC sequence: the blank class, dropped when decoding


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

    @property
    def steps(self) -> bool:
        """A class per step, not one class: more than one axis of more than one value beside the batch
        ([1, T, C]), or a time-major [T, 1, C] (a recurrent net's output, steps first)."""
        time_major = len(self.shape) == 3 and self.shape[0] > 1 and self.shape[1] == 1 and self.shape[2] > 1
        return sum(d > 1 for d in self.shape[1:]) > 1 or time_major


def plane(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The (height, width) of a one-channel map: [1, H, W], [1, H, W, 1] or [1, 1, H, W]; else None."""
    kept = [d for d in shape if d != 1]
    return (kept[0], kept[1]) if len(kept) == 2 and len(shape) in (3, 4) else None


def spatial(shape: tuple[int, ...]) -> set[tuple[int, int]]:
    """An image input's (height, width), NHWC or NCHW."""
    return {(shape[1], shape[2]), (shape[2], shape[3])} if len(shape) == 4 else set()


def parse_roles(values: list[str] | tuple[str, ...]) -> dict[str, str]:
    """--output-role KEY=classes|sequence|ctc:BLANK|score|mask|values (repeatable)."""
    given = {}
    for value in values:
        key, sep, role = value.rpartition("=")
        ctc = role.startswith("ctc:") and role[4:].isdigit()
        if not sep or not key or (role not in ROLES and not ctc):
            raise UsageError(
                f"--output-role {value!r}: use KEY=classes, KEY=sequence, KEY=ctc:BLANK (a CTC sequence "
                "whose blank class is BLANK), KEY=score, KEY=mask or KEY=values"
            )
        given[key] = role
    return given


def parse_feedback(values: list[str] | tuple[str, ...] | dict[str, str]) -> dict[str, str]:
    """--feedback OUT=IN (repeatable)."""
    if isinstance(values, dict):
        return dict(values)
    pairs = {}
    for value in values:
        out, sep, into = value.partition("=")
        if not sep or not out or not into:
            raise UsageError(f"--feedback {value!r}: use OUT=IN, the output key fed back as the input key at the next step")
        pairs[out] = into
    return pairs


def roles_given(values: dict) -> dict[str, str]:
    """The roles among an API call's keyword settings, taken out of them: `output_roles` (a dict)
    and `output_role` (KEY=ROLE strings, as the command's flag)."""
    roles = dict(values.pop("output_roles", None) or {})
    return {**roles, **parse_roles(values.pop("output_role", None) or [])}


def decide_roles(
    outputs: list[OutputFacts],
    given: dict[str, str] | None = None,
    class_count: int | None = None,
    inputs: list[tuple[int, ...]] | tuple[tuple[int, ...], ...] = (),
) -> list[Role]:
    """One role per output. `given`: the user's --output-role by output name; `class_count`: the
    number of classes labelled samples name (class folders or the model's labels), which marks the
    one output of exactly that many values as classes; `inputs`: the input shapes, whose spatial
    size marks a LOGISTIC map of that size as a mask."""
    sizes = set().union(*map(spatial, inputs)) if inputs else set()
    given = dict(given or {})
    unknown = sorted(set(given) - {o.name for o in outputs})
    if unknown:
        raise UsageError(
            f"--output-role {unknown[0]!r}: the model has no such output; its outputs are " + ", ".join(o.name for o in outputs)
        )
    matching = [o.name for o in outputs if class_count and class_count > 1 and o.size == class_count]
    roles = []
    for o in outputs:
        if o.name in given:
            roles.append(_given(given[o.name], o))
        elif o.producer in ("SOFTMAX", "LOG_SOFTMAX") and o.steps:
            roles.append(
                Role(
                    "sequence",
                    f"{o.producer} over the last axis of a {list(o.shape)} output: "
                    f"{math.prod(o.shape[:-1])} steps of {o.shape[-1]} classes",
                )
            )
        elif o.producer in ("SOFTMAX", "LOG_SOFTMAX") and o.size > 1:
            roles.append(Role("classes", f"{o.producer} over {o.size} values"))
        elif o.producer == "LOGISTIC" and o.size == 1:
            roles.append(Role("score", "LOGISTIC of one value"))
        elif o.producer == "LOGISTIC" and plane(o.shape) in sizes:
            height, width = plane(o.shape) or (0, 0)
            roles.append(Role("mask", f"LOGISTIC over a {height}x{width} map, the input's size"))
        elif o.labels and o.labels == o.size and o.size > 1:
            roles.append(Role("classes", f"{o.labels} labels in the model's metadata"))
        elif matching == [o.name]:
            roles.append(
                Role("classes", f"{class_count} labelled classes in the data, and the only output of {class_count} values")
            )
        else:
            roles.append(Role("values", "no evidence of classes (no SOFTMAX, labels or --output-role)"))
    return roles


def _given(role: str, output: OutputFacts) -> Role:
    """The user's role; classes over several axes is a sequence (a class per step, never one flattened argmax)."""
    if role.startswith("ctc:"):
        return Role("sequence", f"--output-role (CTC, blank class {role[4:]})", int(role[4:]))
    if role == "classes" and output.steps:
        return Role("sequence", f"--output-role classes on a {list(output.shape)} output: a class per step over the last axis")
    return Role(role, "--output-role")
