"""StableHLO in LiteRT files. The LiteRT converter (litert-torch, litert-converter) writes a `keep_stablehlo_constant = "true"`
metadata entry into every file, beside `min_runtime_version`. TensorFlow's flatbuffer -> MLIR import
then rebuilds constants as StableHLO constants, which its quantizer leaves in float: every weight
stays float32. The entry tells the importer, not the runtime, so the copy edgeq calibrates goes
without it (the runtime's `min_runtime_version` stays).
"""

from __future__ import annotations

STABLEHLO_FLAG = "keep_stablehlo_constant"

# StableHLO ops the LiteRT converter leaves in a file, which TensorFlow's MLIR quantizer refuses
# ("'stablehlo.reduce_window' op is not any of a builtin TFLite op"), with the equal rewrite that
# converts where one is known
STABLEHLO_REWRITES = {
    "STABLEHLO_REDUCE_WINDOW": "an average or max pool over one axis, e.g. PyTorch's nn.AdaptiveAvgPool2d((None, 1)): "
    "x.mean(-1) (or x.amax(-1)) is equal and exports to MEAN (REDUCE_MAX), which quantize",
    "STABLEHLO_COMPOSITE": "a composite the exporter did not lower; export the module with its decomposition",
}


def stablehlo_ops(model) -> dict[str, int]:
    """The StableHLO op types among a parsed model's operators, with their counts."""
    found: dict[str, int] = {}
    for op in model.operators:
        if op.type.startswith("STABLEHLO_"):
            found[op.type] = found.get(op.type, 0) + 1
    return found


def _names(data: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(data, 0)
    return [(root.Metadata(i).Name() or b"").decode("utf-8", "replace") for i in range(root.MetadataLength())]


def has_stablehlo_constant_flag(data: bytes) -> bool:
    return STABLEHLO_FLAG in _names(data)


def without_stablehlo_constant_flag(data: bytes) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    dropped = [m for m in root.metadata if (m.name or b"").decode("utf-8", "replace") == STABLEHLO_FLAG]
    root.metadata = [m for m in root.metadata if m not in dropped]
    for entry in dropped:
        root.buffers[entry.buffer].data = None
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
