"""What many test modules share: where the repository and its fixtures are, and sample images."""

from __future__ import annotations

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
