"""edgeq's default (min/max) and `--calibration auto` against ai-edge-quantizer 0.10's static int8
(static_wi8_ai8, its own calibration) on float .tflite files that packages ship, with the same
calibration samples, judged on the same held-back samples: the third of the eval data edgeq's
split holds back (auto tunes on the other two thirds; the default and ai-edge-quantizer tune on
none of it). Figures: each output's SQNR against the float model, the worst first. Op by op: for
every activation tensor both files name alike, the ratio of ai-edge-quantizer's scale to edgeq's
(its moving average of per-sample extremes narrows ranges; edgeq's min/max does not).

    .venv/bin/python benchmarks/aeq_parity.py MODEL.tflite CAL.npy EVAL.npy [NAME] [--sequence KEY]   (one row)

--sequence KEY: that output holds classes per step; auto judges it as a sequence (--output-role)
and the row adds the share of steps and of CTC-collapsed sequences decided as float decides them.
    .venv/bin/python benchmarks/aeq_parity.py                                         (the packaged models; writes JSON)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EDGEQ = [sys.executable, "-m", "edgeq.cli"]


def held_back(eval_path: Path, spec) -> list[int]:
    """The rows of the eval file edgeq's split holds back (in the order edgeq reads them)."""
    from edgeq.data.samples import open_samples
    from edgeq.scoring.held_back import Split

    order = open_samples(eval_path, [spec]).indices
    return [int(order[i]) for i in Split.of(len(order)).held_back]


def scores(model: Path, reference, rows: np.ndarray, sequence: str | None = None) -> dict[str, float]:
    """Each output's SQNR against float over `rows`; with `sequence` (an output key whose last axis
    holds classes per step), also its steps and whole sequences (CTC-collapsed, blank 0) decided as
    float decides them, in percent."""
    from edgeq.run.litert import LiteRTRunner

    run = LiteRTRunner(model)
    names, mine = [p.label for p in reference.output_ports], [p.label for p in run.output_ports]
    signal, noise = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    steps, sequences = [], []
    for x in rows:
        want = dict(zip(names, reference.run([x[None]])))
        got = dict(zip(mine, run.run([x[None]])))
        for k in names:
            signal[k] += float(np.sum(np.square(want[k], dtype=np.float64)))
            noise[k] += float(np.sum(np.square(got[k].astype(np.float64) - want[k])))
        if sequence is not None:
            a, b = np.argmax(want[sequence], -1).ravel(), np.argmax(got[sequence], -1).ravel()
            steps.append(np.mean(a == b))
            sequences.append(_collapsed(a) == _collapsed(b))
    found = {k: round(10 * np.log10(signal[k] / noise[k]), 2) if noise[k] else float("inf") for k in names}
    if sequence is not None:
        found.update(
            {
                f"{sequence} steps %": round(100 * float(np.mean(steps)), 2),
                f"{sequence} sequences %": round(100 * float(np.mean(sequences)), 1),
            }
        )
    return found


def _collapsed(ids: np.ndarray) -> list[int]:
    """A CTC decoding: repeats merged, blanks (class 0) dropped."""
    return [int(i) for n, i in enumerate(ids) if i != 0 and (n == 0 or i != ids[n - 1])]


def aeq(model: Path, cal: np.ndarray, key: str, out: Path) -> Path:
    """ai-edge-quantizer's static int8 of `model`; one without a SignatureDef (MediaPipe's) gets one
    first, its tensor names as keys, since ai-edge-quantizer calibrates through a signature."""
    from ai_edge_quantizer import quantizer, recipe

    from edgeq.tflite.model import parse_tflite
    from edgeq.tflite.signatures import SignatureSpec, with_signatures

    parsed = parse_tflite(model.read_bytes())
    if not parsed.signatures:
        names = [[parsed.tensors[i].name] * 2 for i in parsed.inputs], [[parsed.tensors[i].name] * 2 for i in parsed.outputs]
        signed = out.with_name("signed.tflite")
        signed.write_bytes(with_signatures(model.read_bytes(), [SignatureSpec("serving_default", *names)]))
        model = signed
    qt = quantizer.Quantizer(str(model))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    result = qt.calibrate({"serving_default": [{key: x[None]} for x in cal]})
    out.write_bytes(bytes(qt.quantize(result, enable_progress_report=False).quantized_model))
    return out


