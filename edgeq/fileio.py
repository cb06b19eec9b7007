"""Writing outputs safely: never overwrite without being asked, never leave half a file."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from edgeq.errors import OutputExistsError, UsageError


def check_writable(path: Path, force: bool, protected: list[Path] = ()) -> None:
    """Fail before any work is done if `path` cannot or may not be written."""
    resolved = path.resolve()
    for other in protected:
        if other.exists() and resolved == other.resolve():
            raise UsageError(f"{path}: the output would overwrite an input; choose another --output")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to overwrite it")
    if path.exists() and path.is_dir():
        raise UsageError(f"{path} is a folder; --output must name a file")
    if not path.parent.exists():
        raise UsageError(f"{path.parent}: no such folder for the output; create it first")


def write_files_atomically(contents: dict[Path, bytes], force: bool = True) -> None:
    """Write every file to a temporary beside it, then rename all; on failure none is left.

    The renames run with SIGINT/SIGTERM held, so the files appear together (a model never beside
    an old manifest); without `force` an existing file is refused at that moment too, not only by
    the check before a long conversion.
    """
    temps: list[tuple[str, Path]] = []
    umask = os.umask(0)
    os.umask(umask)
    try:
        for path, data in contents.items():
            fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((temp, path))
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a written model is an ordinary file
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        if not force:
            for _, path in temps:
                if path.exists():
                    raise OutputExistsError(f"{path} appeared while edgeq was working; pass --force to overwrite it")
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for temp, path in temps:
                os.replace(temp, path)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    finally:
        for temp, _ in temps:
            if os.path.exists(temp):
                os.unlink(temp)


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode()


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder's files (sorted relative paths and contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
