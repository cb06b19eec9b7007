"""Read a .tflite flatbuffer into plain dataclasses, with no TensorFlow and no interpreter.

Uses the schema bindings that ship with ai_edge_litert (lazy table accessors, so a 100 MB model
is not copied into Python lists).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.errors import ModelError

FLOAT_TYPES = frozenset({"float32", "float16", "float64", "bfloat16"})
BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
NUMPY_TYPES = {"int32": np.int32, "int64": np.int64, "float32": np.float32, "int8": np.int8, "uint8": np.uint8}


PASS_THROUGH_OPS = frozenset({"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE"})


@dataclass(frozen=True)
class Quantization:
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    axis: int

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1

    def matches(self, other: Quantization | None, rtol: float = 1e-5) -> bool:
        """The same zero-points and axis, scales within `rtol` (ranges measured on other kernels
        differ in the last float bits; see edgeq.conversion.calibration.observed)."""
        return (
            other is not None
            and self.zero_points == other.zero_points
            and self.axis == other.axis
            and len(self.scales) == len(other.scales)
            and all(abs(a - b) <= rtol * max(abs(a), abs(b)) for a, b in zip(self.scales, other.scales))
        )


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    constant_bytes: int  # bytes of constant data in the file; 0 for activations
    quantization: Quantization | None
    buffer: int = 0

    @property
    def is_constant(self) -> bool:
        return self.constant_bytes > 0

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_TYPES


@dataclass(frozen=True)
class Operator:
    index: int
    type: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    version: int = 1
    options: dict[str, Any] = field(default_factory=dict)  # builtin options by schema name, e.g. DilationWFactor


@dataclass(frozen=True)
class Signature:
    """A SignatureDef: keys app code uses, each mapped to a tensor index of `subgraph`."""

    key: str
    subgraph: int
    inputs: tuple[tuple[str, int], ...]
    outputs: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class TfliteModel:
    path: Path
    size: int
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraph_count: int
    data: bytes = field(default=b"", repr=False, compare=False)
    signatures: tuple[Signature, ...] = ()
    signature_tensors: dict[tuple[int, int], Tensor] = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def producers(self) -> dict[int, Operator]:
        """The operator that writes each non-constant tensor."""
        return {o: op for op in self.operators for o in op.outputs}

    def computing_operator(self, tensor: int) -> Operator | None:
        """The op that computes `tensor`, looking through what only converts or reshapes it
        (QUANTIZE, DEQUANTIZE, RESHAPE, SQUEEZE): the SOFTMAX of a softmax output of an int8 model."""
        op = self.producers.get(tensor)
        while op is not None and op.type in PASS_THROUGH_OPS and op.inputs:
            op = self.producers.get(op.inputs[0])
        return op

    def producing_op(self, tensor: int) -> str | None:
        """The type of `computing_operator(tensor)`."""
        op = self.computing_operator(tensor)
        return op.type if op is not None else None

    def constant(self, index: int) -> np.ndarray | None:
        """The values of a small constant tensor (axes, paddings, strides), or None."""
        t = self.tensors[index]
        if not t.is_constant or t.dtype not in NUMPY_TYPES:
            return None
        buf = _schema().Model.GetRootAs(self.data, 0).Buffers(t.buffer)
        raw = buf.DataAsNumpy() if buf.DataLength() else None
        return None if raw is None or isinstance(raw, int) else raw.view(NUMPY_TYPES[t.dtype]).reshape(t.shape)

    def op_tensors(self, op: Operator) -> list[Tensor]:
        return [self.tensors[i] for i in (*op.inputs, *op.outputs) if i >= 0]

    def op_precision(self, op: Operator) -> str:
        """'int8', 'int16', 'float', 'convert' (QUANTIZE/DEQUANTIZE) or 'other' for one operator.

        An op runs in float when any of its activations (non-constant tensors) is float; a
        dynamic-range op (float activations, int8 weights) therefore counts as float. Ops on int32
        shapes alone (SHAPE, STRIDED_SLICE, PACK of a dynamic batch) are 'other'.
        """
        if op.type in BOUNDARY_OPS:
            return "convert"
        activations = [t for t in self.op_tensors(op) if not t.is_constant]
        if any(t.is_float for t in activations):
            return "float"
        if any(t.dtype == "int16" for t in activations):
            return "int16"
        if any(t.dtype in ("int8", "uint8") for t in self.op_tensors(op)):
            return "int8"
        return "other"


def same_quantization(a: TfliteModel, b: TfliteModel, rtol: float = 1e-5) -> bool:
    """The same ops, and every tensor's scales (within `rtol`) and zero-points."""
    return (
        [op.type for op in a.operators] == [op.type for op in b.operators]
        and len(a.tensors) == len(b.tensors)
        and all(
            x.quantization == y.quantization or (x.quantization is not None and x.quantization.matches(y.quantization, rtol))
            for x, y in zip(a.tensors, b.tensors)
        )
    )


