"""Drift statistics: the reference profile of a column, the counts of a window, and the tests.

Everything a window contributes is a vector of counts in bins the reference fixed (quantile
bins for PSI, the reference's own sorted values for Kolmogorov-Smirnov, categories for
chi-square), so counts of any number of batches add up and the window never has to sit on one
machine. From the summed counts the statistics are exact: the KS statistic equals
``scipy.stats.ks_2samp`` on the reference sample and the whole window.

Plain numpy / pandas / scipy; no Ray, no MLflow.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

__all__ = [
    "MAX_CATEGORIES",
    "CategoricalProfile",
    "ColumnCounts",
    "ColumnDrift",
    "NumericProfile",
    "Profile",
    "categorical_profile",
    "column_counts",
    "compare",
    "ks_from_counts",
    "merge_counts",
    "numeric_profile",
    "psi",
]

MAX_CATEGORIES = 1000
"""Distinct reference values kept per categorical column; beyond, it is high-cardinality."""
_PSI_EPS = 1e-4  # an empty bin must not make PSI infinite


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NumericProfile(_Frozen):
    """A numeric column of the reference sample."""

    kind: Literal["numeric"] = "numeric"
    rows: int
    missing: int
    edges: list[float]
    """Interior quantile bin edges; bin i holds ``edges[i-1] < x <= edges[i]``."""
    bin_counts: list[int]
    support: list[float]
    """The sorted distinct non-missing values (KS evaluates both CDFs at them)."""
    cdf: list[float]
    """The reference CDF at each ``support`` value."""

    @property
    def present(self) -> int:
        return self.rows - self.missing


class CategoricalProfile(_Frozen):
    """A categorical (string or bool) column of the reference sample."""

    kind: Literal["categorical"] = "categorical"
    rows: int
    missing: int
    counts: dict[str, int]
    high_cardinality: bool = False
    """More than MAX_CATEGORIES distinct values: only the missing-value rate is compared."""

    @property
    def present(self) -> int:
        return self.rows - self.missing


Profile = NumericProfile | CategoricalProfile


def _numeric_values(values: pd.Series) -> tuple[np.ndarray, int]:
    """(finite values, missing count): NaN, None, inf and unparsable text count as missing."""
    arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    finite = arr[np.isfinite(arr)]
    return finite, int(len(arr) - len(finite))


def _category_values(values: pd.Series, normalize: bool) -> tuple[pd.Series, int]:
    present = values[values.notna()]
    text = present.astype(str)
    if normalize:  # the feature pipeline compares categories trimmed and lower-cased
        text = text.str.strip().str.lower()
    return text, int(len(values) - len(present))


def numeric_profile(values: pd.Series, bins: int) -> NumericProfile:
    """Profile a numeric reference column: quantile bins and the empirical CDF."""
    finite, missing = _numeric_values(values)
    if len(finite):
        qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
        edges = np.unique(qs)
        support, counts = np.unique(finite, return_counts=True)
        cdf = np.cumsum(counts) / len(finite)
    else:
        edges = support = cdf = np.empty(0)
    return NumericProfile(
        rows=len(values), missing=missing, edges=edges.tolist(),
        bin_counts=np.bincount(np.searchsorted(edges, finite, side="left"),
                               minlength=len(edges) + 1).tolist(),
        support=support.tolist(), cdf=cdf.tolist(),
    )


def categorical_profile(values: pd.Series, normalize: bool) -> CategoricalProfile:
    """Profile a categorical reference column: the count of each (normalised) value."""
    text, missing = _category_values(values, normalize)
    counts = text.value_counts()
    high = len(counts) > MAX_CATEGORIES
    return CategoricalProfile(
        rows=len(values), missing=missing, high_cardinality=high,
        counts={} if high else {str(k): int(v) for k, v in counts.items()},
    )


# --------------------------------------------------------------------------- window counts


class ColumnCounts(_Frozen):
    """What a window (or one batch of it) holds of one column, as summable counts."""

    rows: int = 0
    missing: int = 0
    bin_counts: list[int] = []
    ks_slots: list[int] = []
    """Numeric: counts below, at and between the reference support values (2m+1 slots)."""
    categories: dict[str, int] = {}


def column_counts(values: pd.Series, profile: Profile, normalize: bool) -> ColumnCounts:
    """Count one batch's values of a column in the reference's bins."""
    if isinstance(profile, NumericProfile):
        finite, missing = _numeric_values(values)
        edges = np.asarray(profile.edges, dtype="float64")
        support = np.asarray(profile.support, dtype="float64")
        m = len(support)
        idx = np.searchsorted(support, finite, side="left")
        at = (idx < m) & (support[np.minimum(idx, max(m - 1, 0))] == finite) if m else \
            np.zeros(len(finite), dtype=bool)
        return ColumnCounts(
            rows=len(values), missing=missing,
            bin_counts=np.bincount(np.searchsorted(edges, finite, side="left"),
                                   minlength=len(edges) + 1).tolist(),
            ks_slots=np.bincount(2 * idx + at, minlength=2 * m + 1).tolist(),
        )
    text, missing = _category_values(values, normalize)
    counts = text.value_counts()
    if profile.high_cardinality or len(counts) > MAX_CATEGORIES:
        # Only whether values are seen matters; keep the payload bounded.
        seen = profile.counts
        unseen = int((~text.isin(list(seen))).sum()) if seen else 0
        cats = {"__unseen__": unseen} if unseen else {}
        if not profile.high_cardinality:
            cats |= {k: int(counts.get(k, 0)) for k in seen if counts.get(k, 0)}
        return ColumnCounts(rows=len(values), missing=missing, categories=cats)
    return ColumnCounts(rows=len(values), missing=missing,
                        categories={str(k): int(v) for k, v in counts.items()})


def merge_counts(a: ColumnCounts, b: ColumnCounts) -> ColumnCounts:
    """The counts of two batches together."""

    def add(x: list[int], y: list[int]) -> list[int]:
        if not x or not y:
            return x or y
        return (np.asarray(x) + np.asarray(y)).tolist()

    cats = dict(a.categories)
    for k, v in b.categories.items():
        cats[k] = cats.get(k, 0) + v
    return ColumnCounts(rows=a.rows + b.rows, missing=a.missing + b.missing,
                        bin_counts=add(a.bin_counts, b.bin_counts),
                        ks_slots=add(a.ks_slots, b.ks_slots), categories=cats)


# --------------------------------------------------------------------------- statistics


def psi(expected: np.ndarray | list[float], actual: np.ndarray | list[float]) -> float:
    """Population stability index of two count (or share) vectors over the same bins."""
    e = np.asarray(expected, dtype="float64")
    a = np.asarray(actual, dtype="float64")
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    p = np.clip(e / e.sum(), _PSI_EPS, None)
    q = np.clip(a / a.sum(), _PSI_EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_from_counts(profile: NumericProfile, slots: list[int] | np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) of the two-sample KS test, reference sample vs counted window.

    Between two reference values the reference CDF is flat, so the largest gap lies just
    at or just below a reference value; the slots give the window's CDF at both points.
    The p-value is the asymptotic one ``scipy.stats.ks_2samp`` uses for large samples.
    """
    from scipy.stats import kstwo

    c = np.cumsum(np.asarray(slots, dtype="float64"))
    n = c[-1] if len(c) else 0.0
    m = len(profile.support)
    if n <= 0 or m == 0:
        return float("nan"), float("nan")
    f_ref = np.asarray(profile.cdf, dtype="float64")
    at = c[1::2][:m] / n        # window CDF at each support value (<=)
    below = c[0:2 * m:2] / n    # window CDF just below each support value (<)
    f_prev = np.concatenate([[0.0], f_ref[:-1]])
    d = float(max(np.max(np.abs(f_ref - at)), np.max(np.abs(f_prev - below))))
    n_ref = profile.present
    effective = round(n * n_ref / (n + n_ref))
    return d, float(kstwo.sf(d, max(effective, 1)))


