"""The bundle an app build copies as is: the model, its manifest, labels, the ops it needs, the
validation report, and checksums of all of them.

    DIR/model.tflite      the model (with its metadata, if it has some)
    DIR/model.edgeq.json  the manifest: signatures by key, each tensor's scale and zero-point
    DIR/labels.txt        the labels of the model's metadata, one per line (if it has labels)
    DIR/ops.txt           every op the model uses with its version range, for a selective runtime build
    DIR/report.md         the validation report (if a results JSON was given)
    DIR/SHA256SUMS        `sha256sum -c SHA256SUMS` checks every file above
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from edgeq.core.errors import DataError, ModelError, UsageError
from edgeq.core.fileio import check_writable, json_bytes, write_files_atomically
from edgeq.core.schema import SCHEMA_VERSION, to_json
from edgeq.records.manifest import ModelFile
from edgeq.records.manifest_file import Described
from edgeq.report.documents import markdown
from edgeq.run.litert import invoke_once
from edgeq.tflite.metadata import read_metadata
from edgeq.tflite.model import TfliteModel, read_tflite
from edgeq.tflite.summary import SignatureInfo, TensorInfo, summarize
from edgeq.validation.results import ValidationResult

MODEL, MANIFEST, LABELS, OPS, REPORT, SUMS = (
    "model.tflite",
    "model.edgeq.json",
    "labels.txt",
    "ops.txt",
    "report.md",
    "SHA256SUMS",
)


@dataclass(frozen=True)
class Bundle:
    folder: Path
    files: tuple[str, ...]  # written, SHA256SUMS last


def ops_text(model: TfliteModel) -> str:
    """One line per op: name, lowest and highest version the model uses (what a selective build
    registers: MutableOpResolver::AddBuiltin(op, registration, min_version, max_version))."""
    versions: dict[str, list[int]] = {}
    for op in model.operators:
        versions.setdefault(op.type, []).append(op.version)
    lines = [f"{name} {min(v)} {max(v)}" for name, v in sorted(versions.items())]
    return "# op min_version max_version (edgeq ops.txt)\n" + "\n".join(lines) + "\n"


def bundle(model_path: str | Path, folder: str | Path, results: str | Path | None = None, force: bool = False) -> Bundle:
    """Write the bundle of `model_path` into `folder` (created if missing); existing files there are
    replaced only with `force`. Nothing is written if any part cannot be made."""
    model_path, folder = Path(model_path), Path(folder)
    check_bundle(folder, force)
    model = read_tflite(model_path)
    try:
        invoke_once(model.data, lambda specs: None)  # an app build copies what LiteRT opens, nothing else
    except (RuntimeError, ValueError) as exc:
        raise ModelError(
            f"{model_path}: LiteRT cannot load or run it ({' '.join(str(exc).split())[:200]}); nothing was bundled"
        ) from None
    contents: dict[str, bytes] = {MODEL: model.data, MANIFEST: json_bytes(_manifest(model))}
    metadata = read_metadata(model.data)
    if metadata is not None and metadata.labels:
        contents[LABELS] = ("\n".join(metadata.labels) + "\n").encode()
    contents[OPS] = ops_text(model).encode()
    if results is not None:
        validated = ValidationResult.read(results)
        if validated.size.int8_bytes not in (None, model.size):
            raise DataError(
                f"{results}: the results are of a {validated.size.int8_bytes}-byte model ({Path(validated.model).name}), "
                f"not of {model_path.name} ({model.size} bytes); validate this model"
            )
        contents[REPORT] = markdown(validated).encode()
    contents[SUMS] = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in contents.items()).encode()
    folder.mkdir(parents=True, exist_ok=True)
    write_files_atomically({folder / name: data for name, data in contents.items()}, force)
    return Bundle(folder, tuple(contents))


def check_bundle(folder: Path, force: bool) -> None:
    """Before any work: the folder can hold a bundle, and holds none unless `force`."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file; name a folder for the bundle")
    if folder.is_dir():
        for name in (MODEL, MANIFEST, LABELS, OPS, REPORT, SUMS):
            check_writable(folder / name, force)


@dataclass(frozen=True)
class Interface:
    """What the bundle's manifest says of a model no edgeq manifest describes: its interface."""

    output: str
    model: ModelFile
    signatures: tuple[SignatureInfo, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    schema_version: str = SCHEMA_VERSION
    note: str = "no edgeq manifest described this model: interface read from the flatbuffer, no recipe"


def _manifest(model: TfliteModel) -> dict:
    """The manifest beside the model (in today's schema), renamed for the bundle; a model without
    one (or with a stale one) gets the interface part, read from the flatbuffer."""
    manifest = Described.of(model.path, model).manifest
    if manifest is not None:
        return replace(manifest, output=MODEL).to_json()
    summary = summarize(model)
    return to_json(
        Interface(
            MODEL,
            ModelFile(hashlib.sha256(model.data).hexdigest(), model.size),
            tuple(summary.signatures),
            tuple(summary.inputs),
            tuple(summary.outputs),
        )
    )
