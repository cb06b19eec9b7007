"""Mutated models never crash the reader, inspect or the validate preflight: a clean result or one
ModelError line (exit 2), never a traceback, a signal or a hang."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from edgeq.core.errors import ModelError
from edgeq.targets import TARGETS, check_target
from edgeq.tflite.model import parse_tflite
from edgeq.tflite.summary import summarize

CASES = 600


def _edited(data: bytes, edit) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(root.subgraphs[0])
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _set(attr_path, value):
    def edit(graph):
        *parents, last = attr_path
        target = graph
        for part in parents:
            target = target[part] if isinstance(part, int) else getattr(target, part)
        if isinstance(last, int):
            target[last] = value
        else:
            setattr(target, last, value)

    return edit


TARGETED = {
    "graph input 9999": _set(("inputs", 0), 9999),
    "graph input -3": _set(("inputs", 0), -3),
    "graph output 9999": _set(("outputs", 0), 9999),
    "op input 9999": _set(("operators", 0, "inputs", 0), 9999),
    "op output 9999": _set(("operators", 0, "outputs", 0), 9999),
    "dimension 2**31-1": _set(("tensors", 0, "shape", 1), 2**31 - 1),
    "dimension -7": _set(("tensors", 0, "shape", 1), -7),
    "opcode index 77": _set(("operators", 0, "opcodeIndex"), 77),
    "buffer 5000": _set(("tensors", 1, "buffer"), 5000),
}


def _mutations(data: bytes, rng: np.random.Generator):
    for name, edit in TARGETED.items():
        yield name, _edited(data, edit)
    yield "wrong identifier", data[:4] + b"TFL2" + data[8:]
    while True:
        kind = rng.integers(4)
        buf = bytearray(data)
        if kind == 0:
            yield "truncated", bytes(buf[: rng.integers(0, len(buf))])
        elif kind == 1:
            for _ in range(rng.integers(1, 8)):
                at = rng.integers(0, len(buf))
                buf[at] ^= 1 << int(rng.integers(8))
            yield "bit flips", bytes(buf)
        elif kind == 2:
            at = rng.integers(8, len(buf) - 4)
            buf[at : at + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\x0f\x27\x00\x00", b"\xfd\xff\xff\xff"])
            yield "int overwrite", bytes(buf)
        else:
            at = rng.integers(8, 256)
            buf[at : at + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
            yield "header garbage", bytes(buf)


def test_fuzzed_models_give_a_result_or_one_model_error(cnn_int8, record_property):
    data = cnn_int8.output.read_bytes()
    rng = np.random.default_rng(20261127)
    outcomes = {"clean": 0, "refused": 0}
    started = time.perf_counter()
    for n, (kind, mutated) in enumerate(_mutations(data, rng)):
        if n == CASES:
            break
        try:
            model = parse_tflite(mutated, f"case{n}.tflite")
        except ModelError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
            continue
        assert kind not in TARGETED, f"{kind} was accepted"
        summarize(model)  # a model the reader accepts can be described and checked without an exception
        for target in TARGETS:
            check_target(model, target)
        outcomes["clean"] += 1
    seconds = time.perf_counter() - started
    record_property("fuzz", {**outcomes, "seconds": round(seconds, 2)})
    print(f"fuzz: {CASES} cases in {seconds:.2f} s: {outcomes}")
    assert sum(outcomes.values()) == CASES and outcomes["refused"] >= len(TARGETED)


@pytest.mark.parametrize("kind", ["graph input 9999", "graph input -3", "dimension -7", "op input 9999"])
def test_cli_on_a_crafted_model_is_exit_2_and_one_line(kind, cnn_int8, digits_calib, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_edited(cnn_int8.output.read_bytes(), TARGETED[kind]))
    for args in (["inspect", bad], ["validate", bad, "--reference", cnn_int8.output, "--data", digits_calib, "--runs", "1"]):
        proc = subprocess.run([sys.executable, "-m", "edgeq.cli", *map(str, args)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("edgeq: error:") and len(proc.stderr.strip().splitlines()) == 1
        assert "invalid TFLite model" in proc.stderr


def test_a_slice_of_the_fuzz_harness_finds_nothing(record_property):
    """A short slice of tests/fuzz_harness.py (`make fuzz` runs the full one): mutated models,
    manifests, results files, profiles and sample files through the real command line; every exit
    is 0, 1 or 2, with no traceback, no signal and no control or bidi character in the output."""
    from fuzz_harness import fuzz

    figures = fuzz(models=90, results=60, profiles=40, data=40, manifests=30, seed=7)
    record_property("fuzz", {k: v for k, v in figures.items() if k != "failures"})
    assert figures["total"] == 260
    assert figures["failures"] == [], figures["failures"][:5]
