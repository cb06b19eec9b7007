"""Parallel calibration that writes the same statistics as TensorFlow's serial calibrator.

How TensorFlow calibrates (tensorflow/lite/tools/optimize/calibration): its CalibrationWrapper runs
the float model on TFLite's built-in kernels and, for every non-constant float32 input and output
of every operator, keeps the global min and max over all samples (NaN values skipped); then it
writes them into each tensor's quantization `min`/`max` and the quantizer turns them into scales
and zero-points. Min and max are associative, so the samples can be split into shards, each
calibrated in its own process by that same CalibrationWrapper, and the per-tensor ranges merged.

edgeq lets the converter calibrate on the first sample (that builds the calibrated graph, a one-
element min and max vector in every logged tensor), has `jobs` workers calibrate that graph on all
samples, and overwrites the ranges in place in the flatbuffer. The result is the serial
converter's calibrated model byte for byte, so the quantized model is too.

The workers load TensorFlow's calibration extension module by file path: it links only TFLite's
own library, so a worker starts in well under a second without importing TensorFlow.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterable
from multiprocessing import get_context
from pathlib import Path
from queue import Empty, Full

import numpy as np

from edgeq.core.errors import ConversionError
from edgeq.frameworks.native_converter import CALIBRATION_WRAPPER, calibration_wrapper_file, load_module
from edgeq.host.isolation import die_with_parent, main_module_hidden

Ranges = dict[int, tuple[float, float]]


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def range_slots(model: bytes) -> dict[int, tuple[int, int]]:
    """Byte offsets of each calibrated tensor's one-element min and max vectors in the flatbuffer."""
    root = _schema().Model.GetRootAsModel(model, 0)
    if root.SubgraphsLength() != 1:
        raise ConversionError("the model has several subgraphs, which TensorFlow's calibrator does not take")
    graph = root.Subgraphs(0)
    slots = {}
    for i in range(graph.TensorsLength()):
        q = graph.Tensors(i).Quantization()
        if q is None or q.MinLength() != 1 or q.MaxLength() != 1:
            continue
        table = q._tab
        slots[i] = (table.Vector(table.Offset(4)), table.Vector(table.Offset(6)))  # fields min, max
    return slots


def read_ranges(model: bytes) -> Ranges:
    return {
        i: (struct.unpack_from("<f", model, lo)[0], struct.unpack_from("<f", model, hi)[0])
        for i, (lo, hi) in range_slots(model).items()
    }


def write_ranges(model: bytes, ranges: Ranges) -> bytes:
    """The calibrated model with each tensor's min/max replaced; the layout is untouched."""
    slots = range_slots(model)
    if set(slots) != set(ranges):
        raise ConversionError("the calibration workers recorded other tensors than the converter; use --jobs 1")
    out = bytearray(model)
    for index, (min_at, max_at) in slots.items():
        struct.pack_into("<f", out, min_at, ranges[index][0])
        struct.pack_into("<f", out, max_at, ranges[index][1])
    return bytes(out)


def merge(parts: Iterable[Ranges]) -> Ranges:
    merged: Ranges = {}
    for part in parts:
        for index, (lo, hi) in part.items():
            old = merged.get(index)
            merged[index] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return merged


def _worker(library: str, model_path: str, tasks, results) -> None:
    """Calibrate the samples taken from `tasks` until None; put the ranges (or an error) on `results`."""
    die_with_parent()
    try:
        module = load_module(CALIBRATION_WRAPPER, library)
        wrapper, content = None, b""
        while (sample := tasks.get()) is not None:
            if wrapper is None:  # the model file exists once samples arrive
                content = Path(model_path).read_bytes()  # the wrapper points into it: keep it alive
                wrapper = module.CalibrationWrapper(content, [], [])
                wrapper.Prepare([list(a.shape) for a in sample])  # as TensorFlow's calibrator does
            wrapper.FeedTensor(sample)
        results.put(("ok", read_ranges(wrapper.Calibrate()) if wrapper else {}))
    except BaseException as exc:
        lines = str(exc).strip().splitlines()
        results.put(("error", f"{type(exc).__name__}: {lines[-1] if lines else ''}"))


class ParallelCalibrator:
    """`jobs` worker processes, started when the calibrated graph exists (for graphs that
    edgeq.conversion.calibration.observed cannot run). Spawned, never forked: the parent holds
    TensorFlow's threads."""

    def __init__(self, jobs: int):
        context = get_context("spawn")
        self.tmp = tempfile.TemporaryDirectory(prefix="edgeq-calibrate-")
        self.model_path = Path(self.tmp.name) / "calibrated.tflite"
        self.tasks, self.results = context.Queue(maxsize=2 * jobs), context.Queue()
        library = calibration_wrapper_file()
        self.workers = [
            context.Process(target=_worker, args=(library, str(self.model_path), self.tasks, self.results), daemon=True)
            for _ in range(jobs)
        ]
        with main_module_hidden():
            for worker in self.workers:
                worker.start()

    def __enter__(self) -> ParallelCalibrator:
        return self

    def __exit__(self, *exc) -> None:
        for worker in self.workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
        self.tmp.cleanup()

    def calibrate(self, calibrated_once: bytes, samples: Iterable[list[np.ndarray]]) -> bytes:
        """`calibrated_once`: the converter's calibrated model (on any sample); returns it with the
        ranges TensorFlow's calibrator records over all `samples`."""
        partial = self.model_path.with_suffix(".partial")
        partial.write_bytes(calibrated_once)
        partial.replace(self.model_path)
        for sample in samples:
            self._put(sample)
        for _ in self.workers:
            self._put(None)
        return write_ranges(calibrated_once, merge(self._result() for _ in self.workers))

    def _put(self, item) -> None:
        while True:
            try:
                self.tasks.put(item, timeout=1)
                return
            except Full:  # every worker busy; one that stopped early has failed
                if not all(w.is_alive() for w in self.workers):
                    self._result()  # raises the worker's error
                    raise ConversionError("a calibration worker stopped early; retry with --jobs 1") from None

    def _result(self) -> Ranges:
        while True:
            try:
                status, payload = self.results.get(timeout=1)
            except Empty:
                dead = [w.exitcode for w in self.workers if w.exitcode not in (None, 0)]
                if dead:
                    raise ConversionError(f"a calibration worker died (exit code {dead[0]}); retry with --jobs 1") from None
                continue
            if status == "error":
                raise ConversionError(f"a calibration worker failed: {payload}")
            return payload
