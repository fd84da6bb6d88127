"""Fixtures of the integration tests: real servers that source tests read from, and the
featurised splits the training tests sweep over."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pipelines.features.fit import fit_feature_pipeline
from pipelines.stages.ingest import read_source
from pipelines.stages.train import featurize
from tests.conftest import small_config
from tests.integration.servers import Postgres, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL server for this test run (started in ~4 s, removed at the end)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def splits(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """Featurised train and valid splits of 1,500 demo rows, shared by every test that trains
    on them (datasets are immutable: no test can change another's)."""
    cfg = small_config(tmp_path_factory.mktemp("train"), "source.rows=1500")
    raw = read_source(cfg.source, cfg.work_dir).filter(expr="tenure_months >= 0")
    train, valid = raw.split_proportionately([0.7])
    pipe = fit_feature_pipeline(train, target="churned", task="binary", clean=cfg.clean,
                                features=cfg.features)
    return featurize(train, pipe), featurize(valid, pipe)
