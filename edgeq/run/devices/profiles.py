"""Device profiles: devices/*.toml, read through the one typed codec (edgeq.core.schema), looked up
by name or path. A profile describes hardware and how to reach it; it never holds a secret."""

from __future__ import annotations

import logging
import math
import os
import tomllib
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgeq.core.errors import DataError, UsageError
from edgeq.core.schema import from_json

TRANSPORTS = ("local", "ssh", "adb", "qemu", "aihub")
COMPUTE_UNITS = ("npu", "gpu", "cpu")
CONNECT_TIMEOUT = 30.0
AIHUB_TIMEOUT = 3600.0  # seconds an AI Hub job may take, queue included, unless a profile says otherwise
FORBIDDEN_KEYS = ("password", "passphrase", "passwd", "secret", "token")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    transport: str = "local"
    host: str | None = None
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None  # default: the user's ~/.ssh/known_hosts
    serial: str | None = None  # adb
    python: str | None = None  # the device's Python; adb: none means benchmark_model
    runtime: str | None = None  # ai_edge_litert | tflite_runtime; default: whichever the device has
    benchmark_binary: str | None = None  # adb: path of TFLite's benchmark_model on the device
    delegates: tuple[str, ...] = ("xnnpack",)
    threads: int = 1
    workdir: str = "/tmp"
    timeout: float = CONNECT_TIMEOUT  # seconds to connect / answer; aihub: for the job, queue included
    cpu: str | None = None  # qemu: the emulated CPU model, e.g. cortex-a76
    device_samples: int = 50  # adb with benchmark_model: samples run one invocation each for accuracy; 0: latency only
    accelerator: str | None = None  # local: gpu | npu:VENDOR, run through LiteRT's CompiledModel
    gpu_precision: str = "fp16"
    device: str | None = None  # aihub: the phone's name as AI Hub lists it ("Samsung Galaxy S24 (Family)")
    os: str | None = None  # aihub: the Android version, when several are offered
    compute_unit: str = "npu"  # aihub: npu | gpu | cpu
    path: str | None = None  # where the profile was read from

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise UsageError(f"device {self.name}: transport {self.transport!r}; use one of {', '.join(TRANSPORTS)}")
        if self.transport == "ssh" and not self.host:
            raise UsageError(f"device {self.name}: an ssh profile needs host")
        if self.transport == "qemu" and not self.cpu:
            raise UsageError(f"device {self.name}: a qemu profile needs cpu (e.g. cortex-a76)")
        if self.transport == "aihub" and self.timeout == CONNECT_TIMEOUT:  # a job waits in a queue, not for a connection
            object.__setattr__(self, "timeout", AIHUB_TIMEOUT)
        if self.transport == "aihub" and not self.device:
            raise UsageError(
                f"device {self.name}: an aihub profile needs device (the phone's name; edgeq devices --aihub lists them)"
            )
        if self.compute_unit not in COMPUTE_UNITS:
            raise UsageError(f"device {self.name}: compute_unit {self.compute_unit!r}; use one of {', '.join(COMPUTE_UNITS)}")
        if self.runtime not in (None, "ai_edge_litert", "tflite_runtime"):
            raise UsageError(f"device {self.name}: runtime {self.runtime!r}; use ai_edge_litert or tflite_runtime")
        if self.accelerator is not None and self.transport != "local":
            raise UsageError(
                f"device {self.name}: accelerator runs on this machine (transport local); on a phone, "
                'benchmark_model\'s delegates (delegates = ["gpu"]) choose the GPU'
            )
        if self.device_samples < 0:
            raise UsageError(f"device {self.name}: device_samples must be 0 (latency only) or more")
        if not math.isfinite(self.timeout) or self.timeout <= 0 or self.threads < 1:
            raise UsageError(f"device {self.name}: timeout (seconds) and threads must be finite and positive")

    @property
    def address(self) -> str:
        if self.transport == "ssh":
            return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"
        if self.transport == "qemu":
            return f"qemu-aarch64 -cpu {self.cpu}"
        if self.transport == "aihub":
            return f"AI Hub {self.device} ({self.compute_unit})"
        return f"adb {self.serial or '(only device)'}" if self.transport == "adb" else "this machine"

    @property
    def emulated(self) -> bool:
        return self.transport == "qemu"


