"""The shapes of the JSON files edgeq reads back (results, manifests), checked before use.

Results and manifests come from elsewhere (a CI artifact, a model zoo): a wrong type in them must
be one line naming the key, never a traceback after a long run. Specs are plain data: a type or
tuple of types, a dict of key -> spec (extra keys allowed), a one-element list (every item), or
`optional(spec)` (missing or null allowed).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from edgeq.errors import DataError

SCHEMA_VERSION = "1.3"  # major bumps when a reader of the previous major would misread the file
NUM = (int, float)


@dataclass(frozen=True)
class optional:  # noqa: N801 - reads as a type in the specs
    spec: Any


@dataclass(frozen=True)
class mapping:  # noqa: N801
    """A dict with any string keys, every value of `spec`."""

    spec: Any


def check(value: Any, spec: Any, where: str) -> None:
    """Raise DataError "<where>.key: expected ..., got ..." at the first mismatch."""
    if isinstance(spec, optional):
        if value is not None:
            check(value, spec.spec, where)
        return
    if isinstance(spec, mapping):
        _expect(value, dict, where)
        for key, item in value.items():
            check(item, spec.spec, f"{where}.{key}")
        return
    if isinstance(spec, dict):
        _expect(value, dict, where)
        for key, item_spec in spec.items():
            if key not in value and not isinstance(item_spec, optional):
                raise DataError(f"{where}: missing key '{key}'")
            check(value.get(key), item_spec, f"{where}.{key}")
        return
    if isinstance(spec, list):
        _expect(value, list, where)
        for i, item in enumerate(value):
            check(item, spec[0], f"{where}[{i}]")
        return
    _expect(value, spec, where)


def _expect(value: Any, types, where: str) -> None:
    types = types if isinstance(types, tuple) else (types,)
    is_bool = isinstance(value, bool)
    if not isinstance(value, types) or (is_bool and bool not in types):
        names = " or ".join({"int": "an integer", "float": "a number", "str": "a string", "bool": "true/false",
                             "dict": "an object", "list": "a list"}.get(t.__name__, t.__name__) for t in types)
        raise DataError(f"{where}: expected {names}, got {type(value).__name__} {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_version(data: dict[str, Any], where: str) -> None:
    """Files without a version are 1.0; a newer major version is refused, not misread."""
    version = data.get("schema_version", "1.0")
    if not isinstance(version, str) or not version.split(".")[0].isdigit():
        raise DataError(f"{where}: schema_version {version!r} is not a version like '1.1'")
    if int(version.split(".")[0]) > int(SCHEMA_VERSION.split(".")[0]):
        raise DataError(f"{where}: written by a newer edgeq (schema {version}; this edgeq reads {SCHEMA_VERSION.split('.')[0]}.x); "
                        "upgrade edgeq")



SEARCH = {
    "budget": mapping(optional(NUM)),
    "eval_samples": int, "evaluations": int, "int8_evaluations": optional(int), "max_evaluations": int, "layers_considered": int, "met": bool,
    "chosen": {"k": int, "kind": str, "float_layers": [str], "missed": [str]},
    "steps": [{"kind": str, "k": int, "size_bytes": int, "top1_drop_pts": optional(NUM), "agreement": optional(NUM),
               "worst_sqnr_db": optional(NUM), "meets": bool, "missed": [str], "phase": optional(str), "seconds": optional(NUM),
               "outputs": optional([{"name": str, "role": str, "sqnr_db": optional(NUM), "exact": bool,
                                     "agreement": optional(NUM), "meets": bool}])}],
    "seconds": optional(NUM),
    "notes": optional([str]),
}

RESULTS = {  # the sections of a results file that other modules own; edgeq.validation.results types the rest
    "conversion_search": optional(SEARCH),
    "per_layer": optional({"ranked_by": str, "calibration": str, "debug_samples": int,
                           "layers": [{"rank": int, "tensor_name": str, "op_type": str, "sqnr_db": optional(NUM),
                                       "rmse_lsb": optional(NUM), "max_abs_error_lsb": optional(NUM), "scale": NUM,
                                       "zero_point": int}]}),
}

MANIFEST_OPTIONS = {
    "mode": optional(str), "io": optional(str), "per_tensor": optional(bool), "keep_float": optional([str]),
    "samples": optional(int), "seed": optional(int), "data": optional(str), "signatures": optional([str]),
    "preprocessing": optional({"color": optional(str), "resize": optional(str), "value_range": optional(str),
                               "mean": optional([NUM]), "std": optional([NUM])}),
}


def to_json(record: Any) -> Any:
    """A record (frozen dataclass) as JSON data: fields by name, tuples as lists."""
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: to_json(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, (list, tuple)):
        return [to_json(item) for item in record]
    if isinstance(record, dict):
        return {key: to_json(value) for key, value in record.items()}
    return record


def from_json(cls: Any, data: Any, where: str) -> Any:
    """`data` read back as `cls` (a dataclass, or a type hint over them), every value's type
    checked: a wrong one is DataError "<where>.key: expected ..., got ..."; missing optional fields
    take their default."""
    origin, args = typing.get_origin(cls), typing.get_args(cls)
    if cls is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return from_json(inner[0], data, where)
        if float in inner and int in inner:
            _expect(data, NUM, where)
            return data
        raise TypeError(f"{where}: unsupported union {cls}")
    if origin is tuple:
        _expect(data, list, where)
        return tuple(from_json(args[0], item, f"{where}[{i}]") for i, item in enumerate(data))
    if origin is dict:
        _expect(data, dict, where)
        return {key: from_json(args[1], value, f"{where}.{key}") for key, value in data.items()}
    if dataclasses.is_dataclass(cls):
        _expect(data, dict, where)
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                values[f.name] = from_json(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DataError(f"{where}: missing key '{f.name}'")
        return cls(**values)
    _expect(data, NUM if cls is float else cls, where)
    return data
