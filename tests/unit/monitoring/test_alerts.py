"""Webhook and retraining trigger (no Ray: a local HTTP server and a stand-in job client)."""

from __future__ import annotations

import json
import logging
import shlex
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from pipelines.config import RetrainConfig, load_config
from pipelines.monitoring.alerts import post_webhook, retrain_entrypoint, submit_retraining
from pipelines.monitoring.monitor import quality_verdict


def test_webhook_posts_the_summary_and_survives_a_dead_hook() -> None:
    received: list[Any] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    assert post_webhook(url, {"flagged": True, "alerts": ["f: PSI 0.5"]}) == "HTTP 204"
    assert received == [{"flagged": True, "alerts": ["f: PSI 0.5"]}]
    server.shutdown()
    server.server_close()
    assert post_webhook(url, {"flagged": True}, timeout_s=2).startswith("error:")


class _Client:
    def __init__(self, address: str | None) -> None:
        self.address = address
        self.jobs: list[dict[str, Any]] = []
        _Client.last = self

    def submit_job(self, **kwargs: Any) -> str:
        self.jobs.append(kwargs)
        return "raysubmit_1"


def test_retraining_submits_the_pipeline_job_with_the_newer_data() -> None:
    cfg = RetrainConfig(enabled=True, address="http://head:8265", working_dir="/app",
                        overrides=["source.rows=9000"])
    job = submit_retraining("pipelines/configs/demo.yaml", ["runtime.work_dir=/mnt/x"], cfg,
                            client_factory=_Client, metadata={"raypipe.trigger": "monitor"})
    assert job == "raysubmit_1"
    client = _Client.last
    assert client.address == "http://head:8265"
    submitted = client.jobs[0]
    argv = shlex.split(submitted["entrypoint"])
    assert argv == ["python", "ray_jobs/run_pipeline.py", "pipelines/configs/demo.yaml",
                    "--set", "runtime.work_dir=/mnt/x", "--set", "source.rows=9000"]
    assert submitted["runtime_env"] == {"working_dir": "/app"}
    # The job's arguments are a valid run of the same pipeline.
    load_config(argv[2], [argv[4], argv[6]])
    assert retrain_entrypoint("a b.yaml", ["x.y=1 2"]).endswith("'a b.yaml' --set 'x.y=1 2'")


def test_quality_verdict_knows_which_way_is_better() -> None:
    flagged, text = quality_verdict({"roc_auc": 0.70}, {"roc_auc": 0.80}, "roc_auc", 0.05)
    assert flagged and "0.1000 worse" in text
    assert not quality_verdict({"roc_auc": 0.78}, {"roc_auc": 0.80}, "roc_auc", 0.05)[0]
    assert quality_verdict({"rmse": 12.0}, {"rmse": 10.0}, "rmse", 1.0)[0]
    assert not quality_verdict({"rmse": 8.0}, {"rmse": 10.0}, "rmse", 1.0)[0]
    assert not quality_verdict({}, {"rmse": 10.0}, "rmse", 1.0)[0]


def test_a_failing_webhook_never_shows_its_url_path(caplog: pytest.LogCaptureFixture) -> None:
    # A Slack or Teams webhook's path is its key: neither the log nor the summary may hold it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: the POST is refused
    url = f"http://127.0.0.1:{port}/services/T0/B0/S3CR3TK3Y"
    with caplog.at_level(logging.WARNING, logger="pipelines.monitoring.alerts"):
        answer = post_webhook(url, {"flagged": True}, timeout_s=2)
    assert answer.startswith("error: ConnectError")
    assert "S3CR3TK3Y" not in answer and "S3CR3TK3Y" not in caplog.text
    assert f"http://127.0.0.1:{port}/***" in caplog.text
