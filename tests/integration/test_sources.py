"""Each source kind, read for real (SQLite file, PostgreSQL server, JSON API on 127.0.0.1),
end to end into a training run; and corrupted inputs reported with the file or page named."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines.config import PipelineConfig, parse_config
from pipelines.demo import generate_demo_frame
from pipelines.runner import run_pipeline
from pipelines.sources import InputError
from pipelines.stages.ingest import read_source, rows_read, source_errors, source_fingerprint
from tests.integration.servers import PG_PASSWORD_ENV, PagedApi, Postgres, serve_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # runs whole pipelines or fault-injected fits

ROWS = 2000
# One trial, few rounds, no plots: these tests prove the data path, not the model.
QUICK = {"train": {"num_samples": 1, "xgboost": {"num_boost_round": 20,
                                                  "early_stopping_rounds": 5}},
         "evaluate": {"plots": False}}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = generate_demo_frame(ROWS, seed=11)
    return df.reset_index(names="row_id")


def _config(source: dict[str, Any], work: Path) -> PipelineConfig:
    from pipelines.config import load_config

    demo = load_config(None).model_dump(mode="json", by_alias=True)
    data = {"name": "src-test", "source": source, "target": "churned", "task": "binary",
            "schema": demo["schema"], "clean": demo["clean"], "features": demo["features"],
            **QUICK, "runtime": {"work_dir": str(work)}}
    data["schema"]["max_quarantine_fraction"] = 0.05
    return parse_config(data)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", date_format="iso"))


def _assert_trained(cfg: PipelineConfig, rows: int) -> None:
    summary = run_pipeline(cfg)
    assert summary.counts["rows_read"] == rows
    assert summary.counts["rows_in"] == rows
    assert summary.counts["rows_valid"] + summary.counts["rows_quarantined"] == rows
    assert summary.model_version and 0.5 < summary.metrics["roc_auc"] <= 1.0


# --------------------------------------------------------------------------- SQL


def test_sqlite_table_trains(ray_address: str, frame: pd.DataFrame, tmp_path: Path) -> None:
    db = tmp_path / "churn.db"
    with sqlite3.connect(db) as conn:
        frame.to_sql("customers", conn, index=False)
    cfg = _config({"kind": "sql", "url": f"sqlite:///{db}", "table": "customers"},
                  tmp_path / "work")
    _assert_trained(cfg, ROWS)


def test_sqlite_sharded_read_returns_every_row_once(ray_address: str, frame: pd.DataFrame,
                                                    tmp_path: Path) -> None:
    db = tmp_path / "churn.db"
    with sqlite3.connect(db) as conn:
        frame.to_sql("customers", conn, index=False)
    cfg = _config({"kind": "sql", "url": f"sqlite:///{db}", "query": "SELECT * FROM customers "
                   "WHERE plan IS NOT NULL;", "shard_key": "row_id", "parallelism": 3},
                  tmp_path / "work")
    ds = read_source(cfg.source, cfg.work_dir).materialize()
    got = ds.to_pandas()
    want = frame[frame["plan"].notna()]
    assert sorted(got["row_id"]) == sorted(want["row_id"])  # no row lost, none twice
    assert ds.num_blocks() == 3  # one per shard
    assert rows_read(cfg.source, ds, cfg.work_dir) == len(want)
    # The fingerprint follows the content: same data, same digest; one changed value, another.
    first = source_fingerprint(cfg.source, cfg.work_dir)
    assert source_fingerprint(cfg.source, cfg.work_dir) == first
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE customers SET tenure_months = 99 WHERE row_id = 5")
    assert source_fingerprint(cfg.source, cfg.work_dir)[1] != first[1]


def test_sql_errors_name_the_table_and_key(ray_address: str, tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (name TEXT)")
        conn.execute("INSERT INTO t VALUES ('a')")
    with pytest.raises(InputError, match=r"cannot read table 'missing' from sqlite:///.*no such "
                       r"table"):
        read_source(_config({"kind": "sql", "url": f"sqlite:///{db}", "table": "missing"},
                            tmp_path).source, tmp_path)
    with pytest.raises(InputError, match=r"source\.shard_key 'name' cannot shard table 't'"):
        read_source(_config({"kind": "sql", "url": f"sqlite:///{db}", "table": "t",
                             "shard_key": "name", "shard_hash_fn": "nosuchfn"}, tmp_path).source,
                    tmp_path)
    with pytest.raises(InputError, match="SQLite database file does not exist"):
        read_source(_config({"kind": "sql", "url": f"sqlite:///{tmp_path}/none.db",
                             "table": "t"}, tmp_path).source, tmp_path)


def _load_postgres(pg: Postgres, frame: pd.DataFrame) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(pg.url.replace("postgresql://", "postgresql+psycopg://"),
                                      connect_args={"password": pg.password})
    with engine.begin() as conn:
        frame.to_sql("customers", conn, index=False, if_exists="replace")
    engine.dispose()


def test_postgres_sharded_query_trains(ray_address: str, postgres: Postgres, frame: pd.DataFrame,
                                       tmp_path: Path) -> None:
    """The password comes from PG_PASSWORD_ENV, exported before Ray started: the driver's
    probes and every worker's read task read it there."""
    _load_postgres(postgres, frame)
    source = {"kind": "sql", "url": postgres.url, "password_env": PG_PASSWORD_ENV,
              "query": "SELECT * FROM customers", "shard_key": "row_id", "parallelism": 2}
    cfg = _config(source, tmp_path / "work")
    ds = read_source(cfg.source, cfg.work_dir).materialize()
    assert ds.num_blocks() == 2
    assert sorted(ds.to_pandas()["row_id"]) == list(range(ROWS))
    _assert_trained(cfg, ROWS)


