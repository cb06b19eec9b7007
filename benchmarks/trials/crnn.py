"""Issue 38 on a sequence model: a CRNN-style text recognizer (conv -> BiLSTM -> [1, T, C]
log-softmax, CTC) in PyTorch, trained briefly on digit strings rendered with PIL's font, exported
as a .pt2, converted and validated by edgeq with the output scored per step and by decoded
sequence (--output-role output_0=ctc:0), never by one flattened argmax.

    .venv/bin/python benchmarks/trials/crnn.py        (figures in issue 38's closing note)
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

W = Path(__file__).resolve().parents[1] / "work" / "trials" / "crnn"
W.mkdir(parents=True, exist_ok=True)
EDGEQ = [sys.executable, "-m", "edgeq.cli"]
BLANK, CLASSES, H, WIDTH = 0, 11, 32, 128  # blank + digits 0-9


def render(text: str, rng) -> np.ndarray:
    image = Image.new("L", (WIDTH, H), 255)
    font = ImageFont.load_default(size=int(rng.integers(18, 24)))
    ImageDraw.Draw(image).text((int(rng.integers(2, 20)), int(rng.integers(2, 6))), text, fill=0, font=font)
    pixels = np.asarray(image, np.float32) / 255.0
    return np.clip(pixels + rng.normal(0, 0.05, pixels.shape), 0, 1).astype(np.float32)


def dataset(n: int, seed: int):
    rng = np.random.default_rng(seed)
    texts = ["".join(str(d) for d in rng.integers(0, 10, rng.integers(3, 7))) for _ in range(n)]
    return np.stack([render(t, rng) for t in texts])[:, None], texts


class CRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16 x 64
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8 x 32
            nn.Conv2d(32, 48, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d((8, 1)),
        )  # 1 x 32
        self.rnn = nn.LSTM(48, 32, batch_first=True, bidirectional=True)
        self.head = nn.Linear(64, CLASSES)

    def forward(self, x):
        f = self.features(x).squeeze(2).permute(0, 2, 1)  # [1, T=32, 48]
        return torch.log_softmax(self.head(self.rnn(f)[0]), dim=-1)


def train(model: CRNN, images: np.ndarray, texts: list[str], steps: int = 2500) -> float:
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    ctc = nn.CTCLoss(blank=BLANK)
    targets = [torch.tensor([int(c) + 1 for c in t]) for t in texts]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        batch = rng.integers(0, len(texts), 32)
        out = model(torch.from_numpy(images[batch])).permute(1, 0, 2)  # [T, N, C]
        target = torch.cat([targets[i] for i in batch])
        loss = ctc(out, target, torch.full((32,), out.shape[0]), torch.tensor([len(texts[i]) for i in batch]))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    return float(loss)


def decoded(logits: np.ndarray) -> str:
    path = logits.argmax(-1)
    merged = [int(c) for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
    return "".join(str(c - 1) for c in merged if c != BLANK)


if __name__ == "__main__":
    torch.manual_seed(0)
    images, texts = dataset(2000, 0)
    val, val_texts = dataset(200, 1)
    model = CRNN()
    loss = train(model, images, texts)
    model.eval()
    with torch.no_grad():
        read = [decoded(model(torch.from_numpy(v[None]))[0].numpy()) for v in val]
    float_text_accuracy = float(np.mean([r == t for r, t in zip(read, val_texts)]))
    torch.export.save(torch.export.export(model, (torch.from_numpy(val[:1]),)), str(W / "crnn.pt2"))
    np.save(W / "calib.npy", images[:200])
    np.save(W / "val.npy", val)
    convert = subprocess.run(
        [
            *EDGEQ,
            "convert",
            str(W / "crnn.pt2"),
            "--data",
            str(W / "calib.npy"),
            "--samples",
            "200",
            "--mode",
            "int8-fallback",
            "-o",
            str(W / "crnn_int8.tflite"),
            "--force",
        ],
        capture_output=True,
        text=True,
    )
    print(convert.stdout[-3000:], convert.stderr[-2000:])
    validate = subprocess.run(
        [
            *EDGEQ,
            "validate",
            str(W / "crnn_int8.tflite"),
            "--reference",
            str(W / "crnn.pt2"),
            "--data",
            str(W / "val.npy"),
            "--output-role",
            "output_0=ctc:0",
            "--json",
            str(W / "r.json"),
            "--force",
            "--runs",
            "20",
        ],
        capture_output=True,
        text=True,
    )
    print(validate.stdout[-3000:], validate.stderr[-2000:])
    result = json.loads((W / "r.json").read_text()) if (W / "r.json").exists() else {}
    out = next((o for o in result.get("outputs", [])), {})
    figures = {
        "train_loss": round(loss, 3),
        "float_text_accuracy_vs_labels": float_text_accuracy,
        "role": out.get("role"),
        "role_from": out.get("role_from"),
        "agreement_per_step": out.get("agreement"),
        "sequence_match": out.get("sequence_match"),
        "sqnr_db": out.get("sqnr_db"),
    }
    (W / "crnn.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
