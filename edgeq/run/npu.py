"""Ahead-of-time compilation for an NPU through LiteRT's AOT (`ai_edge_litert.aot`): the vendor's
compiler plugin (shipped in the ai-edge-litert wheel) partitions the model, compiles what it takes
into DISPATCH_OP custom ops and leaves the rest as builtin ops for the CPU. The plugins need the
vendor's SDK, which its `ai-edge-litert-sdk-*` package brings (Qualcomm, MediaTek and Google
Tensor download theirs at install time). Intel's runs here: OpenVINO compiles for its CPU graph
backend when the NPU compiler is not installed, and says so.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeq.core.errors import UsageError
from edgeq.host.native import captured_native_stderr
from edgeq.tflite.dispatch import Dispatch, dispatch_of
from edgeq.tflite.model import parse_tflite


@dataclass(frozen=True)
class Vendor:
    name: str  # as edgeq's --npu takes it
    package: str  # the pip package with the vendor's SDK
    module: str  # ai_edge_litert.aot.vendors.<module>.target
    socs: tuple[str, ...]
    default_soc: str | None
    library: str  # the SDK library the compiler plugin loads, named when it is missing


VENDORS = {
    v.name: v
    for v in (
        Vendor(
            "intel", "ai-edge-litert-sdk-intel", "intel_openvino", ("LNL", "PTL"), "LNL", "libopenvino.so (openvino==2026.3.1)"
        ),
        Vendor("qualcomm", "ai-edge-litert-sdk-qualcomm", "qualcomm", (), None, "libQnnHtp.so"),
        Vendor("mediatek", "ai-edge-litert-sdk-mediatek", "mediatek", (), None, "libneuron_adapter (NeuronAdapter)"),
        Vendor("google-tensor", "ai-edge-litert-sdk-google-tensor", "google_tensor", (), None, "liblitert_plugin_compiler.so"),
    )
}


@dataclass(frozen=True)
class NpuTarget:
    vendor: Vendor
    soc: str

    @classmethod
    def parse(cls, text: str) -> NpuTarget:
        """VENDOR[:SOC], e.g. intel, qualcomm:SM8650, mediatek:MT6989, google-tensor:G3."""
        name, _, soc = text.partition(":")
        vendor = VENDORS.get(name.lower())
        if vendor is None:
            raise UsageError(f"--npu {text!r}: use one of {', '.join(VENDORS)}, with :SOC where the vendor needs one")
        soc = soc or vendor.default_soc or ""
        if not soc:
            raise UsageError(f"--npu {text!r}: name the SoC, e.g. {name}:{_example(vendor)}")
        return cls(vendor, soc)

    def describe(self) -> str:
        return f"{self.vendor.name}:{self.soc}"


def _example(vendor: Vendor) -> str:
    return {"qualcomm": "SM8650", "mediatek": "MT6989", "google-tensor": "G3"}.get(vendor.name, "SOC")


@dataclass(frozen=True)
class Compiled:
    """An AOT-compiled model and what the compiler reported of it."""

    model: bytes
    target: str  # vendor:SoC
    graph_backend: str | None  # Intel: the OpenVINO device the bytecode targets (cpu here, npu on a Lunar Lake)
    ops_offloaded: int
    ops_total: int
    dispatch: Dispatch  # read back from the compiled file: partitions, ops left to the CPU, the stamp
    report: str  # the compiler's own partition report
    note: str | None = None


def compile_for_npu(model: bytes, target: NpuTarget) -> Compiled:
    """Compile `model` for `target`; a missing SDK or a refusing compiler is one UsageError line."""
    vendor = target.vendor
    if importlib.util.find_spec("ai_edge_litert.aot") is None:
        raise UsageError("ai-edge-litert's AOT compiler (ai_edge_litert.aot) is missing; pip install 'ai-edge-litert>=2.3,<2.4'")
    module = importlib.import_module(f"ai_edge_litert.aot.vendors.{vendor.module}.target")
    known = [m for m in module.SocModel if m.value != "ALL"]
    soc = next((m for m in known if m.value.lower() in (target.soc.lower(), f"tensor_{target.soc.lower()}")), None)
    if soc is None:
        raise UsageError(f"--npu {target.describe()}: {vendor.name} knows the SoCs {', '.join(m.value for m in known)}")
    if importlib.util.find_spec(vendor.package.replace("-", "_")) is None:
        raise UsageError(
            f"--npu {vendor.name} needs the vendor SDK: pip install {vendor.package} (its compiler plugin "
            f"loads {vendor.library}); nothing was written"
        )
    backend, note = _graph_backend(vendor)
    flags = {"intel_openvino_graph_backends": backend} if backend else {}
    with tempfile.TemporaryDirectory(prefix="edgeq-npu-") as scratch, captured_native_stderr():
        source = Path(scratch) / "model.tflite"
        source.write_bytes(model)
        from ai_edge_litert.aot import aot_compile

        result = aot_compile.aot_compile(str(source), output_dir=scratch, target=module.Target(soc), keep_going=True, **flags)
        if result.failed_backends or not result.models_with_backend:
            raise UsageError(
                f"--npu {target.describe()}: the compiler plugin failed: "
                f"{_why(result.failed_backends[0][1] if result.failed_backends else '', vendor)}; nothing was written"
            )
        compiled = result.models_with_backend[0][1]
        data = Path(compiled.path).read_bytes()
        stats = compiled.partition_stats.subgraph_stats if compiled.partition_stats else []
        report = result.compilation_report()
    dispatch = dispatch_of(parse_tflite(data, "the compiled model"))
    return Compiled(
        data,
        target.describe(),
        backend,
        sum(s.num_ops_offloaded for s in stats),
        sum(s.num_total_ops for s in stats),
        dispatch,
        report.strip(),
        note,
    )


def _graph_backend(vendor: Vendor) -> tuple[str | None, str | None]:
    """Intel: the NPU when its compiler is installed, else OpenVINO's CPU device, said in words."""
    if vendor.name != "intel":
        return None, None
    import ai_edge_litert_sdk_intel

    if ai_edge_litert_sdk_intel.get_sdk_path() is not None:
        return "npu", None
    return "cpu", (
        "compiled for OpenVINO's CPU graph backend: the Intel NPU compiler is not installed (ai-edge-litert-sdk-intel "
        "downloads it at install time); the partitioning and the arithmetic are the dispatch's, the device is this CPU"
    )


def _why(failure: str, vendor: Vendor) -> str:
    """The line of the plugin's log that says why (its .error file), else the missing library."""
    found = re.search(r"See (\S+\.error) for details", failure)
    if found and Path(found.group(1)).is_file():
        log = Path(found.group(1))
        lines = [
            l.strip("└ ").strip()
            for l in log.read_text(errors="replace").splitlines()
            if re.search(r"cannot open shared object|Failed to load|not found", l)
        ]
        log.unlink()
        if lines:
            return lines[-1][:240]
    return f"{failure or 'no compiled model'} (the plugin loads {vendor.library})"
