"""A calibrated float graph and what making it taught the conversion: all that a later conversion
of the same model on the same samples needs, and what the conversion cache keeps.

Calibration (TensorFlow's min/max over every tensor, and the histograms of the other methods)
depends on the model, the samples, their preprocessing, the seed and the converter's op set; not
on the I/O type, the layers kept in float, the range method, the metadata or the bundle. So one
calibration serves all of those: the key below holds what it depends on, the conversion key
everything that decides the written bytes and the manifest.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.cache import Entry, cache_key
from edgeq.core.fileio import sha256_of
from edgeq.core.schema import from_json, to_json
from edgeq.data.samples import InputSpec, Preprocessing
from edgeq.records.manifest import Calibration


@dataclass(frozen=True)
class Learned:
    """What loading the source taught the conversion."""

    kind: str  # keras | saved_model | tflite
    rewrites: tuple[str, ...]
    preprocessing: Preprocessing  # as resolved against what the model states
    origins: dict[str, str]  # where each preprocessing setting came from
    conflicts: tuple[str, ...]  # flags that contradict what the model states


@dataclass(frozen=True)
class CalibratedHeader:
    """The JSON part of a calibration cache entry."""

    specs: tuple[InputSpec, ...]
    calibration: Calibration
    learned: Learned
    float_bytes: int


@dataclass(frozen=True)
class Calibrated:
    model: bytes  # the calibrated float graph: TensorFlow's min/max on every tensor
    specs: tuple[InputSpec, ...]
    calibration: Calibration  # before a range method is chosen
    learned: Learned
    float_bytes: int  # the plain float .tflite's size, as validate converts the same source
    histograms: dict[int, np.ndarray] | None = None  # per tensor, over its min/max; built by the first non-minmax method
    source_model: bytes | None = None  # a PyTorch source's float .tflite (litert-torch's), to name a fault in it

    def to_entry(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        blobs = {"tflite": self.model}
        if self.histograms is not None:
            buffer = io.BytesIO()
            arrays: dict[str, Any] = {str(i): counts for i, counts in self.histograms.items()}
            np.savez(buffer, **arrays)
            blobs["histograms"] = buffer.getvalue()
        if self.source_model is not None:
            blobs["source_model"] = self.source_model
        return to_json(CalibratedHeader(self.specs, self.calibration, self.learned, self.float_bytes)), blobs

    @classmethod
    def from_entry(cls, entry: Entry) -> Calibrated:
        header = from_json(CalibratedHeader, entry.header, "calibration cache entry")
        histograms = None
        if "histograms" in entry.blobs:
            with np.load(io.BytesIO(entry.blobs["histograms"]), allow_pickle=False) as found:
                histograms = {int(i): found[i] for i in found.files}
        return cls(
            entry.blobs["tflite"],
            header.specs,
            header.calibration,
            header.learned,
            header.float_bytes,
            histograms,
            entry.blobs.get("source_model"),
        )

    def with_histograms(self, histograms: dict[int, np.ndarray] | None) -> Calibrated:
        return self if histograms is None else replace(self, histograms=histograms)


@dataclass(frozen=True)
class CacheKeys:
    calibration: str | None  # None: this conversion does not calibrate through the int8 path
    conversion: str


def cache_keys(model: Path, source_sha256: str, data: Path | None, options: Any, about: Any) -> CacheKeys:
    """The keys of this conversion's calibration and of its result, from file contents (sha256)
    and options; no TensorFlow needed."""

    def digest(path):
        return sha256_of(Path(path)) if path is not None else None

    recipe = options.recipe
    calibration = {
        "source": source_sha256,
        "source_suffix": model.suffix.lower(),
        "data": digest(data),
        "signatures": recipe.signatures,
        "input_shapes": options.input_shapes,
        "custom_objects": digest(options.custom_objects),
        "trust_model": options.trust_model,
        "channels_last": recipe.channels_last,
        "preprocessing": to_json(recipe.preprocessing),
        "samples": recipe.samples,
        "seed": recipe.seed,
        # the converter's op set: int8 kernels only, or built-ins too (fallback, or layers kept in float)
        "op_set": "int8+builtins" if recipe.mode == "int8-fallback" or recipe.keep_float else "int8",
    }
    conversion = {
        "calibration": calibration,
        "options": to_json(replace(options, cluster=None)),
        "paths": [str(model), str(data)],
        "eval_data": digest(options.eval_data),
        "about": to_json(about) if about is not None else None,
    }
    reusable = recipe.mode.int8_activations and data is not None and not options.allow_int16x8
    return CacheKeys(cache_key(calibration) if reusable else None, cache_key(conversion))
