"""What the Serve fault and security tests share: a valid raw row, a free port, an app."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