def shipped_dir() -> Path:
    """The profiles shipped with edgeq, as package data (also in a wheel install)."""
    from importlib.resources import files

    return Path(str(files("edgeq.run") / "profiles"))


def profile_dirs() -> list[Path]:
    """Where profiles are looked up: $EDGEQ_DEVICES, ./devices, then the ones shipped with edgeq."""
    dirs = [Path(p) for p in os.environ.get("EDGEQ_DEVICES", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "devices", shipped_dir()]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def load_profile(name_or_path: str) -> Profile:
    """A profile by path, or by name: its `name` key or its file name.

    A profile runs commands (its `python`, its host), so a name never silently means a file the
    user did not choose: a profile found in ./devices or $EDGEQ_DEVICES under the name of one
    shipped with edgeq is refused, naming both files (a cloned repository cannot take over
    `--device local`); such a file is used when it is named by its path.
    """
    if name_or_path.startswith("aihub:"):  # a phone on Qualcomm AI Hub by its name, on its NPU
        device = name_or_path.split(":", 1)[1].strip()
        if not device:
            raise UsageError(
                "--device aihub:NAME needs the phone's name, e.g. aihub:'Samsung Galaxy S24 (Family)' "
                "(edgeq devices --aihub lists them)"
            )
        return Profile(name=name_or_path, transport="aihub", device=device)
    path = Path(name_or_path)
    if path.suffix == ".toml":
        if not path.is_file():
            raise UsageError(f"{path}: no such device profile")
        return read_profile(path)
    found = [p for p in _readable_profiles() if name_or_path in (p.name, Path(p.path or "").stem)]
    if not found:
        known = ", ".join(p.name for p in list_profiles()) or "none"
        raise UsageError(f"no device profile {name_or_path!r}; known: {known} (edgeq devices lists them)")
    shipped = shipped_dir().resolve()
    ours = [p for p in found if Path(p.path or "").resolve().parent == shipped]
    theirs = [p for p in found if p not in ours]
    if ours and theirs:
        raise UsageError(
            f"device {name_or_path!r} is both shipped with edgeq ({ours[0].path}) and in {theirs[0].path}; "
            f"name the file you mean (--device {theirs[0].path}) or rename it"
        )
    return found[0]


def read_profile(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
    return profile_of(data, path)


def profile_of(data: dict[str, Any], path: Path) -> Profile:
    """A profile from its TOML table: every key known and of its field's type (a wrong one is
    one line naming the key), no key that looks like a secret."""
    secret = [k for k in data if any(word in k.lower() for word in FORBIDDEN_KEYS)]
    if secret:
        raise UsageError(f"{path}: a profile never holds a password ({secret[0]}); use key authentication (identity_file)")
    hints = {f.name: typing.get_type_hints(Profile)[f.name] for f in fields(Profile) if f.name != "path"}
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(hints))}")
    try:
        values = {key: from_json(hints[key], value, f"{path}: key '{key}'") for key, value in data.items()}
    except DataError as exc:
        raise UsageError(str(exc)) from None
    return Profile(**{"name": path.stem, **values}, path=str(path))


def _readable_profiles() -> list[Profile]:
    """Every readable profile of every folder, in lookup order (an unreadable one is a warning)."""
    profiles = []
    for d in profile_dirs():
        for path in sorted(d.glob("*.toml")):
            try:
                profiles.append(read_profile(path))
            except UsageError as exc:
                log.warning("skipping device profile %s", exc)
    return profiles


def list_profiles() -> list[Profile]:
    """Every readable profile, first found by name wins; a user profile under a shipped one's name
    is a warning here (using it by that name is refused: `load_profile`)."""
    seen: dict[str, Profile] = {}
    for profile in _readable_profiles():
        if profile.name in seen:
            log.warning(
                "device profile %s (%s) has the name of %s; use it by its path",
                profile.name,
                profile.path,
                seen[profile.name].path,
            )
            continue
        seen[profile.name] = profile
    return list(seen.values())
