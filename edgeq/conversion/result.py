"""A quantized model and its manifest: in memory until saved, then the files written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgeq.core.errors import UsageError
from edgeq.core.fileio import check_writable, json_bytes, write_files_atomically
from edgeq.records.manifest import Manifest
from edgeq.records.manifest_file import manifest_for
from edgeq.tflite.model import parse_tflite
from edgeq.tflite.summary import ModelSummary, summarize


@dataclass(frozen=True)
class SavedConversion:
    """A quantized model and its manifest as written."""

    output: Path
    manifest_path: Path
    manifest: Manifest
    summary: ModelSummary
    warnings: tuple[str, ...]
    budget_met: bool | None = None  # None: no accuracy search; False: `output` is the best-effort model

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.output), "manifest_path": str(self.manifest_path), **self.manifest.to_json()}


@dataclass(frozen=True)
class QuantizedModel:
    """A quantized model and its manifest, in memory: nothing is written until `save`."""

    model: bytes
    manifest: Manifest

    @property
    def budget_met(self) -> bool | None:
        return None if self.manifest.search is None else self.manifest.search.met

    def destination(self, output: Path) -> Path:
        """Where `save(output)` writes: a model that misses its budget is named best-effort."""
        if self.budget_met is False:
            return output.with_name(output.name.removesuffix(".tflite") + ".best-effort.tflite")
        return output

    def save(self, output: str | Path, force: bool = False, protected: Sequence[Path] = ()) -> SavedConversion:
        """Write the model and `<model>.edgeq.json` together, atomically; existing files only with `force`."""
        output = self.destination(Path(output))
        manifest_path = check_outputs(output, force, protected)
        manifest = replace(self.manifest, output=output.name)
        write_files_atomically({output: self.model, manifest_path: json_bytes(manifest.to_json())}, force)
        sizes = manifest.sizes
        summary = summarize(parse_tflite(self.model, output), sizes.float_bytes, f"manifest {manifest_path.name}")
        return SavedConversion(output, manifest_path, manifest, summary, manifest.warnings, self.budget_met)


def check_outputs(output: Path, force: bool, protected: Sequence[Path] = ()) -> Path:
    """The model and manifest paths may be written (`force` for existing files, never over an
    input); returns the manifest's path."""
    if output.suffix != ".tflite":
        raise UsageError(f"{output}: --output must end in .tflite")
    manifest_path = manifest_for(output)
    for path in (output, manifest_path):
        check_writable(path, force, list(protected))
    return manifest_path
