"""One measured process of ``make bench``: a cold start, then (optionally) a warm loop.

``bench/run.py`` spawns this script once per contender and round, with the
same environment, photos and store. The process:

1. reads the photos and builds the API Gateway REST (v1) events (standard
   library only, so nothing the contender needs is imported early);
2. imports the contender (its init phase: imports and the model load) and
   invokes it once: the cold start is the time from the parent's spawn
   (``--t0``, CLOCK_MONOTONIC, which is system-wide on Linux) to this first
   200 response;
3. with ``--iters``: warm-up invocations, then ``iters`` rounds that each time
   the raw forward pass (the floor) and both photos through the whole handler,
   interleaved so that noise from other processes hits all three alike;
4. batch-8: one request with 8 images end to end, and the raw batched forward;
5. writes a JSON result file, including peak RSS (VmHWM) at each step.

    python bench/trial.py --contender onnx --photo-1mp A.jpg --photo-12mp B.jpg --result out.json
"""

from __future__ import annotations

import time

T_MAIN = time.monotonic()

import argparse  # noqa: E402  (everything below is timed as part of the cold start)
import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

CONTENDERS = ("baseline", "floor", "onnx", "torch")
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class FakeContext:
    """The attributes of a Lambda context object that the handlers read."""

    function_name = "bench"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"

    def __init__(self, request_id: str) -> None:
        self.aws_request_id = request_id

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def rest_event(body: bytes, content_type: str, path: str = "/classify") -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event with a base64 body, as API Gateway sends binary media."""
    headers = {
        "Accept": "application/json",
        "Content-Type": content_type,
        "Host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "make-bench",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    return {
        "resource": path,
        "path": path,
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": "POST",
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "bench-request",
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "make-bench"},
        },
        "body": base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": True,
    }


def multipart(images: list[bytes], boundary: str = "bench-boundary-7d1c") -> tuple[bytes, str]:
    parts = []
    for i, data in enumerate(images):
        parts.append(
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo{i}.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def peak_rss_kb() -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS of this process, in KiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def stdout_bytes() -> int:
    """How many bytes this process's stdout (a file: run.py sends it to the contender's log) holds."""
    sys.stdout.flush()
    return os.fstat(sys.stdout.fileno()).st_size


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def invoke(handler: Handler, event: dict[str, Any], n: int) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    response = handler(event, FakeContext(f"bench-{n}"))
    elapsed = ms_since(start)
    if response.get("statusCode") != 200:
        raise RuntimeError(f"status {response.get('statusCode')}: {str(response.get('body'))[:500]}")
    return elapsed, response


def server_timing(response: dict[str, Any]) -> dict[str, float] | None:
    """Our handler's own timing_ms (decode, inference, total) from the response body."""
    try:
        body = json.loads(response["body"])
    except (KeyError, ValueError):
        return None
    timing = body.get("timing_ms") if isinstance(body, dict) else None
    return timing if isinstance(timing, dict) else None


def model_load_ms(module: Any) -> float | None:
    """Our runtime's own measure of the model load inside the init phase (None for the baseline)."""
    try:
        return float(module.app.state.manager.loaded.load_ms)
    except AttributeError:
        return None


def model_precision(module: Any) -> str | None:
    """The precision of the version our runtime serves (None for the baseline)."""
    try:
        return str(module.app.state.manager.loaded.manifest.get("precision", "fp32"))
    except AttributeError:
        return None


def load_contender(kind: str) -> tuple[Handler, Any]:
    """Import the contender (its whole init phase) and return its handler and module."""
    if kind == "baseline":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import baseline

        return baseline.handler, baseline
    if kind == "floor":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import floor

        return floor.handler, floor
    os.environ["BACKEND"] = kind
    import classifier.handler

    return classifier.handler.handler, classifier.handler


def forward_fn(kind: str, module: Any, photo: bytes, batch: int) -> tuple[Callable[[], Any], dict[str, Any]]:
    """The raw model forward on a preprocessed (batch, 3, 224, 224) tensor, and thread facts."""
    if kind == "baseline":
        import io

        import torch
        from PIL import Image

        x = module.preprocess(Image.open(io.BytesIO(photo)).convert("RGB")).unsqueeze(0).repeat(batch, 1, 1, 1)
        model = module.model

        def run_baseline() -> Any:
            with torch.no_grad():
                return model(x)

        return run_baseline, {"torch_threads": torch.get_num_threads(),
                              "torch_interop_threads": torch.get_num_interop_threads()}

    import numpy as np

    from classifier.serving.imaging import preprocess

    loaded = module.app.state.manager.current()
    tensor, _ = preprocess(photo, loaded.preprocessing, max_pixels=10**9, fast_jpeg=True)
    x_np = np.ascontiguousarray(np.repeat(tensor[None], batch, axis=0))
    backend = loaded.backend
    facts: dict[str, Any] = {"threads": module.app.state.manager.threads}
    if kind == "onnx":
        session = backend.session
        feed = {backend.input_name: x_np}

        def run_onnx() -> Any:
            return session.run(None, feed)

        return run_onnx, facts

    import torch

    net = backend.model
    x_t = torch.from_numpy(x_np)
    facts.update(torch_threads=torch.get_num_threads(), torch_interop_threads=torch.get_num_interop_threads())

    def run_torch() -> Any:
        with torch.inference_mode():
            return net(x_t)

    return run_torch, facts


