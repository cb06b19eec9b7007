"""What is inside a .tflite: I/O quantization, op and dtype census, weights, size, float leftovers.

Needs no TensorFlow and no interpreter: everything comes from the flatbuffer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeq.tflite.model import Tensor, TfliteModel


@dataclass(frozen=True)
class TensorInfo:
    """What app code needs to feed or read a tensor: real = scale * (q - zero_point)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None

    @classmethod
    def of(cls, tensor: Tensor) -> TensorInfo:
        q = tensor.quantization
        return cls(
            name=tensor.name,
            shape=tuple(tensor.shape),
            dtype=tensor.dtype,
            scale=q.scales[0] if q and not q.per_channel else None,
            zero_point=q.zero_points[0] if q and not q.per_channel else None,
        )


@dataclass(frozen=True)
class Port(TensorInfo):
    """A signature's input or output: the key app code uses, and the tensor behind it."""

    key: str = ""
    index: int = 0

    @property
    def tensor(self) -> TensorInfo:
        return TensorInfo(self.name, self.shape, self.dtype, self.scale, self.zero_point)


@dataclass(frozen=True)
class SignatureInfo:
    """One signature as app code uses it: key -> tensor, for every input and output."""

    key: str
    subgraph: int
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]

    @classmethod
    def of(cls, model: TfliteModel) -> list[SignatureInfo]:
        def ports(sig, pairs) -> tuple[Port, ...]:
            return tuple(
                Port(**asdict(TensorInfo.of(model.signature_tensors[(sig.subgraph, i)])), key=key, index=i) for key, i in pairs
            )

        return [cls(s.key, s.subgraph, ports(s, s.inputs), ports(s, s.outputs)) for s in model.signatures]


@dataclass(frozen=True)
class FloatOp:
    """An op that computes in float in a quantized model."""

    index: int
    type: str
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class OpCount:
    """How many ops of one type, and on which kernels (int8, int16x8, float)."""

    count: int = 0
    int8: int = 0
    int16: int = 0
    float: int = 0


@dataclass(frozen=True)
class Weights:
    """The constant tensors that are weights, by how they are stored."""

    per_channel: int = 0
    per_tensor: int = 0
    float: int = 0
    weight_bytes: int = 0


@dataclass(frozen=True)
class ModelSummary:
    path: str
    bytes: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    op_census: dict[str, OpCount]
    ops_total: int
    ops_int8: int
    dtype_census: dict[str, int]
    weights: Weights
    float_ops: list[FloatOp]
    float_tensors: list[str]
    float_bytes: int | None  # bytes of the float model: from the manifest beside the file, else estimated
    float_bytes_source: str
    size_ratio: float | None
    subgraphs: int
    signatures: list[SignatureInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "precision": self.precision}

    @property
    def precision(self) -> str:
        """int8 | int16x8 | float16 | dynamic | float: what the model computes in."""
        if any(c.int16 for c in self.op_census.values()):
            return "int16x8"
        if self.ops_int8:
            return "int8"
        if self.dtype_census.get("float16"):
            return "float16"
        if self.weights.per_channel or self.weights.per_tensor:
            return "dynamic"
        return "float"


def float_ops(model: TfliteModel) -> list[FloatOp]:
    return [
        FloatOp(op.index, op.type, tuple(model.tensors[i].name for i in op.outputs if i >= 0))
        for op in model.operators
        if model.op_precision(op) == "float"
    ]


def summarize(
    model: TfliteModel, float_bytes: int | None = None, float_from: str = "", notes: tuple[str, ...] = ()
) -> ModelSummary:
    """`float_bytes`: the float model's size where a manifest records it (`float_from` names it);
    else it is estimated. `notes`: what the caller knows about the file (a stale manifest)."""
    census: dict[str, Counter] = {}
    for op in model.operators:
        precision = model.op_precision(op)
        entry = census.setdefault(op.type, Counter())
        entry["count"] += 1
        if precision not in ("convert", "other"):
            entry[precision] += 1

    io = set(model.inputs) | set(model.outputs)
    constants = [t for t in model.tensors if t.is_constant]
    quantized = [
        t
        for t in constants
        if not (t.is_float and len(t.shape) >= 1) and t.quantization is not None and t.dtype in ("int8", "uint8", "int4")
    ]
    weights = Weights(
        sum(t.quantization.per_channel for t in quantized),
        sum(not t.quantization.per_channel for t in quantized),
        sum(t.is_float and len(t.shape) >= 1 for t in constants),
        sum(t.constant_bytes for t in constants),
    )

    op_census = {k: OpCount(**v) for k, v in sorted(census.items())}
    if not float_bytes:
        float_bytes, float_from = _estimated_float_size(model)
    found = list(notes)
    if model.subgraph_count > 1:
        found.append(f"{model.subgraph_count} subgraphs; only the main one is described (the signatures list all)")
    if not model.signatures:
        found.append("no SignatureDef: app code must address tensors by index")
    return ModelSummary(
        path=str(model.path),
        bytes=model.size,
        inputs=[TensorInfo.of(model.tensors[i]) for i in model.inputs],
        outputs=[TensorInfo.of(model.tensors[i]) for i in model.outputs],
        op_census=op_census,
        ops_total=len(model.operators),
        ops_int8=sum(c.int8 for c in op_census.values()),
        dtype_census=dict(sorted(Counter(t.dtype for t in model.tensors).items())),
        weights=weights,
        float_ops=float_ops(model),
        float_tensors=[t.name for t in model.tensors if t.is_float and t.index not in io and not t.is_constant],
        float_bytes=float_bytes,
        float_bytes_source=float_from,
        size_ratio=round(model.size / float_bytes, 4) if float_bytes else None,
        subgraphs=model.subgraph_count,
        signatures=SignatureInfo.of(model),
        notes=found,
    )


def _estimated_float_size(model: TfliteModel) -> tuple[int | None, str]:
    """The estimate widens every integer weight buffer to float32 (int32 biases stay 4 bytes), which
    is what the float model of the same graph stores."""
    widen = {"int8": 4, "uint8": 4, "int16": 2, "float16": 2}
    extra = sum(t.constant_bytes * (widen[t.dtype] - 1) for t in model.tensors if t.is_constant and t.dtype in widen)
    if extra == 0:
        return None, "model is already float"
    return model.size + extra, "estimate (integer weights widened to float32)"
