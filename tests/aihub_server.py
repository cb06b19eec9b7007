"""A Qualcomm AI Hub stand-in on 127.0.0.1 for the real `qai_hub` client: the client's own protobuf
messages over HTTP (its `public_api_pb2`), the model's multipart upload, the dataset's upload and
download URLs served here, and inference jobs whose outputs LiteRT computes on this machine (as a
phone would compute them) with a profile of per-run times and per-layer compute units.

Devices are data: `DEVICES` maps a device name to how it behaves (the compute unit its layers
report, or a failure). `fail_next(n)` answers the next n API calls with 503, to test retries.
"""

from __future__ import annotations

import io
import itertools
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

PROTOBUF = "application/x-protobuf"


@dataclass
class FakeDevice:
    name: str
    chipset: str
    compute_unit: str = "NPU"  # what its layers report: NPU | GPU | CPU
    fails: str | None = None  # a failure reason: the job ends FAILED with it
    no_output: bool = False  # the job succeeds but gives no output dataset (qualcomm/ai-hub-models#302)


DEVICES = [
    FakeDevice("Samsung Galaxy S24 (Family)", "qualcomm-snapdragon-8gen3", "NPU"),
    FakeDevice("Google Pixel 8", "google-tensor-g3", "GPU"),
    FakeDevice("Snapdragon X Elite CRD", "qualcomm-snapdragon-x-elite", "CPU", fails="Failed to load model on device"),
]


@dataclass
class Store:
    models: dict[str, bytes] = field(default_factory=dict)
    datasets: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    fail: int = 0  # API calls still to answer with 503
    requests: list[str] = field(default_factory=list)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self.ids):06d}"


