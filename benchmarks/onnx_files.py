"""The ONNX files that installable packages ship, through edgeq as a user would run it: which convert
to int8, and how the result validates against ONNX Runtime.

    python benchmarks/onnx_files.py [--label after] [--checkout DIR] [--only NAME]

Files: the `onnx` package's light model-zoo graphs (their weights are ConstantOfShape constants, so
only conversion and the source match say something there; accuracy does not), onnxruntime's
datasets, and where installed (pip install --no-deps rapidocr-onnxruntime==1.4.4 silero-vad==6.2.3
facenet-pytorch==2.6.0 scikit-image==0.26.0): rapidocr's detector, recognizer and direction
classifier, silero-vad's graphs, and facenet-pytorch's ONet with the weights it ships, exported with
torch.onnx.export(dynamo=False). Image inputs get crops of scikit-image's astronaut photo (0..1);
other inputs get synthetic data, said so in the table.

Each file: `edgeq convert FILE --data CAL [--input-shape ...]` (32 samples), then
`edgeq validate INT8 --reference FILE --data VAL` (32 others): the float .tflite against ONNX Runtime
(source) and the INT8 file against the float one. `--checkout DIR` runs the edgeq of another checkout
(PYTHONPATH), to measure a before; results go under `--label` in benchmarks/onnx_files.json, and
benchmarks/onnx_files.md is the table of every label measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "onnx_files.json"
SAMPLES = 32
# dimensions the files leave symbolic, fixed as their packages feed them
SHAPES = {
    "ch_PP-OCRv4_det_infer.onnx": ("1,3,256,256",),
    "ch_PP-OCRv4_rec_infer.onnx": ("1,3,48,320",),
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": ("1,3,48,192",),
    "silero_vad.onnx": ("input=1,576", "state=2,1,128"),
    "silero_vad_16k_op15.onnx": ("input=1,576", "state=2,1,128"),
    "silero_vad_op18_ifless.onnx": ("input=1,576", "state=2,1,128"),
    "silero_vad_half.onnx": ("input=1,576", "state=2,1,128"),
    "silero_vad_16k_sequence.onnx": ("input=1,576",),
}


@dataclass
class Case:
    package: str
    path: Path
    shapes: tuple[str, ...] = ()


@dataclass
class Outcome:
    converted: bool = False
    convert_s: float = 0.0
    refusal: str | None = None
    ops_int8: int | None = None
    ops_total: int | None = None
    validated: bool = False
    source_sqnr_db: list[float | None] = field(default_factory=list)  # per output; None: exact
    int8_sqnr_db: float | None = None
    agreement: float | None = None
    data: str = ""
    commit: str = ""  # the checkout that ran


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def candidates(workdir: Path, only: str | None) -> list[Case]:
    found: list[Case] = []
    for package, folder, pattern in (
        ("onnx", "backend/test/data/light", "light_*.onnx"),
        ("onnxruntime", "datasets", "*.onnx"),
        ("rapidocr_onnxruntime", "models", "*.onnx"),
        ("silero_vad", "data", "*.onnx"),
    ):
        base = package_dir(package)
        for path in sorted((base / folder).glob(pattern)) if base else []:
            found.append(Case(package, path, SHAPES.get(path.name, ())))
    if package_dir("facenet_pytorch") is not None and (only is None or only in "facenet_onet.onnx"):
        found.append(Case("facenet_pytorch", onet_onnx(workdir)))
    return [case for case in found if only is None or only in case.path.name]


def onet_onnx(workdir: Path) -> Path:
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from pytorch_routes import onet

    model, side = onet()
    path = workdir / "facenet_onet.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, side, side),), str(path), dynamo=False, opset_version=17)
    return path


def photos(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """n crops of scikit-image's astronaut photo, (n, 3, height, width) in 0..1."""
    from PIL import Image

    base = package_dir("skimage")
    if base is None:
        raise SystemExit("the image files need scikit-image's photo: pip install --no-deps scikit-image==0.26.0")
    image = Image.open(base / "data" / "astronaut.png").convert("RGB")
    rng, crops = np.random.default_rng(seed), []
    for _ in range(n):
        side = int(rng.integers(128, 512))
        x, y = (int(v) for v in rng.integers(0, 512 - side + 1, 2))
        crop = image.crop((x, y, x + side, y + side)).resize((width, height), Image.BILINEAR)
        crops.append(np.asarray(crop, np.float32).transpose(2, 0, 1) / 255)
    return np.stack(crops)


