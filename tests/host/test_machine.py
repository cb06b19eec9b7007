"""This machine's CPU, as edgeq names it."""

from __future__ import annotations

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_the_cpu_is_named_with_its_int8_dot_product_support_both_ways():
    """A latency line names the CPU it was measured on; without VNNI (or asimddp) it says the figure
    does not carry over to dot-product devices. Fixed /proc/cpuinfo texts: no test depends on this CPU."""
    from edgeq.host.machine import cpu_of
    from edgeq.scoring.speed import slower_than_float

    avx2 = cpu_of("model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_2 avx2 fma\n", "x86_64")
    vnni = cpu_of("model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: avx2 avx512f avx512_vnni avx_vnni\n", "x86_64")
    pi = cpu_of("processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 asimddp\nCPU part\t: 0xd0b\n", "aarch64")
    assert avx2 == type(avx2)("AMD EPYC 7B12", None)
    assert vnni.int8_dot == "AVX-512 VNNI, AVX-VNNI" and pi.int8_dot == "asimddp" and pi.name == "aarch64"
    assert "without int8 dot-product instructions" in avx2.describe() and "ARM dot-product devices" in avx2.describe()
    assert vnni.describe() == "Intel(R) Xeon(R) Processor, with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI)"
    line = slower_than_float("INT8", 0.4, False, f"XNNPACK on this machine ({avx2.describe()})", {}, 1)
    assert line.startswith("INT8 ran at 0.40x the float model's speed on XNNPACK on this machine (AMD EPYC 7B12, without")
    assert slower_than_float("INT8", 0.4, True, "XNNPACK", {}, 1) is None  # within the run-to-run spread: no claim
