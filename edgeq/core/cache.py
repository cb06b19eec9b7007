"""The conversion cache: calibrations and finished conversions, kept in the user's cache folder.

People convert the same model many times (another --io, --keep-float or metadata; CI on every
push). Calibration does not depend on those, so a calibrated float graph is kept under a key made
of what decides its ranges; a finished conversion under a key made of everything that decides its
bytes and its manifest. Every key includes the versions of edgeq, TensorFlow, Keras and LiteRT.

An entry is one file: a magic line, a JSON header (kind, key, versions, each blob's sha256 and
length), then the blobs. It is written atomically and read back only when its header, its versions
and every blob's hash check out; anything else is a corrupt or stale entry: ignored with a warning,
and removed. The folder is bounded: after each write the least recently used entries go until it
fits.

Location: $EDGEQ_CACHE_DIR, else $XDG_CACHE_HOME/edgeq, else ~/.cache/edgeq. Size bound:
$EDGEQ_CACHE_MAX_MB (default 2048).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq.core.errors import DataError
from edgeq.core.schema import from_json, to_json
from edgeq.core.version import __version__

log = logging.getLogger(__name__)

MAGIC = b"EDGEQ-CACHE 1\n"
SUFFIX = ".edgeq-cache"
DEFAULT_LIMIT_MB = 2048


def cache_folder() -> Path:
    """edgeq's one cache root: $EDGEQ_CACHE_DIR, else $XDG_CACHE_HOME/edgeq or ~/.cache/edgeq.
    $EDGEQ_CACHE (the emulation's old name for it) still works, with a warning."""
    if os.environ.get("EDGEQ_CACHE_DIR"):
        return Path(os.environ["EDGEQ_CACHE_DIR"])
    if os.environ.get("EDGEQ_CACHE"):
        _warn_old_name()
        return Path(os.environ["EDGEQ_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgeq"


@functools.cache
def _warn_old_name() -> None:
    log.warning("$EDGEQ_CACHE is the old name of the cache folder's variable: set $EDGEQ_CACHE_DIR instead")


def edgeq_build() -> str:
    """edgeq's version and a hash of its own code: an entry written by another edgeq, a development
    checkout included, is never read."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent  # edgeq/
    for file in sorted(package.rglob("*.py")):
        digest.update(str(file.relative_to(package)).encode() + b"\0" + file.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:16]}"


def versions_installed() -> dict[str, str]:
    """The versions of what decides a conversion's bytes, read without importing any of it."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for key, package in (
        ("tensorflow_version", "tensorflow"),
        ("tensorflow_cpu_version", "tensorflow-cpu"),
        ("keras_version", "keras"),
        ("litert_version", "ai-edge-litert"),
    ):
        try:
            found[key] = version(package)
        except PackageNotFoundError:
            pass
    if "tensorflow_cpu_version" in found:
        found.setdefault("tensorflow_version", found.pop("tensorflow_cpu_version"))
    return found


def cache_key(material: dict[str, Any]) -> str:
    """sha256 of the JSON of what decides an entry (sorted keys: the order it was built in does not count)."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    header: dict[str, Any]  # the JSON record stored with the blobs
    blobs: dict[str, bytes]


@dataclass(frozen=True)
class Blob:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Stored:
    """The JSON head of an entry file: what it is, what wrote it, its header and its blobs."""

    kind: str
    key: str
    versions: dict[str, str]
    header: dict[str, Any]
    blobs: tuple[Blob, ...]


@dataclass
class Cache:
    folder: Path
    versions: dict[str, str]
    limit_bytes: int = DEFAULT_LIMIT_MB << 20
    warnings: list[str] = field(default_factory=list)  # entries ignored (corrupt, stale), for the manifest

    @classmethod
    def open(cls) -> Cache:
        """The user's cache, for this edgeq (its code included), TensorFlow, Keras, LiteRT and PyTorch."""
        from importlib.metadata import PackageNotFoundError, version

        versions = {**versions_installed(), "edgeq": edgeq_build()}
        for package in ("torch", "litert-torch"):
            try:
                versions[package] = version(package)
            except PackageNotFoundError:
                pass
        limit = os.environ.get("EDGEQ_CACHE_MAX_MB", "")
        return cls(cache_folder(), versions, (int(limit) if limit.isdigit() else DEFAULT_LIMIT_MB) << 20)

    def _path(self, kind: str, key: str) -> Path:
        return self.folder / f"{kind}-{key}{SUFFIX}"

    def find(self, kind: str, key: str) -> Entry | None:
        path = self._path(kind, key)
        try:
            content = path.read_bytes()
        except OSError:
            return None
        try:
            entry = _decode(content, kind, key, self.versions)
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            self._ignore(path, str(exc))
            return None
        try:
            os.utime(path)  # recently used: trimmed last
        except OSError:
            pass
        return entry

    def store(self, kind: str, key: str, header: dict[str, Any], blobs: dict[str, bytes]) -> None:
        """Store an entry; a cache that cannot be written is a warning, never a failed conversion."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            content = _encode(kind, key, self.versions, header, blobs)
            with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".partial-", delete=False) as f:
                try:
                    f.write(content)
                except OSError:
                    os.unlink(f.name)  # a full disk leaves no half entry
                    raise
            os.replace(f.name, self._path(kind, key))
            self._trim()
        except OSError as exc:
            log.warning("could not write the conversion cache in %s (%s); the conversion itself is fine", self.folder, exc)

    def _ignore(self, path: Path, reason: str) -> None:
        message = f"ignored a corrupt or stale cache entry {path.name} ({reason}); computed it again"
        log.warning("%s", message)
        self.warnings.append(message)
        path.unlink(missing_ok=True)

    def _trim(self) -> None:
        entries = sorted(((p.stat(), p) for p in self.folder.glob(f"*{SUFFIX}")), key=lambda e: e[0].st_mtime, reverse=True)
        total = 0
        for stat, path in entries:
            total += stat.st_size
            if total > self.limit_bytes:
                path.unlink(missing_ok=True)


def _encode(kind: str, key: str, versions: dict[str, str], header: dict[str, Any], blobs: dict[str, bytes]) -> bytes:
    record = Stored(kind, key, versions, header, tuple(Blob(n, len(b), hashlib.sha256(b).hexdigest()) for n, b in blobs.items()))
    text = json.dumps(to_json(record)).encode()
    return MAGIC + struct.pack("<Q", len(text)) + text + b"".join(blobs.values())


def _decode(content: bytes, kind: str, key: str, versions: dict[str, str]) -> Entry:
    if not content.startswith(MAGIC):
        raise ValueError("not an edgeq cache entry")
    (length,) = struct.unpack_from("<Q", content, len(MAGIC))
    start = len(MAGIC) + 8
    try:
        record = from_json(Stored, json.loads(content[start : start + length]), "entry")
    except DataError as exc:
        raise ValueError(str(exc)) from None
    if record.kind != kind or record.key != key:
        raise ValueError("its header names another entry")
    if record.versions != versions:
        raise ValueError(f"written by {record.versions}")
    blobs, at = {}, start + length
    for blob in record.blobs:
        data = content[at : at + blob.size]
        if len(data) != blob.size or hashlib.sha256(data).hexdigest() != blob.sha256:
            raise ValueError(f"its {blob.name} does not match its hash")
        blobs[blob.name], at = data, at + blob.size
    if at != len(content):
        raise ValueError("trailing bytes after its blobs")
    return Entry(record.header, blobs)
