"""Sparse weights: some float .tflite files store constants in TFLite's sparse format behind DENSIFY
ops (TensorFlow's EXPERIMENTAL_SPARSITY, MediaPipe's pose and full-range face detectors). The
quantizer leaves such a weight in float and the converted file does not load; densified into a plain
constant first, the model is the float model the calibrator and quantizer expect.

Each DENSIFY of a constant sparse tensor is dropped; its output becomes a constant with the dense
values (TFLite's FormatConverter order: traversal order, block map, DENSE/SPARSE_CSR dimensions).
"""

from __future__ import annotations

import numpy as np

from edgeq.tflite.float16_weights import fold_constant_ops

DTYPES = {0: np.float32, 1: np.float16, 9: np.int8, 3: np.uint8}  # TensorType FLOAT32, FLOAT16, INT8, UINT8


def has_sparse_weights(model) -> bool:
    """`model`: a parsed TfliteModel."""
    return any(op.type == "DENSIFY" and model.tensors[op.inputs[0]].is_constant for op in model.operators)


def densify_weights(data: bytes) -> bytes:
    from ai_edge_litert import schema_py_generated as schema

    def dense(source, raw: bytes):
        if source.sparsity is None or source.type not in DTYPES:
            return None
        values = np.frombuffer(raw, dtype=DTYPES[source.type])
        return to_dense(tuple(int(d) for d in source.shape), source.sparsity, values), source.type

    return fold_constant_ops(data, schema.BuiltinOperator.DENSIFY, dense)


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