@cache
def _schema():  # imported on first use: the bindings are a 20k-line module
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


@cache
def _enum_names(enum_class_name: str) -> dict[int, str]:
    enum_class = getattr(_schema(), enum_class_name)
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def read_tflite(path: str | Path) -> TfliteModel:
    """Parse the main subgraph of a .tflite file; a non-TFLite file raises ModelError."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file; pass the path of a .tflite model")
    return parse_tflite(path.read_bytes(), path)


MAX_DIM = 1 << 24  # no real tensor has a dimension this large; a corrupt file easily does
MAX_ELEMENTS = 1 << 34
MAX_RANK = 16  # LiteRT's kernels take 8 at most (its RuntimeShape inlines 6)
ITEM_BYTES = {
    "float32": 4,
    "float16": 2,
    "float64": 8,
    "bfloat16": 2,
    "int32": 4,
    "uint32": 4,
    "int64": 8,
    "uint64": 8,
    "int16": 2,
    "uint16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "complex64": 8,
    "complex128": 16,
}
ZERO_POINT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "int4": (-8, 7)}


class _Invalid(ValueError):
    """A field that the schema's rules forbid, named for the user."""


def parse_tflite(data: bytes, path: str | Path = "<memory>") -> TfliteModel:
    """Parse and validate: every tensor, buffer, opcode and subgraph index in range, shapes sane."""
    path = Path(path)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier); is it a .tflite file?")
    try:
        model = _parse(path, data)
        _validate(model)
        return model
    except _Invalid as exc:
        raise ModelError(f"{path}: invalid TFLite model: {exc}; re-export or re-download it") from None
    except Exception as exc:  # a truncated or corrupt flatbuffer fails anywhere inside
        raise ModelError(f"{path}: corrupt or truncated TFLite flatbuffer; re-export or re-download it") from exc


def _validate(model: TfliteModel) -> None:
    count = len(model.tensors)

    def check(index: int, where: str, optional: bool = False) -> None:
        if not (0 <= index < count or (optional and index == -1)):
            raise _Invalid(f"{where} refers to tensor {index}, but the main subgraph has {count} tensors")

    for i in model.inputs:
        check(i, "a graph input")
    for i in model.outputs:
        check(i, "a graph output")
    for op in model.operators:
        for i in op.inputs:
            check(i, f"operator {op.index} ({op.type}) input", optional=True)
        for i in op.outputs:
            check(i, f"operator {op.index} ({op.type}) output")
    for t in model.tensors:
        for shape, what in ((t.shape, "shape"), (t.shape_signature, "shape signature")):
            dims = [d for d in shape if not (what == "shape signature" and d == -1)]
            if any(d < 0 or d > MAX_DIM for d in dims):
                raise _Invalid(f"tensor {t.index} has {what} {list(shape)}: dimensions must be 0..{MAX_DIM}")
        elements = 1
        for d in t.shape:
            elements *= d
        if elements > MAX_ELEMENTS:
            raise _Invalid(f"tensor {t.index} has shape {list(t.shape)}: too many elements")
    for sig in model.signatures:
        for key, i in sig.inputs + sig.outputs:
            if (sig.subgraph, i) not in model.signature_tensors:
                raise _Invalid(f"signature '{sig.key}' key '{key}' refers to a missing tensor {i}")
    _check_acyclic(model)


