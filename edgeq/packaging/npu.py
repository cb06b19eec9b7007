"""`edgeq compile`: an INT8 file compiled ahead of time for an NPU, written with its manifest: the
INT8 file's manifest with the compiled file's hash and an `npu` record (the vendor's partition
report, what stays on the CPU, and which INT8 file it came from, so validate can compare the two)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from edgeq.core.errors import UsageError
from edgeq.core.fileio import check_writable, json_bytes, write_files_atomically
from edgeq.records.manifest import Manifest, ModelFile, NpuCompile
from edgeq.records.manifest_file import Described, manifest_for
from edgeq.run.npu import Compiled, NpuTarget, compile_for_npu
from edgeq.tflite.dispatch import dispatch_of


@dataclass(frozen=True)
class CompiledFile:
    output: Path
    manifest_path: Path | None  # None: the INT8 file had no manifest to carry over
    compiled: Compiled
    record: NpuCompile


def compile_file(model: str | Path, npu: str, output: str | Path, force: bool = False) -> CompiledFile:
    """Compile `model` for `npu` (VENDOR[:SOC]) into `output`; nothing is written unless it compiled."""
    model, output = Path(model), Path(output)
    if output.suffix != ".tflite":
        raise UsageError(f"{output}: --output must end in .tflite")
    described = Described.of(model)
    if dispatch_of(described.model).compiled:
        raise UsageError(f"{model} is already compiled for an NPU (DISPATCH_OP); compile the INT8 file it came from")
    manifest_path = manifest_for(output) if described.manifest is not None else None
    for path in (output, *([manifest_path] if manifest_path else [])):
        check_writable(path, force, [model, manifest_for(model)])
    target = NpuTarget.parse(npu)
    compiled = compile_for_npu(described.model.data, target)
    stamp = compiled.dispatch.stamp
    record = NpuCompile(
        compiled.target,
        _relative(model, output),
        hashlib.sha256(described.model.data).hexdigest(),
        f"{stamp.vendor} {stamp.soc or ''}".strip() if stamp else None,
        compiled.graph_backend,
        compiled.ops_offloaded,
        compiled.ops_total,
        compiled.dispatch.partitions,
        compiled.dispatch.ops_on_cpu,
        compiled.report,
        compiled.note,
    )
    files = {output: compiled.model}
    if manifest_path is not None:
        files[manifest_path] = json_bytes(_manifest(described.manifest, compiled.model, output, record).to_json())
    write_files_atomically(files, force)
    return CompiledFile(output, manifest_path, compiled, record)


def _relative(model: Path, output: Path) -> str:
    """The INT8 file as the compiled one's manifest names it: its name when they share a folder."""
    return model.name if model.resolve().parent == output.resolve().parent else str(model.resolve())


def _manifest(manifest: Manifest, data: bytes, output: Path, record: NpuCompile) -> Manifest:
    return replace(manifest, output=output.name, npu=record, model=ModelFile(hashlib.sha256(data).hexdigest(), len(data), None))
