"""The SQL source's connection factory: it travels to Ray's read tasks, the password does not."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from pipelines.config import SqlSource
from pipelines.sources import InputError
from pipelines.sources.sql import connect_factory

VAR = "RAYPIPE_UNIT_PGPASSWORD"
# Distinctive, so a byte search cannot hit by chance; split like the other planted secrets,
# which tests/unit/test_no_secrets.py would otherwise report as a committed credential.
PASSWORD = "Zq81-" "distinctive-secret-value"
URL = "postgresql://app@db.internal:5432/shop"
READ_ONLY = "-c default_transaction_read_only=on"


class _Connection:
    read_only = False


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The arguments of every ``psycopg.connect`` call; no server is contacted."""
    import psycopg

    calls: list[dict[str, Any]] = []

    def connect(conninfo: str, **kwargs: Any) -> _Connection:
        calls.append({"conninfo": conninfo, **kwargs})
        return _Connection()

    monkeypatch.setattr(psycopg, "connect", connect)
    return calls


def _source(password_env: str | None = VAR) -> SqlSource:
    return SqlSource(url=URL, table="customers", password_env=password_env)


def test_the_pickled_factory_names_the_variable_and_never_holds_the_password(
        monkeypatch: pytest.MonkeyPatch, connects: list[dict[str, Any]]) -> None:
    monkeypatch.setenv(VAR, PASSWORD)
    factory = connect_factory(_source())
    payload = pickle.dumps(factory)  # what ray.data.read_sql ships inside every read task
    assert PASSWORD.encode() not in payload and VAR.encode() in payload
    print(f"\nSQL connection factory: {len(payload)} B pickled, password absent")
    assert PASSWORD not in repr(factory)
    # The process that connects reads its own environment at that moment (a worker's, there).
    monkeypatch.setenv(VAR, "the-worker-s-value")
    conn = pickle.loads(payload)()
    assert connects == [{"conninfo": URL, "options": READ_ONLY, "password": "the-worker-s-value"}]
    assert conn.read_only is True


def test_a_process_without_the_variable_is_told_to_set_it_on_every_node(
        monkeypatch: pytest.MonkeyPatch, connects: list[dict[str, Any]]) -> None:
    monkeypatch.setenv(VAR, PASSWORD)
    payload = pickle.dumps(connect_factory(_source()))
    monkeypatch.delenv(VAR)
    with pytest.raises(InputError, match=rf"source\.password_env: environment variable {VAR} is "
                       r"not set .*every Ray node that reads") as info:
        pickle.loads(payload)()
    assert PASSWORD not in str(info.value) and connects == []


def test_the_driver_refuses_an_unset_variable_before_any_connection(
        monkeypatch: pytest.MonkeyPatch, connects: list[dict[str, Any]]) -> None:
    monkeypatch.delenv(VAR, raising=False)
    with pytest.raises(InputError, match=rf"source\.password_env: environment variable {VAR} is "
                       "not set"):
        connect_factory(_source())
    assert connects == []


def test_without_password_env_libpq_finds_the_password_itself(
        monkeypatch: pytest.MonkeyPatch, connects: list[dict[str, Any]]) -> None:
    monkeypatch.setenv(VAR, PASSWORD)
    pickle.loads(pickle.dumps(connect_factory(_source(None))))()
    assert connects == [{"conninfo": URL, "options": READ_ONLY}]  # PGPASSWORD, ~/.pgpass