def _check_tensor(t: Tensor, stored: int, sparse: bool) -> None:
    """What LiteRT refuses when it loads the file, refused here first (so `inspect` and `bundle`
    never pass a file the app's interpreter will not open)."""
    if len(t.shape) > MAX_RANK or len(t.shape_signature) > MAX_RANK:
        raise _Invalid(f"tensor {t.index} has rank {len(t.shape)}; at most {MAX_RANK}")
    if t.dtype.startswith("type"):
        raise _Invalid(f"tensor {t.index} has an unknown type ({t.dtype[4:]})")
    elements = 1
    for d in t.shape:
        elements *= d
    if stored and not sparse and t.dtype in ITEM_BYTES and stored != elements * ITEM_BYTES[t.dtype]:
        raise _Invalid(
            f"tensor {t.index} ({t.dtype} {list(t.shape)}) needs {elements * ITEM_BYTES[t.dtype]} bytes, "
            f"but its buffer holds {stored}"
        )
    q = t.quantization
    if q is None:
        return
    if not all(math.isfinite(x) and x > 0 for x in q.scales):
        raise _Invalid(f"tensor {t.index} has a quantization scale that is not a finite positive number")
    if len(q.zero_points) != len(q.scales):
        raise _Invalid(f"tensor {t.index} has {len(q.scales)} scales but {len(q.zero_points)} zero-points")
    low, high = ZERO_POINT_RANGE.get(t.dtype, (-(1 << 63), (1 << 63) - 1))
    if not all(low <= z <= high for z in q.zero_points):
        raise _Invalid(f"tensor {t.index} has a zero-point outside {t.dtype}'s range {low}..{high}")
    if q.axis < 0 or (q.per_channel and not (q.axis < len(t.shape) and t.shape[q.axis] == len(q.scales))):
        raise _Invalid(
            f"tensor {t.index} has {len(q.scales)} per-channel scales along dimension {q.axis} of its shape {list(t.shape)}"
        )


def _check_acyclic(model: TfliteModel) -> None:
    """Every op's inputs are computed before it runs, in some order (LiteRT runs ops in file order;
    a cycle would never finish)."""
    producer = {o: op.index for op in model.operators for o in op.outputs}
    waiting = {op.index: {producer[i] for i in op.inputs if i in producer} - {op.index} for op in model.operators}
    users: dict[int, list[int]] = {}
    for op, needs in waiting.items():
        for need in needs:
            users.setdefault(need, []).append(op)
    ready = [op for op, needs in waiting.items() if not needs]
    done = 0
    while ready:
        op = ready.pop()
        done += 1
        for user in users.get(op, ()):
            waiting[user].discard(op)
            if not waiting[user]:
                ready.append(user)
    if done != len(model.operators) or any(set(op.inputs) & set(op.outputs) for op in model.operators):
        raise _Invalid("its graph has a cycle (an op needs its own output)")


