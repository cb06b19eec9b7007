"""The fuzz harness (`make fuzz`; a short slice runs in `make test`): mutated inputs from a stranger
through the real command line, their exit codes counted. A case fails on exit 3, a traceback, a
signal, a numpy warning, or a control or bidi character reaching the output.

- models: the shipped tiny INT8 model, mutated (bit flips, truncation, integer overwrites, header
  garbage, targeted schema edits), through `inspect`, `validate` and `bundle` in turn;
- manifests: a mutated `<model>.edgeq.json` beside the model, through `inspect`;
- results: a real results JSON with values swapped, dropped, nested, made huge or hostile, through `report`;
- profiles: device profiles of every key with good and bad values, through `devices check` (hosts only on
  loopback, commands only this Python or a missing path: nothing the fuzzer writes reaches the network
  or runs a program);
- data: `.npy`/`.npz` sample files (object arrays, NaN, complex, wrong shapes, damaged bytes) through `validate`.

The commands run in a worker process that is restarted when a case kills it (the signal is counted).

    python tests/fuzz_harness.py --models 2000 --results 300 --profiles 200 --data 200 --json build/fuzz.json
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SEED_INT8 = HERE / "fixtures" / "tflite" / "tiny_int8.tflite"
SEED_FLOAT = HERE / "fixtures" / "tflite" / "tiny_float.tflite"
SEED_RESULTS = HERE / "fixtures" / "results" / "digits_validation.json"
SEED_MANIFESTS = sorted((HERE / "fixtures" / "manifests").glob("v1_*/*.edgeq.json"))
HOSTILE = "x\x1b[2J\u202eSSAP\u202c\n# H [l](javascript:alert(1)) <b>\x07"
UNSAFE_OUTPUT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


# -- the worker: runs CLI cases in-process, one JSON line back per case ----------------------------


def worker() -> None:
    import warnings

    from typer.testing import CliRunner

    from edgeq.cli import app

    warnings.simplefilter("error", RuntimeWarning)  # a numpy warning is a finding
    runner = CliRunner()
    for line in sys.stdin:
        argv = json.loads(line)
        result = runner.invoke(app, argv)
        exc = result.exception
        internal = exc is not None and not isinstance(exc, SystemExit)
        out = result.stdout + result.stderr
        print(
            json.dumps(
                {
                    "code": 3 if internal else result.exit_code,
                    "traceback": "Traceback (most recent call last)" in out,
                    "unsafe": bool(UNSAFE_OUTPUT.search(out)),
                    "detail": (f"{type(exc).__name__}: {exc}" if internal else result.stderr.strip())[:300],
                }
            ),
            flush=True,
        )


class Worker:
    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def run(self, argv: list[str], timeout: float = 120) -> dict[str, Any]:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=HERE.parent,
            )
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps([str(a) for a in argv]) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait(timeout)
            self.process = None
            return {
                "code": f"signal {-code}" if code < 0 else f"worker exit {code}",
                "traceback": False,
                "unsafe": False,
                "detail": "",
            }
        return json.loads(line)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()  # type: ignore[union-attr]
            self.process.wait(30)


# -- the cases --------------------------------------------------------------------------------------


def _model_mutations(data: bytes, rng: np.random.Generator) -> Iterator[bytes]:
    from test_fuzz import _mutations

    for _, mutated in _mutations(data, rng):
        yield mutated


def model_cases(n: int, folder: Path, rng: np.random.Generator) -> Iterator[tuple[str, list]]:
    data_file = folder / "samples.npy"
    np.save(data_file, np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32))
    commands = ("inspect", "validate", "bundle")
    for i, mutated in zip(range(n), _model_mutations(SEED_INT8.read_bytes(), rng)):
        path = folder / f"m{i}.tflite"
        path.write_bytes(mutated)
        kind = commands[i % 3]
        if kind == "inspect":
            yield kind, ["inspect", path]
        elif kind == "validate":
            yield (
                kind,
                [
                    "validate",
                    path,
                    "--reference",
                    SEED_FLOAT,
                    "--data",
                    data_file,
                    "--runs",
                    "1",
                    "--warmup",
                    "0",
                    "--no-cache",
                    "-q",
                ],
            )
        else:
            yield kind, ["bundle", path, "-o", folder / f"bundle{i}", "-q"]


def _mutate_json(node: Any, rng: random.Random, depth: int = 0) -> Any:
    """One random change somewhere in `node`."""
    if isinstance(node, dict) and node and rng.random() < 0.7:
        key = rng.choice(list(node))
        changed = dict(node)
        roll = rng.random()
        if roll < 0.15:
            del changed[key]
        elif roll < 0.85:
            changed[key] = _mutate_json(node[key], rng, depth + 1)
        else:
            changed[HOSTILE] = node[key]
        return changed
    if isinstance(node, list) and node and rng.random() < 0.7:
        at = rng.randrange(len(node))
        return node[:at] + [_mutate_json(node[at], rng, depth + 1)] + node[at + 1 :]
    return rng.choice(
        [
            None,
            True,
            0,
            -1,
            10**30,
            1e308,
            -0.0,
            "",
            HOSTILE,
            [],
            {},
            [1, 2, 3],
            {"a": 1},
            "NaN",
            2**63,
            "1.0",
            [HOSTILE],
            {"name": HOSTILE},
        ]
    )


def _json_text(value: Any, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.05:
        return "[" * 100_000 + "]" * 100_000
    if roll < 0.10:
        return json.dumps(value)[: -rng.randrange(1, 20)]
    if roll < 0.15:
        return "9" * 5002
    text = json.dumps(value)
    return text.replace("1.0", "NaN", 1) if roll < 0.2 else text


def results_cases(n: int, folder: Path, rng: random.Random) -> Iterator[tuple[str, list]]:
    seed = json.loads(SEED_RESULTS.read_text())
    for i in range(n):
        value = seed
        for _ in range(rng.randint(1, 4)):
            value = _mutate_json(value, rng)
        path = folder / f"r{i}.json"
        path.write_text(_json_text(value, rng))
        fmt = ("md", "html")[i % 2]
        yield "report", ["report", path, "--format", fmt, "-o", folder / f"r{i}.{fmt}"]


def manifest_cases(n: int, folder: Path, rng: random.Random) -> Iterator[tuple[str, list]]:
    """A mutated manifest beside its model (a real one, written by edgeq 1.3 with a search), through inspect."""
    for i in range(n):
        seed = SEED_MANIFESTS[i % len(SEED_MANIFESTS)]
        model = folder / f"mf{i}.tflite"
        model.write_bytes(seed.with_name(seed.name.replace(".edgeq.json", ".tflite")).read_bytes())
        value = json.loads(seed.read_text())
        for _ in range(rng.randint(1, 4)):
            value = _mutate_json(value, rng)
        (folder / f"mf{i}.edgeq.json").write_text(_json_text(value, rng))
        yield "manifest", ["inspect", model]


PROFILE_VALUES: dict[str, list[Any]] = {
    "transport": ["local", "ssh", "adb", "qemu", "telnet", "", 3],
    "host": ["127.0.0.1", "::1", "", 7],
    "port": [1, 0, -1, 70000, "22", 2.5],
    "user": ["nobody", "", HOSTILE, 1],
    "identity_file": ["/nonexistent/key", "", 3],
    "python": [sys.executable, "/nonexistent/python", "", 1, [sys.executable]],
    "runtime": ["ai_edge_litert", "tflite_runtime", "other", None],
    "delegates": [["xnnpack"], [], "xnnpack", [1], [HOSTILE]],
    "threads": [1, 0, -3, 2**70, "1", 1.5],
    "timeout": [2.0, 0, -1, float("inf"), float("nan"), "5", 1e308],
    "device_samples": [0, 5, -1],
    "accelerator": ["gpu", "npu:intel", "npu:none", HOSTILE, 5],
    "gpu_precision": ["fp16", "fp32", "fp8"],
    "name": [HOSTILE, "x", "", 4],
    "description": [HOSTILE, "", 1.5],
    "password": ["hunter2"],
    "unknown": [1],
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def profile_cases(n: int, folder: Path, rng: random.Random) -> Iterator[tuple[str, list]]:
    for i in range(n):
        keys = rng.sample(list(PROFILE_VALUES), rng.randint(1, 6))
        values = {k: rng.choice(PROFILE_VALUES[k]) for k in keys if rng.random() < 0.9 or k in ("transport",)}
        if values.get("transport") == "ssh":
            values.setdefault("host", "127.0.0.1")
            values["port"] = 1  # nothing listens there: refused at once, on loopback
        if values.get("transport") in ("local", None) and "python" not in values:
            values["python"] = "/nonexistent/python"  # the shipped default would run a real probe: slow, not the point
        text = "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())
        if rng.random() < 0.15:
            text = text[: rng.randrange(len(text) + 1)] + rng.choice(["=", "[", "\x00", '"', "\n[[a]]\n"])
        path = folder / f"p{i}.toml"
        path.write_text(text)
        yield "profile", ["devices", "check", path]


def data_cases(n: int, folder: Path, rng: random.Random) -> Iterator[tuple[str, list]]:
    good = np.random.default_rng(1).random((4, 8, 8, 1), dtype=np.float32)
    makers = [
        lambda: good * np.nan,
        lambda: good.astype(np.complex64),
        lambda: good.astype(np.float64) * 1e300,
        lambda: good.reshape(4, 64),
        lambda: good.astype(object),
        lambda: np.array(["a"] * 4),
        lambda: good[:0],
        lambda: good.astype(np.int64) * 2**62,
        lambda: good.astype(np.float16),
        lambda: good,
    ]
    for i in range(n):
        path = folder / f"d{i}.{'npz' if i % 2 else 'npy'}"
        array = makers[rng.randrange(len(makers))]()
        buffer = io.BytesIO()
        if i % 2:
            members = {"x": array}
            if rng.random() < 0.5:
                members["y"] = rng.choice([np.zeros(4, int), np.full(4, np.nan), np.zeros((4, 2)), np.array(["a"] * 4)])
            np.savez(buffer, **{k: v for k, v in members.items() if v.dtype != object}, allow_pickle=False) if all(
                v.dtype != object for v in members.values()
            ) else _npz_with_pickle(buffer, members)
        else:
            np.save(buffer, array, allow_pickle=array.dtype == object)
        raw = bytearray(buffer.getvalue())
        if rng.random() < 0.3 and raw:
            for _ in range(rng.randint(1, 6)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        if rng.random() < 0.1 and i % 2:
            raw = _npz_with_text_member(bytes(raw))
        path.write_bytes(bytes(raw))
        yield (
            "data",
            [
                "validate",
                SEED_INT8,
                "--reference",
                SEED_FLOAT,
                "--data",
                path,
                "--runs",
                "1",
                "--warmup",
                "0",
                "--no-cache",
                "-q",
            ],
        )


def _npz_with_pickle(buffer: io.BytesIO, members: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in members.items():
            member = io.BytesIO()
            np.save(member, value, allow_pickle=True)
            archive.writestr(f"{name}.npy", member.getvalue())


def _npz_with_text_member(raw: bytes) -> bytes:
    buffer = io.BytesIO(raw)
    try:
        with zipfile.ZipFile(buffer, "a") as archive:
            archive.writestr("y.npy", b"not an npy file")
    except zipfile.BadZipFile:
        return raw
    return buffer.getvalue()


# -- the run ----------------------------------------------------------------------------------------


def fuzz(models: int, results: int, profiles: int, data: int, manifests: int, seed: int = 20261207) -> dict[str, Any]:
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    counts: dict[str, Counter] = {}
    failures: list[dict[str, Any]] = []
    started = time.perf_counter()
    runner = Worker()
    with tempfile.TemporaryDirectory(prefix="edgeq-fuzz-") as scratch:
        folder = Path(scratch)
        cases = [
            model_cases(models, folder, nrng),
            manifest_cases(manifests, folder, rng),
            results_cases(results, folder, rng),
            profile_cases(profiles, folder, rng),
            data_cases(data, folder, rng),
        ]
        try:
            for group in cases:
                for kind, argv in group:
                    outcome = runner.run(argv)
                    code = outcome["code"]
                    counts.setdefault(kind, Counter())[str(code)] += 1
                    if code not in (0, 1, 2) or outcome["traceback"] or outcome["unsafe"]:
                        failures.append({"kind": kind, "argv": [str(a) for a in argv], **outcome})
                        kept = folder.parent / "edgeq-fuzz-failures"
                        kept.mkdir(exist_ok=True)
                        for arg in argv:  # the failing input, kept for the report
                            if isinstance(arg, Path) and arg.is_file() and arg.parent == folder:
                                (kept / arg.name).write_bytes(arg.read_bytes())
        finally:
            runner.close()
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "cases": {k: dict(v) for k, v in counts.items()},
        "total": sum(sum(v.values()) for v in counts.values()),
        "failures": failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--manifests", type=int, default=300)
    parser.add_argument("--results", type=int, default=300)
    parser.add_argument("--profiles", type=int, default=200)
    parser.add_argument("--data", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.worker:
        worker()
        return 0
    figures = fuzz(args.models, args.results, args.profiles, args.data, args.manifests)
    for kind, codes in figures["cases"].items():
        print(f"{kind:<10} {sum(codes.values()):>5} cases  exit codes {dict(sorted(codes.items()))}")
    print(f"{figures['total']} cases in {figures['seconds']} s; {len(figures['failures'])} failures")
    for failure in figures["failures"][:20]:
        print(f"  {failure['kind']}: {failure['code']} {failure['detail'][:200]} ({' '.join(failure['argv'][:3])})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if figures["failures"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
