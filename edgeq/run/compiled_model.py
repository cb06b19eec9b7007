"""LiteRT's CompiledModel as a runner: the GPU accelerator (WebGPU on Vulkan in the wheel) and the
NPU accelerators (a vendor's dispatch library running a file compiled ahead of time, or LiteRT's
just-in-time compile of an uncompiled one, as an app that loads it would).

Which accelerator ran is decided from evidence in the runtime's own log and in the file: the
adapter the GPU environment selected, the ops the GPU delegate refused, the dispatch library and
the device it opened, the DISPATCH_OPs and partitions. `is_fully_accelerated()` is recorded, never
trusted: a CPU-only float run reports it True.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.errors import UsageError
from edgeq.host.isolation import NativeCrash, run_isolated
from edgeq.host.native import captured_native_stderr
from edgeq.run.devices.transports import DeviceError
from edgeq.run.npu import NpuTarget
from edgeq.run.protocol import AcceleratorUse, Capabilities, InvokeTimes, Measurement, Percentiles
from edgeq.tflite.dispatch import dispatch_of
from edgeq.tflite.model import TfliteModel, read_tflite

PRECISIONS = ("fp16", "fp32")
VULKAN_HINT = "on Debian 12, Mesa 25's mesa-vulkan-drivers from bookworm-backports gives a software one; Mesa 22 finds no adapter"
_ADAPTER = re.compile(
    r"Selected adapter: (?P<name>.*?), arch=(?P<arch>[^,]*), vendor=(?P<vendor>[^,]*), "
    r"backend=(?P<backend>[^,]*), adapterType=(?P<type>[^\n]*)"
)
_GPU_SPLIT = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+) operations? will run on the CPU")
_GPU_REFUSED = re.compile(r"^([A-Z0-9_]+): ", re.M)
_JIT = re.compile(r"Partitioned subgraph<\d+>, selected (\d+) ops, from a total of (\d+) ops\. resulted in (\d+) partitions")
_PLUGINS_APPLIED = re.compile(r"(\d+) compiler plugins were applied successfully")
_DISPATCH = re.compile(r"Loading shared library: (\S*LiteRtDispatch\S*)")
_DEVICE = re.compile(r"Using Intel OpenVINO device: (\S+)|using device '([^']+)'")


@dataclass(frozen=True)
class Accelerator:
    """What `validate --accelerator` asks for: gpu, or npu:VENDOR[:SOC]."""

    kind: str  # gpu | npu
    npu: NpuTarget | None = None
    precision: str | None = None  # gpu: fp16 (as phones run it) | fp32

    @classmethod
    def parse(cls, text: str, gpu_precision: str = "fp16") -> Accelerator:
        kind, _, rest = text.partition(":")
        if gpu_precision not in PRECISIONS:
            raise UsageError(f"--gpu-precision {gpu_precision!r}: use fp16 or fp32")
        if kind == "gpu" and not rest:
            return cls("gpu", None, gpu_precision)
        if kind == "npu" and rest:
            return cls("npu", NpuTarget.parse(rest))
        raise UsageError(f"--accelerator {text!r}: use gpu or npu:VENDOR (npu:intel, npu:qualcomm:SM8650, ...)")

    @property
    def asked(self) -> str:
        return "gpu" if self.kind == "gpu" else f"npu:{self.npu.describe()}"


class CompiledModelRunner:
    """A model in LiteRT's CompiledModel on this machine's GPU or NPU accelerator (the CPU takes
    what the accelerator does not). Its capabilities are settled by the first run's evidence: a
    software adapter or a CPU graph backend computes as the accelerator does, but its timings are
    not the accelerator's latency."""

    transport = "local"
    address = "this machine"
    concurrent = False  # the accelerator's native runtime runs in the caller's thread, one model at a time

    def __init__(self, accelerator: Accelerator, threads: int = 1, compiled_for: tuple[Path, Path] | None = None) -> None:
        """`compiled_for`: (an INT8 file, the file compiled from it for this NPU): asked to run the
        first, the runner runs the second, through the vendor's dispatch."""
        self.accelerator, self.threads, self.compiled_for = accelerator, threads, compiled_for
        self.name = accelerator.asked + (f" ({accelerator.precision})" if accelerator.precision else "")
        self.capabilities = Capabilities(scores_outputs=True, latency=True)

    def measure(self, model: Path, inputs: list[Any], warmup: int, runs: int) -> Measurement:
        """In a spawned child: LiteRT's GPU accelerator crashes a process that has loaded TensorFlow
        (seen with TF 2.21), and a driver's crash must not end edgeq."""
        if self.compiled_for is not None and Path(model).resolve() == self.compiled_for[0].resolve():
            model = self.compiled_for[1]
        parsed = read_tflite(model)
        try:
            outputs, times, fully, log = run_isolated(
                _measured, self, Path(model), inputs, warmup, runs, what=f"LiteRT's {self.name}"
            )
        except NativeCrash as exc:
            raise DeviceError(f"{self.name}: {exc}") from None
        use = self.evidence(log, fully, parsed)
        if use.software or use.ran_on == "cpu":
            self.capabilities = Capabilities(scores_outputs=True, latency=False)
        return Measurement(
            outputs, Percentiles.of(times), use.ran_on, self.threads, warmup, runs, "LiteRT CompiledModel", use.adapter, use
        )

    def run_here(self, model: Path, inputs: list[np.ndarray], warmup: int, runs: int):
        """The run itself, in this process: outputs, timings, is_fully_accelerated() and the runtime's log."""
        parsed, failure = read_tflite(model), None
        with captured_native_stderr(stdout=True) as native:
            try:
                outputs, times, fully = self._run(parsed, inputs, warmup, runs)
            except (RuntimeError, ValueError) as exc:
                failure = exc
        if failure is not None:
            hint = (
                f"; LiteRT's GPU accelerator needs a Vulkan driver ({VULKAN_HINT})" if "No adapters found" in native.text else ""
            )
            raise DeviceError(
                f"{self.name}: LiteRT could not run {Path(model).name} there: {_first_error(native.text, failure)}{hint}"
            )
        return outputs, times, fully, native.text

    def _run(self, parsed: TfliteModel, inputs: list[np.ndarray], warmup: int, runs: int):
        from ai_edge_litert.compiled_model import CompiledModel

        environment = self._environment()
        with CompiledModel.from_file(str(parsed.path), options=self._options(), environment=environment) as compiled:
            try:
                return self._invoked(compiled, parsed, inputs, warmup, runs)
            finally:
                if environment is not None:
                    environment.close()

    def _invoked(self, compiled, parsed: TfliteModel, inputs: list[np.ndarray], warmup: int, runs: int):
        key = next(iter(compiled.get_signature_list()))
        index = compiled.get_signature_index(key)
        names = compiled.get_signature_list()[key]
        in_details, out_details = compiled.get_input_tensor_details(key), compiled.get_output_tensor_details(key)
        in_order = [parsed.tensors[t].name for t in parsed.inputs]
        out_order = [parsed.tensors[t].name for t in parsed.outputs]
        feeds = [in_order.index(in_details[n]["name"]) for n in names["inputs"]]  # buffer k takes inputs[feeds[k]]
        takes = [[out_details[n]["name"] for n in names["outputs"]].index(t) for t in out_order]
        ins, outs = compiled.create_input_buffers(index), compiled.create_output_buffers(index)
        shapes = [(tuple(out_details[n]["shape"]), np.dtype(out_details[n]["dtype"])) for n in names["outputs"]]

        def invoke(sample: int) -> list[np.ndarray]:
            for buffer, k in zip(ins, feeds):
                buffer.write(np.ascontiguousarray(inputs[k][sample]))
            compiled.run_by_index(index, ins, outs)  # asynchronous: reading the outputs waits for it
            got = [b.read(int(np.prod(shape)), dtype).reshape(shape) for b, (shape, dtype) in zip(outs, shapes)]
            return [got[j] for j in takes]

        rows = [invoke(i) for i in range(inputs[0].shape[0])]
        for _ in range(warmup):
            invoke(0)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            invoke(0)
            times.append((time.perf_counter() - start) * 1000.0)
        return (
            [np.stack(column) for column in zip(*rows)],
            InvokeTimes.of(times, warmup, self.threads),
            compiled.is_fully_accelerated(),
        )

    def _options(self):
        from ai_edge_litert.compiled_model import CpuOptions, GpuOptions, HardwareAccelerator, Options

        cpu = CpuOptions(num_threads=self.threads)
        if self.accelerator.kind == "gpu":
            return Options(
                HardwareAccelerator.GPU | HardwareAccelerator.CPU,
                cpu_options=cpu,
                gpu_options=GpuOptions(enforce_f32=self.accelerator.precision == "fp32"),
            )
        return Options(HardwareAccelerator.NPU | HardwareAccelerator.CPU, cpu_options=cpu)

    def _environment(self):
        """The NPU vendor's dispatch and compiler plugin from the wheel; the GPU needs none."""
        if self.accelerator.kind != "npu":
            return None
        import ai_edge_litert
        from ai_edge_litert.compiled_model import Environment

        vendor = Path(ai_edge_litert.__file__).parent / "vendors" / _VENDOR_DIRS[self.accelerator.npu.vendor.name]
        return Environment.create(dispatch_library_path=str(vendor / "dispatch"), compiler_plugin_path=str(vendor / "compiler"))

    def evidence(self, log: str, fully: bool, parsed: TfliteModel) -> AcceleratorUse:
        if self.accelerator.kind == "gpu":
            return gpu_evidence(log, fully, self.accelerator.precision or "fp16", Counter(op.type for op in parsed.operators))
        return npu_evidence(log, fully, self.accelerator.asked, parsed)


