"""Typed records to and from JSON (results, manifests, cache entries), every value's type checked,
and the upgrades that bring an older file to today's shape before it is read.

Results and manifests come from elsewhere (a CI artifact, a model zoo): a wrong type in them must
be one line naming the key, never a traceback after a long run.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from enum import Enum
from typing import Any

from edgeq.core.errors import DataError, UsageError

SCHEMA_VERSION = "1.5"  # major bumps when a reader of the previous major would misread the file
NUM = (int, float)


def _expect(value: Any, types, where: str) -> None:
    types = types if isinstance(types, tuple) else (types,)
    is_bool = isinstance(value, bool)
    if not isinstance(value, types) or (is_bool and bool not in types):
        names = " or ".join(
            {
                "int": "an integer",
                "float": "a number",
                "str": "a string",
                "bool": "true/false",
                "dict": "an object",
                "list": "a list",
            }.get(t.__name__, t.__name__)
            for t in types
        )
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
        raise DataError(
            f"{where}: written by a newer edgeq (schema {version}; this edgeq reads {SCHEMA_VERSION.split('.')[0]}.x); "
            "upgrade edgeq"
        )


def to_json(record: Any) -> Any:
    """A record (frozen dataclass) as JSON data: fields by name, tuples as lists."""
    if isinstance(record, Enum):
        return record.value
    if hasattr(record, "to_json_text"):  # a setting written as the text a user gives (percentile:99.9)
        return record.to_json_text()
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: to_json(getattr(record, f.name)) for f in dataclasses.fields(record)}
    if isinstance(record, (list, tuple)):
        return [to_json(item) for item in record]
    if isinstance(record, dict):
        return {key: to_json(value) for key, value in record.items()}
    if isinstance(record, float) and not math.isfinite(record):
        return None  # JSON has no infinity: a figure with no finite value (an all-exact step's margin) is null
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
    if origin is list:
        _expect(data, list, where)
        return [from_json(args[0], item, f"{where}[{i}]") for i, item in enumerate(data)]
    if origin is tuple:
        _expect(data, list, where)
        if Ellipsis not in args and len(args) != len(data):  # tuple[float, float]: exactly two
            raise DataError(f"{where}: expected a list of {len(args)} values, got {len(data)}")
        kinds = args if Ellipsis not in args else (args[0],) * len(data)
        return tuple(from_json(kind, item, f"{where}[{i}]") for i, (kind, item) in enumerate(zip(kinds, data)))
    if origin is dict:
        _expect(data, dict, where)
        return {key: from_json(args[1], value, f"{where}.{key}") for key, value in data.items()}
    if isinstance(cls, type) and issubclass(cls, Enum):
        _expect(data, str, where)
        try:
            return cls(data)
        except ValueError:
            raise DataError(f"{where}: {data!r} is not one of {', '.join(m.value for m in cls)}") from None
    if hasattr(cls, "from_json_text"):
        _expect(data, str, where)
        try:
            return cls.from_json_text(data)
        except UsageError as exc:
            raise DataError(f"{where}: {exc}") from None
    if dataclasses.is_dataclass(cls):
        _expect(data, dict, where)
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                values[f.name] = from_json(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DataError(f"{where}: missing key '{f.name}'")
        record: Any = cls  # a dataclass type (is_dataclass narrows it to an instance-or-type union)
        try:
            return record(**values)
        except UsageError as exc:  # a value the record refuses (a mode that does not exist)
            raise DataError(f"{where}: {exc}") from None
    _expect(data, NUM if cls is float else cls, where)
    return data


def upgraded_results(data: dict[str, Any]) -> dict[str, Any]:
    """A results file of schema 1.1 or earlier in today's shape: gates had only "passed" (no
    "n/a"), devices no capabilities (a benchmark_model runtime was latency only)."""

    def output(o: Any) -> Any:  # 1.2 stored an exact match as the sentinel SQNR 999.0
        return {**o, "sqnr_db": None, "exact": True} if isinstance(o, dict) and o.get("sqnr_db") == 999.0 else o

    def gate(g: Any) -> Any:
        if isinstance(g, dict) and "status" not in g and isinstance(g.get("passed"), bool):
            return {**g, "status": "passed" if g["passed"] else "failed"}
        return g

    def device(d: Any) -> Any:
        if not isinstance(d, dict) or "capabilities" in d:
            return d
        d = {**d, "capabilities": {"scores_outputs": d.get("runtime") != "benchmark_model", "latency": not d.get("emulated")}}
        return {**d, "gates": [gate(g) for g in d["gates"]]} if isinstance(d.get("gates"), list) else d

    def roles(holder: dict[str, Any]) -> dict[str, Any]:  # before 1.3 the agreement was an argmax over the first output
        outputs, accuracy = holder.get("outputs"), holder.get("accuracy")
        if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict) or not isinstance(accuracy, dict):
            return holder
        outputs = [output(o) for o in outputs]
        if accuracy.get("agreement") is not None and "output" not in accuracy and "role" not in outputs[0]:
            outputs[0] = {
                **outputs[0],
                "role": "classes",
                "role_from": "a results file before schema 1.3: its first output was scored as classes",
            }
            accuracy = {**accuracy, "output": outputs[0].get("name")}
        return {**holder, "outputs": outputs, "accuracy": accuracy}

    data = roles(dict(data))
    data["preprocessing"] = _preprocessing_used(data.get("preprocessing"), None)
    if isinstance(data.get("conversion_search"), dict):
        data["conversion_search"] = upgraded_manifest({"search": data["conversion_search"]}, "results")["search"]
    if isinstance(data.get("devices"), list):
        data["devices"] = [roles(d) if isinstance(d, dict) else d for d in data["devices"]]
    if isinstance(data.get("gates"), list):
        data["gates"] = [gate(g) for g in data["gates"]]
    if isinstance(data.get("devices"), list):
        data["devices"] = [device(d) for d in data["devices"]]
    return data


def upgraded_manifest(data: Any, where: str) -> dict[str, Any]:
    """A manifest of schema 1.4 or earlier in today's shape. 1.5 gave latency one ratio, `speedup`
    (float p50 / INT8 p50, as validate's), where 1.4 had `ratio` (INT8 / float), and keeps the
    preprocessing typed (1.4: a text beside the recipe's). 1.4 took the calibration method out of
    the search steps' kind ("int8 (entropy)" -> kind int8, method entropy) and out of the
    calibration record (the recipe holds it; a QAT model's ranges are `trained`), named the
    preprocessing origins `origins`, and left the recipe's fields out of `options`. Files of
    1.1 and earlier have no recipe: their options and calibration give it."""
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected an object, got {type(data).__name__}")
    check_version(data, where)
    data = {**data, "schema_version": SCHEMA_VERSION}  # read into today's shape
    calibration = data.get("calibration")
    method = calibration.get("method") if isinstance(calibration, dict) else None
    trained = isinstance(method, str) and method.startswith("trained")
    if not isinstance(data.get("recipe"), dict) and isinstance(data.get("options"), dict):
        recipe = {k: v for k, v in data["options"].items() if k in RECIPE_KEYS}
        data["recipe"] = {
            **recipe,
            "calibration": method if isinstance(method, str) and not trained else "minmax",
            "fingerprint": calibration.get("fingerprint") if isinstance(calibration, dict) else None,
        }
    if isinstance(calibration, dict) and "method" in calibration:
        data["calibration"] = {k: v for k, v in calibration.items() if k != "method"} | ({"trained": method} if trained else {})
    recipe = data.get("recipe")
    data["preprocessing"] = _preprocessing_used(
        data.get("preprocessing"), recipe.get("preprocessing") if isinstance(recipe, dict) else None
    )
    search = data.get("search")
    if isinstance(search, dict):
        steps = search.get("steps")
        data["search"] = {
            **search,
            "steps": [_step(s) for s in steps] if isinstance(steps, list) else steps,
            "chosen": _step(search.get("chosen")),
        }
    latency = data.get("latency")
    if isinstance(latency, dict):
        candidates = latency.get("candidates")
        data["latency"] = _speedup(latency) | (
            {"candidates": [_speedup(c) for c in candidates]} if isinstance(candidates, list) else {}
        )
    return data


def _preprocessing_used(pre: Any, recorded: Any) -> Any:
    """The preprocessing record of schema 1.4 or earlier: its settings were a text ("color from the
    model, resize stretch, range 0,1"); 1.5 keeps them typed (a manifest's are its recipe's). Before
    1.4 the origins were under `from`."""
    if not isinstance(pre, dict) or "settings" in pre or not isinstance(pre.get("used", ""), str):
        return pre
    settings = recorded if isinstance(recorded, dict) else _settings_of(pre.get("used", ""))
    return {"settings": settings, "origins": pre.get("origins", pre.get("from", {}))}


def _settings_of(text: str) -> dict[str, Any]:
    """The typed settings of the text 1.4 and earlier wrote (Preprocessing.describe())."""
    found: dict[str, Any] = {}
    for part in text.split(", "):
        word, _, value = part.partition(" ")
        if word == "color" and value != "from the model":
            found["color"] = value
        elif word in ("resize", "layout"):
            found[word] = value
        elif word == "range":
            found["value_range"] = value
        elif word == "mean" and " std " in value:
            mean, std = value.split(" std ")
            found["mean"], found["std"] = ([float(v) for v in s.split(",")] for s in (mean, std))
    return found


def _speedup(timed: Any) -> Any:
    """A latency record of schema 1.4 or earlier: `ratio` (INT8 / float) becomes `speedup` (float / INT8)."""
    if not isinstance(timed, dict) or "ratio" not in timed:
        return timed
    ratio = timed["ratio"]
    speed = round(1 / ratio, 4) if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and ratio > 0 else None
    return {**{k: v for k, v in timed.items() if k != "ratio"}, "speedup": speed}


RECIPE_KEYS = (
    "mode",
    "io",
    "per_tensor",
    "keep_float",
    "calibration",
    "signatures",
    "preprocessing",
    "samples",
    "seed",
    "data",
    "fingerprint",
    "channels_last",
)


def _step(step: Any) -> Any:
    """A search step of schema 1.3 or earlier: "int8 (entropy)" is kind int8, method entropy."""
    kind = step.get("kind") if isinstance(step, dict) else None
    if not isinstance(kind, str) or not kind.startswith("int8 ("):
        return step
    return {**step, "kind": "int8", "method": kind[len("int8 (") : -1]}
