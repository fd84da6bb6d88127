"""The data stage, side by side in one run: ingest + validate + clean + features on Ray Data
(raypipe's fitted FeaturePipeline) vs a plain single-process pandas implementation of the same
transforms.

    python benchmarks/bench_data.py [--rows 5000000] [--files 10] [--cpus 2] [--data DIR]

The data set is generated once (``--data``, kept between runs): ``--files`` Parquet files of
an id, 10 numeric columns (2% missing, 0.1% outliers x100), a contract column ``age`` (0.1%
rows out of range -> quarantined), three categorical columns (3 and 8 categories with case /
whitespace / synonym variants, one of ~20,000 values -> hashed), a timestamp and a binary
target.

Both engines do the same work: read every file; check the contract (target present, ``age``
in [0, 120]) and write the failing rows, with a reason, to a quarantine file; fit every
statistic on the training rows (``id % 10 < 7`` of the passing rows): medians, IQR outlier
bounds, category vocabularies, quantile bins, then standard-scaling moments of the features;
apply imputation, clipping, category normalisation + synonyms, one-hot / ordinal / hashed
encoding, datetime parts, a ratio, a derived expression, bins and scaling to every passing
row; write the features (+ id, target) as Parquet. raypipe: ``fit_feature_pipeline`` (two
streaming passes) and ``FeaturePipeline.transform_table`` in ``map_batches`` on Arrow batches.
pandas: ``read_parquet``, idiomatic pandas/NumPy operations, ``to_parquet``.

Each engine runs in its own process, so the peak memory reported is that engine's driver
alone (``getrusage`` max RSS); Ray's start-up is timed apart from the data work. The machine
load (``uptime``) is recorded before and after, since other jobs may share the machine.

Ray starts its worker processes at nice 15 by default (``RAY_worker_niceness``), so on a
machine shared with other jobs they get a small fraction of the CPU that the nice-0 pandas
process gets. ``--worker-niceness`` (default 0, the pandas process's) puts both engines on
an equal footing; ``--worker-niceness 15`` measures Ray's default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

NUMERIC = [f"n{i}" for i in range(10)]
PLANS = ["basic", "standard", "premium"]
REGIONS = ["north", "south", "east", "west", "centre", "coast", "hills", "islands"]
SYNONYMS = {"plan": {"std": "standard", "prem": "premium"}}
TRAIN_TENTHS = 7

CLEAN: dict[str, Any] = {"impute_numeric": "median", "outliers": "iqr", "iqr_factor": 3.0,
                         "normalize_categories": True, "synonyms": SYNONYMS, "dedupe": False}
FEATURES: dict[str, Any] = {
    "categorical_encoding": "onehot",
    "encoding_columns": {"region": "ordinal", "zip": "hashed"},
    "hash_buckets": 16,
    "datetime_parts": ["month", "dayofweek", "hour"],
    "ratios": [{"name": "n0_per_n1", "numerator": "n0", "denominator": "n1"}],
    "derived": [{"name": "mix", "expr": "log1p(abs(n2)) * n3 + (n4 > 0)"}],
    "bins": [{"column": "n5", "n_bins": 10}],
    "scaling": "standard",
    "drop": ["id", "age"],
}


# --------------------------------------------------------------------------- data


def generate(directory: Path, rows: int, files: int, seed: int = 0) -> Path:
    """Write the data set once; the same arguments give the same files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    done = directory / "_done"
    if done.exists() and done.read_text() == f"{rows} {files} {seed}":
        return directory
    for old in directory.glob("*.parquet"):
        old.unlink()
    plan_variants = np.array([*PLANS, "BASIC", " Standard", "premium ", "std", "prem"],
                             dtype=object)
    region_variants = np.array([*REGIONS, *(r.upper() for r in REGIONS), " north"], dtype=object)
    zips = np.array([f"z{i:05d}" for i in range(20_000)], dtype=object)
    per_file = -(-rows // files)
    for f in range(files):
        rng = np.random.default_rng(seed * 1000 + f)
        n = min(per_file, rows - f * per_file)
        start = f * per_file
        cols: dict[str, Any] = {"id": np.arange(start, start + n, dtype=np.int64)}
        for i, c in enumerate(NUMERIC):
            v = rng.normal(i, 1 + i, n)
            v[rng.random(n) < 0.001] *= 100
            cols[c] = pa.array(v, mask=rng.random(n) < 0.02)
        age = rng.integers(18, 90, n).astype(np.int64)
        age[rng.random(n) < 0.001] = -1
        cols["age"] = age
        cols["plan"] = pa.array(plan_variants[rng.integers(0, len(plan_variants), n)],
                                mask=rng.random(n) < 0.02, type=pa.string())
        cols["region"] = pa.array(region_variants[rng.integers(0, len(region_variants), n)],
                                  type=pa.string())
        cols["zip"] = pa.array(zips[rng.integers(0, len(zips), n)], type=pa.string())
        cols["ts"] = pa.array(np.datetime64("2023-01-01") + rng.integers(0, 365 * 24 * 3600, n)
                              .astype("timedelta64[s]"))
        cols["y"] = (rng.random(n) < 0.3).astype(np.int64)
        pq.write_table(pa.table(cols), directory / f"part-{f:03d}.parquet",
                       row_group_size=100_000)
    done.write_text(f"{rows} {files} {seed}")
    return directory


# --------------------------------------------------------------------------- Ray Data (raypipe)


def _contract(table: Any) -> Any:
    """The contract check on one Arrow batch: a reason per failing row, null otherwise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    age = table.column("age")
    bad_age = pc.or_kleene(pc.less(age, 0), pc.greater(age, 120))
    reason = pc.if_else(pc.is_null(table.column("y")), "y: target is missing",
                        pc.if_else(bad_age, pc.binary_join_element_wise(
                            "age: outside [0, 120]: ", pc.cast(age, pa.string()), ""),
                                   pa.scalar(None, pa.string())))
    return table.append_column("_quarantine_reason", reason)


def _train_rows(table: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    checked = _contract(table)
    train = pa.array(table.column("id").to_numpy() % 10 < TRAIN_TENTHS)
    return table.filter(pc.and_(pc.is_null(checked.column("_quarantine_reason")), train))


def _quarantined(table: Any) -> Any:
    import pyarrow.compute as pc

    checked = _contract(table)
    return checked.filter(pc.is_valid(checked.column("_quarantine_reason")))


def _features(table: Any, pipeline: Any) -> Any:
    import pyarrow.compute as pc

    checked = _contract(table)
    passing = table.filter(pc.is_null(checked.column("_quarantine_reason")))
    out = pipeline.transform_table(passing)
    return out.append_column("id", passing.column("id")).append_column("y", passing.column("y"))


def run_ray(data: Path, out: Path, cpus: int, niceness: int) -> dict[str, Any]:
    # Read by the raylet that ray.init starts; Ray spells it in this case.
    os.environ["RAY_worker_niceness"] = str(niceness)  # noqa: SIM112
    import ray

    from pipelines.config import CleanConfig, FeaturesConfig
    from pipelines.feature_fit import fit_feature_pipeline

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    startup = time.perf_counter() - t0

    t0 = time.perf_counter()
    src = ray.data.read_parquet(str(data))
    train = src.map_batches(_train_rows, batch_format="pyarrow", zero_copy_batch=True)
    # _train_rows only filters rows, so the source's schema (Parquet metadata) is the split's.
    pipeline = fit_feature_pipeline(train, target="y", task="binary", clean=CleanConfig(**CLEAN),
                                    features=FeaturesConfig(**FEATURES), schema=src.schema())
    fitted = time.perf_counter() - t0
    src.map_batches(_quarantined, batch_format="pyarrow", zero_copy_batch=True).write_parquet(
        str(out / "quarantine"))
    feats = src.map_batches(_features, fn_kwargs={"pipeline": pipeline}, batch_format="pyarrow",
                            zero_copy_batch=True)
    feats.write_parquet(str(out / "features"))
    seconds = time.perf_counter() - t0
    ray.shutdown()
    return {"seconds": seconds, "fit_seconds": fitted, "startup_seconds": startup,
            "features": len(pipeline.feature_names)}


# --------------------------------------------------------------------------- pandas


def run_pandas(data: Path, out: Path) -> dict[str, Any]:
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_parquet(data)
    # Contract.
    bad_age = (df["age"] < 0) | (df["age"] > 120)
    reason = pd.Series(None, index=df.index, dtype=object)
    reason[bad_age] = "age: outside [0, 120]: " + df.loc[bad_age, "age"].astype(str)
    reason[df["y"].isna()] = "y: target is missing"
    bad = reason.notna()
    out.mkdir(parents=True, exist_ok=True)
    df[bad].assign(_quarantine_reason=reason[bad]).to_parquet(out / "quarantine.parquet")
    df = df[~bad]
    is_train = (df["id"] % 10 < TRAIN_TENTHS).to_numpy()
    train = df[is_train]

    # Fit on the training rows.
    def norm(s: pd.Series, col: str) -> pd.Series:
        cleaned = s.str.strip().str.lower()
        return cleaned.replace(SYNONYMS.get(col, {}))

    num = {}
    for c in NUMERIC:
        q1, med, q3 = train[c].quantile([0.25, 0.5, 0.75])
        num[c] = (med, q1 - 3 * (q3 - q1), q3 + 3 * (q3 - q1))
    vocab = {c: norm(train[c], c).value_counts().index[:50].tolist() for c in ("plan", "region")}
    fill = {c: vocab[c][0] for c in vocab}
    zip_fill = train["zip"].str.strip().str.lower().value_counts().index[0]
    edges = np.unique(train["n5"].quantile([i / 10 for i in range(1, 10)]).to_numpy())

    # Apply to every passing row.
    feats: dict[str, Any] = {}
    for c in NUMERIC:
        med, lo, hi = num[c]
        feats[c] = df[c].fillna(med).clip(lo, hi)
    plan = norm(df["plan"], "plan").fillna(fill["plan"])
    codes = pd.Categorical(plan, categories=vocab["plan"]).codes
    for i, cat in enumerate(vocab["plan"]):
        feats[f"plan={cat}"] = (codes == i).astype("float64")
    feats["plan=__other__"] = (codes < 0).astype("float64")
    region = pd.Categorical(norm(df["region"], "region").fillna(fill["region"]),
                            categories=vocab["region"]).codes
    feats["region"] = np.where(region >= 0, region, len(vocab["region"])).astype("float64")
    zips = df["zip"].str.strip().str.lower().fillna(zip_fill)
    bucket = pd.util.hash_array(zips.to_numpy(dtype=object)) % np.uint64(16)
    for i in range(16):
        feats[f"zip__hash{i}"] = (bucket == i).astype("float64")
    ts = df["ts"]
    feats["ts_month"] = ts.dt.month.astype("float64")
    feats["ts_dayofweek"] = ts.dt.dayofweek.astype("float64")
    feats["ts_hour"] = ts.dt.hour.astype("float64")
    feats["n0_per_n1"] = feats["n0"] / feats["n1"].where(feats["n1"] != 0)
    feats["mix"] = np.log1p(feats["n2"].abs()) * feats["n3"] + (feats["n4"] > 0)
    feats["n5_bin"] = np.searchsorted(edges, feats["n5"], side="right").astype("float64")
    X = pd.DataFrame(feats, index=df.index).astype("float64")
    moments = X[is_train]
    X = (X - moments.mean()) / moments.std(ddof=0).replace(0, 1)
    X["id"] = df["id"]
    X["y"] = df["y"]
    X.to_parquet(out / "features.parquet")
    return {"seconds": time.perf_counter() - t0, "features": len(feats)}


# --------------------------------------------------------------------------- driver


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _engine_main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    result = (run_ray(Path(args.data), out, args.cpus, args.worker_niceness) if args.engine == "ray"
              else run_pandas(Path(args.data), out))
    result["peak_rss_mib"] = _peak_rss_mib()
    print("RESULT " + json.dumps(result))


def _run_engine(engine: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--engine", engine, "--data", str(args.data),
           "--out", str(out / engine), "--cpus", str(args.cpus),
           "--worker-niceness", str(args.worker_niceness)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        raise RuntimeError(f"{engine} run failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(line[-1][len("RESULT "):]))


def _rows_written(path: Path) -> int:
    import pyarrow.dataset as pads

    return int(pads.dataset(str(path), format="parquet").count_rows())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=5_000_000)
    p.add_argument("--files", type=int, default=10)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--worker-niceness", type=int, default=0,
                   help="niceness of Ray's worker processes (Ray's own default: 15)")
    p.add_argument("--data", default="/tmp/raypipe-bench-data")
    p.add_argument("--out", default="/tmp/raypipe-bench-data-out")
    p.add_argument("--engine", choices=["ray", "pandas"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.engine:
        _engine_main(args)
        return
    t0 = time.perf_counter()
    generate(Path(args.data), args.rows, args.files)
    print(f"data: {args.rows:,} rows in {args.files} files ({time.perf_counter() - t0:.1f} s)")
    out = Path(args.out)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    load_before = os.getloadavg()
    results = {e: _run_engine(e, args, out) for e in ("pandas", "ray")}
    load_after = os.getloadavg()
    rows_out = {"ray": _rows_written(out / "ray" / "features"),
                "pandas": _rows_written(out / "pandas" / "features.parquet")}
    if rows_out["ray"] != rows_out["pandas"]:
        raise RuntimeError(f"the engines wrote different row counts: {rows_out}")
    rate = {e: args.rows / r["seconds"] for e, r in results.items()}
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs; Ray given {args.cpus} CPUs, "
          f"workers at nice {args.worker_niceness}; "
          f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    print(f"{'engine':8} {'seconds':>8} {'rows/s':>12} {'driver peak RSS':>16} features")
    for e, r in results.items():
        print(f"{e:8} {r['seconds']:8.1f} {rate[e]:12,.0f} {r['peak_rss_mib']:13,.0f} MiB "
              f"{r['features']}")
    print(f"ratio (ray rows/s / pandas rows/s): {rate['ray'] / rate['pandas']:.2f}x; "
          f"ray fit {results['ray']['fit_seconds']:.1f} s, start-up "
          f"{results['ray']['startup_seconds']:.1f} s (not counted); rows written "
          f"{rows_out['ray']:,}")


if __name__ == "__main__":
    main()
