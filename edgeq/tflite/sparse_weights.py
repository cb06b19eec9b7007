"""Sparse weights: some float .tflite files store constants in TFLite's sparse format behind DENSIFY
ops (TensorFlow's EXPERIMENTAL_SPARSITY, MediaPipe's pose and full-range face detectors). The
quantizer leaves such a weight in float and the converted file does not load; densified into a plain
constant first, the model is the float model the calibrator and quantizer expect.

Each DENSIFY of a constant sparse tensor is dropped; its output becomes a constant with the dense
values (TFLite's FormatConverter order: traversal order, block map, DENSE/SPARSE_CSR dimensions).
"""

from __future__ import annotations

import numpy as np

from edgeq.tflite.float16_weights import drop_unused_opcodes

DTYPES = {0: np.float32, 1: np.float16, 9: np.int8, 3: np.uint8}  # TensorType FLOAT32, FLOAT16, INT8, UINT8


def has_sparse_weights(model) -> bool:
    """`model`: a parsed TfliteModel."""
    return any(op.type == "DENSIFY" and model.tensors[op.inputs[0]].is_constant for op in model.operators)


def densify_weights(data: bytes) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    densify = {i for i, code in enumerate(root.operatorCodes)
               if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.DENSIFY}
    for graph in root.subgraphs:
        kept = []
        for op in graph.operators:
            source = graph.tensors[op.inputs[0]] if op.opcodeIndex in densify else None
            buffer = root.buffers[source.buffer] if source is not None else None
            if source is None or source.sparsity is None or buffer is None or buffer.data is None or source.type not in DTYPES:
                kept.append(op)
                continue
            values = np.frombuffer(bytes(bytearray(buffer.data)), dtype=DTYPES[source.type])
            dense = to_dense(tuple(int(d) for d in source.shape), source.sparsity, values)
            target = graph.tensors[op.outputs[0]]
            folded = schema.BufferT()
            folded.data = np.frombuffer(dense.tobytes(), dtype=np.uint8)
            root.buffers.append(folded)
            target.buffer, target.type = len(root.buffers) - 1, source.type
            buffer.data = None  # the sparse copy does not stay in the file
        graph.operators = kept
    drop_unused_opcodes(root)
    builder = flatbuffers.Builder(len(data) * 4 + 1024)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def to_dense(shape: tuple[int, ...], sparsity, values: np.ndarray) -> np.ndarray:
    """The dense array of a sparse constant (`sparsity`: a SparsityParametersT)."""
    rank = len(shape)
    order = list(sparsity.traversalOrder)
    block_map = list(sparsity.blockMap) if sparsity.blockMap is not None else []
    dims = sparsity.dimMetadata
    block_size = {block_map[k - rank]: int(dims[level].denseSize) for level, k in enumerate(order) if k >= rank}
    dense = np.zeros(shape, values.dtype)
    index = [0] * len(order)

    def vector(union) -> list[int]:
        return [] if union is None or union.values is None else [int(v) for v in union.values]

    def fill(level: int, previous: int) -> None:
        if level == len(order):
            outer = [0] * rank
            inner = [0] * rank
            for lvl, k in enumerate(order):
                if k < rank:
                    outer[k] = index[lvl]
                else:
                    inner[block_map[k - rank]] = index[lvl]
            where = tuple(outer[d] * block_size.get(d, 1) + inner[d] for d in range(rank))
            dense[where] = values[previous]
            return
        meta = dims[level]
        if meta.format == 0:  # DENSE
            for i in range(int(meta.denseSize)):
                index[level] = i
                fill(level + 1, previous * int(meta.denseSize) + i)
        else:  # SPARSE_CSR
            segments, indices = vector(meta.arraySegments), vector(meta.arrayIndices)
            for j in range(segments[previous], segments[previous + 1]):
                index[level] = indices[j]
                fill(level + 1, j)

    fill(0, 0)
    return dense
