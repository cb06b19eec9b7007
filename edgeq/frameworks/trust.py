"""What edgeq lets a model file run: nothing, unless the user passes --trust-model.

One decision per format, made before the framework loads the file (docs/security.md):

- Keras: `safe_mode` (Keras refuses the Python code of a Lambda layer; `source.py`).
- SavedModel: no op that reads or writes files, runs Python or talks to the network
  (`RISKY_SAVED_MODEL_OPS`, from TensorFlow's op registry).
- torch.export `.pt2`: only tensors, JSON and the serialized program. Everything that
  `torch.export.load` would unpickle must load with torch's own `weights_only` unpickler
  (no import, no call but tensor rebuilding); custom objects, AOTInductor libraries and
  symbolic-shape expressions beyond arithmetic (torch parses them with `sympy.sympify`, an eval)
  are refused. The archive is read once, checked, and loaded from the same bytes.
- ONNX: no code path here runs code from the file (no custom-op library is registered, external
  data outside the model's folder is refused by the onnx library).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from edgeq.core.errors import ModelError

TRUST_FLAG = "--trust-model"

# TensorFlow op names (matched against the registry) whose kernels reach outside the graph: files,
# processes, Python, the network, debug sinks. SaveV2/RestoreV2 and friends are the SavedModel's own
# variable checkpoint, driven by the loader with the model's own folder.
RISKY_OP_PATTERN = re.compile(
    r"PyFunc|File|Reader|Dataset|Summary|^Debug|^Print|Proto|^Save$|^SaveSlices$|^Restore$|"
    r"^RestoreSlice$|ImmutableConst|LoadAndRemapMatrix|Rpc|Collective|Iterator|Socket|Audio"
)
CHECKPOINT_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec"})

# What a symbolic shape expression may hold: symbols like s0 or u3, numbers, arithmetic, and the
# functions torch's deserializer names (torch/_export/serde/serialize.py, sympy_functions)
_EXPR_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\d+(?:\.\d+)?(?:e[-+]?\d+)?)|(\*\*|//|[-+*/%(),<>=!&|~]))")
_EXPR_NAMES = frozenset(
    {
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "Mod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "PowByNatural",
        "FloatPow",
        "FloatTrueDiv",
        "IntTrueDiv",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
        "Max",
        "Min",
        "Abs",
        "floor",
        "ceiling",
        "sqrt",
        "oo",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "And",
        "Or",
        "Not",
        "True",
        "False",
        "int_oo",
        "OpaqueUnaryFn_sqrt",
    }
)
_SYMBOL = re.compile(r"[a-z]+\d+")


def refusal(path: Path | str, what: str) -> ModelError:
    return ModelError(
        f"{path}: {what}, which would run code from the file when it loads; edgeq loads it only with "
        f"{TRUST_FLAG} (pass it for files whose author you trust)"
    )


# -- torch.export archives ------------------------------------------------------------------------


def checked_pt2(path: Path, trusted: bool) -> bytes:
    """The archive's bytes, read once; untrusted, every member torch.export.load would run code
    from is checked first (ModelError naming it and --trust-model)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror})") from None
    if not trusted:
        check_pt2(data, path)
    return data


def check_pt2(data: bytes, path: Path) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelError(f"{path}: not a torch.export archive ({exc}); save one with torch.export.save") from None
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or not all("/" in n for n in names):
        raise ModelError(f"{path}: not a torch.export archive (one top folder expected); save one with torch.export.save")
    root = roots.pop() + "/"
    members = {n[len(root) :]: n for n in names}
    if "archive_format" not in members:
        raise refusal(path, "an archive of an older torch.export format (no archive_format), whose state it unpickles")
    try:
        for inner, name in members.items():
            _check_member(archive, inner, name, path)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise ModelError(f"{path}: a damaged torch.export archive ({' '.join(str(exc).split())[:160]})") from None


