"""The data-quality report: validation counts and the input's profile, as JSON and HTML.

:func:`validate_and_report` is the runner's validate stage in one call: it validates, writes
the quarantine, the report and the training profile, logs them to the active MLflow run, and
only then enforces the quarantine threshold, so a failed run still shows why.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from pipelines.config import PipelineConfig, ProfileConfig
from pipelines.profile import (
    ColumnProfile,
    DataProfile,
    View,
    profile_dataset,
    profile_views,
    select_columns,
)
from pipelines.stages.validate import (
    QUARANTINE_COLUMNS,
    ValidationResult,
    check_threshold,
    passed_rows,
    validate,
)
from pipelines.storage.location import StoragePath, Where, storage_path

if TYPE_CHECKING:
    from ray.data import Dataset

__all__ = [
    "PROFILE_ARTIFACT",
    "ProfileFiles",
    "QualityReport",
    "ReasonRow",
    "ValidationSummary",
    "build_report",
    "profile_to_files",
    "render_html",
    "validate_and_report",
    "write_report",
]

logger = logging.getLogger(__name__)

PROFILE_ARTIFACT = "data_profile/training_profile.json"
"""Where the run keeps the profile of the rows the model learnt from (for drift monitoring);
the registered model version points at this run, so the profile is found from the model."""
REPORT_DIR = "quality"


class ReasonRow(BaseModel):
    column: str
    rule: str
    rows: int


class ValidationSummary(BaseModel):
    rows_in: int
    rows_passed: int
    rows_quarantined: int
    quarantined_fraction: float
    max_quarantine_fraction: float
    passed_threshold: bool
    reasons: list[ReasonRow] = Field(default_factory=list)


class QualityReport(BaseModel):
    """What the data looked like and what the contract made of it."""

    source: str
    validation: ValidationSummary | None = None
    profile: DataProfile


def build_report(source: str, profile: DataProfile, result: ValidationResult | None = None,
                 max_quarantine_fraction: float = 1.0) -> QualityReport:
    summary = None
    if result is not None:
        summary = ValidationSummary(
            rows_in=result.rows_in, rows_passed=result.rows_valid,
            rows_quarantined=result.rows_quarantined,
            quarantined_fraction=result.quarantined_fraction,
            max_quarantine_fraction=max_quarantine_fraction,
            passed_threshold=result.quarantined_fraction <= max_quarantine_fraction,
            reasons=[ReasonRow(column=r.column, rule=r.rule, rows=r.rows) for r in result.reasons],
        )
    return QualityReport(source=source, validation=summary, profile=profile)


# --------------------------------------------------------------------------- HTML


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}.bad{color:#b00020}.ok{color:#1b5e20}"""


def _num(x: float | str | None) -> str:
    if x is None:
        return ""
    if isinstance(x, str):
        return html.escape(x)
    return f"{x:.4g}"


def _column_row(c: ColumnProfile) -> str:
    q = c.quantiles or {}
    top = ", ".join(f"{html.escape(t.value)!s} ({t.count})" for t in c.top_values[:5])
    distinct = f"{c.distinct}" if c.distinct_exact else f"≈{c.distinct}"
    cells = [f'<td class="l">{html.escape(c.name)}</td>', f'<td class="l">{c.kind}</td>',
             f"<td>{c.count}</td>", f"<td>{c.nulls} ({c.null_fraction:.1%})</td>",
             f"<td>{distinct}</td>", f"<td>{_num(c.min)}</td>", f"<td>{_num(c.mean)}</td>",
             f"<td>{_num(c.std)}</td>",
             *(f"<td>{_num(q.get(k))}</td>" for k in ("p05", "p25", "p50", "p75", "p95")),
             f"<td>{_num(c.max)}</td>", f'<td class="l">{top}</td>']
    return "<tr>" + "".join(cells) + "</tr>"


