"""ARM64 without a board: QEMU user mode running the real aarch64 Python, numpy and LiteRT.

`edgeq devices setup` builds, once, into a cache folder:
- qemu/: `qemu-aarch64` 10 from Debian trixie's qemu-user package (a static binary, used after
  `dpkg -x`; bookworm's qemu 7.2 crashes when the aarch64 LiteRT wheel builds an Interpreter);
- sysroot/: a Debian bookworm arm64 root with python3 (`debootstrap --foreign --variant=minbase`,
  then `dpkg -x` of the downloaded packages: nothing is configured or executed);
- site/: the aarch64 wheels of numpy and ai-edge-litert, unpacked (put on PYTHONPATH).
The device runner then runs as `qemu-aarch64 -cpu cortex-a76 -L sysroot sysroot/usr/bin/python3`.
Outputs are the ARM kernels' real outputs; timings are the emulator's, not the board's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edgeq.core.cache import cache_folder
from edgeq.core.errors import EdgeqError
from edgeq.core.schema import from_json, to_json

SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PACKAGES = ("numpy", "ai-edge-litert==2.3.0")
AARCH64 = 183  # ELF e_machine of aarch64


class EmulationError(EdgeqError):
    pass


def mirror() -> str:
    """The Debian archive this machine's own apt sources use (no host is written into edgeq)."""
    for path in SOURCES:
        text = path.read_text() if path.is_file() else ""
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2 and "security" not in words[1]:
                return words[1 if not words[1].startswith("[") else 2]
    raise EmulationError(
        "no Debian archive in this machine's apt sources (/etc/apt/sources.list.d/debian.sources); "
        "the ARM64 emulation setup downloads its packages from it"
    )


def cache_dir() -> Path:
    return cache_folder() / "arm64-emulation"


