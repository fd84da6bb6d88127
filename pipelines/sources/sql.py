"""SQL source: a table or query of SQLite or PostgreSQL, read with Ray Data's ``read_sql``."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.config import SqlSource
from pipelines.sources._errors import InputError
from pipelines.sources.base import SourceReader
from pipelines.storage.shared import Location

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = ["SqlConnect", "SqlReader", "connect_factory", "read_sql_source", "sql_fingerprint", "sql_rows",
           "sql_text", "sql_uri"]

logger = logging.getLogger(__name__)


def _dialect(url: str) -> str:
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    return "postgresql" if scheme in ("postgresql", "postgres") else "sqlite"


def _password(password_env: str) -> str:
    """The password in ``password_env`` of this process (the driver's, or a Ray worker's)."""
    password = os.environ.get(password_env)
    if password is None:
        raise InputError(
            f"source.password_env: environment variable {password_env} is not set on "
            f"{socket.gethostname()}. The password is not sent with Ray's read tasks: set the "
            "variable on the driver and on every Ray node that reads the source (on Kubernetes, "
            "a Secret as env on the head and worker pods)")
    return password


class SqlConnect:
    """A picklable DB-API connection factory; Ray's read tasks call it on the workers.

    Every connection is read-only: SQLite files are opened with ``mode=ro`` (a missing file is
    an error, not a new empty database) and by absolute path, since a worker's working
    directory is not the driver's; PostgreSQL sessions are read-only transactions only.

    It holds the name of the password's environment variable, never the password:
    ``read_sql`` pickles the factory into every read task, and a value would travel with the
    task payloads through the object store and the GCS. Each process reads its own environment
    when it connects.
    """

    def __init__(self, url: str, password_env: str | None = None) -> None:
        self.dialect = _dialect(url)
        if self.dialect == "sqlite":
            path = url.split("://", 1)[1]
            # sqlite:///rel.db -> "/rel.db" after the scheme; sqlite:////abs.db -> "//abs.db".
            path = path[1:] if path.startswith("/") else path
            self.target = str(Path(path).resolve())
        else:
            self.target = "postgresql://" + url.split("://", 1)[1]
        self.password_env = password_env

    def __call__(self) -> Any:
        if self.dialect == "sqlite":
            import sqlite3

            if not Path(self.target).is_file():
                raise InputError(f"SQLite database file does not exist: {self.target}")
            return sqlite3.connect(f"file:{self.target}?mode=ro", uri=True)
        import psycopg

        # Read-only twice over: the session default (covers statements after a COMMIT inside
        # the query text) and every transaction psycopg begins. A data-modifying query, e.g.
        # WITH d AS (DELETE ... RETURNING *) SELECT * FROM d, then fails instead of writing.
        # The database role should be read-only too; this guards the roles that are not.
        # Without password_env, libpq finds the password itself (PGPASSWORD, ~/.pgpass).
        extra: dict[str, Any] = ({} if self.password_env is None
                                 else {"password": _password(self.password_env)})
        conn = psycopg.connect(self.target, options="-c default_transaction_read_only=on", **extra)
        conn.read_only = True
        return conn

    def __repr__(self) -> str:  # never show the password in logs or errors
        return f"SqlConnect({self.target!r})"


def connect_factory(source: SqlSource) -> SqlConnect:
    """The connection factory of ``source``; it reads the password where it connects.

    The variable is checked here too, so that a driver without it fails before Ray starts any
    read task.
    """
    if source.password_env:
        _password(source.password_env)
    return SqlConnect(source.url, source.password_env)


def sql_text(source: SqlSource) -> str:
    """The SELECT statement the source reads (a table becomes ``SELECT * FROM table``)."""
    if source.table is not None:
        return f"SELECT * FROM {source.table}"  # the name is checked to be a plain identifier
    assert source.query is not None
    return source.query.strip().rstrip(";").strip()


def sql_uri(source: SqlSource) -> str:
    """What the run records as the data's location: the URL and the table or query."""
    what = f"table={source.table}" if source.table else \
        f"query={hashlib.sha256(sql_text(source).encode()).hexdigest()[:16]}"
    return f"{source.url}#{what}"


def _what(source: SqlSource) -> str:
    return f"table {source.table!r}" if source.table else f"query {sql_text(source)!r}"


def _run(connect: SqlConnect, source: SqlSource, statement: str) -> list[tuple[Any, ...]]:
    try:
        with closing(connect()) as conn:
            cursor = conn.cursor()
            cursor.execute(statement)
            return list(cursor.fetchall())
    except InputError:
        raise
    except Exception as err:  # each driver has its own error classes
        raise InputError(f"cannot read {_what(source)} from {source.url}: "
                         f"{type(err).__name__}: {err}".strip()) from err


