"""Bad input from a stranger is exit 2 and one line, never exit 3 (the untrusted-inputs review's
findings, one test each): files LiteRT would refuse, metadata and names that point nowhere, sample
files that need pickle or hold NaN, JSON nested past Python's limits, profiles that shadow the
shipped ones or hold an infinite timeout, a device that answers no JSON, a file-size limit."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
INT8 = FIXTURES / "tflite" / "tiny_int8.tflite"
FLOAT = FIXTURES / "tflite" / "tiny_float.tflite"
RESULTS = FIXTURES / "results" / "digits_validation.json"


def _edited(edit) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray(INT8.read_bytes()), 0)
    edit(root, schema)
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _weight(root) -> int:
    graph = root.subgraphs[0]
    conv = next(
        op for op in graph.operators if len(op.inputs) > 1 and root.buffers[graph.tensors[op.inputs[1]].buffer].data is not None
    )
    return conv.inputs[1]


def _set_tensor(attr, value, which=_weight):
    def edit(root, schema):
        tensor = root.subgraphs[0].tensors[which(root)]
        target = tensor.quantization if attr in ("scale", "zeroPoint", "quantizedDimension") else tensor
        setattr(target, attr, value)

    return edit


def _buffer_offset(root, schema):
    buffer = root.buffers[root.subgraphs[0].tensors[_weight(root)].buffer]
    buffer.data, buffer.offset, buffer.size = None, 2**62, 16


def _three_bytes(root, schema):
    root.buffers[root.subgraphs[0].tensors[_weight(root)].buffer].data = [1, 2, 3]


def _cycle(root, schema):
    ops = root.subgraphs[0].operators
    ops[0].inputs[0] = ops[-1].outputs[0]


def _metadata_far(root, schema):
    entry = schema.MetadataT()
    entry.name, entry.buffer = "TFLITE_METADATA", 10_000_000
    root.metadata = [*(root.metadata or []), entry]


BAD_MODELS = {
    "dtype 117": _set_tensor("type", 117),
    "quantized dimension past the rank": _set_tensor("quantizedDimension", 9),
    "buffer offset 2**62": _buffer_offset,
    "3-byte weight buffer": _three_bytes,
    "cyclic graph": _cycle,
    "rank 5000": _set_tensor("shape", [1] * 5000, lambda root: root.subgraphs[0].inputs[0]),
    "metadata buffer 10,000,000": _metadata_far,
    "tensor name not UTF-8": _set_tensor("name", b"\xff\xfe\xfd", lambda root: root.subgraphs[0].outputs[0]),
}


def _scales(value):
    def edit(root, schema):
        tensor = root.subgraphs[0].tensors[_weight(root)]
        tensor.quantization.scale = [value] * len(tensor.quantization.scale)

    return edit


BAD_MODELS.update({"NaN scale": _scales(float("nan")), "zero scale": _scales(0.0)})


@pytest.mark.parametrize("kind", list(BAD_MODELS))
@pytest.mark.parametrize("command", ["inspect", "bundle", "validate"])
def test_a_model_litert_would_refuse_is_exit_2(kind, command, tmp_path, cli):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_edited(BAD_MODELS[kind]))
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32))
    argv = {
        "inspect": ["inspect", bad],
        "bundle": ["bundle", bad, "-o", tmp_path / "b"],
        "validate": ["validate", bad, "--reference", FLOAT, "--data", data, "--runs", "1", "--warmup", "0"],
    }[command]
    code, _, err = cli(*argv)
    assert code == 2, err
    assert err.startswith("edgeq: error:") and err.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_every_json_edgeq_writes_is_strict(tmp_path):
    from edgeq.core.fileio import json_bytes

    with pytest.raises(ValueError):
        json_bytes({"scale": float("nan")})


@pytest.mark.hostile_files
@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"model": ' + "9" * 5002 + "}", '{"model": NaN}'])
def test_a_results_file_past_json_limits_is_exit_2(text, tmp_path, cli):
    path = tmp_path / "r.json"
    path.write_text(text)
    code, _, err = cli("report", path)
    assert code == 2 and err.startswith("edgeq: error:") and err.count("\n") == 1, err


@pytest.mark.hostile_files
def test_a_manifest_nested_too_deep_beside_a_model_is_not_an_internal_error(tmp_path, cli):
    model = tmp_path / "m.tflite"
    model.write_bytes(INT8.read_bytes())
    (tmp_path / "m.edgeq.json").write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = cli("inspect", model)
    assert code in (0, 2) and "internal" not in err, err


@pytest.mark.parametrize("member", ["object", "not npy"])
def test_an_npz_that_needs_pickle_or_holds_no_array_is_exit_2(member, tmp_path, cli):
    import zipfile

    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:
        import io

        buffer = io.BytesIO()
        np.save(buffer, np.array([object()] * 2, dtype=object), allow_pickle=True)
        archive.writestr("x.npy", buffer.getvalue() if member == "object" else b"plain text")
    code, _, err = cli("validate", INT8, "--reference", FLOAT, "--data", path, "--runs", "1")
    assert code == 2 and "x" in err, err


@pytest.mark.parametrize("values", ["nan", "complex"])
def test_nan_or_complex_samples_are_refused_by_validate(values, tmp_path, cli):
    array = np.random.default_rng(0).random((3, 8, 8, 1)).astype(np.float32)
    array = array * np.nan if values == "nan" else array.astype(np.complex64)
    np.save(tmp_path / "d.npy", array)
    code, _, err = cli("validate", INT8, "--reference", FLOAT, "--data", tmp_path / "d.npy", "--runs", "1")
    assert code == 2 and ("NaN" in err or "real numbers" in err), err
    assert "Warning" not in err


def test_validate_json_never_replaces_the_models_manifest(tmp_path, cli):
    model = tmp_path / "m.tflite"
    model.write_bytes(INT8.read_bytes())
    manifest = tmp_path / "m.edgeq.json"
    manifest.write_text("{}")
    np.save(tmp_path / "d.npy", np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32))
    code, _, err = cli(
        "validate", model, "--reference", FLOAT, "--data", tmp_path / "d.npy", "--runs", "1", "--json", manifest, "--force"
    )
    assert code == 2 and "overwrite an input" in err, err
    assert manifest.read_text() == "{}"


def test_a_profile_in_the_current_folder_cannot_shadow_a_shipped_one(tmp_path, monkeypatch, cli):
    marker = tmp_path / "RAN"
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "local.toml").write_text(f'python = "/usr/bin/touch {marker}"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEQ_DEVICES", raising=False)
    code, _, err = cli("devices", "check", "local")
    assert code == 2 and "shipped with edgeq" in err and "devices/local.toml" in err, err
    assert not marker.exists()


@pytest.mark.parametrize("timeout", ["inf", "nan"])
def test_a_profile_with_an_infinite_timeout_is_exit_2(timeout, tmp_path, cli):
    (tmp_path / "p.toml").write_text(f"timeout = {timeout}\n")
    code, _, err = cli("devices", "check", tmp_path / "p.toml")
    assert code == 2 and "timeout" in err, err


def test_a_device_that_answers_no_json_is_exit_2(tmp_path, cli):
    (tmp_path / "p.toml").write_text('python = "/bin/echo"\n')
    code, _, err = cli("devices", "check", tmp_path / "p.toml")
    assert code == 2 and "not valid JSON" in err, err


@pytest.mark.parametrize("limit", [1_000, 3_000])
def test_a_file_size_limit_while_writing_is_exit_2(limit, tmp_path):
    """`ulimit -f` (EFBIG; SIGXFSZ is ignored so the write fails instead of killing edgeq) while the
    outputs are written (write_files_atomically, which convert, validate and bundle share; a full
    disk, ENOSPC, takes the same path): exit 2, one line, no output and no temporary left."""

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "b"
    proc = subprocess.run(
        [sys.executable, "-c", "from edgeq.cli import run; run()", "bundle", str(INT8), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limited,
        check=False,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1 and "no room to write" in proc.stderr
    assert not out.exists() or list(out.iterdir()) == []
