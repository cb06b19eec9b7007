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
        channels = [
            127 + 120 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y) + rng.uniform(0, 6))
            for _ in range(3)
        ]
        pixels = np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).convert(mode).save(folder / f"{i:03d}.png")
    return folder


class RecordedAdb:
    """A transport to an Android phone that answers benchmark_model with a recorded run of it
    (tests/fixtures/benchmark_model), its p50 and mean scaled; it keeps the commands it was given."""

    def __init__(
        self, p50_scale: float = 1.0, mean_scale: float = 1.0, recording: str = "android_logcat_percentiles.txt"
    ) -> None:
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


class ContractAdb:
    """An Android phone with TFLite's benchmark_model, as its source states the contract
    (tensorflow/lite/tools/benchmark/benchmark_tflite_model.cc): `--input_layer`,
    `--input_layer_shape` and `--input_layer_value_files` (NAME:PATH items, ':' in a name escaped as
    '::') feed raw files that must be exactly the tensor's size, else its fatal "The size of X is N
    bytes. It should be M bytes."; `--output_filepath` gets every output's raw bytes concatenated
    in output order; a run without it answers with the recorded timing lines. The outputs are
    computed with LiteRT here. Files live in memory; every command is kept."""

    def __init__(self, recording: str = "android_logcat_percentiles.txt") -> None:
        self.timing = (FIXTURES / "benchmark_model" / recording).read_text()
        self.files: dict[str, bytes] = {}
        self.commands: list[list[str]] = []
        self.invocations: list[list[str]] = []

    def push(self, local, remote: str) -> None:
        from pathlib import Path

        local = Path(local)
        for path in sorted(local.iterdir()) if local.is_dir() else [local]:
            self.files[f"{remote}/{path.name}" if local.is_dir() else remote] = path.read_bytes()

    def pull(self, remote: str) -> bytes:
        return self.files[remote]

    def run(self, command: list[str], timeout: float, connecting: bool = False) -> bytes:
        import shlex

        self.commands.append(command)
        if command[0] == "sh":
            for line in self.files[command[1]].decode().splitlines():
                argv = shlex.split(line)
                if argv[0] == "cat":
                    self.files[argv[-1]] = b"".join(self.files[p] for p in argv[1:-2])
                elif argv and argv[0] != "set":
                    self._benchmark(argv)
            return b""
        if any(a.startswith("--graph=") for a in command):
            return self._benchmark(command)
        return b""

    def _benchmark(self, argv: list[str]) -> bytes:
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter

        from edgeq.run.devices.transports import DeviceError

        self.invocations.append(argv)
        flags = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--"))
        if "output_filepath" not in flags:
            return self.timing.encode()
        interpreter = Interpreter(model_content=self.files[flags["graph"]])
        interpreter.allocate_tensors()
        names, shapes = flags["input_layer"].split(","), [s.split(",") for s in flags["input_layer_shape"].split(":")]
        files = {}
        for item in flags["input_layer_value_files"].split(","):
            name, path = item.replace("::", "\0").split(":")
            files[name.replace("\0", ":")] = path
        for detail, name, shape in zip(interpreter.get_input_details(), names, shapes):
            assert detail["name"] == name and [int(d) for d in shape] == list(detail["shape"])
            data, want = self.files[files[name]], int(np.prod(detail["shape"])) * np.dtype(detail["dtype"]).itemsize
            if len(data) != want:
                raise DeviceError(
                    f"pixel: failed (exit 1): ERROR: The size of {files[name]} is {len(data)} bytes. It should be {want} bytes."
                )
            interpreter.set_tensor(detail["index"], np.frombuffer(data, detail["dtype"]).reshape(detail["shape"]))
        interpreter.invoke()
        self.files[flags["output_filepath"]] = b"".join(
            interpreter.get_tensor(d["index"]).tobytes() for d in interpreter.get_output_details()
        )
        return self.timing.encode()


def convert(
    model, output, data=None, *, quiet_native: bool = True, isolated: bool = True, force: bool = False, about=None, **settings
):
    """edgeq.conversion.converter.convert with the settings as the API's keywords (samples=16, mode=...)."""
    from edgeq.conversion.converter import convert as run
    from edgeq.conversion.options import ConvertOptions

    return run(model, output, data, ConvertOptions.of(**settings), quiet_native, isolated, force, about)


def validate(model, reference, data, **settings):
    """edgeq.validation.compare.validate with the settings as the API's keywords (runs=3, min_sqnr=...)."""
    from edgeq.validation.compare import validate as run
    from edgeq.validation.options import ValidateOptions

    return run(model, reference, data, ValidateOptions.of(**settings))
