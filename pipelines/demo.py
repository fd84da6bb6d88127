"""The bundled demo data set: a seeded, customer-churn-like binary classification problem.

It carries on purpose every problem the cleaning stages exist for: missing values, outliers,
category spellings that differ only in case and whitespace, exact duplicate rows, a class
imbalance, and a few rows that break the data contract (negative tenure) so quarantine has
something to do.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pandas as pd

from pipelines.storage.location import StoragePath, Where, storage_path

__all__ = ["DEMO_TARGET", "generate_demo_frame", "write_demo_parquet"]

logger = logging.getLogger(__name__)

DEMO_TARGET = "churned"

_PLANS = ["basic", "standard", "premium"]
_REGIONS = ["north", "south", "east", "west"]
_PAYMENTS = ["card", "bank_transfer", "invoice"]


def _misspell(values: np.ndarray, rng: np.random.Generator, rate: float) -> np.ndarray:
    """Return category values where ``rate`` of them are re-cased or padded with spaces."""
    out = values.astype(object).copy()
    hit = rng.random(len(out)) < rate
    variants = [str.upper, str.title, lambda s: f" {s}", lambda s: f"{s}  "]
    choice = rng.integers(0, len(variants), size=len(out))
    for i in np.flatnonzero(hit):
        out[i] = variants[choice[i]](out[i])
    return out


def generate_demo_frame(rows: int = 50_000, seed: int = 7) -> pd.DataFrame:
    """Generate the demo data set; the same ``rows`` and ``seed`` always give the same frame.

    About 1% of the rows are exact duplicates of others, so the frame has ``rows`` rows in all.
    """
    rng = np.random.default_rng(seed)
    n_dup = rows // 100
    n = rows - n_dup

    tenure = rng.integers(0, 72, size=n).astype(float)
    plan = rng.choice(_PLANS, size=n, p=[0.5, 0.3, 0.2])
    base_charge = np.select([plan == "basic", plan == "standard"], [25.0, 55.0], 90.0)
    monthly = np.round(base_charge + rng.normal(0, 8, size=n), 2)
    total = np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.9, 1.05, size=n), 2)
    calls = rng.poisson(1.2, size=n).astype(float)
    region = rng.choice(_REGIONS, size=n)
    payment = rng.choice(_PAYMENTS, size=n, p=[0.5, 0.3, 0.2])
    autopay = rng.random(n) < 0.6
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 4 * 365, size=n), "D")
    last_login = pd.Timestamp("2024-01-01") + pd.to_timedelta(
        rng.integers(0, 90 * 24 * 60, size=n), "min"
    )
    days_since_login = (pd.Timestamp("2024-04-01") - last_login).days.to_numpy()

    # Churn risk: short tenure, high charges, many support calls, basic plan, manual payment,
    # long absence; the intercept leaves roughly one churner in six (class imbalance).
    logit = (
        -0.2
        - 0.045 * tenure
        + 0.018 * (monthly - 50)
        + 0.45 * calls
        + 0.5 * (plan == "basic")
        - 0.6 * autopay
        + 0.4 * (payment == "invoice")
        - 0.02 * days_since_login
        + 0.3 * (region == "south")
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    frame = pd.DataFrame(
        {
            "customer_id": [f"C{seed:03d}-{i:07d}" for i in range(n)],
            "signup_date": signup,
            "last_login": last_login,
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": calls,
            "plan": _misspell(plan, rng, 0.08),
            "region": _misspell(region, rng, 0.05),
            "payment_method": _misspell(payment, rng, 0.05),
            "autopay": autopay,
            DEMO_TARGET: churned,
        }
    )

    # Missing values, outliers and contract violations, each in a seeded handful of rows.
    for col, rate in [("monthly_charges", 0.04), ("support_calls", 0.03), ("total_charges", 0.02)]:
        frame.loc[rng.random(n) < rate, col] = np.nan
    for col, rate in [("plan", 0.03), ("payment_method", 0.02)]:
        frame.loc[rng.random(n) < rate, col] = None
    outliers = rng.random(n) < 0.005
    frame.loc[outliers, "total_charges"] = frame.loc[outliers, "total_charges"] * 100
    frame.loc[rng.random(n) < 0.003, "tenure_months"] = -1.0

    dup_idx = rng.choice(n, size=n_dup, replace=False)
    frame = pd.concat([frame, frame.iloc[dup_idx]], ignore_index=True)
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return frame


def write_demo_parquet(directory: Where, rows: int, seed: int) -> StoragePath:
    """Write the demo data set once per (rows, seed) and return the Parquet file's location.

    ``directory`` is a local folder or an object-store prefix; the write is atomic on either,
    so a crash never leaves half a file behind.
    """
    path = storage_path(directory) / f"demo-{rows}-{seed}.parquet"
    if not path.exists():
        buf = io.BytesIO()
        generate_demo_frame(rows, seed).to_parquet(buf, index=False)
        path.write_bytes(buf.getvalue())
        logger.info("generated demo data set: %s rows at %s", rows, path)
    return path
