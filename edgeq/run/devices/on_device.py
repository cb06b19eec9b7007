"""edgeq's device runner: copied to a device and run there with the device's own Python.

Self-contained on purpose: it needs numpy and a TFLite runtime (ai_edge_litert, else
tflite_runtime) and nothing of edgeq or TensorFlow. The host quantizes the inputs and
dequantizes the outputs; this script only feeds raw tensors, invokes and times.

    python3 on_device.py probe [--runtime NAME]
    python3 on_device.py run --model M --inputs IN.npz --outputs OUT.npz --timings T.json
                                 [--runtime NAME] [--delegate xnnpack|none|LIBRARY] [--threads N]
                                 [--warmup N] [--runs N]

Errors end the run with one line "edgeq-runner: error: ..." on stderr and exit code 3.
"""

import argparse
import ctypes
import importlib
import json
import platform
import sys
import time

RUNTIMES = ("ai_edge_litert", "tflite_runtime")


class RunnerError(Exception):
    pass


def load_runtime(name=None):
    """(interpreter module, "name version") for the asked or the first available runtime."""
    for candidate in [name] if name else RUNTIMES:
        try:
            module = importlib.import_module(candidate + ".interpreter")
        except ImportError:
            continue
        try:
            from importlib.metadata import version

            dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}[candidate]
            found = version(dist)
        except Exception:
            found = "unknown"
        return module, f"{candidate} {found}"
    raise RunnerError(
        "no TFLite runtime on this device ({}); pip install ai-edge-litert (or tflite-runtime)".format(
            name or " or ".join(RUNTIMES)
        )
    )


def cpu_features():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("features", "flags")):
                    return sorted(set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system() + " " + platform.release()


def probe(args):
    features = cpu_features()
    info = {
        "os": os_name(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "asimddp": "asimddp" in features,
        "cpu_features": features,
        "runtime": None,
        "delegates": {},
    }
    try:
        _, info["runtime"] = load_runtime(args.runtime)
    except RunnerError as exc:
        info["runtime_error"] = str(exc)
        return info
    info["delegates"]["xnnpack"] = True  # built into the runtime's default op resolver
    for library in ("libedgetpu.so.1",):
        try:
            ctypes.CDLL(library)
            info["delegates"][library] = True
        except OSError:
            info["delegates"][library] = False
    return info


def interpreter(litert, model, delegate, threads):
    kwargs = {"model_path": model, "num_threads": threads}
    if delegate not in ("xnnpack", "none"):
        try:
            ctypes.CDLL(delegate)
        except OSError as exc:
            raise RunnerError(f"cannot load delegate library {delegate}: {exc}") from None
        kwargs["experimental_delegates"] = [litert.load_delegate(delegate)]
    if delegate != "xnnpack":
        kwargs["experimental_op_resolver_type"] = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        runner = litert.Interpreter(**kwargs)
        runner.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise RunnerError(f"the interpreter rejected the model: {str(exc).strip().splitlines()[-1]}") from None
    return runner


def run(args):
    import numpy as np

    litert, runtime = load_runtime(args.runtime)
    runner = interpreter(litert, args.model, args.delegate, args.threads)
    inputs = np.load(args.inputs)
    feeds = [inputs[f"in{i}"] for i in range(len(inputs.files))]
    in_details, out_details = runner.get_input_details(), runner.get_output_details()
    if len(feeds) != len(in_details):
        raise RunnerError(f"the model takes {len(in_details)} inputs, got {len(feeds)}")
    outputs: list[list] = [[] for _ in out_details]
    for n in range(feeds[0].shape[0]):
        for detail, feed in zip(in_details, feeds):
            runner.set_tensor(detail["index"], feed[n])
        runner.invoke()
        for k, detail in enumerate(out_details):
            outputs[k].append(runner.get_tensor(detail["index"]).copy())
    stacked: dict = {f"out{k}": np.stack(v) for k, v in enumerate(outputs)}
    np.savez(args.outputs, **stacked)
    for detail, feed in zip(in_details, feeds):
        runner.set_tensor(detail["index"], feed[0])
    for _ in range(args.warmup):
        runner.invoke()
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        runner.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
    with open(args.timings, "w") as f:
        json.dump(
            {
                "runtime": runtime,
                "delegate": args.delegate,
                "threads": args.threads,
                "warmup": args.warmup,
                "runs": args.runs,
                "latency_ms": times,
                "machine": platform.machine(),
            },
            f,
        )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="on_device.py")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--runtime")
    r = sub.add_parser("run")
    for name in ("--model", "--inputs", "--outputs", "--timings"):
        r.add_argument(name, required=True)
    r.add_argument("--runtime")
    r.add_argument("--delegate", default="xnnpack")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--warmup", type=int, default=10)
    r.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)
    try:
        if args.command == "probe":
            print(json.dumps(probe(args)))
        else:
            run(args)
    except RunnerError as exc:
        sys.stderr.write(f"edgeq-runner: error: {exc}\n")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
