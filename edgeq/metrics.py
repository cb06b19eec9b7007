"""Streaming comparison metrics: accumulate per sample, read out at the end, nothing stored."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXACT_DB = 100.0  # above this a layer only moves values (RESHAPE, MAX_POOL_2D): no quantization error


@dataclass
class OutputError:
    """INT8 (dequantized) vs float for one output tensor, over all samples."""

    name: str
    signal: float = 0.0  # sum of reference squares: SQNR's numerator and the cosine's reference norm
    noise: float = 0.0
    dot: float = 0.0
    norm_q: float = 0.0
    max_abs: float = 0.0
    sum_abs: float = 0.0
    count: int = 0

    def add(self, reference: np.ndarray, quantized: np.ndarray) -> None:
        r = reference.astype(np.float64).ravel()
        q = quantized.astype(np.float64).ravel()
        diff = r - q
        self.signal += float(r @ r)
        self.noise += float(diff @ diff)
        self.dot += float(r @ q)
        self.norm_q += float(q @ q)
        self.max_abs = max(self.max_abs, float(np.abs(diff).max(initial=0.0)))
        self.sum_abs += float(np.abs(diff).sum())
        self.count += r.size

    def to_dict(self) -> dict:
        if self.noise == 0:
            sqnr = math.inf if self.signal > 0 else None
        else:
            sqnr = 10 * math.log10(self.signal / self.noise) if self.signal > 0 else None
        denominator = math.sqrt(self.signal * self.norm_q)
        return {
            "name": self.name,
            "sqnr_db": None if sqnr is None else (round(sqnr, 3) if math.isfinite(sqnr) else 999.0),
            "cosine": round(self.dot / denominator, 6) if denominator else None,
            "max_abs_error": round(self.max_abs, 6),
            "mean_abs_error": round(self.sum_abs / self.count, 6) if self.count else None,
        }


@dataclass
class TopK:
    """Top-1/top-k accuracy of both models against labels, and their top-1 agreement."""

    k: int = 5
    count: int = 0
    labelled: int = 0
    agree: int = 0
    float_top1: int = 0
    int8_top1: int = 0
    float_topk: int = 0
    int8_topk: int = 0

    def add(self, reference: np.ndarray, quantized: np.ndarray, label: int | None) -> None:
        r, q = reference.ravel(), quantized.ravel()
        self.count += 1
        self.agree += int(np.argmax(r) == np.argmax(q))
        if label is None:
            return
        self.labelled += 1
        k = min(self.k, r.size)
        self.float_top1 += int(np.argmax(r) == label)
        self.int8_top1 += int(np.argmax(q) == label)
        self.float_topk += int(label in np.argsort(r)[-k:])
        self.int8_topk += int(label in np.argsort(q)[-k:])

    def to_dict(self) -> dict:
        n = self.labelled
        f1 = self.float_top1 / n if n else None
        i1 = self.int8_top1 / n if n else None
        return {
            "samples": self.count,
            "labelled": n,
            "float_top1": f1,
            "int8_top1": i1,
            "top1_drop_pts": 100 * (f1 - i1) if n else None,
            "top_k": self.k,
            "float_topk": self.float_topk / n if n else None,
            "int8_topk": self.int8_topk / n if n else None,
            "agreement": self.agree / self.count if self.count else None,
        }


def is_classification(shape: tuple[int, ...] | list[int]) -> bool:
    """[1, C] with C > 1: argmax means a class."""
    return len(shape) == 2 and shape[0] == 1 and shape[1] > 1


class Scorer:
    """Every output's error and, for a classifier, top-k and agreement: one place for local and
    on-device runs alike."""

    def __init__(self, names: list[str], classify: bool, top_k: int = 5):
        self.errors = [OutputError(n) for n in names]
        self.classify = classify
        self.topk = TopK(top_k)
        self.count = 0

    def add(self, reference: list[np.ndarray], quantized: list[np.ndarray], label: int | None) -> None:
        for acc, r, q in zip(self.errors, reference, quantized):
            acc.add(r, q)
        if self.classify:
            self.topk.add(reference[0], quantized[0], label)
        self.count += 1

    def result(self) -> dict:
        outputs = [e.to_dict() for e in self.errors]
        sqnrs = [o["sqnr_db"] for o in outputs if o["sqnr_db"] is not None]
        accuracy = self.topk.to_dict() if self.classify else {k: None for k in TopK().to_dict()}
        accuracy["samples"] = self.count
        return {"accuracy": accuracy, "outputs": outputs, "worst_sqnr_db": min(sqnrs) if sqnrs else None}


def speedup(float_p50: float | None, int8_p50: float | None) -> float | None:
    """Float p50 over INT8 p50, as every speedup edgeq reports; None where a p50 is missing
    (a benchmark_model build that prints no percentiles)."""
    return round(float_p50 / int8_p50, 4) if float_p50 and int8_p50 else None