class AiHubServer:
    """`with AiHubServer() as hub:` serves on 127.0.0.1; `hub.ini(folder)` writes a client.ini for it."""

    def __init__(self, polls_before_done: int = 0) -> None:
        self.store = Store()
        self.errors: list[str] = []
        self.polls_before_done = polls_before_done
        store, server = self.store, self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.serve(self, "GET")

            def do_POST(self) -> None:
                server.serve(self, "POST")

            def do_PUT(self) -> None:
                server.serve(self, "PUT")

            def do_PATCH(self) -> None:
                server.serve(self, "PATCH")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.lock = threading.Lock()
        del store

    def __enter__(self) -> AiHubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def ini(self, folder: Path, token: str = "test-token-0123456789") -> Path:
        path = folder / "client.ini"
        path.write_text(f"[api]\napi_token = {token}\napi_url = {self.url}\nweb_url = {self.url}\nverbose = False\n")
        return path

    def fail_next(self, count: int) -> None:
        self.store.fail = count

    # -- dispatch ----------------------------------------------------------------------------------

    def serve(self, request: BaseHTTPRequestHandler, method: str) -> None:
        """A bug here is a 500 with its traceback kept in `errors` (the tests assert there are none)."""
        try:
            self.handle(request, method)
        except Exception:
            import traceback

            self.errors.append(traceback.format_exc())
            self._send(request, 500, b"stand-in error", "text/plain")

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        from qai_hub import public_api_pb2 as pb

        parsed = urlparse(request.path)
        path, query = parsed.path, parse_qs(parsed.query)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        with self.lock:
            self.store.requests.append(f"{method} {path}")
            if path.startswith("/api/") and self.store.fail > 0:
                self.store.fail -= 1
                return self._send(request, 503, b"busy", "text/plain")
        if path.startswith("/files/"):
            return self._file(request, method, path, body)
        route = path.removeprefix("/api/v1/").strip("/")
        try:
            message = self._route(method, route, body, pb, query)
        except KeyError:
            return self._send(request, 404, b"not found", "text/plain")
        return self._send(request, 200, message.SerializeToString(), PROTOBUF)

    def _send(self, request, status: int, data: bytes, kind: str, headers: dict | None = None) -> None:
        request.send_response(status)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        request.wfile.write(data)

    def _file(self, request, method: str, path: str, body: bytes) -> None:
        kind, name = path.split("/")[2:4]
        if method == "POST":  # an S3-style form upload: the file is the form's `file` field
            from requests_toolbelt.multipart.decoder import MultipartDecoder

            for part in MultipartDecoder(body, request.headers["Content-Type"]).parts:
                if b'name="file"' in part.headers.get(b"Content-Disposition", b""):
                    self.store.datasets[name] = part.content
            return self._send(request, 204, b"", "text/plain")
        if method == "PUT":
            folder = self.store.models if kind == "model" else self.store.datasets
            folder[name] = folder.get(name, b"") + body
            return self._send(request, 200, b"", "text/plain", {"ETag": f'"etag-{len(body)}"'})
        data = self.store.datasets[name]
        return self._send(request, 200, data, "application/octet-stream")

    def _route(self, method: str, route: str, body: bytes, pb, query: dict[str, list[str]]):
        store = self.store
        if route == "users/auth/user":
            return pb.User(id=1, email="tester@example.invalid", first_name="edgeq", last_name="tests")
        if route == "devices":  # the filters the client sends: name, os, attributes (all must hold)
            wanted = [self._device(d, pb) for d in DEVICES]
            for name in query.get("name", []):
                wanted = [d for d in wanted if d.name == name]
            for os_ in query.get("os", []):
                wanted = [d for d in wanted if d.os == os_]
            for attribute in query.get("attributes", []):
                wanted = [d for d in wanted if attribute in d.attributes]
            return pb.DeviceList(devices=wanted, total_query_count=len(wanted))
        if route == "models" and method == "POST":
            model_id = store.new_id("m")
            store.models[model_id] = b""
            return pb.CreateUpdateResponse(id=model_id)
        if found := re.fullmatch(r"models/(\w+)/multipart_upload", route):
            model_id = found.group(1)
            if method == "GET":
                return pb.FileUploadResponse(
                    multipart_url=pb.FileMultipartUploadURL(
                        urls=[f"{self.url}/files/model/{model_id}"], upload_id=f"up-{model_id}", max_part_size=1 << 30
                    )
                )
            return pb.CreateUpdateResponse(id=model_id)
        if found := re.fullmatch(r"models/(\w+)", route):
            return pb.Model(model_id=found.group(1), name="model", model_type=pb.MODEL_TYPE_TFLITE, file_upload_complete=True)
        if route == "datasets" and method == "POST":
            dataset_id = store.new_id("d")
            store.datasets[dataset_id] = b""
            return pb.CreateUpdateResponse(id=dataset_id)
        if found := re.fullmatch(r"datasets/(\w+)/upload_url", route):
            return pb.FileUploadResponse(
                url=pb.FileUploadURL(url=f"{self.url}/files/dataset/{found.group(1)}", file_field_name="file")
            )
        if found := re.fullmatch(r"datasets/(\w+)/(upload_complete|download_data)", route):
            if found.group(2) == "download_data":
                return pb.FileDownloadResponse(
                    url=pb.FileDownloadURL(url=f"{self.url}/files/dataset/{found.group(1)}", filename="dataset.h5")
                )
            return pb.CreateUpdateResponse(id=found.group(1))
        if found := re.fullmatch(r"datasets/(\w+)", route):
            if method == "PATCH":
                return pb.CreateUpdateResponse(id=found.group(1))
            return pb.Dataset(dataset_id=found.group(1), name="dataset", file_upload_complete=True)
        if route == "jobs" and method == "POST":
            return self._submit(pb.Job.FromString(body), pb)
        if found := re.fullmatch(r"jobs/(\w+)/result", route):
            return self._result(found.group(1), pb)
        if found := re.fullmatch(r"jobs/(\w+)", route):
            return self._job(found.group(1), pb)
        raise KeyError(route)

    # -- devices and jobs ----------------------------------------------------------------------------

    def _device(self, device: FakeDevice, pb):
        return pb.Device(
            name=device.name,
            os="14",
            attributes=[f"chipset:{device.chipset}", "os:android", "framework:tflite", "format:phone", "vendor:test"],
        )

    def _submit(self, job, pb):
        submitted = job.inference_job
        job_id = self.store.new_id("j")
        device = next(d for d in DEVICES if d.name == submitted.device.name)
        self.store.jobs[job_id] = {
            "job": job,
            "device": device,
            "model_id": submitted.model.model_id,
            "dataset_id": submitted.dataset.dataset_id,
            "result": None,
        }
        self.store.polls[job_id] = 0
        return pb.CreateUpdateResponse(id=job_id)

    def _job(self, job_id: str, pb):
        entry = self.store.jobs[job_id]
        self.store.polls[job_id] += 1
        done = self.store.polls[job_id] > self.polls_before_done
        device = entry["device"]
        state = (pb.JOB_STATE_FAILED if device.fails else pb.JOB_STATE_DONE) if done else pb.JOB_STATE_RUNNING_INFERENCE
        submitted = entry["job"].inference_job
        inference = pb.InferenceJob(
            inference_job_id=job_id,
            name=submitted.name or "edgeq",
            job_state=state,
            device=self._device(device, pb),
            model=pb.Model(model_id=entry["model_id"], model_type=pb.MODEL_TYPE_TFLITE),
            dataset=pb.Dataset(dataset_id=entry["dataset_id"]),
            options=submitted.options,
            is_profiling_on=submitted.is_profiling_on,
            failure_reason=(device.fails or "") if done else "",
        )
        inference.creation_time.GetCurrentTime()
        return pb.Job(inference_job=inference, hub_version="0.56.0-test")

    def _result(self, job_id: str, pb):
        entry = self.store.jobs[job_id]
        if entry["result"] is None:
            entry["result"] = self._run(entry, pb)
        return entry["result"]

    def _run(self, entry: dict, pb):
        """Run the uploaded model on the uploaded inputs with LiteRT, as the phone would."""
        import h5py
        from ai_edge_litert.interpreter import Interpreter
        from qai_hub.util.dataset_entries_converters import dataset_entries_to_h5, h5_to_dataset_entries

        with h5py.File(io.BytesIO(self.store.datasets[entry["dataset_id"]]), "r") as h5f:
            inputs = h5_to_dataset_entries(h5f)
        interpreter = Interpreter(model_content=self.store.models[entry["model_id"]])
        interpreter.allocate_tensors()
        ins, outs = interpreter.get_input_details(), interpreter.get_output_details()
        outputs: dict[str, list[np.ndarray]] = {o["name"]: [] for o in outs}
        names = list(inputs)  # in the model's input order: the client relies on the dict's order
        for i in range(len(inputs[names[0]])):
            for detail, name in zip(ins, names):
                interpreter.set_tensor(detail["index"], inputs[name][i])
            interpreter.invoke()
            for detail in outs:
                outputs[detail["name"]].append(interpreter.get_tensor(detail["index"]).copy())
        result = pb.InferenceJobResult(inference_job_id=entry["job"].inference_job.inference_job_id)
        if not entry["device"].no_output:
            dataset_id = self.store.new_id("d")
            buffer = io.BytesIO()
            with h5py.File(buffer, "w") as h5f:
                dataset_entries_to_h5(outputs, h5f)
            self.store.datasets[dataset_id] = buffer.getvalue()
            result.output_dataset_id = dataset_id
        detail = result.detail
        detail.major_version, detail.minor_version = 1, 2
        times = []
        # the phone's times are the stand-in's own invention, fixed so that runs compare: 40 µs an op, 5% spread
        ops = len(interpreter._get_ops_details())
        times = [int(40 * ops * (1 + 0.05 * ((k * 7) % 5 - 2) / 2)) for k in range(20)]
        detail.all_execution_times.extend(times)
        detail.execution_time = int(np.median(times))
        detail.peak_memory_usage = detail.after_execution_peak_memory = 12 << 20
        unit = {"NPU": pb.COMPUTE_UNIT_NPU, "GPU": pb.COMPUTE_UNIT_GPU, "CPU": pb.COMPUTE_UNIT_CPU}[entry["device"].compute_unit]
        from ai_edge_litert.interpreter import OpResolverType

        plain = Interpreter(
            model_content=self.store.models[entry["model_id"]],
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        ops = plain._get_ops_details()
        for k, op in enumerate(ops):
            last = k == len(ops) - 1
            detail.layer_details.add(
                name=f"{op['op_name']}_{k}",
                layer_type_name=op["op_name"],
                id=str(k),
                compute_unit=pb.COMPUTE_UNIT_CPU if last and unit != pb.COMPUTE_UNIT_CPU else unit,
            )
        return pb.JobResult(inference_job_result=result)
