"""JSON Schemas (draft 2020-12) of the files edgeq writes, generated from their typed records, so
the schema and the writer cannot disagree: `edgeq/schemas/manifest.schema.json` (the
`.edgeq.json` beside a model) and `edgeq/schemas/results.schema.json` (validate's `--json`).

A float may be null: JSON has no infinity or NaN, and `to_json` writes such a figure as null.
Keys the records do not name are allowed (a newer minor version may add some); files of an older
schema version are upgraded when edgeq reads them, and these schemas describe today's.

    python -m edgeq.report.json_schema        # writes the two files from the records
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

DRAFT = "https://json-schema.org/draft/2020-12/schema"
FOLDER = Path(__file__).resolve().parents[1] / "schemas"


def json_schema(record: type, title: str) -> dict[str, Any]:
    """The schema of `record`'s JSON (`to_json` of it)."""
    from edgeq.core.schema import SCHEMA_VERSION

    defs: dict[str, Any] = {}
    root = _schema(record, defs)
    return {"$schema": DRAFT, "title": title, "description": f"edgeq schema {SCHEMA_VERSION}", **root, "$defs": defs}


def _schema(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [{"type": "null"} if a is type(None) else _schema(a, defs) for a in args]}
    if origin is list or (origin is tuple and Ellipsis in args):
        return {"type": "array", "items": _schema(args[0], defs)}
    if origin is tuple:
        items = [_schema(a, defs) for a in args]
        return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(args[1], defs)}
    if isinstance(hint, type) and issubclass(hint, Enum):
        return {"enum": [m.value for m in hint]}
    if hasattr(hint, "from_json_text"):
        return {"type": "string"}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        key = f"{hint.__module__}.{hint.__qualname__}"
        if key not in defs:
            defs[key] = {}  # claimed first: a record that contains itself refers to it
            hints = typing.get_type_hints(hint)
            fields = dataclasses.fields(hint)
            defs[key] = {
                "type": "object",
                "description": (hint.__doc__ or hint.__name__).strip().splitlines()[0],
                "properties": {f.name: _schema(hints[f.name], defs) for f in fields},
                "required": [
                    f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                ],
            }
        return {"$ref": f"#/$defs/{key}"}
    simple = {bool: "boolean", int: "integer", str: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    if hint is float:
        return {"type": ["number", "null"]}
    raise TypeError(f"no JSON Schema for {hint!r}")


def schemas() -> dict[str, dict[str, Any]]:
    """file name -> schema, for the manifest and the results."""
    from edgeq.records.manifest import Manifest
    from edgeq.validation.results import ValidationResult

    return {
        "manifest.schema.json": json_schema(Manifest, "edgeq manifest (MODEL.edgeq.json)"),
        "results.schema.json": json_schema(ValidationResult, "edgeq validate results (--json)"),
    }


def text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    FOLDER.mkdir(exist_ok=True)
    for name, schema in schemas().items():
        (FOLDER / name).write_text(text(schema))
        print(FOLDER / name)
