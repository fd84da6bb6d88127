"""Random search vs TPE (Optuna, HyperOpt): the best validation score after N trials.

    python benchmarks/bench_search.py [--trials 20] [--seeds 0 1 2] [--searches random optuna hyperopt]

Data: scikit-learn's bundled breast_cancer (binary, 569 rows: log loss) and diabetes
(regression, 442 rows: RMSE), no download. Each is split once (80 % train, 20 % valid, the
same rows for every sweep), the default feature pipeline is fitted on train, and
``tune_models`` sweeps the XGBoost family's default search space (eta, max_depth, subsample,
min_child_weight) with ``trials`` trials, one at a time (``max_concurrent_trials: 1``, so TPE
is exactly reproducible), each scored as the sweep scores it (5-fold cross-validation over
train + valid on data this small). For every data set, search and seed ``train.seed`` it
records the best score after the first N/4, N/2 and N trials, in the order the search
suggested them.

Prints one JSON object; ``--markdown`` also prints the table for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sklearn import datasets

from pipelines.config import CleanConfig, FeaturesConfig, TrainConfig
from pipelines.features.fit import fit_feature_pipeline
from pipelines.stages.train import featurize, tune_models

DATA = {
    # name: (loader, task, metric); lower is better for both metrics
    "breast_cancer": (datasets.load_breast_cancer, "binary", "logloss"),
    "diabetes": (datasets.load_diabetes, "regression", "rmse"),
}


def _splits(name: str) -> tuple[Any, Any, int]:
    import ray

    loader, task, _ = DATA[name]
    frame = loader(as_frame=True).frame
    train, valid = ray.data.from_pandas(frame).split_proportionately([0.8])
    pipe = fit_feature_pipeline(train, target="target", task=task, clean=CleanConfig(),
                                features=FeaturesConfig())
    return featurize(train, pipe), featurize(valid, pipe), len(pipe.classes or [])


def _best_after(scores: list[float], n: int) -> float:
    return min(scores[:n])


def run(trials: int, seeds: list[int], searches: list[str]) -> dict[str, Any]:
    rows = []
    for name, (_, task, metric) in DATA.items():
        train, valid, classes = _splits(name)
        for search in searches:
            for seed in seeds:
                cfg = TrainConfig(families=["xgboost"], num_samples=trials, search=search,
                                  seed=seed, max_concurrent_trials=1, metric=metric)
                start = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    result = tune_models(train, valid, cfg, task=task, num_classes=classes,
                                         storage_path=tmp, run_name=f"{name}-{search}-{seed}")
                wall = time.perf_counter() - start
                # A fresh sweep's trials come in the order the search suggested them.
                scores = [float(t[metric]) for t in result.trials if t[metric] is not None]
                rows.append({
                    "data": name, "metric": metric, "search": search, "seed": seed,
                    "best": {n: _best_after(scores, n)
                             for n in sorted({max(1, trials // 4), trials // 2, trials})},
                    "wall_s": round(wall, 1),
                })
                print(json.dumps(rows[-1]), flush=True)
    return {"trials": trials, "seeds": seeds, "machine": _machine(), "runs": rows}


def _machine() -> dict[str, Any]:
    import os
    from importlib.metadata import version

    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "platform": platform.platform(),
            **{p: version(p) for p in ("ray", "optuna", "hyperopt", "xgboost")}}


def markdown(report: dict[str, Any]) -> str:
    """The table for RESULTS.md: mean (min-max over seeds) of the best score after n trials."""
    lines = []
    runs = report["runs"]
    ns = sorted({int(n) for r in runs for n in r["best"]})
    lines.append("| data (metric) | search | " + " | ".join(f"best after {n}" for n in ns)
                 + " | per seed, after " + str(ns[-1]) + " | wall per sweep |")
    lines.append("| --- | --- | " + " | ".join("---:" for _ in ns) + " | --- | ---: |")
    for name in DATA:
        for search in dict.fromkeys(r["search"] for r in runs):
            mine = [r for r in runs if r["data"] == name and r["search"] == search]
            if not mine:
                continue
            cells = []
            for n in ns:
                values = [r["best"][n] for r in mine]
                cells.append(f"{statistics.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})")
            per_seed = ", ".join(f"{r['best'][ns[-1]]:.4f}" for r in mine)
            wall = statistics.mean(r["wall_s"] for r in mine)
            lines.append(f"| {name} ({mine[0]['metric']}) | {search} | " + " | ".join(cells)
                         + f" | {per_seed} | {wall:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--searches", nargs="+", default=["random", "optuna", "hyperopt"])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    args = parser.parse_args()
    import ray

    logging.basicConfig(level=logging.WARNING)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    report = run(args.trials, args.seeds, args.searches)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.markdown:
        print(markdown(report))


if __name__ == "__main__":
    main()