def _chi_square(ref: dict[str, int], cur: dict[str, int]) -> tuple[float, float, float]:
    """(chi2, p-value, Cramér's V) of the 2 x k table reference counts vs window counts."""
    from scipy.stats import chi2_contingency

    keys = sorted(set(ref) | set(cur))
    table = np.array([[ref.get(k, 0) for k in keys], [cur.get(k, 0) for k in keys]],
                     dtype="float64")
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0, 0.0
    chi2, p, _, _ = chi2_contingency(table, correction=False)
    v = math.sqrt(chi2 / table.sum())  # min(rows, cols) - 1 == 1 for two rows
    return float(chi2), float(p), float(v)


class ColumnDrift(_Frozen):
    """The verdict on one column (a feature or the prediction)."""

    column: str
    kind: Literal["numeric", "categorical"]
    rows: int
    psi: float | None = None
    test: Literal["ks", "chi2"] | None = None
    statistic: float | None = None
    """KS statistic (numeric) or Cramér's V (categorical)."""
    p_value: float | None = None
    missing_rate: float
    reference_missing_rate: float
    new_category_rate: float | None = None
    drifted: bool = False
    flagged: bool = False
    reasons: list[str] = []
    reference_shares: list[float] = []
    current_shares: list[float] = []
    labels: list[str] = []
    """Bin or category names of the shares (for the report's plots)."""


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return (counts / total).tolist() if total else [0.0] * len(counts)