def _check_member(archive: zipfile.ZipFile, inner: str, name: str, path: Path) -> None:
    if inner.startswith(("data/aotinductor/", "data/executorch/", "data/mtia/")):
        raise refusal(path, f"compiled code ({inner})")
    if inner.startswith("data/sample_inputs/") or (
        inner.endswith(".pt") and inner.startswith(("data/weights/", "data/constants/"))
    ):
        _weights_only(archive.read(name), inner, path)
    elif inner.endswith("_config.json") and inner.startswith(("data/weights/", "data/constants/")):
        for fqn, entry in _json(archive.read(name), inner, path).get("config", {}).items():
            file = str(entry.get("path_name", "")) if isinstance(entry, dict) else ""
            if file.startswith(("custom_obj_", "opaque_obj_")):
                raise refusal(path, f"a custom object {fqn!r} ({inner})")
            if isinstance(entry, dict) and entry.get("use_pickle"):
                folder = inner.rsplit("/", 1)[0]
                _weights_only(archive.read(f"{name.rsplit('/', 1)[0]}/{file}"), f"{folder}/{file} ({fqn})", path)
    elif inner.startswith("models/") and inner.endswith(".json"):
        _check_expressions(_json(archive.read(name), inner, path), inner, path)


def _weights_only(blob: bytes, what: str, path: Path) -> None:
    """A pickle loads with torch's weights_only unpickler (tensors, containers, numbers), or the
    archive needs trust: torch.export.load would unpickle it in full."""
    import pickle

    import torch

    try:
        torch.load(io.BytesIO(blob), weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError, EOFError, ImportError) as exc:
        reason = " ".join(str(exc).split())[:120]
        raise refusal(path, f"a pickle that is not plain tensors ({what}: {reason})") from None


def _json(blob: bytes, inner: str, path: Path) -> Any:
    try:
        data = json.loads(blob)
    except (ValueError, RecursionError):
        raise ModelError(f"{path}: {inner} is not JSON; a damaged torch.export archive") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: {inner} is not a JSON object; a damaged torch.export archive")
    return data


def _check_expressions(program: Any, inner: str, path: Path) -> None:
    """Every symbolic-shape expression (`expr_str`, range_constraints' keys) is arithmetic on
    symbols: torch parses them with sympy.sympify, which evaluates Python."""
    stack = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr_str" and not _arithmetic(value):
                    raise refusal(path, f"a shape expression that is not arithmetic ({inner}: {str(value)[:60]!r})")
                if key == "range_constraints" and isinstance(value, dict):
                    bad = next((k for k in value if not _arithmetic(k)), None)
                    if bad is not None:
                        raise refusal(path, f"a shape expression that is not arithmetic ({inner}: {bad[:60]!r})")
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def _arithmetic(text: Any) -> bool:
    if not isinstance(text, str) or len(text) > 10_000:
        return False
    at = 0
    while at < len(text):
        match = _EXPR_TOKEN.match(text, at)
        if match is None or match.end() == at:
            return text[at:].strip() == ""
        name = match.group(1)
        if name is not None and name not in _EXPR_NAMES and not _SYMBOL.fullmatch(name):
            return False
        at = match.end()
    return True


# -- SavedModels ----------------------------------------------------------------------------------


def risky_ops() -> frozenset[str]:
    """TensorFlow's registered ops that reach outside the graph, by name (RISKY_OP_PATTERN)."""
    from tensorflow.python.framework import op_def_registry

    registered = op_def_registry.get_registered_ops() if hasattr(op_def_registry, "get_registered_ops") else None
    if registered is None:
        import tensorflow as tf

        registered = {name for name in dir(tf.raw_ops) if not name.startswith("_")}
    return frozenset(n for n in registered if RISKY_OP_PATTERN.search(n) and n not in CHECKPOINT_OPS)


def check_saved_model(path: Path, trusted: bool) -> None:
    """A SavedModel's graphs and functions hold no op of `risky_ops()` (read before TensorFlow loads it)."""
    if trusted:
        return
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as exc:
        raise ModelError(f"{path}: saved_model.pb cannot be parsed ({type(exc).__name__}); re-export it") from None
    risky = risky_ops()
    for graph in proto.meta_graphs:
        nodes = [*graph.graph_def.node, *(n for f in graph.graph_def.library.function for n in f.node_def)]
        found = sorted({n.op for n in nodes if n.op in risky})
        if found:
            raise refusal(
                path, f"a SavedModel whose graph holds {', '.join(found[:5])} (ops that reach files, Python or the network)"
            )