def qemu_binary(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "qemu" / "usr" / "bin" / "qemu-aarch64"


def ready(cache: Path | None = None) -> bool:
    return ((cache or cache_dir()) / "complete.json").is_file()


def python_command(cpu: str, cache: Path | None = None) -> list[str]:
    """The device Python under emulation; a clear error when the cache is missing or wrong."""
    cache = cache or cache_dir()
    if not ready(cache):
        raise EmulationError(f"no ARM64 emulation in {cache}; run: edgeq devices setup emulated-raspberry-pi-5")
    check_architecture(site_dir(cache))
    sysroot = cache / "sysroot"
    return [str(qemu_binary(cache)), "-cpu", cpu, "-L", str(sysroot), str(sysroot / "usr" / "bin" / "python3")]


def site_dir(cache: Path | None = None) -> Path:
    """The unpacked aarch64 wheels (numpy, ai-edge-litert): the emulated Python's PYTHONPATH."""
    return (cache or cache_dir()) / "site"


def check_architecture(site: Path) -> None:
    """The unpacked numpy must be aarch64: an x86 wheel would fail deep inside the emulator."""
    libs = sorted(site.glob("numpy/_core/_multiarray_umath*.so"))
    if not libs:
        raise EmulationError(f"{site}: no numpy wheel unpacked; run edgeq devices setup again")
    with libs[0].open("rb") as f:  # the ELF header only, not the whole library, on every session
        header = f.read(20)
    machine = int.from_bytes(header[18:20], "little")
    if header[:4] != b"\x7fELF" or machine != AARCH64:
        raise EmulationError(
            f"{libs[0].name} is not an aarch64 library (ELF machine {machine}); "
            f"delete {site.parent} and run edgeq devices setup again"
        )


@dataclass(frozen=True)
class Emulation:
    """What `edgeq devices setup` built (complete.json in the cache), and whether it was there already."""

    bytes: int
    seconds: float
    qemu: str
    sysroot: str
    wheels: tuple[str, ...]
    reused: bool = False


def setup(say: Callable[[str], None] = print, cache: Path | None = None) -> Emulation:
    """Build the cache once (a no-op when it is complete); what was downloaded, sizes and time."""
    cache = cache or cache_dir()
    if ready(cache):
        info = from_json(Emulation, json.loads((cache / "complete.json").read_text()), str(cache / "complete.json"))
        say(f"ARM64 emulation is ready in {cache} ({_mib(info.bytes)}); nothing to download")
        return replace(info, reused=True)
    for tool in ("dpkg", "apt-get", "debootstrap"):
        if shutil.which(tool) is None:
            raise EmulationError(
                f"{tool} is not installed; on Debian/Ubuntu: apt-get install "
                f"{'debootstrap' if tool == 'debootstrap' else 'dpkg apt'}"
            )
    if os.geteuid() != 0:
        raise EmulationError("building the ARM64 sysroot with debootstrap needs root; run with sudo (once)")
    start = time.monotonic()
    work = cache.with_name(cache.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    say("downloading qemu-user 10 from Debian trixie (static qemu-aarch64, about 70 MB)")
    deb = _download_qemu(work)
    _run(["dpkg", "-x", str(deb), str(work / "qemu")], "unpacking qemu-user")
    deb.unlink()
    for other in (work / "qemu" / "usr" / "bin").iterdir():  # the package holds every architecture's emulator
        if other.name != "qemu-aarch64":
            other.unlink()
    shutil.rmtree(work / "qemu" / "usr" / "share", ignore_errors=True)
    say("downloading a Debian bookworm arm64 root with python3 (debootstrap minbase, about 40 MB of packages)")
    sysroot = work / "sysroot"
    _run(
        [
            "debootstrap",
            "--arch=arm64",
            "--foreign",
            "--variant=minbase",
            "--include=python3",
            "bookworm",
            str(sysroot),
            mirror(),
        ],
        "debootstrap",
    )
    archives = sysroot / "var" / "cache" / "apt" / "archives"
    for package in sorted(archives.glob("*.deb")):
        _run(["dpkg", "-x", str(package), str(sysroot)], f"unpacking {package.name}")
        package.unlink()
    say(f"downloading aarch64 wheels: {', '.join(PACKAGES)}")
    _download_wheels(work / "site")
    check_architecture(work / "site")
    size = sum(p.stat().st_size for p in work.rglob("*") if p.is_file() and not p.is_symlink())
    info = Emulation(size, round(time.monotonic() - start, 1), "trixie qemu-user", "bookworm arm64 minbase + python3", PACKAGES)
    (work / "complete.json").write_text(json.dumps(to_json(info)))
    shutil.rmtree(cache, ignore_errors=True)
    work.rename(cache)
    say(f"ARM64 emulation ready in {cache}: {_mib(size)} in {info.seconds:.0f} s")
    return info


def _download_qemu(work: Path) -> Path:
    """qemu-user from trixie, fetched with apt into a private state folder (the system's apt untouched)."""
    apt = work / "apt"
    (apt / "lists" / "partial").mkdir(parents=True)
    (apt / "archives" / "partial").mkdir(parents=True)
    (apt / "sources").mkdir()
    (apt / "sources" / "trixie.sources").write_text(
        f"Types: deb\nURIs: {mirror()}\nSuites: trixie\nComponents: main\nSigned-By: {KEYRING}\n"
    )
    options = [
        "-o",
        "Dir::Etc::SourceList=/dev/null",
        "-o",
        f"Dir::Etc::SourceParts={apt / 'sources'}",
        "-o",
        f"Dir::State::Lists={apt / 'lists'}",
        "-o",
        f"Dir::Cache::Archives={apt / 'archives'}",
        "-o",
        "APT::Sandbox::User=root",
        "-o",
        "APT::Architecture=amd64",
    ]
    _run(["apt-get", *options, "-qq", "update"], "apt-get update (trixie)")
    _run(["apt-get", *options, "-qq", "download", "qemu-user"], "apt-get download qemu-user", cwd=work)
    debs = sorted(work.glob("qemu-user_*.deb"))
    if not debs:
        raise EmulationError("apt-get download qemu-user gave no package")
    shutil.rmtree(apt)
    return debs[0]


def _download_wheels(site: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="edgeq-wheels-") as tmp:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--platform",
                "manylinux_2_27_aarch64",
                "--platform",
                "manylinux_2_17_aarch64",
                "--platform",
                "manylinux2014_aarch64",
                "-d",
                tmp,
                *PACKAGES,
            ],
            "pip download (aarch64 wheels)",
        )
        site.mkdir(parents=True)
        for wheel in sorted(Path(tmp).glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(site)


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise EmulationError(f"{what} failed: {lines[-1] if lines else f'exit code {proc.returncode}'}")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"