def test_postgres_needs_the_password(ray_address: str, postgres: Postgres, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong or missing password on the driver fails its probe, before any read task."""
    monkeypatch.setenv(PG_PASSWORD_ENV, "wrong")
    cfg = _config({"kind": "sql", "url": postgres.url, "table": "customers",
                   "password_env": PG_PASSWORD_ENV}, tmp_path)
    with pytest.raises(InputError, match=r"cannot read table 'customers' from postgresql://.*"
                       r"password authentication failed"):
        read_source(cfg.source, tmp_path)
    monkeypatch.delenv(PG_PASSWORD_ENV)
    with pytest.raises(InputError, match=f"{PG_PASSWORD_ENV} is not set"):
        read_source(cfg.source, tmp_path)


def test_postgres_read_tasks_take_the_password_from_the_worker(ray_address: str,
                                                               postgres: Postgres,
                                                               tmp_path: Path) -> None:
    """The factory read_sql ships holds the variable's name only: the same factory reads on
    workers that have the password, and fails on a worker whose variable is wrong while the
    driver's is right."""
    import ray.data

    from pipelines.sources.sql import connect_factory, sql_text

    cfg = _config({"kind": "sql", "url": postgres.url, "query": "SELECT 1 AS one",
                   "password_env": PG_PASSWORD_ENV}, tmp_path)
    connect = connect_factory(cfg.source)
    assert ray.data.read_sql(sql_text(cfg.source), connect).count() == 1
    elsewhere = ray.data.read_sql(sql_text(cfg.source), connect,
                                  runtime_env={"env_vars": {PG_PASSWORD_ENV: "wrong"}})
    with pytest.raises(Exception, match="password authentication failed"):
        elsewhere.count()


def test_postgres_reads_run_in_a_read_only_session(ray_address: str, postgres: Postgres,
                                                   frame: pd.DataFrame, tmp_path: Path) -> None:
    """A query that closes the probe's subquery, commits the read-only transaction and
    deletes in the next, implicit one is refused by the server (the session default is
    read-only), naming the read-only transaction; every row is still there."""
    import psycopg

    _load_postgres(postgres, frame)
    breakout = "SELECT 1 AS x) AS a; COMMIT; DELETE FROM customers; SELECT * FROM (SELECT 1 AS x"
    cfg = _config({"kind": "sql", "url": postgres.url, "password_env": PG_PASSWORD_ENV,
                   "query": breakout}, tmp_path)
    with pytest.raises(InputError, match="read-only transaction"):
        read_source(cfg.source, tmp_path).materialize()
    with psycopg.connect(postgres.url, password=postgres.password) as conn:
        assert conn.execute("SELECT COUNT(*) FROM customers").fetchone()[0] == ROWS


# --------------------------------------------------------------------------- HTTP


def test_http_page_api_with_429_and_503_trains(ray_address: str, frame: pd.DataFrame,
                                                 tmp_path: Path) -> None:
    api = PagedApi(_records(frame.drop(columns=["row_id"])),
                   faults={"/page?page=2": [429, 503], "/page?page=7": [503]})
    with serve_api(api) as base:
        cfg = _config({"kind": "http", "url": f"{base}/page", "records_path": "data",
                       "total_path": "meta.total", "page_size": 250, "parallelism": 2,
                       "backoff_s": 0.05, "rate_limit": 200}, tmp_path / "work")
        _assert_trained(cfg, ROWS)
    assert api.hits["/page?page=2"] == 3 and api.hits["/page?page=7"] == 2  # retried, then read
    assert api.hits["/page?page=8"] == 1 and "/page?page=9" not in api.hits  # 8 pages, fetched once


def test_http_cursor_and_offset_styles_read_every_record(ray_address: str, frame: pd.DataFrame,
                                                         tmp_path: Path) -> None:
    api = PagedApi(_records(frame))
    with serve_api(api) as base:
        for source in (
            {"kind": "http", "url": f"{base}/cursor", "pagination": "cursor",
             "records_path": "items", "next_cursor_path": "next"},
            {"kind": "http", "url": f"{base}/offset", "pagination": "offset",
             "size_param": "limit", "records_path": "results", "page_size": 300},
            {"kind": "http", "url": f"{base}/page", "pagination": "page", "records_path": "data",
             "total_path": "meta.total", "page_size": 150, "parallelism": 3},
        ):
            cfg = _config(source, tmp_path)
            ds = read_source(cfg.source, tmp_path)
            got = ds.to_pandas()
            assert sorted(got["row_id"]) == list(range(ROWS)), source["url"]
            assert set(frame.columns) == set(got.columns)
            uri, digest = source_fingerprint(cfg.source, tmp_path, ds)
            assert uri == source["url"] and len(digest) == 64
    assert api.hits["/cursor?cursor=1750"] == 1 and api.hits["/offset?offset=1800"] == 1
    # Ray plans a read more than once; the page that gives the total is still fetched once.
    assert [api.hits[f"/page?page={p}"] for p in range(1, 15)] == [1] * 14


def test_a_failing_page_is_named(ray_address: str, tmp_path: Path) -> None:
    api = PagedApi([{"a": i} for i in range(50)], faults={"/page?page=3": [500] * 10})
    with serve_api(api) as base:
        cfg = _config({"kind": "http", "url": f"{base}/page", "records_path": "data",
                       "page_size": 10, "max_retries": 2, "backoff_s": 0}, tmp_path)
        with pytest.raises(InputError, match=rf"http source {base}/page\?page=3&per_page=10 "
                           r"\(page 3\): HTTP 500.*gave up after 3 attempts"):
            read_source(cfg.source, tmp_path)
    assert api.hits["/page?page=3"] == 3


def test_the_token_comes_from_its_environment_variable(ray_address: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    api = PagedApi([{"a": i} for i in range(30)], token="s3cret")
    with serve_api(api) as base:
        cfg = _config({"kind": "http", "url": f"{base}/offset", "pagination": "offset",
                       "size_param": "limit", "records_path": "results", "page_size": 20,
                       "token_env": "RAYPIPE_TEST_TOKEN", "max_retries": 3}, tmp_path)
        monkeypatch.setenv("RAYPIPE_TEST_TOKEN", "s3cret")
        assert read_source(cfg.source, tmp_path).count() == 30
        monkeypatch.setenv("RAYPIPE_TEST_TOKEN", "wrong")
        with pytest.raises(InputError, match=r"offset=0&limit=20 \(page 1\): HTTP 401 "
                           r"Unauthorized"):
            read_source(cfg.source, tmp_path)
    assert api.hits["/offset?offset=0"] == 2  # a 401 is not retried


# --------------------------------------------------------------------------- files


def test_truncated_parquet_names_the_file(ray_address: str, frame: pd.DataFrame,
                                          tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    frame.iloc[:1000].to_parquet(folder / "part-0.parquet")
    frame.iloc[1000:].to_parquet(folder / "part-1.parquet")
    whole = (folder / "part-1.parquet").read_bytes()
    (folder / "part-1.parquet").write_bytes(whole[: len(whole) // 2])
    cfg = _config({"kind": "files", "path": str(folder)}, tmp_path)
    with pytest.raises(InputError, match=r"part-1.parquet' \(truncated or not Parquet\?\)"):
        read_source(cfg.source, tmp_path)


def _csv_with_late_text(path: Path, rows: int) -> None:
    # Past pyarrow's first block (1 MiB) the reader has settled on int64 for x.
    with path.open("w") as f:
        f.write("x;label\n")
        for i in range(rows):
            f.write(f"{i};{'a' * 20}\n")
        f.write("twelve;tail\n")


def test_csv_with_wrong_types_is_reported_then_quarantined(ray_address: str,
                                                          tmp_path: Path) -> None:
    from pipelines.config import SchemaConfig
    from pipelines.stages.validate import validate

    path = tmp_path / "big.csv"
    rows = 60_000
    _csv_with_late_text(path, rows)
    source = {"kind": "files", "path": str(path), "format": "csv", "delimiter": ";"}
    cfg = _config(source, tmp_path)
    ds = read_source(cfg.source, tmp_path)
    with pytest.raises(InputError, match=r"cannot read csv file .*big.csv: .*'twelve'.*"
                       r"source.column_types"), source_errors(cfg.source):
        ds.materialize()
    # Read as text, the odd value reaches the contract and is quarantined; nothing is lost.
    cfg = _config({**source, "column_types": {"x": "string"}}, tmp_path)
    checked = validate(read_source(cfg.source, tmp_path),
                       SchemaConfig.model_validate({"columns": {"x": {"type": "int"}},
                                                    "max_quarantine_fraction": 0.01}), "label")
    assert (checked.rows_in, checked.rows_valid, checked.rows_quarantined) == (rows + 1, rows, 1)
    bad = checked.quarantined.to_pandas()
    assert bad["x"].tolist() == ["twelve"] and "x" in bad["_quarantine_reason"].iloc[0]


def _raydata_source(rows: list[dict[str, Any]], tmp_path: Path, reader: str) -> dict[str, Any]:
    if reader == "read_json":  # JSON Lines
        path = tmp_path / "rows.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return {"kind": "raydata", "reader": "read_json", "args": {"paths": str(path)}}
    db = tmp_path / "rows.db"  # read_sql through the DB-API driver, not raypipe's sql kind
    with sqlite3.connect(db) as conn:
        pd.DataFrame(rows).to_sql("rows", conn, index=False, if_exists="replace")
    return {"kind": "raydata", "reader": "read_sql", "args": {"sql": "SELECT * FROM rows",
            # one read task: no 200-way split of its output (README, kind raydata)
            "override_num_blocks": 1},
            "factories": {"connection_factory": {"function": "sqlite3.connect",
                                                 "args": {"database": str(db)}}}}


@pytest.mark.parametrize("reader", ["read_json", "read_sql"])
def test_raydata_rows_meet_the_contract_and_bad_ones_are_quarantined(ray_address: str,
                                                                     tmp_path: Path,
                                                                     reader: str) -> None:
    """The CSV test's contract half through ``kind: raydata``; its fingerprint follows the
    data (the files, or the snapshot read from the database)."""
    from pipelines.config import SchemaConfig
    from pipelines.stages.validate import validate

    rows = [{"x": str(i), "label": "a"} for i in range(500)] + [{"x": "twelve", "label": "tail"}]
    cfg = _config(_raydata_source(rows, tmp_path, reader), tmp_path)
    ds = read_source(cfg.source, tmp_path)
    checked = validate(ds, SchemaConfig.model_validate({"columns": {"x": {"type": "int"}},
                                                        "max_quarantine_fraction": 0.01}), "label")
    assert (checked.rows_in, checked.rows_valid, checked.rows_quarantined) == (501, 500, 1)
    bad = checked.quarantined.to_pandas()
    assert bad["x"].tolist() == ["twelve"] and "x" in bad["_quarantine_reason"].iloc[0]
    assert rows_read(cfg.source, ds, tmp_path) == (501 if reader == "read_sql" else None)
    _, digest = source_fingerprint(cfg.source, tmp_path, ds)
    again = read_source(cfg.source, tmp_path)
    assert source_fingerprint(cfg.source, tmp_path, again)[1] == digest
    _raydata_source([*rows, {"x": "7", "label": "a"}], tmp_path, reader)
    changed = read_source(cfg.source, tmp_path)
    assert source_fingerprint(cfg.source, tmp_path, changed)[1] != digest


def test_raydata_read_errors_name_the_reader(ray_address: str, tmp_path: Path) -> None:
    cfg = _config({"kind": "raydata", "reader": "read_sql", "args": {"sql": "SELECT * FROM nope"},
                   "factories": {"connection_factory": {
                       "function": "sqlite3.connect", "args": {"database": str(tmp_path / "x.db")}}}},
                  tmp_path)
    with pytest.raises(InputError, match=r"source.reader read_sql cannot read: .*no such table"):
        read_source(cfg.source, tmp_path)


def test_hive_partitioned_csv_folder_keeps_partition_columns(ray_address: str,
                                                             tmp_path: Path) -> None:
    for region in ("north", "south"):
        part = tmp_path / "data" / f"region={region}"
        part.mkdir(parents=True)
        (part / "rows.csv").write_text("1|2.5\n3|4.5\n")
    (tmp_path / "data" / "_SUCCESS").write_text("")
    cfg = _config({"kind": "files", "path": str(tmp_path / "data"), "format": "csv",
                   "delimiter": "|", "header": False, "column_names": ["n", "v"]}, tmp_path)
    got = read_source(cfg.source, tmp_path).to_pandas().sort_values(["region", "n"])
    assert got.to_dict("list") == {"n": [1, 3, 1, 3], "v": [2.5, 4.5, 2.5, 4.5],
                                   "region": ["north", "north", "south", "south"]}


def test_unreadable_files_are_skipped_by_config_and_named(ray_address: str, frame: pd.DataFrame,
                                                          tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    parts = [frame.iloc[:700], frame.iloc[700:1400], frame.iloc[1400:]]
    for i, part in enumerate(parts):
        part.to_parquet(folder / f"part-{i}.parquet")
    whole = (folder / "part-1.parquet").read_bytes()
    (folder / "part-1.parquet").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"part-1\.parquet"):  # fail, the default
        read_source(_config({"kind": "files", "path": str(folder)}, tmp_path).source, tmp_path)
    cfg = _config({"kind": "files", "path": str(folder), "on_unreadable": "skip"}, tmp_path)
    with caplog.at_level("WARNING", logger="pipelines.sources.files"):
        ds = read_source(cfg.source, tmp_path)
    rows = ds.count()
    print(f"\nunreadable file skipped: {len(frame)} rows in 3 files, 1 truncated; read {rows} "
          f"rows of 2 files, left out {len(parts[1])} rows of part-1.parquet")
    assert rows == len(parts[0]) + len(parts[2])
    assert any("left out" in r.message and "part-1.parquet" in r.getMessage()
               for r in caplog.records)
    assert rows_read(cfg.source, ds, tmp_path) is None  # validation counts what was read
    for p in folder.iterdir():
        if p.name != "part-1.parquet":
            p.unlink()
    with pytest.raises(InputError, match=r"no parquet file .* can be read; first: .*part-1"):
        read_source(cfg.source, tmp_path)
