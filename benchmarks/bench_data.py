"""The data stage, side by side in one run: ingest + validate + clean + features on Ray Data
(raypipe's own ``validate`` stage and fitted FeaturePipeline) vs a plain single-process pandas
implementation of the same transforms.

    python benchmarks/bench_data.py [--rows 5000000] [--files 10] [--cpus 2] [--data DIR]

The data set is generated once (``--data``, kept between runs): ``--files`` Parquet files of
an id, 10 numeric columns (2% missing, 0.1% outliers x100), a contract column ``age`` (0.1%
rows out of range), three categorical columns (3 and 8 categories with case / whitespace /
synonym variants, one of ~20,000 values -> hashed), a timestamp and a binary target; 0.05% of
the plans are not allowed and 0.05% of the zip codes break their regex.

Both engines do the same work: read every file; check the data contract :data:`CONTRACT`
(target present; types, nullability, bounds of id, age, y and the 10 numeric columns, allowed
plans and regions compared trimmed and lower-cased, a regex on zip, a non-null timestamp; the
first failure of a row is its reason) and write the failing rows, with reason, column and rule,
to a quarantine data set; fit every statistic on the training rows (``id % 10 < 7`` of the
passing rows): medians, IQR outlier bounds, category vocabularies, quantile bins, then
standard-scaling moments of the features; apply imputation, clipping, category normalisation +
synonyms, one-hot / ordinal / hashed encoding, datetime parts, a ratio, a derived expression,
bins and scaling to every passing row; write the features (+ id, target) as Parquet.
raypipe: ``pipelines.sources.files.read_files`` (the product's ingest: Parquet footers checked,
then ``read_parquet``), ``pipelines.stages.validate.validate`` (the validation stage, Arrow rule
kernels, checked / passed / quarantined rows materialised in the object store),
``fit_feature_pipeline`` (two streaming passes over the passed rows) and
``FeaturePipeline.transform_table`` in ``map_batches`` on Arrow batches. pandas:
``read_parquet``, idiomatic pandas/NumPy operations, ``to_parquet``. The two engines' counts per
(column, rule) are compared at the end, so a run where they did different work fails.

Each engine runs in its own process, so the peak memory reported is that engine's driver
alone (``VmHWM``); Ray's start-up is timed apart from the data work. The machine load
(``uptime``) is recorded before and after, since other jobs may share the machine.

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
DATA_VERSION = 2  # bump when generate() changes, so a kept data set is made again

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
BOUND = 10_000.0  # far outside the numeric columns' values: the rule runs, no row breaks it
CONTRACT: dict[str, Any] = {
    "max_quarantine_fraction": 0.05,
    "columns": {
        "id": {"type": "int", "nullable": False, "min": 0},
        **{c: {"type": "float", "min": -BOUND, "max": BOUND} for c in NUMERIC},
        "age": {"type": "int", "nullable": False, "min": 0, "max": 120},
        "plan": {"type": "string", "allowed": [*PLANS, "std", "prem"]},
        "region": {"type": "string", "nullable": False, "allowed": REGIONS},
        "zip": {"type": "string", "nullable": False, "regex": r"z\d{5}"},
        "ts": {"type": "datetime", "nullable": False},
        "y": {"type": "int", "min": 0, "max": 1},
    },
}


# --------------------------------------------------------------------------- data


def generate(directory: Path, rows: int, files: int, seed: int = 0) -> Path:
    """Write the data set once; the same arguments give the same files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    done = directory / "_done"
    marker = f"{rows} {files} {seed} v{DATA_VERSION}"
    if done.exists() and done.read_text() == marker:
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
        plan = plan_variants[rng.integers(0, len(plan_variants), n)]
        plan[rng.random(n) < 0.0005] = "gold"  # not an allowed plan
        cols["plan"] = pa.array(plan, mask=rng.random(n) < 0.02, type=pa.string())
        cols["region"] = pa.array(region_variants[rng.integers(0, len(region_variants), n)],
                                  type=pa.string())
        zip_codes = zips[rng.integers(0, len(zips), n)]
        zip_codes[rng.random(n) < 0.0005] = "Z-123"  # breaks the zip regex
        cols["zip"] = pa.array(zip_codes, type=pa.string())
        cols["ts"] = pa.array(np.datetime64("2023-01-01") + rng.integers(0, 365 * 24 * 3600, n)
                              .astype("timedelta64[s]"))
        cols["y"] = (rng.random(n) < 0.3).astype(np.int64)
        pq.write_table(pa.table(cols), directory / f"part-{f:03d}.parquet",
                       row_group_size=100_000)
    done.write_text(marker)
    return directory


# --------------------------------------------------------------------------- Ray Data (raypipe)


def _train_rows(table: Any) -> Any:
    import pyarrow as pa

    return table.filter(pa.array(table.column("id").to_numpy() % 10 < TRAIN_TENTHS))


def _features(table: Any, pipeline: Any) -> Any:
    out = pipeline.transform_table(table)
    return out.append_column("id", table.column("id")).append_column("y", table.column("y"))