def _bin_labels(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    e = [f"{x:.4g}" for x in edges]
    return [f"<= {e[0]}", *(f"({a}, {b}]" for a, b in pairwise(e)), f"> {e[-1]}"]


def compare(column: str, profile: Profile, counts: ColumnCounts, *, psi_threshold: float,
            p_value: float, min_effect: float, max_missing_increase: float,
            max_new_category_rate: float, min_rows: int) -> ColumnDrift:
    """Compare a window's counts with the reference profile and decide whether to flag it.

    A column drifts when PSI reaches ``psi_threshold`` or when the test is significant at
    ``p_value`` with an effect (KS statistic, Cramér's V) of at least ``min_effect``. It is
    flagged when it drifts, when its missing-value rate rose by more than
    ``max_missing_increase``, or when more than ``max_new_category_rate`` of its values were
    never seen in training. A window under ``min_rows`` rows flags nothing.
    """
    missing_rate = counts.missing / counts.rows if counts.rows else 0.0
    ref_missing = profile.missing / profile.rows if profile.rows else 0.0
    reasons: list[str] = []
    fields: dict[str, Any] = {}
    drifted = False
    if isinstance(profile, NumericProfile):
        ref_bins = np.asarray(profile.bin_counts, dtype="float64")
        cur_bins = np.asarray(counts.bin_counts or [0] * len(ref_bins), dtype="float64")
        score = psi(ref_bins, cur_bins)
        stat, p = ks_from_counts(profile, counts.ks_slots or [0])
        fields = {"kind": "numeric", "psi": score, "test": "ks", "statistic": stat,
                  "p_value": p, "reference_shares": _shares(ref_bins),
                  "current_shares": _shares(cur_bins), "labels": _bin_labels(profile.edges)}
        significant = math.isfinite(p) and p < p_value and stat >= min_effect
        test_name = "KS"
    else:
        cur = dict(counts.categories)
        present = sum(cur.values())
        unseen = cur.pop("__unseen__", 0) + sum(v for k, v in cur.items()
                                                 if k not in profile.counts)
        new_rate = unseen / present if present and not profile.high_cardinality else 0.0
        fields = {"kind": "categorical", "new_category_rate": new_rate}
        significant = False
        score = float("nan")
        if not profile.high_cardinality:
            keys = sorted(profile.counts, key=lambda k: -profile.counts[k])
            new_keys = sorted(k for k in cur if k not in profile.counts)
            ref_vec = np.array([profile.counts[k] for k in keys] + [0] * bool(new_keys),
                               dtype="float64")
            cur_vec = np.array([cur.get(k, 0) for k in keys]
                               + ([sum(cur[k] for k in new_keys)] if new_keys else []),
                               dtype="float64")
            score = psi(ref_vec, cur_vec)
            _, p, v = _chi_square(profile.counts, cur)
            fields |= {"psi": score, "test": "chi2", "statistic": v, "p_value": p,
                       "reference_shares": _shares(ref_vec), "current_shares": _shares(cur_vec),
                       "labels": keys + (["(new)"] if new_keys else [])}
            significant = p < p_value and v >= min_effect
        test_name = "chi-square"
        if counts.rows >= min_rows and new_rate > max_new_category_rate:
            reasons.append(f"new-category rate {new_rate:.3f} > {max_new_category_rate}")
    if counts.rows >= min_rows:
        if math.isfinite(score) and score >= psi_threshold:
            drifted = True
            reasons.append(f"PSI {score:.3f} >= {psi_threshold}")
        if significant:
            drifted = True
            reasons.append(f"{test_name} p={fields['p_value']:.2g} < {p_value} with effect "
                           f"{fields['statistic']:.3f} >= {min_effect}")
        if missing_rate - ref_missing > max_missing_increase:
            reasons.append(f"missing rate {missing_rate:.3f} vs {ref_missing:.3f} in training")
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in fields.items()}
    return ColumnDrift(column=column, rows=counts.rows, missing_rate=missing_rate,
                       reference_missing_rate=ref_missing, drifted=drifted,
                       flagged=bool(reasons), reasons=reasons, **clean)
