"""What many test modules share: where the repository and its fixtures are, and sample images."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def images(folder: Path, n: int, size: int, seed: int, mode: str = "RGB") -> Path:
    """Smooth random colour images (edges and gradients, like crops of a photo)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        channels = [127 + 120 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y) + rng.uniform(0, 6))
                    for _ in range(3)]
        pixels = np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).convert(mode).save(folder / f"{i:03d}.png")
    return folder


class RecordedAdb:
    """A transport to an Android phone that answers benchmark_model with a recorded run of it
    (tests/fixtures/benchmark_model), its p50 and mean scaled; it keeps the commands it was given."""

    def __init__(self, p50_scale: float = 1.0, mean_scale: float = 1.0,
                 recording: str = "android_logcat_percentiles.txt") -> None:
        text = (FIXTURES / "benchmark_model" / recording).read_text()
        text = re.sub(r"median=(\d+)", lambda m: f"median={int(int(m.group(1)) * p50_scale)}", text)
        self.output = re.sub(r"avg=(\d+)", lambda m: f"avg={int(int(m.group(1)) * mean_scale)}", text, count=1)
        self.commands: list[list[str]] = []
        self.pushed: list[str] = []

    def run(self, command: list[str], timeout: float, connecting: bool = False) -> bytes:
        self.commands.append(command)
        return self.output.encode() if "--graph=" in " ".join(command) else b""

    def push(self, local, remote: str) -> None:
        self.pushed.append(remote)
