"""The local runner: a model in LiteRT on this machine (XNNPACK, a delegate library, or the
built-in kernels). Device runners (edgeq.run.devices.device_script, edgeq.run.devices.benchmark_model) share its
`measure` interface.

A runner takes named float arrays, returns named float arrays, and times its own invokes.
Quantizing inputs and dequantizing outputs with each tensor's scale and zero-point happens here,
in `to_model_dtype` / `to_float`, and nowhere else. This module needs numpy and a TFLite runtime
(ai_edge_litert, else tflite_runtime), never TensorFlow: it also describes what runs on a device.
"""

from __future__ import annotations

import ctypes
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.errors import ModelError, UsageError
from edgeq.host.native import captured_native_stderr
from edgeq.run.pairing import Endpoint
from edgeq.run.protocol import Capabilities, InvokeTimes, Measurement, Percentiles
from edgeq.scoring.roles import OutputFacts

DELEGATES = ("xnnpack", "none", "ref")


def to_model_dtype(real: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """Q = round(R / S) + Z, clipped to the integer type; float tensors pass through."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer) or scale == 0:
        return real.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(real / scale) + zero_point, info.min, info.max).astype(dtype)


def to_float(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """R = S * (Q - Z); float tensors pass through."""
    if not np.issubdtype(q.dtype, np.integer) or scale == 0:
        return q.astype(np.float32)
    return (scale * (q.astype(np.float32) - zero_point)).astype(np.float32)


def _runtime():
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:  # a device with only the older runtime
        from tflite_runtime import interpreter as litert
    return litert


def invoke_once(model: bytes, first_sample: Callable[[list], list[np.ndarray] | None]) -> str:
    """Load, allocate and invoke `model` once in LiteRT (XNNPACK, as apps run it), on the first
    real sample `first_sample(specs)` gives, else on zeros. Returns what it ran on; raises
    RuntimeError/ValueError with the loader's message when the model does not run."""
    litert = _runtime()
    with captured_native_stderr() as native:
        try:
            interpreter = litert.Interpreter(model_content=model)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise RuntimeError(native.last_error_line() or str(exc)) from None
    details = interpreter.get_input_details()
    sample = first_sample([(d["name"], tuple(int(x) for x in d["shape"])) for d in details])
    feeds = sample if sample is not None else [np.zeros(d["shape"], np.float32) for d in details]
    for d, real in zip(details, feeds):
        interpreter.set_tensor(d["index"], to_model_dtype(np.asarray(real).reshape(d["shape"]), d["dtype"], *d["quantization"]))
    with captured_native_stderr() as native:
        try:
            interpreter.invoke()
        except (ValueError, RuntimeError) as exc:
            raise RuntimeError(native.last_error_line() or str(exc)) from None
    return "the first calibration sample" if sample is not None else "zeros (no samples to take one from)"


@dataclass(frozen=True)
class Delegation:
    """How many of the model's nodes the delegate took, and the op types left to the built-in kernels."""

    nodes: int
    kept_ops: dict[str, int]


# below this difference of p50s two timings are the same: one interpreter invoke from Python costs
# a few microseconds of its own, and the timer and a shared machine's scheduling move a p50 by as much
MEASURABLE_MS = 0.01


def within_noise(a: InvokeTimes, b: InvokeTimes) -> bool:
    """Whether two p50s differ by less than the run-to-run spread (the larger interquartile range
    of the timed invokes) or by less than MEASURABLE_MS: on tiny models a 'speedup' is then noise,
    and the result says "no measurable difference"."""

    def iqr(latency: InvokeTimes) -> float:
        q1, q3 = np.percentile(latency.samples_ms, [25, 75]) if latency.samples_ms else (0.0, 0.0)
        return float(q3 - q1)

    return abs(a.p50 - b.p50) <= max(iqr(a), iqr(b), MEASURABLE_MS)


def _xnnpack_refused(model) -> str | None:
    """Why XNNPACK cannot load `model`, where its int8 scales say so, with the remedy."""
    from edgeq.core.escape import terminal
    from edgeq.targets.xnnpack import unloadable

    found = unloadable(model)
    if not found:
        return None
    ops = ", ".join(f"{op} {terminal(node)} ({ratio:,.0f})" for _, op, node, ratio in found[:3])
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    keep = " ".join(f"--keep-float {terminal(node)}" for _, _, node, _ in found[:3])
    return (
        f"XNNPACK, LiteRT's default CPU delegate, cannot run {ops}{more}: input scale x weight scale / output "
        f"scale must stay under 256 (an output's int8 range far narrower than its input's); keep them in float "
        f"({keep}), or validate without XNNPACK (--delegate none)"
    )


class LiteRTRunner:
    """A .tflite in the LiteRT interpreter, with XNNPACK (default), without delegates, with reference
    kernels, or with an external delegate library (e.g. libedgetpu.so.1)."""

    def __init__(
        self,
        path: str | Path,
        delegate: str = "xnnpack",
        threads: int = 1,
        delegate_library: str | None = None,
        delegate_options: dict[str, str] | None = None,
    ):
        from edgeq.tflite.model import read_tflite

        if delegate not in DELEGATES:
            raise UsageError(f"--delegate {delegate!r}: use one of {', '.join(DELEGATES)}")
        self.path, self.threads = Path(path), threads
        self._made_with = (path, delegate, threads, delegate_library, delegate_options)
        self.model = read_tflite(path)  # a clear error for a missing, foreign or corrupt file
        self.delegate = Path(delegate_library).name if delegate_library else delegate
        litert = _runtime()
        kwargs: dict[str, Any] = {"model_path": str(path), "num_threads": threads}
        if delegate_library:
            try:  # load_delegate's failure path raises again in Delegate.__del__; probe with ctypes first
                ctypes.CDLL(delegate_library)
            except OSError as exc:
                coral = (
                    " (the Edge TPU runtime is Coral's libedgetpu1-std package)"
                    if "edgetpu" in Path(delegate_library).name
                    else ""
                )
                raise UsageError(
                    f"cannot load delegate library {delegate_library}: {exc}; install it{coral}, check the path, "
                    "or choose another --delegate"
                ) from None
            try:
                kwargs["experimental_delegates"] = [litert.load_delegate(delegate_library, delegate_options or {})]
            except (ValueError, OSError) as exc:
                raise UsageError(
                    f"cannot load delegate library {delegate_library}: {exc}; install it or drop --delegate-library"
                ) from exc
            kwargs["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif delegate == "none":
            kwargs["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif delegate == "ref":
            kwargs["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_REF
        try:
            with captured_native_stderr() as native:
                self.interpreter = litert.Interpreter(**kwargs)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            refused = _xnnpack_refused(self.model) if delegate == "xnnpack" and not delegate_library else None
            raise ModelError(
                f"{path}: {refused or 'the interpreter rejected the model'} ({native.last_error_line() or exc})"
            ) from exc
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        delegation = self._delegation()
        self.delegated_nodes, self.kept_ops = delegation.nodes, delegation.kept_ops
        self.partitions = sum(op["op_name"] == "DELEGATE" for op in self.interpreter._get_ops_details())
        self.input_ports, self.output_ports = self._ports()

    def clone(self) -> LiteRTRunner:
        """Another interpreter of the same model and delegate: one per thread (an interpreter is not thread-safe)."""
        return LiteRTRunner(*self._made_with)

    def _ports(self) -> tuple[list[Endpoint], list[Endpoint]]:
        """Inputs and outputs with the signature keys of the main subgraph's signature, if it has one."""
        main = [s for s in self.model.signatures if s.subgraph == 0]
        chosen = next((s for s in main if s.key == "serving_default"), main[0] if main else None)
        keys = {i: k for k, i in (chosen.inputs + chosen.outputs)} if chosen else {}

        def ports(details):
            return [Endpoint(keys.get(d["index"]), d["name"], tuple(int(x) for x in d["shape"])) for d in details]

        return ports(self.inputs), ports(self.outputs)

    @property
    def output_names(self) -> list[str]:
        """The output tensors' names, in the model's output order."""
        return [d["name"] for d in self.outputs]

    def output_facts(self) -> list[OutputFacts]:
        """What the file says of each output: the op computing it, the labels its metadata gives it."""
        from edgeq.tflite.metadata import read_metadata

        metadata = read_metadata(self.model.data)
        labels = len(metadata.labels or []) if metadata else 0
        labelled = [labels if o.labels_file else None for o in metadata.outputs] if metadata else []
        return [
            OutputFacts(p.label, p.shape, self.model.producing_op(d["index"]), labelled[m] if m < len(labelled) else None)
            for m, (p, d) in enumerate(zip(self.output_ports, self.outputs))
        ]

    @property
    def total_nodes(self) -> int:
        return len(self.model.operators)

    def _delegation(self) -> Delegation:
        """How many of the model's nodes a delegate took, and which op types stayed on built-ins.

        Delegated nodes stay in the interpreter's node list, replaced by DELEGATE nodes; a node
        belongs to a delegate's partition when it lies between that DELEGATE node's inputs and
        outputs.
        """
        ops = self.interpreter._get_ops_details()
        original = [op for op in ops if op["op_name"] != "DELEGATE"]
        producer = {t: i for i, op in enumerate(original) for t in op["outputs"]}
        taken: set[int] = set()
        for delegate_node in (op for op in ops if op["op_name"] == "DELEGATE"):
            boundary = set(delegate_node["inputs"])
            stack = [t for t in delegate_node["outputs"]]
            while stack:
                tensor = stack.pop()
                node = producer.get(tensor)
                if tensor in boundary or node is None or node in taken:
                    continue
                taken.add(node)
                stack.extend(t for t in original[node]["inputs"] if t >= 0)
        kept: dict[str, int] = {}
        for i, op in enumerate(original):
            if i not in taken:
                kept[op["op_name"]] = kept.get(op["op_name"], 0) + 1
        return Delegation(len(taken), kept)

    def quantize_inputs(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Float arrays in input order -> arrays in the model's input dtypes."""
        return [to_model_dtype(real, d["dtype"], *d["quantization"]) for d, real in zip(self.inputs, feeds)]

    def dequantize_outputs(self, raw: list[np.ndarray]) -> list[np.ndarray]:
        return [to_float(q, *d["quantization"]) for d, q in zip(self.outputs, raw)]

    def _set_inputs(self, feeds: list[np.ndarray]) -> None:
        for detail, array in zip(self.inputs, self.quantize_inputs(feeds)):
            self.interpreter.set_tensor(detail["index"], array)

    def run_raw(self, model_feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Arrays in the model's dtypes in and out: what a device runner sees."""
        for detail, array in zip(self.inputs, model_feeds):
            self.interpreter.set_tensor(detail["index"], array)
        with captured_native_stderr() as native:
            try:
                self.interpreter.invoke()
            except (ValueError, RuntimeError) as exc:  # a file LiteRT loads but cannot run (shapes that disagree)
                raise ModelError(
                    f"{self.path}: LiteRT cannot run the model ({' '.join((native.last_error_line() or str(exc)).split())[:200]})"
                ) from None
        return [self.interpreter.get_tensor(d["index"]).copy() for d in self.outputs]

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """Float arrays in (in input order), float arrays out (in output order)."""
        return self.dequantize_outputs(self.run_raw(self.quantize_inputs(feeds)))

    @property
    def name(self) -> str:
        return f"local ({self.delegate})"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(scores_outputs=True, latency=True)

    def measure(self, model: Path, inputs: list[np.ndarray], warmup: int, runs: int) -> Measurement:
        """The Runner protocol on this interpreter (`model` must be the file it was opened with):
        every sample of the batch run, then the first one timed."""
        if Path(model).resolve() != self.path.resolve():
            raise UsageError(f"this runner holds {self.path.name}, not {Path(model).name}; open a runner for it")
        rows = [self.run_raw([a[i] for a in inputs]) for i in range(inputs[0].shape[0])]
        self.run_raw([a[0] for a in inputs])  # the first sample stays set for the timed invokes
        return Measurement(
            [np.stack(column) for column in zip(*rows)],
            Percentiles.of(self._timed(warmup, runs)),
            self.delegate,
            self.threads,
            warmup,
            runs,
            "ai_edge_litert",
        )

    def largest_tensor(self, feeds: list[np.ndarray]) -> tuple[str, float]:
        """The float tensor of this model (inputs, intermediates, outputs) with the largest magnitude
        on one sample, and that magnitude: what an fp16 accelerator must hold."""
        litert = _runtime()
        with warnings.catch_warnings():  # "for debugging purposes only": that is what this is
            warnings.simplefilter("ignore")
            interpreter = litert.Interpreter(model_path=str(self.path), experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        for detail, array in zip(interpreter.get_input_details(), self.quantize_inputs(feeds)):
            interpreter.set_tensor(detail["index"], array)
        interpreter.invoke()
        largest = ("", 0.0)
        for detail in interpreter.get_tensor_details():
            if np.dtype(detail["dtype"]) != np.float32:
                continue
            try:
                peak = float(np.abs(interpreter.get_tensor(detail["index"])).max(initial=0.0))
            except ValueError:  # a tensor the interpreter freed or never filled
                continue
            if peak > largest[1] or not np.isfinite(peak):
                largest = (detail["name"], peak)
        return largest

    def time(self, feeds: list[np.ndarray], warmup: int, runs: int) -> InvokeTimes:
        self._set_inputs(feeds)
        return self._timed(warmup, runs)

    def _timed(self, warmup: int, runs: int) -> InvokeTimes:
        """`warmup` untimed, then `runs` timed invokes on the inputs already set."""
        invoke = self.interpreter.invoke
        for _ in range(warmup):
            invoke()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            invoke()
            times.append((time.perf_counter() - start) * 1000.0)
        return InvokeTimes.of(times, warmup, self.threads)
