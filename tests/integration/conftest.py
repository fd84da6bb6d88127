"""Fixtures of the integration tests: real servers that source tests read from."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.servers import Postgres, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL server for this test run (started in ~4 s, removed at the end)."""
    with postgres_server() as server:
        yield server
