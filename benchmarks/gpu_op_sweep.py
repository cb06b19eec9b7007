"""Single-op float models of the less common builtins through LiteRT's GPU accelerator (fp32 and
fp16) and the CPU interpreter, on 4 inputs uniform in -2..2 (issue 49): which ops the GPU computes
wrongly while it reports them accelerated. Writes benchmarks/gpu_op_sweep.json, a row per model:
its ops, and per precision the SQNR of the GPU's output against the CPU's (null: an exact match),
the largest difference, where it ran, is_fully_accelerated() and the ops left to the CPU.

    .venv/bin/python benchmarks/gpu_op_sweep.py [NAME ...]
"""

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = Path(tempfile.mkdtemp(prefix="edgeq-gpu-sweep-"))
S = (1, 8, 8, 4)


def pos(x):
    return tf.abs(x) + 0.5


OPS = {
    "ABS": lambda x: tf.abs(x),
    "NEG": lambda x: -x,
    "EXP": tf.exp,
    "LOG": lambda x: tf.math.log(pos(x)),
    "SQRT": lambda x: tf.sqrt(pos(x)),
    "RSQRT": lambda x: tf.math.rsqrt(pos(x)),
    "SQUARE": tf.square,
    "SIN": tf.sin,
    "COS": tf.cos,
    "TANH": tf.tanh,
    "LOGISTIC": tf.sigmoid,
    "ELU": tf.nn.elu,
    "RELU6": tf.nn.relu6,
    "RELU_N1_TO_1": lambda x: tf.clip_by_value(x, -1.0, 1.0),
    "LEAKY_RELU": lambda x: tf.nn.leaky_relu(x, 0.1),
    "HARD_SWISH": lambda x: x * tf.nn.relu6(x + 3) / 6,
    "GELU": lambda x: tf.nn.gelu(x, approximate=False),
    "GELU_TANH": lambda x: tf.nn.gelu(x, approximate=True),
    "FLOOR": tf.floor,
    "CEIL": tf.math.ceil,
    "ROUND": tf.round,
    "SIGN": tf.sign,
    "POW": lambda x: tf.pow(pos(x), 1.7),
    "SQUARED_DIFFERENCE": lambda x: tf.math.squared_difference(x, tf.reverse(x, [3])),
    "MAXIMUM": lambda x: tf.maximum(x, tf.reverse(x, [2])),
    "MINIMUM": lambda x: tf.minimum(x, tf.reverse(x, [2])),
    "DIV": lambda x: x / pos(tf.reverse(x, [1])),
    "FLOOR_DIV": lambda x: tf.math.floordiv(x, pos(tf.reverse(x, [1]))),
    "FLOOR_MOD": lambda x: tf.math.floormod(x, pos(tf.reverse(x, [1]))),
    "SOFTMAX": tf.nn.softmax,
    "LOG_SOFTMAX": tf.nn.log_softmax,
    "L2_NORMALIZATION": lambda x: tf.math.l2_normalize(x, -1),
    "LRN": lambda x: tf.nn.local_response_normalization(x, 2, 1.0, 0.5, 0.75),
    "MEAN": lambda x: tf.reduce_mean(x, [1, 2], keepdims=True),
    "SUM": lambda x: tf.reduce_sum(x, [1, 2], keepdims=True),
    "REDUCE_MAX": lambda x: tf.reduce_max(x, [1, 2], keepdims=True),
    "REDUCE_MIN": lambda x: tf.reduce_min(x, [1, 2], keepdims=True),
    "REDUCE_PROD": lambda x: tf.reduce_prod(pos(x) * 0.8, [1], keepdims=True),
    "MEAN_C": lambda x: tf.reduce_mean(x, [3], keepdims=True),
    "SUM_H": lambda x: tf.reduce_sum(x, [1], keepdims=True),
    "CUMSUM": lambda x: tf.cumsum(x, axis=2),
    "ARG_MAX": lambda x: tf.cast(tf.argmax(x, -1), tf.float32),
    "ARG_MIN": lambda x: tf.cast(tf.argmin(x, -1), tf.float32),
    "SPACE_TO_DEPTH": lambda x: tf.nn.space_to_depth(x, 2),
    "DEPTH_TO_SPACE": lambda x: tf.nn.depth_to_space(x, 2),
    "RESIZE_BILINEAR": lambda x: tf.image.resize(x, (16, 16)),
    "RESIZE_BILINEAR_AC": lambda x: tf.compat.v1.image.resize_bilinear(x, (16, 16), align_corners=True),
    "RESIZE_BILINEAR_HP": lambda x: tf.compat.v1.image.resize_bilinear(x, (13, 13), half_pixel_centers=True),
    "RESIZE_NEAREST": lambda x: tf.image.resize(x, (16, 16), "nearest"),
    "TRANSPOSE": lambda x: tf.transpose(x, [0, 2, 1, 3]),
    "TRANSPOSE_C": lambda x: tf.transpose(x, [0, 3, 1, 2]),
    "PAD": lambda x: tf.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]]),
    "PADV2": lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=0.5),
    "MIRROR_PAD": lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "REFLECT"),
    "MIRROR_PAD_SYM": lambda x: tf.pad(x, [[0, 0], [2, 1], [1, 2], [0, 0]], "SYMMETRIC"),
    "TILE": lambda x: tf.tile(x, [1, 2, 1, 1]),
    "SLICE": lambda x: x[:, 1:6, 2:7, 1:3],
    "STRIDED_SLICE": lambda x: x[:, ::2, 1::3, :],
    "REVERSE_V2": lambda x: tf.reverse(x, [2]),
    "GATHER": lambda x: tf.gather(x, [3, 1, 1, 0], axis=3),
    "GATHER_H": lambda x: tf.gather(x, [7, 0, 3], axis=1),
    "CONCATENATION": lambda x: tf.concat([x, x * 2], 3),
    "SPLIT": lambda x: tf.split(x, 2, 3)[1] * 1.0,
    "BATCH_MATMUL": lambda x: tf.matmul(tf.reshape(x, (1, 8, 32)), tf.reshape(x, (1, 32, 8))),
    "SELECT": lambda x: tf.where(x > 0, x, x * 3),
    "BROADCAST_TO": lambda x: tf.broadcast_to(x[:, :1], S),
    "MAX_POOL": lambda x: tf.nn.max_pool2d(x, 3, 2, "SAME"),
    "AVG_POOL": lambda x: tf.nn.avg_pool2d(x, 3, 2, "SAME"),
    "AVG_POOL_VALID": lambda x: tf.nn.avg_pool2d(x, 3, 1, "VALID"),
    "ATAN2": lambda x: tf.math.atan2(x, tf.reverse(x, [3])),
    "ONE_HOT": lambda x: tf.one_hot(tf.cast(tf.argmax(x, -1), tf.int32), 4),
    "SQUARE_SUM": lambda x: tf.reduce_sum(tf.square(x), -1, keepdims=True),
    "EXPAND_SQUEEZE": lambda x: tf.squeeze(tf.expand_dims(x, 1), 1) + 1.0,
    "ADD_BCAST": lambda x: x + tf.reduce_mean(x, [1], keepdims=True),
    "MUL_BCAST": lambda x: x * tf.reduce_max(x, [2], keepdims=True),
    "SUB_REV": lambda x: 1.0 - x,
    "DIV_REV": lambda x: 1.0 / pos(x),
}


