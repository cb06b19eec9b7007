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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.conversion.cache import Entry, cache_key
from edgeq.data.samples import InputSpec, Preprocessing
from edgeq.fileio import sha256_of


@dataclass(frozen=True)
class Calibrated:
    model: bytes  # the calibrated float graph: TensorFlow's min/max on every tensor
    specs: list[InputSpec]
    calibration: dict[str, Any]  # the manifest's calibration record, before a range method is chosen
    kind: str
    rewrites: list[str]
    preprocessing: Preprocessing  # as resolved against what the model states
    origins: dict[str, str]
    conflicts: list[str]
    histograms: dict[int, np.ndarray] | None = None  # per tensor, over its min/max; built by the first non-minmax method
    source_model: bytes | None = None  # a PyTorch source's float .tflite (litert-torch's), to name a fault in it

    def to_entry(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        header = {"specs": [[s.name, list(s.shape)] for s in self.specs], "calibration": self.calibration, "kind": self.kind,
                  "rewrites": self.rewrites, "preprocessing": asdict(self.preprocessing), "origins": self.origins,
                  "conflicts": self.conflicts}
        blobs = {"model": self.model}
        if self.histograms is not None:
            buffer = io.BytesIO()
            np.savez(buffer, **{str(i): counts for i, counts in self.histograms.items()})
            blobs["histograms"] = buffer.getvalue()
        if self.source_model is not None:
            blobs["source_model"] = self.source_model
        return header, blobs

    @classmethod
    def from_entry(cls, entry: Entry) -> Calibrated:
        h = entry.header
        histograms = None
        if "histograms" in entry.blobs:
            with np.load(io.BytesIO(entry.blobs["histograms"]), allow_pickle=False) as found:
                histograms = {int(i): found[i] for i in found.files}
        pre = {k: tuple(v) if isinstance(v, list) else v for k, v in h["preprocessing"].items()}
        return cls(entry.blobs["model"], [InputSpec(n, tuple(s)) for n, s in h["specs"]], h["calibration"], h["kind"],
                   list(h["rewrites"]), Preprocessing(**pre), dict(h["origins"]), list(h["conflicts"]), histograms,
                   entry.blobs.get("source_model"))

    def with_histograms(self, histograms: dict[int, np.ndarray] | None) -> Calibrated:
        return self if histograms is None else replace(self, histograms=histograms)


@dataclass(frozen=True)
class CacheKeys:
    calibration: str | None  # None: this conversion does not calibrate through the int8 path
    conversion: str


def cache_keys(model: Path, source_sha256: str, data: Path | None, options: Any, about: Any) -> CacheKeys:
    """The keys of this conversion's calibration and of its result, from file contents (sha256)
    and options; no TensorFlow needed."""
    digest = lambda path: sha256_of(Path(path)) if path is not None else None  # noqa: E731
    calibration = {
        "source": source_sha256, "source_suffix": model.suffix.lower(), "data": digest(data),
        "signatures": options.signatures, "input_shapes": options.input_shapes, "custom_objects": digest(options.custom_objects),
        "trust_model": options.trust_model, "channels_last": options.channels_last,
        "preprocessing": asdict(options.preprocessing), "samples": options.samples, "seed": options.seed,
        # the converter's op set: int8 kernels only, or built-ins too (fallback, or layers kept in float)
        "op_set": "int8+builtins" if options.mode == "int8-fallback" or options.keep_float else "int8",
    }
    conversion = {"calibration": calibration, "options": {**asdict(options), "io": options.io_type}, "paths": [str(model), str(data)],
                  "eval_data": digest(options.eval_data), "about": asdict(about) if about is not None else None}
    reusable = options.mode in ("int8", "int8-fallback") and data is not None and not options.allow_int16x8
    return CacheKeys(cache_key(calibration) if reusable else None, cache_key(conversion))
