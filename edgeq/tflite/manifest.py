"""The manifest beside a model (`<model>.edgeq.json`): read back, checked, and the recipe in it.

Everything edgeq reads from a manifest goes through here: the recipe that reproduces the model
(`Recipe.from_manifest`), one checked section (`manifest_part`), and whether it describes the file
beside it at all (`manifest_mismatch`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq.data.samples import Preprocessing
from edgeq.errors import DataError, UsageError
from edgeq.schema import MANIFEST_OPTIONS, check, check_version, optional
from edgeq.tflite.model import TfliteModel

MANIFEST_SUFFIX = ".edgeq.json"
IO_TYPES = {
    "int8": ("int8", "uint8", "float32"),
    "int8-fallback": ("int8", "uint8", "float32"),
    "int16x8": ("int16", "float32"),
    "dynamic": ("float32",),
    "float16": ("float32",),
}


@dataclass(frozen=True)
class Recipe:
    """What decides the quantized bytes, and nothing else (no paths to write, no job counts): the
    same recipe on the same samples gives the same model."""

    mode: str = "int8"
    io: str | None = None  # default: the first of IO_TYPES[mode]
    per_tensor: bool = False
    keep_float: tuple[str, ...] = ()
    calibration: str = "minmax"  # minmax | percentile[:P] | mse | entropy (auto resolves to one of them)
    signatures: tuple[str, ...] = ("serving_default",)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    samples: int = 200
    seed: int = 0
    data: str | None = None  # the calibration samples' path, as given
    fingerprint: str | None = None  # sha256 over the calibration samples as fed
    channels_last: bool = False  # a PyTorch source exported with NHWC inputs

    def __post_init__(self) -> None:
        if self.mode not in IO_TYPES:
            raise DataError(f"recipe mode {self.mode!r}: not one of {', '.join(IO_TYPES)}")
        if self.io is None:  # the type the mode defaults to, written down
            object.__setattr__(self, "io", IO_TYPES[self.mode][0])

    @property
    def io_type(self) -> str:
        return self.io

    def to_json(self) -> dict[str, Any]:
        pre = self.preprocessing
        return {"mode": self.mode, "io": self.io, "per_tensor": self.per_tensor, "keep_float": list(self.keep_float),
                "calibration": self.calibration, "signatures": list(self.signatures),
                "preprocessing": {"color": pre.color, "resize": pre.resize, "value_range": pre.value_range,
                                  "mean": list(pre.mean) if pre.mean else None, "std": list(pre.std) if pre.std else None,
                                  "layout": pre.layout},
                "samples": self.samples, "seed": self.seed, "data": self.data, "fingerprint": self.fingerprint,
                "channels_last": self.channels_last}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> Recipe:
        check(data, RECIPE, where)
        pre = data.get("preprocessing") or {}
        try:
            preprocessing = Preprocessing(pre.get("color"), pre.get("resize") or "stretch", pre.get("value_range"),
                                          tuple(pre["mean"]) if pre.get("mean") else None,
                                          tuple(pre["std"]) if pre.get("std") else None, pre.get("layout"))
        except UsageError as exc:
            raise DataError(f"{where}.preprocessing: {exc}") from exc
        return cls(mode=data.get("mode") or "int8", io=data.get("io"), per_tensor=bool(data.get("per_tensor")),
                   keep_float=tuple(data.get("keep_float") or ()), calibration=data.get("calibration") or "minmax",
                   signatures=tuple(data.get("signatures") or ("serving_default",)), preprocessing=preprocessing,
                   samples=int(data.get("samples") or 200), seed=int(data.get("seed") or 0), data=data.get("data"),
                   fingerprint=data.get("fingerprint"), channels_last=bool(data.get("channels_last")))

    @classmethod
    def from_manifest(cls, model: str | Path) -> Recipe | None:
        """The recipe recorded beside `model`; None without a manifest. Manifests of schema 1.1 and
        earlier have no "recipe" section: their "options" and "calibration" sections give it."""
        manifest = read_manifest(model)
        if not manifest:
            return None
        where = manifest_for(model).name
        if isinstance(manifest.get("recipe"), dict):
            return cls.from_json(manifest["recipe"], f"{where}: recipe")
        options = manifest.get("options")
        if not isinstance(options, dict):
            return None
        check(options, MANIFEST_OPTIONS, f"{where}: options")
        calibration = manifest.get("calibration") if isinstance(manifest.get("calibration"), dict) else {}
        method = calibration.get("method") if isinstance(calibration.get("method"), str) else "minmax"
        return cls.from_json({**options, "calibration": method if method != "trained ranges (QAT)" else "minmax",
                              "fingerprint": calibration.get("fingerprint")}, f"{where}: options")


RECIPE = {**MANIFEST_OPTIONS, "calibration": optional(str), "fingerprint": optional(str)}


def manifest_for(model: str | Path) -> Path:
    """`<model>.edgeq.json` beside `<model>.tflite`."""
    model = Path(model)
    return model.with_name(model.name.removesuffix(".tflite") + MANIFEST_SUFFIX)


def read_manifest(model: str | Path) -> dict[str, Any]:
    """The conversion manifest beside a model, or {} when there is none or it is unreadable;
    one written by a newer major schema is refused (DataError)."""
    path = manifest_for(model)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    check_version(data, path.name)
    return data


def manifest_part(model: str | Path, key: str, spec: Any, warnings: list[str]) -> Any:
    """One section of the manifest beside `model`, checked against `spec`; a malformed section is
    a warning and None, so a finished run is never lost to a bad sidecar file."""
    value = read_manifest(model).get(key)
    try:
        check(value, optional(spec), f"{manifest_for(model).name}: {key}")
    except DataError as exc:
        warnings.append(f"{exc}; that section of the manifest is ignored")
        return None
    return value


def manifest_mismatch(model: TfliteModel, manifest: dict[str, Any] | None = None) -> str | None:
    """Why `manifest` (default: the one beside `model`) does not describe it (another model's, or a stale one)."""
    recorded = (read_manifest(model.path) if manifest is None else manifest).get("model")
    if not isinstance(recorded, dict):
        return None
    if recorded.get("bytes") != model.size or recorded.get("sha256") != hashlib.sha256(model.data).hexdigest():
        return (f"the manifest {manifest_for(model.path).name} was written for another file than {model.path.name} "
                "(size or sha256 differ): its recipe and float size may not apply")
    return None