def _convolution(name: str):
    """A convolution-like op with fixed random weights."""
    rng = np.random.default_rng(1)
    shapes = {
        "TRANSPOSE_CONV": (3, 3, 5, 4),
        "DEPTHWISE_MULT": (3, 3, 4, 2),
        "DILATED_CONV": (3, 3, 4, 6),
        "CONV_3D": (2, 3, 3, 4, 3),
    }
    w = tf.constant(rng.normal(size=shapes[name]).astype(np.float32))

    def op(x):
        if name == "TRANSPOSE_CONV":
            return tf.nn.conv2d_transpose(x, w, (1, 16, 16, 5), 2, "SAME")
        if name == "DEPTHWISE_MULT":
            return tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME")
        if name == "DILATED_CONV":
            return tf.nn.conv2d(x, w, 1, "SAME", dilations=2)
        return tf.nn.conv3d(tf.reshape(x, (1, 2, 4, 8, 4)), w, [1, 1, 1, 1, 1], "SAME")

    return op


for _name in ("TRANSPOSE_CONV", "DEPTHWISE_MULT", "DILATED_CONV", "CONV_3D"):
    OPS[_name] = _convolution(_name)


def _row(name: str, op, x: np.ndarray) -> dict:
    from edgeq.run.compiled_model import Accelerator, CompiledModelRunner
    from edgeq.run.litert import LiteRTRunner
    from edgeq.tflite.model import parse_tflite

    path = OUT / f"{name}.tflite"
    fn = tf.function(op, input_signature=[tf.TensorSpec(S, tf.float32)])
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert())
    cpu = [LiteRTRunner(path).run([s])[0].astype(np.float64) for s in x]
    row: dict = {"name": name, "ops": sorted({o.type for o in parse_tflite(path.read_bytes()).operators})}
    for precision in ("fp32", "fp16"):
        m = CompiledModelRunner(Accelerator.parse("gpu", precision)).measure(path, [x], 0, 1)
        gpu = [np.asarray(m.outputs[0][i], np.float64).reshape(c.shape) for i, c in enumerate(cpu)]
        signal = sum(float(np.sum(c * c)) for c in cpu)
        noise = sum(float(np.sum((g - c) ** 2)) for g, c in zip(gpu, cpu))
        use = m.accelerator
        row[precision] = {
            "sqnr_db": None if noise == 0 else round(10 * np.log10(signal / noise), 2) if signal > 0 else -999,
            "max_abs": float(max(np.max(np.abs(g - c)) for g, c in zip(gpu, cpu))),
            "ran_on": use.ran_on if use else None,
            "fully": use.accelerated if use else None,  # edgeq's evidence: every op on the GPU
            "ops_on_cpu": use.ops_on_cpu if use else None,
        }
    return row


def main(only: list[str]) -> list[dict]:
    rows = []
    x = np.random.default_rng(0).uniform(-2, 2, (4, *S[1:])).astype(np.float32)[:, None]
    for name, op in OPS.items():
        if only and name not in only:
            continue
        try:
            row = _row(name, op, x)
        except Exception as exc:  # a model the converter or the GPU refuses is a row too
            row = {"name": name, "error": str(exc).splitlines()[0][:200]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if not only:
        (ROOT / "benchmarks" / "gpu_op_sweep.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
