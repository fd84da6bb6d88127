"""Train both model families on the GPU and on the CPU, same data, and print the timings.

    python benchmarks/gpu_check.py [--rows 1000000] [--cols 30]

Runs the families' own fit code (pipelines/families: XGBoost with ``device="cuda"``, the
PyTorch MLP on CUDA) — the code every Tune trial and Ray Train worker runs when
``train.use_gpu: true`` — without starting Ray, so it also works on a GPU box that has no Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np

from pipelines.families import FitContext, TrainData, get_family


def _data(rows: int, cols: int, seed: int = 0) -> tuple[TrainData, TrainData]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, cols)).astype(np.float64)
    w = rng.normal(size=cols)
    y = ((X @ w + 0.5 * np.sin(X[:, 0] * 3) + rng.normal(size=rows)) > 0).astype(np.float64)
    cut = int(rows * 0.9)
    names = [f"f{i}" for i in range(cols)]
    return TrainData(X[:cut], y[:cut], names), TrainData(X[cut:], y[cut:], names)


def _fit(family: str, use_gpu: bool, train: TrainData, valid: TrainData) -> dict[str, Any]:
    settings = {
        "xgboost": {"num_boost_round": 200, "early_stopping_rounds": 1000},
        "mlp": {"max_epochs": 5, "patience": 1000, "batch_size": 4096},
    }[family]
    params = {"max_depth": 8, "eta": 0.1} if family == "xgboost" else {"hidden_size": 256}
    ctx = FitContext(task="binary", num_classes=2, metric="logloss", report=lambda m: None,
                     threads=os.cpu_count() or 1, use_gpu=use_gpu, settings=settings)
    start = time.perf_counter()
    result = get_family(family).fit(params, train, valid, ctx)
    return {"family": family, "device": "cuda" if use_gpu else "cpu",
            "seconds": round(time.perf_counter() - start, 2),
            "valid_logloss": round(result.score, 4), "iterations": result.iterations}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=30)
    parser.add_argument("--devices", default="cuda,cpu")
    args = parser.parse_args()
    card = "none"
    try:
        import torch

        if torch.cuda.is_available():
            card = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    train, valid = _data(args.rows, args.cols)
    runs = [_fit(f, d == "cuda", train, valid) for f in ("xgboost", "mlp")
            for d in args.devices.split(",")]
    print(json.dumps({"gpu": card, "cpus": os.cpu_count(), "host": platform.node(),
                      "rows": args.rows, "cols": args.cols, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
