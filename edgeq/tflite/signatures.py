"""SignatureDefs of a .tflite: read them as app code sees them, and write them back where a
converter path dropped them.

App code addresses tensors by signature key (`get_signature_runner`, Android's `runSignature`,
LiteRT's CompiledModel), so a converted model must keep the keys its float model had.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeq.core.errors import ConversionError


@dataclass(frozen=True)
class SignatureSpec:
    """One SignatureDef as (key, tensor name) pairs, in the order the converter lists them."""

    key: str
    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str]]


def _plain(name: str) -> str:
    """A graph tensor name as the TF1 converter names the TFLite tensor: 'x:0' -> 'x'."""
    return re.sub(r":0$", "", name)


def with_signatures(model: bytes, specs: list[SignatureSpec]) -> bytes:
    """`model` (one subgraph) with `specs` as its SignatureDefs, tensors found by name."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = root.subgraphs[0]
    by_name: dict[str, int] = {}
    for i in list(graph.inputs) + list(graph.outputs):
        by_name[graph.tensors[i].name.decode() if isinstance(graph.tensors[i].name, bytes) else graph.tensors[i].name] = int(i)

    def index(key: str, tensor: str) -> int:
        for candidate in (tensor, _plain(tensor)):
            if candidate in by_name:
                return by_name[candidate]
        raise ConversionError(
            f"cannot restore signature key '{key}': no graph input or output named {tensor!r} (the model has {sorted(by_name)})"
        )

    root.signatureDefs = []
    for spec in specs:
        signature = schema.SignatureDefT()
        signature.signatureKey = spec.key
        signature.subgraphIndex = 0
        signature.inputs = [_tensor_map(schema, k, index(k, t)) for k, t in spec.inputs]
        signature.outputs = [_tensor_map(schema, k, index(k, t)) for k, t in spec.outputs]
        root.signatureDefs.append(signature)
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _tensor_map(schema, key: str, index: int):
    entry = schema.TensorMapT()
    entry.name, entry.tensorIndex = key, index
    return entry


def positions(names: list[str], wanted: list[str]) -> list[int]:
    """Where each of `wanted` is in `names`; the identity when they are not the same keys."""
    if sorted(names) != sorted(wanted) or len(set(names)) != len(names):
        return list(range(len(names)))
    return [names.index(w) for w in wanted]


def calibrator_order(model, names: list[str]) -> list[int]:
    """Positions in `names` (signature input keys) in the order TensorFlow's calibrator feeds a
    keyed sample: the main signature's inputs by ascending tensor index."""
    main = [s for s in model.signatures if s.subgraph == 0]
    if not main:
        return list(range(len(names)))
    return positions(names, [key for key, _ in sorted(main[0].inputs, key=lambda item: item[1])])