def main() -> int:
    parser = argparse.ArgumentParser(description="one measured process of make bench")
    parser.add_argument("--contender", choices=CONTENDERS, required=True)
    parser.add_argument("--t0", type=float, default=None, help="time.monotonic() at spawn, from the parent")
    parser.add_argument("--photo-1mp", type=Path, required=True)
    parser.add_argument("--photo-12mp", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--iters", type=int, default=0, help="timed warm rounds (0: cold start only)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batch-iters", type=int, default=0)
    parser.add_argument("--steps", default="forward,1mp,12mp",
                        help="what each warm round times, comma-separated (bench/models.py: forward,1mp)")
    args = parser.parse_args()
    t0 = args.t0 if args.t0 is not None else T_MAIN

    photos = {"1mp": args.photo_1mp.read_bytes(), "12mp": args.photo_12mp.read_bytes()}
    events = {name: rest_event(data, "image/jpeg") for name, data in photos.items()}

    # -- cold start -------------------------------------------------------------
    t_import = time.monotonic()
    handler, module = load_contender(args.contender)
    t_ready = time.monotonic()
    invoke(handler, events["1mp"], 0)
    t_first = time.monotonic()
    result: dict[str, Any] = {
        "contender": args.contender,
        "cold": {
            "total_ms": (t_first - t0) * 1000,
            "interpreter_ms": (T_MAIN - t0) * 1000,
            "setup_ms": (t_import - T_MAIN) * 1000,
            "import_init_ms": (t_ready - t_import) * 1000,
            "first_invoke_ms": (t_first - t_ready) * 1000,
        },
        "rss_kb": {"after_cold": peak_rss_kb()},
        "photo_bytes": {name: len(data) for name, data in photos.items()},
        "module_file": getattr(module, "__file__", None),
        # Which classifier package served (run.py checks it: the working tree's, or an archived revision's).
        "classifier_file": getattr(sys.modules.get("classifier"), "__file__", None),
        "model_load_ms": model_load_ms(module),
        "precision": model_precision(module),
    }

    if args.iters > 0 and args.contender == "floor":
        raise SystemExit("the floor is a cold-start contender only")
    if args.iters > 0:
        forward, facts = forward_fn(args.contender, module, photos["1mp"], 1)
        result["threads"] = facts
        for i in range(args.warmup):
            forward()
            for name in ("1mp", "12mp"):
                if name in args.steps.split(","):
                    invoke(handler, events[name], i + 1)
        steps = args.steps.split(",")
        samples: dict[str, list[float]] = {step: [] for step in steps}
        timings: dict[str, list[dict[str, float]]] = {step: [] for step in steps if step != "forward"}
        log_bytes_before = stdout_bytes()
        for i in range(args.iters):
            k = i % len(steps)
            for step in steps[k:] + steps[:k]:  # rotate the order every round
                if step == "forward":
                    start = time.perf_counter()
                    forward()
                    samples["forward"].append(ms_since(start))
                else:
                    elapsed, response = invoke(handler, events[step], 1000 + i)
                    samples[step].append(elapsed)
                    timing = server_timing(response)
                    if timing:
                        timings[step].append(timing)
        result["warm"] = samples
        result["server_timing"] = timings
        # What the handler printed per request (its JSON log lines and EMF metrics): CloudWatch Logs bills it.
        requests = args.iters * len([step for step in steps if step != "forward"])
        result["log_bytes_per_request"] = (stdout_bytes() - log_bytes_before) / requests if requests else 0.0
        result["rss_kb"]["after_warm"] = peak_rss_kb()

    if args.batch_iters > 0:
        images = [photos["1mp"]] * args.batch
        forward_b, _ = forward_fn(args.contender, module, photos["1mp"], args.batch)
        if args.contender == "baseline":
            predict = module.predict

            def end_to_end() -> None:
                predict(images)
        else:
            body, content_type = multipart(images)
            event = rest_event(body, content_type)

            def end_to_end() -> None:
                invoke(handler, event, 9999)

        end_to_end()
        forward_b()
        batch: dict[str, list[float]] = {"end_to_end": [], "forward": []}
        for _ in range(args.batch_iters):
            start = time.perf_counter()
            end_to_end()
            batch["end_to_end"].append(ms_since(start))
            start = time.perf_counter()
            forward_b()
            batch["forward"].append(ms_since(start))
        result["batch"] = {"size": args.batch, **batch}
        result["rss_kb"]["after_batch"] = peak_rss_kb()

    args.result.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
