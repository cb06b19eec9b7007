"""The files a validation writes, as bytes: the results JSON, the per-layer CSV, Markdown, HTML."""

from __future__ import annotations

import csv
import io
from dataclasses import astuple, fields

from edgeq.core.fileio import json_bytes
from edgeq.records.manifest import LayerError
from edgeq.report.documents import render
from edgeq.validation.results import ValidationResult

KINDS = ("json", "csv", "md", "html")


def file_bytes(kind: str, result: ValidationResult) -> bytes:
    """`kind` is one of KINDS."""
    if kind == "json":
        return json_bytes(result.to_json())
    if kind == "csv":
        return per_layer_csv(result.per_layer.layers if result.per_layer else ())
    return render(result, kind).encode()


def per_layer_csv(layers: tuple[LayerError, ...]) -> bytes:
    """One row per layer, a column per LayerError field (blank where it has no value)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(f.name for f in fields(LayerError))
    writer.writerows(["" if v is None else v for v in astuple(layer)] for layer in layers)
    return out.getvalue().encode()