def _shard_expression(source: SqlSource, parts: int) -> str:
    return f"MOD(ABS({source.shard_hash_fn or ''}({source.shard_key})), {parts})"


def read_sql_source(source: SqlSource) -> Dataset:
    """Read ``source`` with ``ray.data.read_sql``: sharded on ``shard_key``, else one task.

    The query is tried first (no rows fetched) so that a wrong table, column or password fails
    here with the table named, instead of inside a read task; with a shard key, the sharding
    expression is tried too, since Ray would otherwise fall back to one task without a word.
    """
    import ray
    import ray.data

    connect = connect_factory(source)
    sql = sql_text(source)
    _run(connect, source, f"SELECT * FROM ({sql}) AS raypipe_probe WHERE 1 = 0")
    if source.shard_key is None:
        # One read task. Left to its default, Ray Data splits that task's output into
        # DataContext.read_op_min_num_blocks (200) blocks, and every later operator then runs
        # 200 tasks: 40 s for a 300-row query on 2 cores. Without the override the output is
        # still cut at target_max_block_size, so a large table still yields many blocks.
        return ray.data.read_sql(sql, connect, override_num_blocks=1)
    parts = source.parallelism or max(2, int(ray.cluster_resources().get("CPU", 2)))
    try:
        _run(connect, source,
             f"SELECT {_shard_expression(source, parts)} FROM ({sql}) AS raypipe_probe LIMIT 1")
    except InputError as err:
        raise InputError(f"source.shard_key {source.shard_key!r} cannot shard {_what(source)}: "
                         f"{err.__cause__}. Use an integer column, or set shard_hash_fn to a "
                         "function of your database that maps the key to an integer") from err
    logger.info("reading %s in %d shards on %s", _what(source), parts, source.shard_key)
    return ray.data.read_sql(sql, connect, shard_keys=[source.shard_key],
                             shard_hash_fn=source.shard_hash_fn or "", override_num_blocks=parts)


def sql_rows(source: SqlSource) -> int:
    """Rows the query returns, counted by the database (no rows travel)."""
    rows = _run(connect_factory(source), source,
                f"SELECT COUNT(*) FROM ({sql_text(source)}) AS raypipe_count")
    return int(rows[0][0])


def _postgres_digest(connect: SqlConnect, source: SqlSource) -> str:
    # Order-independent digest computed by the server: the sum of each row's md5 (first 60
    # bits), plus the row count. One streaming scan, no sort, and no rows leave the database.
    rows = _run(connect, source,
                "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)"
                f"::bigint::numeric), 0) FROM ({sql_text(source)}) AS t")
    return f"{rows[0][0]}:{rows[0][1]}"


def _streamed_digest(connect: SqlConnect, source: SqlSource) -> str:
    # SQLite has no hash function; its file is local, so stream the rows through the driver
    # in chunks (bounded memory) and sum per-row hashes, order-independent like PostgreSQL's.
    total, count = 0, 0
    try:
        with closing(connect()) as conn:
            cursor = conn.cursor()
            cursor.execute(sql_text(source))
            while chunk := cursor.fetchmany(10_000):
                for row in chunk:
                    total += int.from_bytes(hashlib.sha256(repr(row).encode()).digest()[:16], "big")
                count += len(chunk)
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"cannot read {_what(source)} from {source.url}: {err}") from err
    return f"{count}:{total % (1 << 128)}"


def sql_fingerprint(source: SqlSource) -> tuple[str, str]:
    """``(uri, sha256)`` of the query result's content (plus the query text itself).

    PostgreSQL computes a content digest server-side; SQLite rows are hashed on the driver.
    Both are independent of row order, which SQL does not promise without ORDER BY.
    """
    connect = connect_factory(source)
    digest = (_postgres_digest if connect.dialect == "postgresql" else _streamed_digest)(
        connect, source)
    h = hashlib.sha256(f"{sql_text(source)}\n{digest}".encode())
    return sql_uri(source), h.hexdigest()


class SqlReader(SourceReader[SqlSource]):
    """``kind: sql``: a table or query, read lazily by Ray tasks; counted and fingerprinted by
    queries, so no row travels for either."""

    kind = "sql"
    config_type = SqlSource

    def read(self) -> Dataset:
        return read_sql_source(self.config)

    def fingerprint(self, dataset: Dataset | None = None) -> tuple[str, str]:
        return sql_fingerprint(self.config)

    def rows(self, dataset: Dataset | None) -> int | None:
        return sql_rows(self.config)

    def locations(self) -> list[Location]:
        # Read tasks open a SQLite file on whichever node they run; a server is reachable.
        url = self.config.url
        return [Location("source.url", url)] if url.startswith("sqlite:") else []