def _parse(path: Path, data: bytes) -> TfliteModel:
    schema = _schema()
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise ValueError("no subgraph")
    graph = model.Subgraphs(0)
    type_names = _enum_names("TensorType")
    op_names = _enum_names("BuiltinOperator")

    buffer_bytes = []
    for b in range(model.BuffersLength()):
        buf = model.Buffers(b)
        if buf.Offset() > 1 and buf.Offset() + buf.Size() > len(data):
            raise _Invalid(
                f"buffer {b} lies at bytes {buf.Offset()}..{buf.Offset() + buf.Size()}, past the file's end ({len(data)})"
            )
        buffer_bytes.append(buf.Size() if buf.Offset() > 1 else buf.DataLength())
    for m in range(model.MetadataLength()):
        if not 0 <= model.Metadata(m).Buffer() < model.BuffersLength():
            raise _Invalid(
                f"metadata entry {m} refers to buffer {model.Metadata(m).Buffer()}, but the model has "
                f"{model.BuffersLength()} buffers"
            )

    tensors = [_tensor(graph.Tensors(i), i, buffer_bytes, type_names) for i in range(graph.TensorsLength())]

    operators = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if not 0 <= op.OpcodeIndex() < model.OperatorCodesLength():
            raise _Invalid(
                f"operator {i} has opcode index {op.OpcodeIndex()}, but the model has {model.OperatorCodesLength()} opcodes"
            )
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = op_names.get(builtin, f"OP{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{_text(code.CustomCode(), f'operator {i} custom code')}"
        operators.append(
            Operator(
                index=i,
                type=name,
                inputs=tuple(int(x) for x in op.InputsAsNumpy()) if op.InputsLength() else (),
                outputs=tuple(int(x) for x in op.OutputsAsNumpy()) if op.OutputsLength() else (),
                version=code.Version(),
                options=_options(op),
            )
        )

    signatures = _signatures(model)
    return TfliteModel(
        path=path,
        size=len(data),
        tensors=tuple(tensors),
        operators=tuple(operators),
        inputs=tuple(int(x) for x in graph.InputsAsNumpy()),
        outputs=tuple(int(x) for x in graph.OutputsAsNumpy()),
        subgraph_count=model.SubgraphsLength(),
        data=data,
        signatures=signatures,
        signature_tensors={
            (sig.subgraph, i): _tensor(model.Subgraphs(sig.subgraph).Tensors(i), i, buffer_bytes, type_names)
            for sig in signatures
            for _, i in sig.inputs + sig.outputs
            if 0 <= sig.subgraph < model.SubgraphsLength() and 0 <= i < model.Subgraphs(sig.subgraph).TensorsLength()
        },
    )


def _tensor(t, i: int, buffer_bytes: list[int], type_names: dict[int, str]) -> Tensor:
    if not 0 <= t.Buffer() < max(len(buffer_bytes), 1):
        raise _Invalid(f"tensor {i} refers to buffer {t.Buffer()}, but the model has {len(buffer_bytes)} buffers")
    if t.ShapeLength() > MAX_RANK or t.ShapeSignatureLength() > MAX_RANK:
        raise _Invalid(f"tensor {i} has rank {max(t.ShapeLength(), t.ShapeSignatureLength())}; at most {MAX_RANK}")
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    signature = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else shape
    tensor = Tensor(
        index=i,
        name=_text(t.Name(), f"tensor {i}'s name"),
        shape=shape,
        shape_signature=signature,
        dtype=type_names.get(t.Type(), f"type{t.Type()}").lower(),
        constant_bytes=buffer_bytes[t.Buffer()] if 0 < t.Buffer() < len(buffer_bytes) else 0,
        quantization=_quantization(t.Quantization()),
        buffer=t.Buffer(),
    )
    _check_tensor(tensor, tensor.constant_bytes, t.Sparsity() is not None)
    return tensor


def _text(raw: bytes | None, what: str) -> str:
    """A name from the file: UTF-8, as the flatbuffer schema says (LiteRT's Python API decodes it)."""
    try:
        return (raw or b"").decode("utf-8")
    except UnicodeDecodeError:
        raise _Invalid(f"{what} is not UTF-8 text") from None


def _signatures(model) -> tuple[Signature, ...]:
    found = []
    for s in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(s)

        def maps(n, get):
            return tuple((_text(get(i).Name(), "a signature key"), int(get(i).TensorIndex())) for i in range(n))

        found.append(
            Signature(
                _text(sig.SignatureKey(), "a signature's name"),
                int(sig.SubgraphIndex()),
                maps(sig.InputsLength(), sig.Inputs),
                maps(sig.OutputsLength(), sig.Outputs),
            )
        )
    return tuple(found)


def _options(op) -> dict[str, Any]:
    """An operator's builtin options as {schema field name: scalar}."""
    kind, table = op.BuiltinOptionsType(), op.BuiltinOptions()
    cls = getattr(_schema(), _enum_names("BuiltinOptions").get(kind, ""), None) if kind else None
    if cls is None or table is None:
        return {}
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return {name: getattr(options, name)() for name in _scalar_fields(cls)}


@cache
def _scalar_fields(cls) -> tuple[str, ...]:
    """Accessors of the generated options class that take no argument and return a scalar."""
    import inspect

    skip = ("Init", "GetRootAs", "GetRootAs" + cls.__name__, cls.__name__ + "BufferHasIdentifier")
    names = []
    for name, fn in inspect.getmembers(cls, inspect.isfunction):
        if name[0].isupper() and name not in skip and not name.endswith(("AsNumpy", "Length", "IsNone")):
            if len(inspect.signature(fn).parameters) == 1:
                names.append(name)
    return tuple(names)


def _quantization(q) -> Quantization | None:
    if q is None or q.ScaleLength() == 0:
        return None
    zero_points = tuple(int(z) for z in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else (0,) * q.ScaleLength()
    return Quantization(
        scales=tuple(float(s) for s in q.ScaleAsNumpy()),
        zero_points=zero_points,
        axis=int(q.QuantizedDimension()),
    )