def run_ray(data: Path, out: Path, cpus: int, niceness: int) -> dict[str, Any]:
    # Read by the raylet that ray.init starts; Ray spells it in this case.
    os.environ["RAY_worker_niceness"] = str(niceness)  # noqa: SIM112
    import ray

    from pipelines.config import CleanConfig, FeaturesConfig, SchemaConfig
    from pipelines.features.fit import fit_feature_pipeline
    from pipelines.sources.files import read_files
    from pipelines.stages.validate import validate

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    startup = time.perf_counter() - t0

    t0 = time.perf_counter()
    # the product's ingest (footers checked, then read_parquet) and validation stages
    checked = validate(read_files(str(data), "parquet"), SchemaConfig(**CONTRACT), target="y")
    validated = time.perf_counter() - t0
    valid = checked.valid
    checked.quarantined.write_parquet(str(out / "quarantine"))
    train = valid.map_batches(_train_rows, batch_format="pyarrow", zero_copy_batch=True)
    # the passed rows are materialised: their schema is known without running a block
    pipeline = fit_feature_pipeline(train, target="y", task="binary", clean=CleanConfig(**CLEAN),
                                    features=FeaturesConfig(**FEATURES), schema=valid.schema())
    fitted = time.perf_counter() - t0 - validated
    feats = valid.map_batches(_features, fn_kwargs={"pipeline": pipeline}, batch_format="pyarrow",
                              zero_copy_batch=True)
    feats.write_parquet(str(out / "features"))
    seconds = time.perf_counter() - t0
    ray.shutdown()
    return {"seconds": seconds, "validate_seconds": validated, "fit_seconds": fitted,
            "startup_seconds": startup, "features": len(pipeline.feature_names),
            "reasons": {f"{r.column}/{r.rule}": r.rows for r in checked.reasons}}


# --------------------------------------------------------------------------- pandas


def _pandas_contract(df: Any) -> Any:
    """:data:`CONTRACT` on the whole frame: each row's first failure (message, column, rule).

    Native dtypes throughout (no parsing: every column was read with its contract type);
    messages are formatted for the failing rows only.
    """
    import pandas as pd

    checks: list[tuple[Any, str, str, str, bool]] = [(df["y"].isna(), "y", "target",
                                                       "target is missing", False)]
    for col, rules in CONTRACT["columns"].items():
        s = df[col]
        if rules["type"] == "int" and pd.api.types.is_float_dtype(s):
            checks.append((s.notna() & (np.floor(s) != s), col, "type", "not a valid int", True))
        if not rules.get("nullable", True):
            checks.append((s.isna(), col, "nullable", "missing in a non-nullable column", False))
        if "min" in rules:
            checks.append((s < rules["min"], col, "min", f"below min {float(rules['min'])}", True))
        if "max" in rules:
            checks.append((s > rules["max"], col, "max", f"above max {float(rules['max'])}", True))
        if "allowed" in rules:
            allowed = {a.strip().lower() for a in rules["allowed"]}
            checks.append((s.notna() & ~s.str.strip().str.lower().isin(allowed), col, "allowed",
                           "not an allowed value", True))
        if "regex" in rules:
            checks.append((s.notna() & ~s.str.fullmatch(rules["regex"]).fillna(False), col,
                           "regex", f"does not match regex '{rules['regex']}'", True))
    first = np.full(len(df), -1)
    for k, (mask, *_rest) in enumerate(checks):
        first[(first < 0) & mask.to_numpy(dtype=bool, na_value=False)] = k
    out = pd.DataFrame({name: pd.Series(pd.NA, index=df.index, dtype="string") for name in
                        ("_quarantine_reason", "_quarantine_column", "_quarantine_rule")})
    for k, (_, col, rule, text, shows_value) in enumerate(checks):
        rows = first == k
        if not rows.any():
            continue
        message = f"{col}: {text}"
        out.loc[rows, "_quarantine_reason"] = (
            message + ": " + df.loc[rows, col].astype("string")) if shows_value else message
        out.loc[rows, "_quarantine_column"] = col
        out.loc[rows, "_quarantine_rule"] = rule
    return out


def run_pandas(data: Path, out: Path) -> dict[str, Any]:
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_parquet(data)
    reasons = _pandas_contract(df)
    bad = reasons["_quarantine_reason"].notna()
    if bad.mean() > CONTRACT["max_quarantine_fraction"]:
        raise RuntimeError(f"{bad.mean():.1%} of the rows broke the contract")
    out.mkdir(parents=True, exist_ok=True)
    pd.concat([df[bad], reasons[bad]], axis=1).to_parquet(out / "quarantine.parquet")
    counts = reasons[bad].groupby(["_quarantine_column", "_quarantine_rule"]).size()
    validated = time.perf_counter() - t0
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
    return {"seconds": time.perf_counter() - t0, "validate_seconds": validated,
            "features": len(feats),
            "reasons": {f"{c}/{r}": int(n) for (c, r), n in counts.items()}}


# --------------------------------------------------------------------------- driver


def _peak_rss_mib() -> float:
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so it could report the parent's peak
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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
    if results["ray"]["reasons"] != results["pandas"]["reasons"]:
        raise RuntimeError(f"the engines quarantined differently: {results['ray']['reasons']} "
                           f"vs {results['pandas']['reasons']}")
    rate = {e: args.rows / r["seconds"] for e, r in results.items()}
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs; Ray given {args.cpus} CPUs, "
          f"workers at nice {args.worker_niceness}; "
          f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f}")
    print(f"{'engine':8} {'seconds':>8} {'rows/s':>12} {'validate s':>10} "
          f"{'driver peak RSS':>16} features")
    for e, r in results.items():
        print(f"{e:8} {r['seconds']:8.1f} {rate[e]:12,.0f} {r['validate_seconds']:10.1f} "
              f"{r['peak_rss_mib']:12,.0f} MiB {r['features']}")
    print(f"ratio (ray rows/s / pandas rows/s): {rate['ray'] / rate['pandas']:.2f}x; "
          f"ray fit {results['ray']['fit_seconds']:.1f} s, start-up "
          f"{results['ray']['startup_seconds']:.1f} s (not counted); rows written "
          f"{rows_out['ray']:,}; quarantined per column/rule (both engines) "
          f"{results['ray']['reasons']}")


if __name__ == "__main__":
    main()
