"""Request logging overhead, side by side in one run: the raypipe Serve app with request logging
off vs on (every request logged: ``monitor.request_log.sample_rate: 1.0``), same model.

    python benchmarks/bench_logging.py [--tracking-uri URI --model models:/NAME@ALIAS]
                                       [--slice 3] [--cycles 6] [--concurrency 1 8 32]

Without a model, the demo pipeline is run once on 20,000 rows into a temporary store. One local
Ray instance serves the same model twice, as two Serve applications with one replica each
(1 CPU each): ``/off`` without request logging and ``/on`` with it. The closed-loop client of
``bench_serving.py`` sends single-row ``/predict`` requests from C concurrent connections to
one of them at a time, in short alternating slices (off, on, on, off, ...), so that load from
other jobs on a shared machine falls on both alike; the ratio is of the summed requests. Every
answer must be HTTP 200, and the "on" app must have written every request it answered to
Parquet (checked after Serve shuts down, which writes the queues out).

On a machine shared with other jobs, QPS swings by more than the overhead being measured, so
the script also measures what logging costs in CPU, which load barely moves: the request
path's share (sample decision + queueing a record, per request) and the writer thread's share
(Arrow conversion + Parquet write, per logged row, process CPU time), both for single-row
requests like the ones sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_serving as bs  # the sibling benchmark's helpers and load client


def serve_server(args: argparse.Namespace) -> None:
    """Child process: both apps on one Ray instance; runs until killed."""
    import ray
    from ray import serve

    from pipelines.serving import build_app

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    common = {"model_uri": args.model, "tracking_uri": args.tracking_uri,
              "model_poll_interval_s": 0, "max_ongoing_requests": 256,
              "max_queued_requests": -1, "max_batch_size": 256, "num_cpus_per_replica": 1}
    serve.run(build_app(common), name="off", route_prefix="/off")
    serve.run(build_app({**common, "request_log": {"sample_rate": 1.0},
                         "request_log_path": args.log_dir}), name="on", route_prefix="/on")
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    serve.shutdown()  # replicas write their queues out on the way down
    ray.shutdown()


def _cpu_costs(rows: int = 20_000) -> dict[str, float]:
    """CPU microseconds per single-row request: queueing it, and writing it (writer thread)."""
    from datetime import datetime

    import numpy as np

    from pipelines.config import RequestLogConfig
    from pipelines.monitoring.request_log import LogRecord, RequestLogger

    schema = {"customer_id": "string", "signup_date": "datetime", "last_login": "datetime",
              "tenure_months": "float", "monthly_charges": "float", "total_charges": "float",
              "support_calls": "float", "plan": "string", "region": "string",
              "payment_method": "string", "autopay": "bool"}
    values = {**bs.ROW, "signup_date": datetime(2021, 3, 4), "last_login": datetime(2024, 2, 1)}
    columns = {c: [values[c]] for c in schema}
    outputs = {"prediction": np.array([0]), "probability": np.array([0.2])}
    with tempfile.TemporaryDirectory() as tmp:
        log = RequestLogger(RequestLogConfig(flush_rows=10 * rows, flush_interval_s=3600,
                                             max_queue_rows=10 * rows), tmp)
        t0 = time.process_time()
        for i in range(rows):
            if log.sampled():
                log.log(LogRecord(request_id=str(i), timestamp=time.time(), model_version="1",
                                  schema=schema, columns=columns, outputs=outputs, n=1))
        queued = time.process_time() - t0
        t0 = time.process_time()
        written = log.flush()  # here: process time then holds the writer's work, Arrow's threads too
        write = time.process_time() - t0
        log.close()
    assert written == rows
    return {"enqueue_us_per_request": 1e6 * queued / rows,
            "write_us_per_row": 1e6 * write / rows}


def _measure(base: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    body = json.dumps({"instances": [bs.ROW]}).encode()
    out = []
    for c in args.concurrency:
        totals: dict[str, dict[str, Any]] = {k: {"requests": 0, "errors": 0, "seconds": 0.0,
                                                 "p99_ms": []} for k in ("off", "on")}
        for i in range(args.cycles):
            for app in (("off", "on") if i % 2 == 0 else ("on", "off")):
                r = asyncio.run(bs._load(f"{base}/{app}/predict", body, c, args.slice,
                                         args.warmup))
                t = totals[app]
                t["requests"] += r["requests"]
                t["errors"] += r["errors"]
                t["seconds"] += args.slice
                t["p99_ms"].append(r["p99_ms"])
        row: dict[str, Any] = {"concurrency": c}
        for app, t in totals.items():
            row[f"qps_{app}"] = t["requests"] / t["seconds"]
            row[f"requests_{app}"] = t["requests"]
            row[f"errors_{app}"] = t["errors"]
            row[f"p99_ms_{app}_median_slice"] = sorted(t["p99_ms"])[len(t["p99_ms"]) // 2]
        row["on_vs_off"] = row["qps_on"] / row["qps_off"] if row["qps_off"] else None
        out.append(row)
        print(json.dumps(row), file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri")
    parser.add_argument("--model")
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per measured slice")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before each slice")
    parser.add_argument("--cycles", type=int, default=6, help="off/on slice pairs per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if not args.model:
            args.tracking_uri, args.model = bs._train(Path(tmp))
        log_dir = Path(tmp) / "request_logs"
        port = bs._free_port()
        env = {**os.environ, "MLFLOW_TRACKING_URI": args.tracking_uri, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(
            [sys.executable, __file__, "_serve", "--model", args.model, "--tracking-uri",
             args.tracking_uri, "--port", str(port), "--log-dir", str(log_dir)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        load_before = bs._load_average()
        try:
            bs._wait_healthy(f"http://127.0.0.1:{port}/off/healthz", proc)
            bs._wait_healthy(f"http://127.0.0.1:{port}/on/healthz", proc)
            rows = _measure(f"http://127.0.0.1:{port}", args)
        finally:
            bs._stop(proc)
        import pyarrow.parquet as pq

        logged = sum(pq.read_metadata(f).num_rows for f in log_dir.glob("*.parquet"))
    answered_on = sum(r["requests_on"] for r in rows)
    if logged < answered_on:  # warm-up requests are logged too, so >= answered
        raise RuntimeError(f"logged {logged} rows for {answered_on} answered requests")
    if any(r["errors_off"] or r["errors_on"] for r in rows):
        raise RuntimeError("a request failed")
    costs = _cpu_costs()
    print(json.dumps(costs), file=sys.stderr)
    print(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                      "model": args.model, "slice_s": args.slice, "cycles": args.cycles,
                      "cpu_costs": costs,
                      "load_average": [load_before, bs._load_average()],
                      "logged_rows": logged, "results": rows}, indent=2))


def _child(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role")
    parser.add_argument("--model")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--port", type=int)
    parser.add_argument("--log-dir")
    serve_server(parser.parse_args(argv))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        _child(sys.argv[1:])
    else:
        main()
