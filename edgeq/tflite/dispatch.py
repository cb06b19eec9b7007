"""A file compiled ahead of time for an NPU (LiteRT's AOT): its ops replaced by `DISPATCH_OP`
custom ops whose bytecode is appended to the file, and a `LiteRtStamp` metadata entry that names
the vendor and the SoC. What is left as builtin ops runs on the CPU."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from edgeq.tflite.model import TfliteModel

DISPATCH_OP = "CUSTOM:DISPATCH_OP"
STAMP = "LiteRtStamp"


@dataclass(frozen=True)
class Stamp:
    vendor: str  # as the plugin writes it, e.g. IntelOpenVINO, Qualcomm
    soc: str | None  # e.g. LNL, SM8650


@dataclass(frozen=True)
class Dispatch:
    """What a compiled file runs where: the NPU partitions (one DISPATCH_OP each) and the ops left to the CPU."""

    stamp: Stamp | None
    partitions: int
    ops_on_cpu: dict[str, int]

    @property
    def compiled(self) -> bool:
        return self.partitions > 0


def stamp_of(data: bytes) -> Stamp | None:
    """The vendor and SoC of a compiled file's LiteRtStamp entry (null-padded strings), if it has one."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(data, 0)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if (entry.Name() or b"").decode("utf-8", "replace") != STAMP:
            continue
        buffer = root.Buffers(entry.Buffer())
        raw = bytes(buffer.DataAsNumpy()) if buffer.DataLength() else data[buffer.Offset() : buffer.Offset() + buffer.Size()]
        words = [w.decode("ascii", "replace") for w in re.findall(rb"[\x21-\x7e]+", raw)]
        return Stamp(words[0], words[1] if len(words) > 1 else None) if words else None
    return None


def dispatch_of(model: TfliteModel) -> Dispatch:
    ops = Counter(op.type for op in model.operators)
    partitions = ops.pop(DISPATCH_OP, 0)
    return Dispatch(stamp_of(model.data) if partitions else None, partitions, dict(sorted(ops.items())))
