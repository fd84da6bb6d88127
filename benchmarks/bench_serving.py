"""Online inference, side by side in one run: raypipe's Ray Serve app vs `mlflow models serve`
vs a plain FastAPI + uvicorn app, all serving the same registered model.

    python benchmarks/bench_serving.py [--tracking-uri URI --model models:/NAME@ALIAS]
                                       [--seconds 10] [--concurrency 1 8 32]

Without a model, the demo pipeline is run once on 20,000 rows into a temporary store. Each
server runs alone (in its own process tree, started and stopped by this script); a closed-loop
asyncio client process sends single-row requests from C concurrent connections for a fixed
time after a warm-up and reports QPS and p50/p99 latency. Every answer must be HTTP 200.

Servers (one worker process / one replica each, loopback only, ``OMP_NUM_THREADS=1``):
- `serve-proxy`: raypipe's app (`pipelines.serving:build_app`) behind Serve's Python proxy;
- `serve-haproxy`: the same app with `serve.ingress: haproxy` (Serve's HAProxy ingress, replicas
  listening themselves: RAY_SERVE_ENABLE_HA_PROXY=1, RAY_SERVE_THROUGHPUT_OPTIMIZED=1);
- `mlflow`: `mlflow models serve --env-manager local` of the same model (/invocations);
- `fastapi`: a plain FastAPI app, one uvicorn worker,
  `pyfunc.predict(conform_input(DataFrame(rows)))`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROW: dict[str, Any] = {
    "customer_id": "C001-0000042", "signup_date": "2021-03-04T00:00:00",
    "last_login": "2024-02-01T10:30:00", "tenure_months": 14.0, "monthly_charges": None,
    "total_charges": 950.5, "support_calls": 2.0, "plan": " Standard", "region": "south",
    "payment_method": "card", "autopay": True,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- servers


def serve_server(args: argparse.Namespace) -> None:
    """Child process: a local Ray instance with the raypipe Serve app; runs until killed."""
    if args.ingress == "haproxy":
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    import ray
    from ray import serve

    from pipelines.serving import build_app

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(build_app({"model_uri": args.model, "tracking_uri": args.tracking_uri,
                         "model_poll_interval_s": 0, "max_ongoing_requests": 256,
                         "max_queued_requests": -1, "max_batch_size": 256,
                         "batch_wait_timeout_s": args.batch_wait, "num_cpus_per_replica": 1}),
              name="bench", route_prefix="/")
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    serve.shutdown()
    ray.shutdown()


def plain_server(args: argparse.Namespace) -> None:
    """Child process: what one writes by hand with FastAPI around the same pyfunc model."""
    import mlflow
    import pandas as pd
    import uvicorn
    from fastapi import FastAPI, Request

    from pipelines.model.spec import conform_input

    mlflow.set_tracking_uri(args.tracking_uri)
    model = mlflow.pyfunc.load_model(args.model)
    spec = model.unwrap_python_model().spec
    app = FastAPI()

    async def predict(request: Request) -> dict[str, Any]:
        rows = (await request.json())["instances"]
        # Datetimes arrive as text; MLflow's schema check wants them parsed (as in batch).
        preds = model.predict(conform_input(pd.DataFrame(rows), spec))
        return {"predictions": preds["prediction"].tolist(),
                "probabilities": preds["probability"].tolist()}

    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # This module postpones annotations; FastAPI needs the real Request class.
    predict.__annotations__["request"] = Request
    app.post("/predict")(predict)
    app.get("/healthz")(healthz)

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def _start(kind: str, args: argparse.Namespace, port: int) -> tuple[subprocess.Popen[bytes], str,
                                                                    str, bytes]:
    # One OpenMP thread per server process, as Ray gives its workers: XGBoost's default of one
    # per core costs the baselines 3x per single-row request on 2 busy cores.
    env = {**os.environ, "MLFLOW_TRACKING_URI": args.tracking_uri, "OMP_NUM_THREADS": "1"}
    common = ["--model", args.model, "--tracking-uri", args.tracking_uri, "--port", str(port)]
    if kind.startswith("serve"):
        cmd = [sys.executable, __file__, "_serve", "--ingress", kind.split("-")[1],
               "--batch-wait", str(args.batch_wait), *common]
        health, path = "/healthz", "/predict"
        body = json.dumps({"instances": [ROW]}).encode()
    elif kind == "mlflow":
        cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", args.model,
               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
        health, path = "/ping", "/invocations"
        body = json.dumps({"dataframe_records": [ROW]}).encode()
    else:
        cmd = [sys.executable, __file__, "_plain", *common]
        health, path = "/healthz", "/predict"
        body = json.dumps({"instances": [ROW]}).encode()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    return proc, health, path, body


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 240) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not healthy after {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # Ray processes of a killed driver may outlive it briefly; give the ports and CPUs back.
    time.sleep(3)


# --------------------------------------------------------------------------- load client


async def _load(url: str, body: bytes, concurrency: int, seconds: float,
                warmup: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    async with session.post(url, data=body, headers=headers) as r:
                        await r.read()
                        ok = r.status == 200
                except aiohttp.ClientError:
                    ok = False
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    latencies.append(t1 - t0)
                    errors += not ok

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    latencies.sort()
    n = len(latencies)
    return {
        "concurrency": concurrency, "requests": n, "errors": errors,
        "qps": n / seconds,
        "p50_ms": 1000 * latencies[n // 2] if n else None,
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else None,
    }


def client(args: argparse.Namespace) -> None:
    """Child process: the load generator (kept out of the servers' processes)."""
    body = Path(args.body).read_bytes()
    out = [asyncio.run(_load(args.url, body, c, args.seconds, args.warmup))
           for c in args.concurrency]
    print(json.dumps(out))


def _measure(url: str, body: bytes, args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(body)
        f.flush()
        r = subprocess.run([sys.executable, __file__, "_client", "--url", url, "--body", f.name,
                            "--seconds", str(args.seconds), "--warmup", str(args.warmup),
                            "--concurrency", *map(str, args.concurrency)],
                           capture_output=True, text=True, check=True)
    return list(json.loads(r.stdout))


# --------------------------------------------------------------------------- driver


def _train(work: Path) -> tuple[str, str]:
    import ray

    from pipelines.config import load_config
    from pipelines.runner import run_pipeline

    cfg = load_config(None, ["source.rows=20000", f"runtime.work_dir={work}"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_pipeline(cfg)
    finally:
        ray.shutdown()
    return cfg.tracking_uri, summary.model_uri


def _load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri")
    parser.add_argument("--model")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--servers", nargs="+",
                        default=["serve-proxy", "serve-haproxy", "mlflow", "fastapi"])
    parser.add_argument("--batch-wait", type=float, default=0.0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if not args.model:
            args.tracking_uri, args.model = _train(Path(tmp))
        results: dict[str, Any] = {}
        for kind in args.servers:
            port = _free_port()
            proc, health, path, body = _start(kind, args, port)
            try:
                t0 = time.perf_counter()
                _wait_healthy(f"http://127.0.0.1:{port}{health}", proc)
                results[kind] = {"startup_s": time.perf_counter() - t0,
                                 "runs": _measure(f"http://127.0.0.1:{port}{path}", body, args),
                                 "load_average": _load_average()}
            finally:
                _stop(proc)
            print(json.dumps({kind: results[kind]}), file=sys.stderr)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "model": args.model, "seconds": args.seconds, "batch_wait_timeout_s": args.batch_wait,
        "results": results,
    }
    print(json.dumps(report, indent=2))


def _child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role")
    parser.add_argument("--model")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--port", type=int)
    parser.add_argument("--ingress", default="proxy")
    parser.add_argument("--batch-wait", type=float, default=0.0)
    parser.add_argument("--url")
    parser.add_argument("--body")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--warmup", type=float)
    parser.add_argument("--concurrency", type=int, nargs="+")
    args = parser.parse_args(argv)
    {"_serve": serve_server, "_plain": plain_server, "_client": client}[args.role](args)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        _child(sys.argv[1:])
    else:
        main()
