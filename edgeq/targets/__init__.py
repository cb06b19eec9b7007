"""Target compatibility: which ops of a .tflite will run on the Edge TPU, NNAPI or XNNPACK, and why.

One rule table per target, each in its own module with the documentation it comes from. The
tables read the flatbuffer only (no TensorFlow, no interpreter), so this runs anywhere in
milliseconds. A prediction, not a promise: where a vendor tool or delegate is present,
`edgeq validate --target` checks it against the real thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from edgeq.core.errors import UsageError
from edgeq.tflite.model import Operator, Tensor, TfliteModel

TARGETS = ("edgetpu", "nnapi", "xnnpack")
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


@dataclass(frozen=True)
class Op:
    """What a rule sees of one operator: the op, its tensors, and constant values on demand."""

    model: TfliteModel
    op: Operator

    @property
    def type(self) -> str:
        return self.op.type

    @property
    def options(self) -> dict[str, Any]:
        return self.op.options

    def inputs(self) -> list[Tensor]:
        return [self.model.tensors[i] for i in self.op.inputs if i >= 0]

    def outputs(self) -> list[Tensor]:
        return [self.model.tensors[i] for i in self.op.outputs if i >= 0]

    def activations(self) -> list[Tensor]:
        return [t for t in self.inputs() + self.outputs() if not t.is_constant]

    def constant(self, position: int):
        index = self.op.inputs[position] if position < len(self.op.inputs) else -1
        return None if index < 0 else self.model.constant(index)

    def fused_activation(self) -> str:
        return ACTIVATIONS.get(self.options.get("FusedActivationFunction", 0), "?")

    def is_model_boundary(self) -> bool:
        """A QUANTIZE of a model input or a DEQUANTIZE to a model output (float I/O conversion)."""
        if self.type == "QUANTIZE":
            return any(i in self.model.inputs for i in self.op.inputs)
        if self.type == "DEQUANTIZE":
            return any(o in self.model.outputs for o in self.op.outputs)
        return False


Check = Callable[[Op], "str | None"]  # the reason the op cannot run, or None


@dataclass(frozen=True)
class Rule:
    """One supported op type: its documented constraint(s), checked by `checks`."""

    checks: tuple[Check, ...] = ()
    min_api: int = 0  # NNAPI: the Android API level that introduced the op

    def why_not(self, op: Op) -> str | None:
        for check in self.checks:
            reason = check(op)
            if reason:
                return reason
        return None


@dataclass
class Finding:
    index: int
    type: str
    on_target: bool
    reason: str | None = None
    min_api: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "min_api" or v is not None}


@dataclass
class TargetReport:
    target: str
    title: str
    verdict: str
    ops: list[Finding]
    first_unsupported_op: Finding | None
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    fallback: str = "the CPU"  # where ops the target does not take run

    @property
    def target_ops(self) -> int:
        return sum(f.on_target for f in self.ops)

    @property
    def cpu_ops(self) -> int:
        return len(self.ops) - self.target_ops

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "title": self.title,
            "verdict": self.verdict,
            "first_unsupported_op": self.first_unsupported_op and self.first_unsupported_op.to_dict(),
            "target_ops": self.target_ops,
            "cpu_ops": self.cpu_ops,
            **self.extra,
            "notes": self.notes,
            "sources": self.sources,
            "ops": [f.to_dict() for f in self.ops],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetReport:
        """A report read back from `to_dict()` (a results file's target section)."""
        from edgeq.core.schema import from_json

        names = {f.name for f in fields(cls)}
        extra = {k: v for k, v in data.items() if k not in names and k not in ("target_ops", "cpu_ops")}
        return from_json(cls, {**{k: v for k, v in data.items() if k in names}, "extra": extra}, "target report")

    def summary(self) -> dict[str, Any]:
        """What a manifest keeps: the report without its per-op findings."""
        return {k: v for k, v in self.to_dict().items() if k != "ops"}

    def warnings(self) -> list[str]:
        """One line per problem, for `edgeq convert --target`."""
        lines = []
        cpu = [f for f in self.ops if not f.on_target]
        if self.first_unsupported_op and self.target == "edgetpu":
            first = self.first_unsupported_op
            last = self.ops[-1].index
            span = f"op {first.index}" if first.index == last else f"ops {first.index}–{last}"
            lines.append(
                f"{self.title}: {span} will run on {self.fallback} because {first.type} (op {first.index}) {first.reason}"
            )
        else:
            lines += [f"{self.title}: op {f.index} {f.type} will run on {self.fallback}: {f.reason}" for f in cpu[:10]]
            if len(cpu) > 10:
                lines.append(f"and {len(cpu) - 10} more ops on the CPU (edgeq inspect --target {self.target})")
        return lines


def check_target(model: TfliteModel, target: str) -> TargetReport:
    if target not in TARGETS:
        raise UsageError(f"--target {target!r}: use one of {', '.join(TARGETS)}")
    from importlib import import_module

    return import_module(f"edgeq.targets.{target}").check(model)


def per_op(model: TfliteModel, rules: dict[str, Rule], common: tuple[Check, ...], title: str) -> list[Finding]:
    """Each op on its own: supported type, then the common checks, then the op's own."""
    findings = []
    for operator in model.operators:
        op = Op(model, operator)
        rule = rules.get(op.type)
        if rule is None:
            reason = f"is not among the operations {title} supports"
        else:
            reason = next((r for r in (c(op) for c in common) if r), None) or rule.why_not(op)
        findings.append(Finding(op.op.index, op.type, reason is None, reason, rule.min_api if rule and rule.min_api else None))
    return findings


# -- checks shared by the tables ----------------------------------------------------------------


def fused(*allowed: str) -> Check:
    def check(op: Op) -> str | None:
        act = op.fused_activation()
        return None if act in allowed else f"has a fused {act} activation (supported: {', '.join(allowed)})"

    return check


def static_shapes(op: Op) -> str | None:
    dynamic = [t.name for t in op.activations() if any(d < 0 for d in t.shape_signature)]
    return f"has a dynamic shape ({dynamic[0]}); fix the shape with --input-shape" if dynamic else None


def no_batch_axis(position: int, what: str) -> Check:
    """The constant axes input at `position` must not include axis 0 (the batch)."""

    def check(op: Op) -> str | None:
        axes = op.constant(position)
        if axes is None:
            return f"has non-constant {what} axes"
        rank = len(op.inputs()[0].shape) or 1
        return f"{what} along the batch dimension" if any(int(a) % rank == 0 for a in axes.ravel()) else None

    return check


def half_pixel_centers(op: Op) -> str | None:
    return "uses half_pixel_centers=True" if op.options.get("HalfPixelCenters") else None