def graph_inputs(path: Path, shapes: tuple[str, ...]) -> list[tuple[str, int, list[int]]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = {t.name for t in model.graph.initializer}
    given = dict(s.split("=") if "=" in s else ("", s) for s in shapes)
    found = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
        fixed = given.get(value.name, given.get("", ""))
        if fixed and (len(found) == 0 or value.name in given):
            dims = [int(v) for v in fixed.split(",")]
        found.append((value.name, value.type.tensor_type.elem_type, [d if d > 0 else 1 for d in dims]))
    return found


def samples(path: Path, shapes: tuple[str, ...], seed: int) -> tuple[dict[str, np.ndarray], str]:
    import onnx

    arrays, kinds = {}, []
    for name, elem, dims in graph_inputs(path, shapes):
        rng = np.random.default_rng(seed)
        each = tuple(dims[1:]) if dims and dims[0] == 1 else tuple(dims)  # edgeq drops a batch of 1, keeps other dims
        if elem == onnx.TensorProto.INT64:
            arrays[name] = np.full((SAMPLES, *each), 16000, np.int64)
            kinds.append(f"{name}: 16000")
        elif len(dims) == 4 and dims[1] == 3:
            arrays[name] = photos(SAMPLES, dims[2], dims[3], seed)
            kinds.append(f"{name}: photo crops")
        elif name in ("state", "h", "c"):
            arrays[name] = np.zeros((SAMPLES, *each), np.float32)
            kinds.append(f"{name}: zeros")
        else:
            arrays[name] = rng.normal(0, 0.3, (SAMPLES, *each)).astype(np.float32)
            kinds.append(f"{name}: synthetic normal(0, 0.3)")
    return arrays, "; ".join(kinds)


def edgeq(args: list[str], checkout: Path | None, folder: Path) -> subprocess.CompletedProcess[str]:
    """edgeq's command line from `checkout` (this one by default), run in `folder`: `python -m` puts
    the working directory first on the path, so a run from a checkout would import that one."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(checkout or ROOT)}
    env.pop("CI", None)
    command = [sys.executable, "-m", "edgeq.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800, cwd=folder)


def last_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("edgeq: error")]
    return (lines[-1] if lines else stderr.strip().splitlines()[-1] if stderr.strip() else "no output")[:400]


def run(case: Case, checkout: Path | None, folder: Path) -> Outcome:
    outcome = Outcome(
        commit=subprocess.run(
            ["git", "-C", str(checkout or ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )
    data = {}
    for split, seed in (("cal", 0), ("val", 1)):
        arrays, outcome.data = samples(case.path, case.shapes, seed)
        data[split] = folder / f"{split}.npz"
        np.savez(data[split], **arrays) if len(arrays) > 1 else np.save(folder / f"{split}.npy", next(iter(arrays.values())))
        if len(arrays) == 1:
            data[split] = folder / f"{split}.npy"
    shapes = [arg for s in case.shapes for arg in ("--input-shape", s)]
    int8 = folder / "int8.tflite"
    started = time.perf_counter()
    done = edgeq(["convert", str(case.path), "-d", str(data["cal"]), "-o", str(int8), "--no-cache", *shapes], checkout, folder)
    outcome.convert_s = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        outcome.refusal = f"exit {done.returncode}: {last_error(done.stderr)}"
        return outcome
    manifest = json.loads(int8.with_suffix(".edgeq.json").read_text())
    outcome.converted, outcome.ops_int8, outcome.ops_total = True, manifest["ops_int8"], manifest["ops_total"]
    results = folder / "validate.json"
    done = edgeq(["validate", str(int8), "-r", str(case.path), "-d", str(data["val"]), "--json", str(results)], checkout, folder)
    if done.returncode not in (0, 1) or not results.exists():
        outcome.refusal = f"validate exit {done.returncode}: {last_error(done.stderr)}"
        return outcome
    found = json.loads(results.read_text())
    outcome.validated = True
    source = found.get("source_check") or {}
    outcome.source_sqnr_db = [o["sqnr_db"] for o in source.get("outputs", [])]
    outcome.int8_sqnr_db, outcome.agreement = found["worst_sqnr_db"], found["accuracy"]["agreement"]
    return outcome


def refusal_words(refusal: str) -> str:
    """The refusal without the temporary paths it names, cut to 200 characters."""
    words = refusal.split("edgeq: error: ", 1)[-1]
    words = re.sub(r"\S*/([^/\s]+\.(onnx|tflite|npz|npy)):", r"\1:", words)
    return (words[:200] + ("…" if len(words) > 200 else "")).replace("|", "/")


def table(results: dict[str, dict[str, dict]]) -> str:
    labels = sorted({label for per in results.values() for label in per}, key=lambda label: (label != "before", label))
    counts = []
    for label in labels:
        ran = [per[label] for per in results.values() if label in per]
        commit = next((o.get("commit") for o in ran if o.get("commit")), "?")
        counts.append(f"{label} ({commit}): {sum(o['converted'] for o in ran)} of {len(ran)} convert")
    about = (
        "32 calibration and 32 other validation samples each: image inputs crops of scikit-image's astronaut photo, "
        "other inputs synthetic (each result's `data` in the JSON). The light graphs' weights are constants, "
        "so only conversion and the source match say something there. Made by `python benchmarks/onnx_files.py`.\n"
    )
    rows = [
        "; ".join(counts) + "\n",
        about,
        "| file | package | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for key, per in sorted(results.items()):
        package, name = key.split("/", 1)
        cells = []
        for label in labels:
            o = per.get(label)
            if o is None:
                cells.append("—")
            elif not o["converted"]:
                cells.append(f"refused: {refusal_words(o['refusal'])}")
            else:
                src = ", ".join("exact" if s is None else f"{s:.1f} dB" for s in o["source_sqnr_db"]) or "n/a"
                sq = "n/a" if o["int8_sqnr_db"] is None else f"{o['int8_sqnr_db']:.1f} dB"
                cells.append(f"int8 {o['ops_int8']}/{o['ops_total']} ops; float vs ORT {src}; int8 vs float {sq}")
        rows.append(f"| {name} | {package} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", default="after")
    parser.add_argument("--checkout", type=Path)
    parser.add_argument("--only")
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON to add this label's results to")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in candidates(Path(tmp), args.only):
            folder = Path(tempfile.mkdtemp(dir=tmp))
            outcome = run(case, args.checkout, folder)
            key = f"{case.package}/{case.path.name}"
            results.setdefault(key, {})[args.label] = asdict(outcome)
            print(key, args.label, json.dumps(asdict(outcome)), flush=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table(results))
    converted = sum(o[args.label]["converted"] for o in results.values() if args.label in o)
    print(f"{args.label}: {converted} of {sum(args.label in o for o in results.values())} files convert to int8")


if __name__ == "__main__":
    main()