def scales_compared(edgeq_file: Path, aeq_file: Path) -> dict:
    """Per activation tensor named alike in both: ai-edge-quantizer's scale over edgeq's."""
    from edgeq.tflite.model import parse_tflite

    def scales(path: Path) -> dict[str, float]:
        parsed = parse_tflite(path.read_bytes())
        return {
            t.name.split(";")[0]: t.quantization.scales[0]
            for op in parsed.operators
            for t in (parsed.tensors[o] for o in op.outputs)
            if t.quantization and len(t.quantization.scales) == 1 and t.dtype == "int8"
        }

    mine, theirs = scales(edgeq_file), scales(aeq_file)
    ratios = {n: theirs[n] / mine[n] for n in mine.keys() & theirs.keys() if mine[n] > 0}
    if not ratios:
        return {"tensors": 0}
    values = np.array(list(ratios.values()))
    narrowest = sorted(ratios.items(), key=lambda kv: kv[1])[:5]
    return {
        "tensors": len(ratios),
        "median_ratio": round(float(np.median(values)), 3),
        "narrower_than_edgeq": int(np.sum(values < 0.99)),
        "wider_than_edgeq": int(np.sum(values > 1.01)),
        "narrowest": [[n, round(r, 3)] for n, r in narrowest],
    }


def row(name: str, model: Path, cal_path: Path, eval_path: Path, sequence: str | None = None) -> dict:
    from edgeq.data.samples import InputSpec
    from edgeq.run.litert import LiteRTRunner

    reference = LiteRTRunner(model)
    port = reference.input_ports[0]
    spec = InputSpec(port.label, tuple(port.shape))
    evaluation = np.load(eval_path)
    rows = evaluation[held_back(eval_path, spec)]
    with tempfile.TemporaryDirectory(prefix="edgeq-aeq-") as folder:
        d = Path(folder)
        base = [*EDGEQ, "convert", str(model), "-d", str(cal_path), "--samples", str(len(np.load(cal_path))), "--no-cache", "-q"]
        subprocess.run([*base, "-o", str(d / "default.tflite")], check=True, capture_output=True)
        auto = [*base, "-o", str(d / "auto.tflite"), "--calibration", "auto", "--eval-data", str(eval_path)]
        auto += ["--output-role", f"{sequence}=sequence"] if sequence else []
        subprocess.run(auto, check=True, capture_output=True)
        chosen = json.loads((d / "auto.edgeq.json").read_text())["recipe"]["calibration"]
        figures = {n: scores(d / f"{n}.tflite", reference, rows, sequence) for n in ("default", "auto")}
        try:
            figures["aeq"] = scores(aeq(model, np.load(cal_path), port.label, d / "aeq.tflite"), reference, rows, sequence)
            failed = None
        except Exception as exc:  # ai-edge-quantizer refuses some graphs, or LiteRT its file: a row that says so
            failed = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        return {
            "model": name,
            "calibration_samples": len(np.load(cal_path)),
            "held_back_samples": len(rows),
            "eval_samples": len(evaluation),
            "sqnr_db_held_back": figures,
            "worst_db_held_back": {n: min(v for k, v in f.items() if not k.endswith("%")) for n, f in figures.items()},
            "auto_chose": chosen,
            "aeq_error": failed,
            "aeq_scale_over_edgeq_scale": scales_compared(d / "default.tflite", d / "aeq.tflite") if failed is None else None,
        }


def main(args: list[str]) -> None:
    sequence = args.pop(args.index("--sequence") + 1) if "--sequence" in args else None
    args = [a for a in args if a != "--sequence"]
    if args:
        print(json.dumps(row(args[3] if len(args) > 3 else Path(args[0]).stem, *map(Path, args[:3]), sequence), indent=1))
        return
    raise SystemExit("give MODEL.tflite CAL.npy EVAL.npy (see benchmarks/aeq_parity.json for the rows recorded)")


if __name__ == "__main__":
    main(sys.argv[1:])
