"""What the Serve fault and security tests share: a valid raw row, a free port, an app, the
replicas' processes, and a well-formed client measured while an attack runs."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from pipelines.demo import generate_demo_frame

MODEL = "raypipe-demo"
ROW: dict[str, Any] = {
    "customer_id": "c1", "signup_date": "2021-03-04T00:00:00",
    "last_login": "2024-02-01T10:30:00", "tenure_months": 3, "monthly_charges": None,
    "total_charges": 150.5, "support_calls": 4, "plan": " BASIC", "region": "south",
    "payment_method": None, "autopay": False,
}


def demo_rows(n: int) -> pd.DataFrame:
    """The last ``n`` valid rows of the demo data, without the label."""
    raw = generate_demo_frame(3000, 7).drop(columns=["churned"])
    return raw[raw["tenure_months"] >= 0].tail(n).reset_index(drop=True)


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a JSON body holds them: None for missing, ISO strings for times."""
    out = frame.astype(object).where(frame.notna(), None)
    for col in ("signup_date", "last_login"):
        out[col] = frame[col].map(lambda t: t.isoformat() if pd.notna(t) else None)
    return out.to_dict(orient="records")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_app(name: str, args: dict[str, Any],
              http_options: dict[str, Any] | None = None) -> Iterator[str]:
    """Start Serve on a free loopback port with one raypipe app; yield its base URL."""
    from ray import serve

    from pipelines.serving import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, **(http_options or {})})
    serve.run(build_app(args), name=name, route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def replica_pids(app: str) -> dict[str, int]:
    """Replica actor name -> its worker process id, for the replicas of ``app``."""
    import ray

    out: dict[str, Any] = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith(f"SERVE_REPLICA::{app}#"):
            try:
                handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
                out[actor["name"]] = ray.get(handle.__ray_call__.remote(lambda _: os.getpid()),
                                             timeout=30)
            except (ValueError, ray.exceptions.RayActorError):  # a killed one, not yet gone
                continue
    return out


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (Linux ``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


@dataclass
class Bystander:
    """What a well-formed client saw while an attack ran: one-row /predict latencies."""

    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    """HTTP status per request; 0 for a transport error (reset, refused, timed out)."""

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        return (f"{len(self.latencies)} one-row predictions, p50 {self.quantile(0.5):.3f} s, "
                f"p99 {self.quantile(0.99):.3f} s, max {max(self.latencies):.3f} s, "
                f"statuses {sorted(set(self.statuses))}")


def while_attacked(url: str, attack: Callable[[], None], timeout_s: float = 10) -> Bystander:
    """Run ``attack`` in a thread while one client sends one-row /predict requests to ``url``
    in a loop (timeout ``timeout_s``); what that client saw until the attack ended."""
    seen = Bystander()
    attacker = threading.Thread(target=attack)
    with httpx.Client(timeout=timeout_s) as client:
        attacker.start()
        while attacker.is_alive():
            t0 = time.perf_counter()
            try:
                status = client.post(f"{url}/predict", json={"instances": [ROW]}).status_code
            except httpx.TransportError:
                status = 0
            seen.latencies.append(time.perf_counter() - t0)
            seen.statuses.append(status)
            time.sleep(0.02)
    attacker.join()
    return seen
