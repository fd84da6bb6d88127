"""Wall time of the default demo pipeline, side by side with a plain single-process baseline.

    python benchmarks/bench_pipeline.py [--rows 50000]

The baseline does the same work a data scientist would write by hand in one process — read
the Parquet file, drop contract-breaking rows, stratified split, the same cleaning and
features in pandas, 4 sequential ``xgboost.train`` trials with early stopping, predict the
test split, score — but no Ray, no MLflow, no files written. The ratio raypipe / baseline is
raypipe's fixed cost on this machine; the stage times say where it goes.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from pipelines.config import load_config
from pipelines.demo import write_demo_parquet


def plain_baseline(path: Path, seed: int = 42) -> dict[str, float]:
    t0 = time.perf_counter()
    df = pd.read_parquet(path)
    df = df[(df["tenure_months"] >= 0) | df["tenure_months"].isna()]
    train, rest = train_test_split(df, test_size=0.3, stratify=df["churned"], random_state=seed)
    valid, test = train_test_split(rest, test_size=0.5, stratify=rest["churned"], random_state=seed)
    train = train.drop_duplicates()
    num = ["tenure_months", "monthly_charges", "total_charges", "support_calls"]
    cat = ["plan", "region", "payment_method"]
    med = train[num].median()
    q1, q3 = train[num].quantile(0.25), train[num].quantile(0.75)
    lo, hi = q1 - 3 * (q3 - q1), q3 + 3 * (q3 - q1)
    vocab = {c: train[c].str.strip().str.lower().value_counts().index.tolist() for c in cat}

    def features(frame: pd.DataFrame) -> pd.DataFrame:
        x = frame[num].fillna(med).clip(lo, hi, axis=1)
        for c in cat:
            v = frame[c].str.strip().str.lower().fillna(vocab[c][0])
            x[c] = pd.Categorical(v, categories=vocab[c]).codes
        for c in ("signup_date", "last_login"):
            x[f"{c}_month"], x[f"{c}_dow"] = frame[c].dt.month, frame[c].dt.dayofweek
            x[f"{c}_hour"] = frame[c].dt.hour
        x["autopay"] = frame["autopay"].astype(float)
        x["charges_per_month"] = x["total_charges"] / x["tenure_months"].replace(0, np.nan)
        return x

    dtrain = xgboost.DMatrix(features(train), label=train["churned"])
    dvalid = xgboost.DMatrix(features(valid), label=valid["churned"])
    rng = np.random.default_rng(0)
    best, best_score = None, np.inf
    for _ in range(4):
        params = {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
                  "eta": float(np.exp(rng.uniform(np.log(0.03), np.log(0.3)))),
                  "max_depth": int(rng.integers(3, 8)), "subsample": float(rng.uniform(0.7, 1)),
                  "nthread": 2}
        bst = xgboost.train(params, dtrain, 200, evals=[(dvalid, "valid")],
                            early_stopping_rounds=20, verbose_eval=False)
        if bst.best_score < best_score:
            best, best_score = bst, bst.best_score
    assert best is not None
    proba = best.predict(xgboost.DMatrix(features(test)),
                         iteration_range=(0, best.best_iteration + 1))
    auc = roc_auc_score(test["churned"], proba)
    return {"wall_s": time.perf_counter() - t0, "roc_auc": float(auc)}


def raypipe_run(rows: int, work_dir: Path) -> dict[str, object]:
    import ray

    from pipelines.runner import run_pipeline

    cfg = load_config(None, [f"source.rows={rows}", f"runtime.work_dir={work_dir}"])
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ray_start = time.perf_counter() - t0
    summary = run_pipeline(cfg)
    wall = time.perf_counter() - t0
    ray.shutdown()
    return {"wall_s": wall, "ray_start_s": ray_start, "stages_s": summary.stage_seconds,
            "roc_auc": summary.metrics["roc_auc"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = write_demo_parquet(work / "data", args.rows, 7)
        base = plain_baseline(data)
        ours = raypipe_run(args.rows, work)
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                   f"{__import__('os').cpu_count()} CPUs",
        "rows": args.rows, "baseline": base, "raypipe": ours,
        "ratio_raypipe_over_baseline": float(ours["wall_s"]) / base["wall_s"],  # type: ignore[arg-type]
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
