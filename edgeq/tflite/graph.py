"""The graph of a float (calibrated) model as the accuracy search sees it: its layers in
execution order, the layers that write each output, and which outputs each layer feeds.

A TFLite subgraph lists its operators in execution order, which is a topological order, so a
prefix or a contiguous run of that list is a region of the graph (the model's front end, its
head) in the sense of Polygraphy's `debug precision`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeq.tflite.model import BOUNDARY_OPS, TfliteModel


@dataclass(frozen=True)
class Layer:
    """One op that quantization can keep in float: `node` is the name the quantizer's denylist takes."""

    position: int  # in execution order, among the layers
    node: str  # the op's first output tensor
    op_type: str
    op: int  # index in the subgraph
    outputs: frozenset[int]  # the model outputs (positions in model.outputs) this layer feeds


def layers(model: TfliteModel, exclude: frozenset[str] = frozenset(), exclude_ops: frozenset[str] = frozenset()) -> list[Layer]:
    """Every op with a float output, in execution order, with the outputs it feeds; `exclude`:
    nodes, `exclude_ops`: op types already kept in float (not candidates)."""
    fed = _outputs_fed(model)
    found: list[Layer] = []
    for op in model.operators:
        outs = [i for i in op.outputs if i >= 0]
        if op.type in BOUNDARY_OPS or not outs or not model.tensors[outs[0]].is_float:
            continue
        node = model.tensors[outs[0]].name
        if node not in exclude and op.type not in exclude_ops:
            found.append(Layer(len(found), node, op.type, op.index, fed.get(op.index, frozenset())))
    return found


def _outputs_fed(model: TfliteModel) -> dict[int, frozenset[int]]:
    """For each op index, the positions of the model outputs it feeds."""
    fed: dict[int, set[int]] = {}
    for tensor, positions in tensor_outputs(model).items():
        op = model.producers.get(tensor)
        if op is not None:
            fed.setdefault(op.index, set()).update(positions)
    return {op: frozenset(positions) for op, positions in fed.items()}


def tensor_outputs(model: TfliteModel) -> dict[int, frozenset[int]]:
    """For each non-constant tensor, the positions of the model outputs it feeds (walked back from each output)."""
    fed: dict[int, set[int]] = {}
    for position, output in enumerate(model.outputs):
        stack, seen = [output], set()
        while stack:
            tensor = stack.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            fed.setdefault(tensor, set()).add(position)
            op = model.producers.get(tensor)
            if op is not None:
                stack.extend(i for i in op.inputs if i >= 0 and not model.tensors[i].is_constant)
    return {tensor: frozenset(positions) for tensor, positions in fed.items()}


@dataclass(frozen=True)
class LayerGraph:
    """What the accuracy search walks: the candidate layers in execution order, the model's
    output names (in `model.outputs` order) and the layer that writes each output."""

    layers: tuple[Layer, ...]
    output_names: tuple[str, ...]
    heads: tuple[Layer | None, ...]

    @classmethod
    def of(
        cls, model: TfliteModel, exclude: frozenset[str] = frozenset(), exclude_ops: frozenset[str] = frozenset()
    ) -> LayerGraph:
        """The candidates of `layers(model, exclude, exclude_ops)` and the layer computing each output."""
        found = layers(model, exclude, exclude_ops)
        by_op = {layer.op: layer for layer in found}
        computing = [model.computing_operator(t) for t in model.outputs]
        heads = tuple(by_op.get(op.index) if op is not None else None for op in computing)
        return cls(tuple(found), tuple(model.tensors[t].name for t in model.outputs), heads)

    def feeding(self, outputs: set[int]) -> list[Layer]:
        """The layers that feed any of `outputs` (positions), in execution order."""
        return [layer for layer in self.layers if layer.outputs & outputs]


def cut_at(data: bytes, tensors: list[int]) -> bytes:
    """The model `data` (one subgraph) with `tensors` as its outputs, in that order, and only the
    ops they need; its signature keeps the inputs and names each output by its tensor's name. A
    prefix of the graph, run as a model of its own (an accelerator's culprit is found so)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = root.subgraphs[0]
    producer = {int(t): i for i, op in enumerate(graph.operators) for t in op.outputs}
    needed, stack = set(), list(tensors)
    while stack:
        op = producer.get(int(stack.pop()))
        if op is not None and op not in needed:
            needed.add(op)
            stack.extend(int(t) for t in graph.operators[op].inputs if t >= 0)
    graph.operators = [op for i, op in enumerate(graph.operators) if i in needed]
    graph.outputs = list(tensors)
    for signature in root.signatureDefs or []:
        outputs = []
        for t in tensors:
            entry = schema.TensorMapT()
            name = graph.tensors[t].name
            entry.name, entry.tensorIndex = name.decode() if isinstance(name, bytes) else name, t
            outputs.append(entry)
        signature.outputs = outputs
    root.signatureDefs = (root.signatureDefs or [])[:1]
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