def _measured(runner: CompiledModelRunner, model: Path, inputs: list[np.ndarray], warmup: int, runs: int):
    """The child's work; its native runtime's farewell lines (accelerators destroyed at exit) go nowhere."""
    result = runner.run_here(model, inputs, warmup, runs)
    quiet = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(quiet, fd)
    return result


_VENDOR_DIRS = {"intel": "intel_openvino", "qualcomm": "qualcomm", "mediatek": "mediatek", "google-tensor": "google_tensor"}


def gpu_evidence(log: str, fully: bool, precision: str, census: dict[str, int]) -> AcceleratorUse:
    """The GPU run from WebGPU's log: the adapter it selected, and the ops the delegate refused
    (`census`: the model's op types and counts)."""
    total_ops = sum(census.values())
    adapter = _ADAPTER.search(log)
    if adapter is None:
        return AcceleratorUse(
            "gpu",
            "cpu",
            None,
            None,
            precision,
            fully,
            0,
            total_ops,
            {},
            note="no GPU adapter was selected: every op ran on the CPU",
        )
    kind = adapter.group("type").strip()
    software = "software" in (kind + adapter.group("arch")).lower()
    split = _GPU_SPLIT.search(log)
    on_gpu, on_cpu = (int(split.group(1)), int(split.group(2))) if split else (total_ops, 0)
    refused = (
        log[log.find("not supported by GPU delegate") : split.start()] if split and "not supported by GPU delegate" in log else ""
    )
    types = {m.group(1): census.get(m.group(1), 0) for m in _GPU_REFUSED.finditer(refused)}
    lines = tuple(l.strip() for l in (adapter.group(0), split.group(0) if split else "") if l)
    named = f"{adapter.group('name').strip()}, {adapter.group('vendor')}, {adapter.group('backend')}, {kind}"
    return AcceleratorUse(
        "gpu",
        "gpu" if on_gpu else "cpu",
        named,
        software,
        precision,
        fully,
        on_gpu,
        on_cpu,
        types,
        1 if on_gpu and not on_cpu else None,
        lines,
    )


