"""Drift statistics from summed counts, against scipy on the raw samples (no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipelines.monitoring.drift import (
    ColumnCounts,
    categorical_profile,
    column_counts,
    compare,
    ks_from_counts,
    merge_counts,
    numeric_profile,
    psi,
)

THRESHOLDS = {"psi_threshold": 0.2, "p_value": 0.01, "min_effect": 0.1,
              "max_missing_increase": 0.1, "max_new_category_rate": 0.05, "min_rows": 100}


def _counts_in_parts(values: pd.Series, profile, normalize: bool = True,
                     parts: int = 3) -> ColumnCounts:
    total = ColumnCounts()
    for chunk in np.array_split(np.arange(len(values)), parts):
        total = merge_counts(total, column_counts(values.iloc[chunk], profile, normalize))
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_from_counts_equals_scipy_on_the_raw_samples(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Rounded values give ties, in and between the samples: the hard case for a binned KS.
    ref = pd.Series(np.round(rng.normal(0, 1, 700), 1))
    cur = pd.Series(np.round(rng.normal(0.15 * seed, 1.2, 900), 1))
    profile = numeric_profile(ref, bins=10)
    stat, p = ks_from_counts(profile, _counts_in_parts(cur, profile).ks_slots)
    want = stats.ks_2samp(ref, cur, method="asymp")
    assert stat == pytest.approx(want.statistic, abs=1e-12)
    assert p == pytest.approx(want.pvalue, rel=0.05, abs=1e-12)


def test_ks_handles_values_outside_the_reference_range_and_missing() -> None:
    ref = pd.Series([1.0, 2.0, 3.0, None, 4.0] * 40)
    cur = pd.Series([-5.0, 10.0, np.nan, np.inf, 2.0, 2.5] * 30)
    profile = numeric_profile(ref, bins=4)
    counts = column_counts(cur, profile, normalize=True)
    assert counts.rows == 180 and counts.missing == 60  # NaN and inf are missing
    finite_cur = cur[np.isfinite(cur)]
    stat, _ = ks_from_counts(profile, counts.ks_slots)
    assert stat == pytest.approx(stats.ks_2samp(ref.dropna(), finite_cur).statistic)


def test_counts_of_parts_add_up_to_the_counts_of_the_whole() -> None:
    rng = np.random.default_rng(3)
    values = pd.Series(rng.exponential(2.0, 1000))
    values[::17] = np.nan
    profile = numeric_profile(values, bins=10)
    whole = column_counts(values, profile, normalize=True)
    assert _counts_in_parts(values, profile, parts=7) == whole
    assert sum(whole.bin_counts) + whole.missing == whole.rows == 1000
    # Quantile bins of the reference hold about a tenth of it each.
    shares = np.asarray(profile.bin_counts) / sum(profile.bin_counts)
    assert np.allclose(shares, 0.1, atol=0.02)


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    assert psi([10, 20, 70], [1, 2, 7]) == pytest.approx(0.0)
    small = psi([25, 25, 25, 25], [27, 24, 25, 24])
    large = psi([25, 25, 25, 25], [5, 15, 30, 50])
    assert 0 < small < 0.01 < 0.2 < large
    assert np.isfinite(psi([10, 0, 10], [0, 10, 10]))  # empty bins are smoothed


def test_chi_square_and_new_categories() -> None:
    rng = np.random.default_rng(4)
    ref = pd.Series(rng.choice(["a", "b", "c"], 2000, p=[0.5, 0.3, 0.2]))
    profile = categorical_profile(ref, normalize=True)
    same = pd.Series(rng.choice([" A", "b", "C "], 2000, p=[0.5, 0.3, 0.2]))  # spellings only
    d_same = compare("x", profile, _counts_in_parts(same, profile), **THRESHOLDS)
    assert not d_same.flagged and d_same.new_category_rate == 0.0
    shifted = pd.Series(rng.choice(["a", "b", "c", "d"], 2000, p=[0.2, 0.3, 0.2, 0.3]))
    d = compare("x", profile, _counts_in_parts(shifted, profile), **THRESHOLDS)
    assert d.flagged and d.drifted
    table = np.array([[ref.value_counts().get(k, 0) for k in "abcd"],
                      [shifted.value_counts().get(k, 0) for k in "abcd"]])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert d.p_value == pytest.approx(p, abs=1e-300)
    assert d.statistic == pytest.approx(np.sqrt(chi2 / table.sum()))
    assert d.new_category_rate == pytest.approx((shifted == "d").mean())
    assert any("new-category rate" in r for r in d.reasons)


def test_compare_flags_a_shift_and_a_missing_rise_but_not_noise() -> None:
    rng = np.random.default_rng(5)
    ref = pd.Series(rng.normal(50, 10, 5000))
    profile = numeric_profile(ref, bins=10)
    same = compare("f", profile, column_counts(pd.Series(rng.normal(50, 10, 3000)), profile,
                                               True), **THRESHOLDS)
    assert not same.flagged and same.reasons == []
    moved = compare("f", profile, column_counts(pd.Series(rng.normal(58, 10, 3000)), profile,
                                                True), **THRESHOLDS)
    assert moved.flagged and moved.psi is not None and moved.psi > 0.2
    holes = pd.Series(rng.normal(50, 10, 3000))
    holes[: 600] = np.nan
    gappy = compare("f", profile, column_counts(holes, profile, True), **THRESHOLDS)
    assert gappy.flagged and not gappy.drifted
    assert gappy.missing_rate == pytest.approx(0.2)


def test_a_window_under_min_rows_flags_nothing() -> None:
    profile = numeric_profile(pd.Series(np.arange(1000.0)), bins=10)
    tiny = column_counts(pd.Series([5000.0] * 50), profile, True)
    d = compare("f", profile, tiny, **THRESHOLDS)
    assert d.psi is not None and d.psi > 1 and not d.flagged


def test_high_cardinality_columns_only_compare_missing_values() -> None:
    ids = pd.Series([f"id-{i}" for i in range(3000)])
    profile = categorical_profile(ids, normalize=False)
    assert profile.high_cardinality and profile.counts == {}
    other = pd.Series([f"other-{i}" for i in range(2000)])
    d = compare("customer_id", profile, column_counts(other, profile, False), **THRESHOLDS)
    assert not d.flagged and d.new_category_rate == 0.0
