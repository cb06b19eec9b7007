"""ONNX files PyPI packages ship beside their code, through edgeq's ONNX route:
rapidocr-onnxruntime 1.4.4's PaddleOCR models (text detector, direction classifier, recognizer)
and silero-vad 6.2.3's voice detector. Their spatial dimensions are symbolic; edgeq refuses that
in one line; the dimensions are then set in the file, as a user would. Fed uniform random
NCHW arrays in [-1, 1] (PaddleOCR's normalized range).

    pip download --no-deps rapidocr-onnxruntime==1.4.4 silero-vad==6.2.3; unzip the .onnx files
    into benchmarks/work/trials/onnx/pkgs; .venv/bin/python benchmarks/trials/onnx_packages.py
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[2]
W = ROOT / "benchmarks" / "work" / "trials" / "onnx" / "pkgs"
EDGEQ = str(Path(sys.executable).with_name("edgeq"))
FIXED = {
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": (1, 3, 48, 192),
    "ch_PP-OCRv4_rec_infer.onnx": (1, 3, 48, 320),
    "ch_PP-OCRv4_det_infer.onnx": (1, 3, 320, 320),
}


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True)


def main() -> None:
    for name in sorted(p.name for p in W.glob("*.onnx") if "_fixed" not in p.name):
        source = W / name
        np.save(W / "any.npy", np.zeros((1, 1, 3, 48, 48), np.float32))  # the file is refused before its data is read
        first = run(EDGEQ, "convert", source, "--data", W / "any.npy", "-o", W / "refused.tflite")
        row = {
            "file": name,
            "as_shipped": first.stderr.strip().splitlines()[-1][:240] if first.stderr.strip() else first.returncode,
        }
        if name in FIXED:
            shape = FIXED[name]
            fixed = W / name.replace(".onnx", "_fixed.onnx")
            model = onnx.load(str(source))  # as a user fixes it (PaddleOCR names H and W both "?", which
            for dim, size in zip(model.graph.input[0].type.tensor_type.shape.dim, shape):  # onnxruntime's tool cannot split)
                dim.dim_value = size
            onnx.save(model, str(fixed))
            rng = np.random.default_rng(0)
            np.save(W / "calib.npy", rng.uniform(-1, 1, (32, *shape)).astype(np.float32))
            np.save(W / "val.npy", rng.uniform(-1, 1, (16, *shape)).astype(np.float32))
            out, report = W / name.replace(".onnx", "_int8.tflite"), W / name.replace(".onnx", ".json")
            convert = run(EDGEQ, "convert", fixed, "--data", W / "calib.npy", "-o", out, "--force", "--samples", "32")
            row.update(
                fixed_to=list(shape),
                convert_exit=convert.returncode,
                convert=next(
                    (l for l in convert.stdout.splitlines() if "ops on int8 kernels" in l or "float" in l and "ops" in l),
                    convert.stderr.strip()[-300:],
                ),
            )
            if convert.returncode == 0:
                validate = run(
                    EDGEQ, "validate", out, "-r", fixed, "-d", W / "val.npy", "--runs", "3", "--json", report, "--force"
                )
                result = json.loads(report.read_text()) if report.exists() else {}
                row.update(
                    validate_exit=validate.returncode,
                    source_check_db=(result.get("source_check") or {}).get("worst_sqnr_db"),
                    outputs={o["name"]: o["sqnr_db"] for o in result.get("outputs", [])},
                )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