def npu_evidence(log: str, fully: bool, asked: str, parsed: TfliteModel) -> AcceleratorUse:
    """The NPU run from the file and the dispatch's log: a compiled file's DISPATCH_OPs, or the
    just-in-time compile's partitions; the dispatch library loaded and the device it used."""
    compiled = dispatch_of(parsed)
    dispatch, device = _DISPATCH.search(log), _DEVICE.search(log)
    jit, applied = _JIT.search(log), _PLUGINS_APPLIED.search(log)
    jit_ok = applied is not None and int(applied.group(1)) > 0
    ran = dispatch is not None and (compiled.compiled or jit_ok)
    if not ran:
        why = _first_error(log, None) or "no dispatch library was loaded"
        return AcceleratorUse(
            asked,
            "cpu",
            None,
            None,
            None,
            fully,
            0,
            len(parsed.operators),
            {},
            0,
            tuple(l for l in (applied.group(0) if applied else None,) if l),
            "the NPU was asked for, and every op ran on LiteRT's CPU kernels: "
            + (
                "the dispatch did not load"
                if compiled.compiled
                else "the model is not compiled for it and the just-in-time compile failed"
            )
            + f" ({why})",
        )
    name = (device.group(1) or device.group(2)) if device else None
    if compiled.compiled:
        on_cpu, partitions = sum(compiled.ops_on_cpu.values()), compiled.partitions
        on_npu, types = None, dict(compiled.ops_on_cpu)
    else:
        on_npu, total, partitions = (int(jit.group(1)), int(jit.group(2)), int(jit.group(3))) if jit else (None, None, None)
        on_cpu, types = (total - on_npu) if jit else None, {}
    software = name is not None and name.upper() in ("CPU", "GPU")  # OpenVINO's CPU/GPU graph backend stands in for the NPU
    adapter = f"{Path(dispatch.group(1)).name}, OpenVINO device {name}" if name else Path(dispatch.group(1)).name
    lines = tuple(m.group(0) for m in (dispatch, device, jit) if m is not None)
    return AcceleratorUse(
        asked,
        "npu",
        adapter,
        software,
        None,
        fully,
        on_npu,
        on_cpu,
        types,
        partitions,
        lines,
        f"the dispatch ran on OpenVINO's {name} device, not an NPU: the arithmetic is the dispatch's, the timing is not an NPU's"
        if software
        else None,
    )


def _first_error(log: str, exc: Exception | None) -> str:
    """The runtime's own reason, most telling first: a missing library or adapter, then a refused
    graph (dynamic shapes, an unsupported op, a failed compile), else the exception's last line.
    Library paths are shortened to their names; the OpenCL probe's miss is no reason (WebGPU follows)."""
    lines = [l.strip().lstrip("└ ") for l in log.splitlines() if "OpenCL" not in l]
    for pattern in (
        r"cannot open shared object|No adapters found",
        "dynamic-sized",
        "not supported",
        "Exception in compilation",
        "ERROR",
    ):
        found = [l for l in lines if re.search(pattern, l)]
        if found:
            return re.sub(r'"?/[^\s":]*/([^/\s":]+)"?', r"\1", found[-1])[:300]
    return str(exc).strip().splitlines()[-1].lstrip("└ ")[:300] if exc else ""
