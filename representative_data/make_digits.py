"""Regenerate representative_data/digits from scikit-learn's bundled copy of the UCI digits.

Run with scikit-learn installed (it is not a runtime dependency of edgeq):

    python representative_data/make_digits.py

Writes 8x8 grayscale PNGs into digits/calib/<label>/ and digits/val/<label>/, a fixed,
stratified 80/20 split (seed 0), so the files in the repository are reproducible byte for byte.
"""

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent / "digits"
VAL_FRACTION = 0.2


def main() -> None:
    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    rng = np.random.default_rng(0)
    for label in range(10):
        indices = np.flatnonzero(digits.target == label)
        rng.shuffle(indices)
        n_val = int(round(len(indices) * VAL_FRACTION))
        for split, chosen in (("val", indices[:n_val]), ("calib", indices[n_val:])):
            folder = OUT / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in sorted(chosen):
                Image.fromarray(pixels[i], mode="L").save(folder / f"{i:04d}.png", optimize=True)


if __name__ == "__main__":
    main()
