"""The ``clean`` and ``features`` sections: what the fitted feature pipeline does."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipelines.config.base import _Section
from pipelines.expressions import MAX_EXPRESSION_CHARS, check_syntax

__all__ = ["BinFeature", "CleanConfig", "ColumnImpute", "DerivedFeature", "FeaturesConfig",
           "RatioFeature", "SelectionConfig"]


NumericImpute = Literal["median", "mean", "most_frequent", "constant", "drop_row"]
CategoricalImpute = Literal["most_frequent", "constant", "drop_row"]


class ColumnImpute(_Section):
    """How one column's missing values are filled (overrides the per-type default)."""

    strategy: Literal["median", "mean", "most_frequent", "constant", "drop_row"]
    value: float | str | None = Field(
        None, description="constant: the fill value (a number for numeric columns, text for "
        "categorical ones). Default: fill_value_numeric / fill_value_categorical.",
    )

    @model_validator(mode="after")
    def _check_value(self) -> ColumnImpute:
        if self.value is not None and self.strategy != "constant":
            raise ValueError(f"value only applies to strategy 'constant', not {self.strategy!r}")
        return self


class CleanConfig(_Section):
    """Row and value cleaning; every statistic is fitted on the training split only.

    ``drop_row`` drops training rows with a missing value in that column; rows met at
    inference (valid/test splits, batch, online) are never dropped: they are filled with the
    column's median (numeric) or most frequent value (categorical) of the training split, so
    every row still gets a prediction.
    """

    impute_numeric: NumericImpute = Field(
        "median", description="Default for numeric columns: median | mean | most_frequent | "
        "constant | drop_row (training rows only; see the class doc).",
    )
    impute_categorical: CategoricalImpute = Field(
        "most_frequent", description="Default for categorical columns: most_frequent | constant "
        "| drop_row.",
    )
    impute_columns: dict[str, ColumnImpute] = Field(
        default_factory=dict, description="Per-column strategies that override the type default.",
    )
    fill_value_numeric: float = 0.0
    fill_value_categorical: str = "__missing__"
    missing_indicators: bool | list[str] = Field(
        False, description="Add a 0/1 column `<name>_missing` per column: true for every "
        "numeric or categorical column that had a missing value in the training split, or a "
        "list of columns.",
    )
    outliers: Literal["iqr", "zscore", "none"] = Field(
        "iqr", description="Outlier bounds fitted on train: iqr [q1 - k*IQR, q3 + k*IQR] "
        "(k = iqr_factor) or zscore [mean - z*std, mean + z*std] (z = zscore_threshold).",
    )
    iqr_factor: float = Field(3.0, gt=0, description="k of the IQR bounds.")
    zscore_threshold: float = Field(4.0, gt=0, description="z of the z-score bounds.")
    outlier_action: Literal["clip", "quarantine"] = Field(
        "clip", description="clip: values outside the bounds are clipped to them. quarantine: "
        "training rows outside the bounds go to the quarantine data set with the column and "
        "reason (counted); at inference values are still clipped, so every row is answered.",
    )
    outlier_columns: list[str] | None = Field(
        None, description="Numeric columns that get outlier bounds. Default: all of them.",
    )
    normalize_categories: bool = Field(True, description="Trim and lower-case category values.")
    synonyms: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="Per categorical column, a mapping of spelling "
        "variants to the canonical value, applied after trimming / lower-casing "
        "(e.g. {country: {uk: gb, united kingdom: gb}}).",
    )
    coerce: dict[str, Literal["float", "string", "bool", "datetime"]] = Field(
        default_factory=dict, description="Force a column's type instead of the one read from "
        "the data: numbers stored as text become float (unparseable values become missing), "
        "numeric codes become categories (string), text dates become datetime.",
    )
    dedupe: bool = Field(True, description="Drop duplicate rows from the training split.")
    dedupe_key: list[str] | None = Field(
        None, description="Rows with equal values in these columns are duplicates (one is kept, "
        "the same one whatever the block order). Default: all columns.",
    )

    @model_validator(mode="after")
    def _check_strategies(self) -> CleanConfig:
        overlap = set(self.synonyms) & {c for c, k in self.coerce.items() if k != "string"}
        if overlap:
            raise ValueError(f"synonyms apply to categorical columns, but coerce makes "
                             f"{sorted(overlap)} non-categorical")
        return self


class RatioFeature(_Section):
    """A derived column ``name = numerator / denominator`` (0 denominators give missing)."""

    name: str
    numerator: str
    denominator: str


