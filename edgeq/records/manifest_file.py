"""The manifest beside a model (`<model>.edgeq.json`): found, read once per command into a typed
`Manifest` (an older file upgraded on the way), and checked against the file it sits beside."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from edgeq.core.errors import DataError
from edgeq.core.fileio import parse_json
from edgeq.records.manifest import Manifest
from edgeq.tflite.model import TfliteModel, read_tflite
from edgeq.tflite.summary import ModelSummary, summarize

MANIFEST_SUFFIX = ".edgeq.json"


def manifest_for(model: str | Path) -> Path:
    """`<model>.edgeq.json` beside `<model>.tflite`."""
    model = Path(model)
    return model.with_name(model.name.removesuffix(".tflite") + MANIFEST_SUFFIX)


def read_manifest(model: str | Path) -> Manifest | None:
    """The manifest beside `model`; None when there is none or it is not JSON. One that is JSON
    but not a manifest, or written by a newer major schema, is refused (DataError naming the key)."""
    path = manifest_for(model)
    try:
        text = path.read_bytes()
    except OSError:
        return None
    try:
        data = parse_json(text, path.name)
    except DataError:
        return None
    return Manifest.from_json(data, path.name)


@dataclass(frozen=True)
class Described:
    """A model and what describes it: its manifest, unless that was written for another file."""

    model: TfliteModel
    manifest: Manifest | None
    mismatch: str | None  # why the manifest beside it was set aside

    @classmethod
    def of(cls, path: str | Path, model: TfliteModel | None = None) -> Described:
        model = model or read_tflite(path)
        manifest = read_manifest(path)
        mismatch = manifest_mismatch(model, manifest) if manifest else None
        return cls(model, None if mismatch else manifest, mismatch)

    def summary(self) -> ModelSummary:
        sizes = self.manifest.sizes if self.manifest else None
        if sizes and sizes.float_bytes:
            return summarize(self.model, sizes.float_bytes, f"manifest {manifest_for(self.model.path).name}")
        return summarize(self.model, notes=(self.mismatch,) if self.mismatch else ())


def manifest_mismatch(model: TfliteModel, manifest: Manifest) -> str | None:
    """Why `manifest` does not describe `model` (another model's, or a stale one)."""
    recorded = manifest.model
    if recorded is None:
        return None
    if recorded.bytes != model.size or recorded.sha256 != hashlib.sha256(model.data).hexdigest():
        return (
            f"the manifest {manifest_for(model.path).name} was written for another file than {model.path.name} "
            "(size or sha256 differ): its recipe and float size may not apply"
        )
    return None


def inspect_model(path: str | Path) -> ModelSummary:
    """What is inside a .tflite, with the float size its manifest records (if it has one)."""
    try:
        return Described.of(path).summary()
    except DataError:
        return summarize(read_tflite(path), notes=(f"the manifest {manifest_for(path).name} cannot be read",))