def render_html(report: QualityReport) -> str:
    """A self-contained HTML page: validation counts, reasons, anomalies, per-column table."""
    p = report.profile
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Data quality: "
             f"{html.escape(report.source)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Data quality report</h1><p>Source: <code>{html.escape(report.source)}</code>, "
             f"{p.rows} rows, {len(p.columns)} columns.</p>"]
    v = report.validation
    if v is not None:
        verdict = ('<span class="ok">within</span>' if v.passed_threshold
                   else '<span class="bad">above</span>')
        parts.append(
            f"<h2>Data contract</h2><p>{v.rows_in} rows in = {v.rows_passed} passed + "
            f"{v.rows_quarantined} quarantined ({v.quarantined_fraction:.2%}, {verdict} the "
            f"threshold of {v.max_quarantine_fraction:.2%}).</p>")
        if v.reasons:
            rows = "".join(f'<tr><td class="l">{html.escape(r.column)}</td><td class="l">'
                           f"{html.escape(r.rule)}</td><td>{r.rows}</td></tr>" for r in v.reasons)
            parts.append('<table><tr><th class="l">column</th><th class="l">rule</th>'
                         f"<th>rows quarantined</th></tr>{rows}</table>")
    parts.append(f"<h2>Anomalies ({len(p.anomalies)})</h2>")
    if p.anomalies:
        parts.append("<ul>" + "".join(f"<li><b>{a.kind}</b>: {html.escape(a.message)}</li>"
                                      for a in p.anomalies) + "</ul>")
    else:
        parts.append("<p>None found.</p>")
    head = "".join(f"<th>{h}</th>" for h in ("rows", "missing", "distinct", "min", "mean", "std",
                                              "p05", "p25", "p50", "p75", "p95", "max"))
    parts.append(f'<h2>Columns</h2><table><tr><th class="l">column</th><th class="l">type</th>'
                 f'{head}<th class="l">top values</th></tr>'
                 + "".join(_column_row(c) for c in p.columns.values()) + "</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: QualityReport, directory: Where) -> tuple[StoragePath, StoragePath]:
    """Write ``quality_report.json`` and ``quality_report.html`` into ``directory``."""
    folder = storage_path(directory)
    json_path, html_path = folder / "quality_report.json", folder / "quality_report.html"
    json_path.write_text(report.model_dump_json(indent=2))
    html_path.write_text(render_html(report))
    return json_path, html_path


# --------------------------------------------------------------------------- runner glue


def _source_label(cfg: PipelineConfig) -> str:
    # kind and path only: other source fields may hold connection strings with secrets
    path = getattr(cfg.source, "path", None)
    return f"{cfg.source.kind}: {path}" if path else cfg.source.kind


def validate_and_report(raw: Dataset, cfg: PipelineConfig, quarantine_path: Where,
                        report_dir: Where) -> ValidationResult:
    """Validate ``raw``, keep every quarantined row, report, log to MLflow, then enforce.

    Logged to the active MLflow run: metrics ``rows_in``, ``rows_passed``,
    ``rows_quarantined``, ``quarantined_fraction``; artifacts ``quality/quality_report.{json,
    html}`` (profile of the input) and :data:`PROFILE_ARTIFACT` (profile of the rows that
    passed, the model's training data, for drift monitoring).

    Raises:
        ContractError: after everything is written, when the quarantined share is above
            ``schema.max_quarantine_fraction``.
    """
    import mlflow

    schema = cfg.schema_
    report_dir = storage_path(report_dir)
    result = validate(raw, schema, cfg.target, enforce=False)
    if result.rows_quarantined:
        result.quarantined.write_parquet(str(quarantine_path))
        logger.info("%d quarantined rows written to %s", result.rows_quarantined, quarantine_path)
    mlflow.log_metrics({"rows_in": result.rows_in, "rows_passed": result.rows_valid,
                        "rows_quarantined": result.rows_quarantined,
                        "quarantined_fraction": result.quarantined_fraction})
    if schema.profile.enabled and result.rows_in:
        if result.checked is None:
            raise RuntimeError("validate() returned no checked rows to profile")
        # The checked rows are the input as read, already in the object store: profiling
        # them spares a second read of the source (a second round of API calls for http).
        # The input and the rows that passed (the training data) are two views of the same
        # blocks, profiled in one pass.
        columns = [c for c in raw.columns() or [] if c not in QUARANTINE_COLUMNS]
        views: dict[str, View] = {"input": partial(select_columns, columns=columns)}
        if result.rows_valid:
            views["passed"] = partial(passed_rows, schema=schema)
        profiles = profile_views(result.checked, views, schema.profile)
        report = build_report(_source_label(cfg), profiles["input"], result,
                              schema.max_quarantine_fraction)
        write_report(report, report_dir)
        if report.profile.anomalies:
            logger.warning("data quality: %d anomalies, e.g. %s", len(report.profile.anomalies),
                           report.profile.anomalies[0].message)
        if "passed" in profiles:
            (report_dir / Path(PROFILE_ARTIFACT).name).write_text(
                profiles["passed"].model_dump_json(indent=2))
        log_quality_files(report_dir)
    check_threshold(result, schema)
    # The runner keeps the result for the whole run: let go of the checked copy of the input.
    return replace(result, checked=None)


def log_quality_files(report_dir: Where) -> None:
    """Log the quality report and the training profile written to ``report_dir`` to the run.

    Kept apart from their computation so that a run which reuses a cached validation stage
    logs the same artifacts as the run that computed them.
    """
    import mlflow

    from pipelines.tracking import log_artifact

    report_dir = storage_path(report_dir)
    for name in ("quality_report.json", "quality_report.html"):
        if (report_dir / name).is_file():
            log_artifact(report_dir / name, REPORT_DIR)
    profile = report_dir / Path(PROFILE_ARTIFACT).name
    if profile.is_file():
        log_artifact(profile, str(Path(PROFILE_ARTIFACT).parent))
        mlflow.set_tag("raypipe.training_profile", PROFILE_ARTIFACT)


@dataclass(frozen=True)
class ProfileFiles:
    """What :func:`profile_to_files` wrote."""

    profile: DataProfile
    unique_key: list[str]
    contract_path: Path
    json_path: StoragePath
    html_path: StoragePath


def profile_to_files(ds: Dataset, settings: ProfileConfig, source: str, directory: Path) -> ProfileFiles:
    """``raypipe profile``: profile ``ds``, infer a contract, write it and the quality report."""
    from pipelines.contract import contract_yaml, find_unique_key, infer_contract

    profile = profile_dataset(ds, settings)
    key, repeats = find_unique_key(ds, profile)
    schema = infer_contract(profile, settings, key)
    directory.mkdir(parents=True, exist_ok=True)
    contract_path = directory / "contract.yaml"
    contract_path.write_text(contract_yaml(schema, profile, source, repeats))
    json_path, html_path = write_report(build_report(source, profile), directory)
    return ProfileFiles(profile, key, contract_path, json_path, html_path)
