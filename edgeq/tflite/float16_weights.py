"""Float .tflite files often keep their weights as float16 behind DEQUANTIZE ops. TensorFlow's
flatbuffer calibrator crashes on such a file; folded into plain float32 constants it is the float
model the calibrator and quantizer expect.

Each DEQUANTIZE of a constant float16 tensor is dropped; its output tensor becomes a constant with
the float32 values; the float16 buffers and the opcodes no op uses any more leave the file.
"""

from __future__ import annotations

import numpy as np


def has_float16_weights(model) -> bool:
    """`model`: a parsed TfliteModel."""
    return any(
        op.type == "DEQUANTIZE" and model.tensors[op.inputs[0]].dtype == "float16" and model.tensors[op.inputs[0]].is_constant
        for op in model.operators
    )


def fold_float16_weights(data: bytes) -> bytes:
    from ai_edge_litert import schema_py_generated as schema

    def to_float32(source, raw: bytes):
        if source.type != schema.TensorType.FLOAT16:
            return None
        return np.frombuffer(raw, dtype=np.float16).astype(np.float32), schema.TensorType.FLOAT32

    return fold_constant_ops(data, schema.BuiltinOperator.DEQUANTIZE, to_float32)


def fold_constant_ops(data: bytes, builtin: int, fold) -> bytes:
    """Drop each `builtin` op whose first input is a constant that `fold(tensor, raw bytes)` turns
    into (values, tensor type); its output becomes that constant. The old buffers are emptied and
    opcodes no op uses any more leave the file."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    matching = {i for i, code in enumerate(root.operatorCodes) if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin}
    for graph in root.subgraphs:
        kept = []
        for op in graph.operators:
            source = graph.tensors[op.inputs[0]] if op.opcodeIndex in matching else None
            buffer = root.buffers[source.buffer] if source is not None else None
            folded = (
                fold(source, bytes(bytearray(buffer.data)))
                if buffer is not None and buffer.data is not None and len(buffer.data)
                else None
            )
            if folded is None:
                kept.append(op)
                continue
            values, tensor_type = folded
            constant = schema.BufferT()
            constant.data = np.frombuffer(values.tobytes(), dtype=np.uint8)
            root.buffers.append(constant)
            target = graph.tensors[op.outputs[0]]
            target.buffer, target.type = len(root.buffers) - 1, tensor_type
            buffer.data = None  # the old copy does not stay in the file
        graph.operators = kept
    drop_unused_opcodes(root)
    builder = flatbuffers.Builder(len(data) * 4 + 1024)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def drop_unused_opcodes(root) -> None:
    used = sorted({op.opcodeIndex for graph in root.subgraphs for op in graph.operators})
    remap = {old: new for new, old in enumerate(used)}
    root.operatorCodes = [root.operatorCodes[i] for i in used]
    for graph in root.subgraphs:
        for op in graph.operators:
            op.opcodeIndex = remap[op.opcodeIndex]
