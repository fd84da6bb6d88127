"""Splits on Ray Data: reproducible whatever the block order, stratified, and time-safe."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import ray

from pipelines.config import SplitConfig
from pipelines.stages.split import split_dataset

pytestmark = pytest.mark.integration


def _frame(n: int = 4000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "id": np.arange(n),
        "x": rng.normal(size=n),
        "y": (rng.random(n) < 0.2).astype(int),
        "ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10_000, n), "min"),
    })


def _blocks(frame: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    size = -(-len(frame) // n)
    return [frame.iloc[i:i + size] for i in range(0, len(frame), size)]


def _ids(parts: tuple[ray.data.Dataset, ...]) -> list[set[int]]:
    return [set(p.to_pandas()["id"]) for p in parts]


def test_split_is_reproducible_whatever_the_block_order(ray_address: str) -> None:
    frame = _frame()
    cfg = SplitConfig(seed=5)
    a = _ids(split_dataset(ray.data.from_pandas(_blocks(frame, 8)), cfg, "y", True))
    shuffled = ray.data.from_pandas(_blocks(frame.sample(frac=1, random_state=3), 5))
    b = _ids(split_dataset(shuffled.randomize_block_order(seed=9), cfg, "y", True))
    assert a == b
    assert sum(len(s) for s in a) == len(frame) and not (a[0] & a[1] or a[0] & a[2])
    c = _ids(split_dataset(ray.data.from_pandas(frame), SplitConfig(seed=6), "y", True))
    assert c != a  # another seed, another split


def test_stratified_split_keeps_class_shares(ray_address: str) -> None:
    frame = _frame()
    train, valid, test = split_dataset(ray.data.from_pandas(frame), SplitConfig(), "y", True)
    rate = frame["y"].mean()
    for part in (train, valid, test):
        assert abs(part.to_pandas()["y"].mean() - rate) < 0.005


def test_time_split_has_no_future_rows_in_training(ray_address: str) -> None:
    frame = _frame()
    cfg = SplitConfig(strategy="time", time_column="ts")
    train, valid, test = (p.to_pandas() for p in
                          split_dataset(ray.data.from_pandas(frame), cfg, "y", True))
    assert train["ts"].max() <= valid["ts"].min()
    assert valid["ts"].max() <= test["ts"].min()
    assert len(train) == pytest.approx(0.7 * len(frame), abs=2)


def test_time_split_refuses_rows_without_a_time(ray_address: str) -> None:
    from pipelines.stages.split import SplitError

    frame = _frame()
    frame.loc[3, "ts"] = pd.NaT
    cfg = SplitConfig(strategy="time", time_column="ts")
    with pytest.raises(SplitError, match="1 row"):
        split_dataset(ray.data.from_pandas(frame), cfg, "y", True)