class DerivedFeature(_Section):
    """A derived column computed from a safe expression over numeric columns.

    The expression language: numbers, column names, ``+ - * / // % **``, comparisons
    (1.0 / 0.0), ``and or not``, ``x if cond else y`` and the functions ``abs log log1p exp
    sqrt floor ceil round min max clip where isnan``. Columns are the cleaned (imputed,
    clipped) numeric and boolean columns, other features (ratios, datetime parts, ordinal
    codes) and earlier derived features; a division by zero gives a missing value. Anything else (an
    attribute, a subscript, a call of another name) is refused with an error naming the
    feature; nothing is ever passed to ``eval``.
    """

    name: str = Field(min_length=1)
    expr: str = Field(
        min_length=1, description=f"The expression; at most {MAX_EXPRESSION_CHARS:,} characters "
        "(see pipelines.expressions for the depth and size limits). Checked when the config "
        "loads; its columns are checked when the features are fitted.",
    )

    @field_validator("expr")
    @classmethod
    def _check_expr(cls, v: str, info: ValidationInfo) -> str:
        # Here, not at fit time: a bad expression fails before Ray starts.
        check_syntax(str(info.data.get("name", "?")), v)
        return v


class BinFeature(_Section):
    """A binned copy ``<column>_bin`` of a numeric column: the bin index 0..n-1."""

    column: str
    method: Literal["quantile", "fixed"] = Field(
        "quantile", description="quantile: n_bins bins of equal training counts; fixed: edges.",
    )
    n_bins: int = Field(4, ge=2, le=1000)
    edges: list[float] | None = Field(
        None, description="fixed: the inner bin edges, ascending (k edges give k+1 bins).",
    )

    @model_validator(mode="after")
    def _check_edges(self) -> BinFeature:
        if self.method == "fixed":
            if not self.edges:
                raise ValueError("method 'fixed' needs edges")
            if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
                raise ValueError("edges must be strictly ascending")
        elif self.edges is not None:
            raise ValueError("edges only apply to method 'fixed'")
        return self


class SelectionConfig(_Section):
    """Feature selection, fitted on the training split and frozen into the pipeline."""

    method: Literal["none", "variance", "correlation", "importance"] = Field(
        "none", description="variance: drop features whose training variance is at most "
        "variance_threshold; correlation: of each pair with |r| above correlation_threshold "
        "drop the later one; importance: keep the top_k features by XGBoost gain on a sample "
        "of the training split.",
    )
    variance_threshold: float = Field(0.0, ge=0)
    correlation_threshold: float = Field(0.95, gt=0, le=1)
    top_k: int = Field(20, ge=1)
    sample_rows: int = Field(
        100_000, ge=100, description="importance: training rows the ranking model is fitted on.",
    )


DatetimePart = Literal["year", "quarter", "month", "day", "dayofweek", "dayofyear", "hour",
                       "minute", "is_weekend"]
Encoding = Literal["ordinal", "onehot", "hashed"]


def _default_datetime_parts() -> list[DatetimePart]:
    return ["month", "dayofweek", "hour"]


class FeaturesConfig(_Section):
    """Feature engineering applied after cleaning."""

    categorical_encoding: Encoding = Field(
        "ordinal", description="ordinal: one code per category; onehot: one 0/1 column per "
        "category (+ one for others); hashed: one 0/1 column per hash bucket (no vocabulary, "
        "for high cardinality).",
    )
    encoding_columns: dict[str, Encoding] = Field(
        default_factory=dict, description="Per-column encodings that override the default.",
    )
    max_categories: int = Field(
        50, ge=1, description="Keep the most frequent categories; rarer ones share one code."
    )
    hash_buckets: int = Field(16, ge=2, le=4096, description="hashed: buckets per column.")
    datetime_parts: list[DatetimePart] = Field(default_factory=_default_datetime_parts)
    ratios: list[RatioFeature] = Field(default_factory=list)
    derived: list[DerivedFeature] = Field(
        default_factory=list, description="Columns computed from safe expressions, in order.",
    )
    bins: list[BinFeature] = Field(default_factory=list)
    scaling: Literal["none", "standard", "minmax"] = Field(
        "none", description="Scale every feature with training statistics (standard: "
        "(x - mean) / std; minmax: into [0, 1]). The mlp and linear families standardise "
        "inside the model when this is none, and skip their own scaling when it is set.",
    )
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    drop: list[str] = Field(default_factory=list, description="Columns never used as features.")

    @model_validator(mode="after")
    def _check_names(self) -> FeaturesConfig:
        names = [r.name for r in self.ratios] + [d.name for d in self.derived]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"feature name(s) used twice: {', '.join(twice)}")
        return self
