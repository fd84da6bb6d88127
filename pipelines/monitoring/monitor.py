"""`raypipe monitor`: compare a window of served (or batch) predictions with the model's
training reference, report, and act when a threshold is crossed.

The model URI alone finds everything: the registered version names its training run, which
holds the reference (:mod:`pipelines.monitoring.reference`) and the test metrics. The result is
a JSON summary and an HTML report in ``<monitor_dir>/<timestamp>/``, both also logged to a
monitoring run in the pipeline's MLflow experiment. The caller (CLI or ``ray_jobs``) starts Ray.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines.config import MonitorConfig, PipelineConfig
from pipelines.monitoring.drift import ColumnDrift, compare
from pipelines.storage.location import StoragePath, storage_path

__all__ = ["MonitorOptions", "MonitorResult", "monitor", "quality_verdict"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorOptions:
    """One monitoring run: the window and what else the command line said."""

    window: str
    """Request logs folder or batch inference output (Parquet), or CSV / JSON Lines."""
    model_uri: str | None = None
    """Default: ``models:/<name>@<alias>`` of the config."""
    window_format: str | None = None
    since: str | None = None
    until: str | None = None
    labels: str | None = None
    """Late labels: a table with ``monitor.id_column`` and the target column."""
    labels_format: str | None = None
    config_path: str | None = None
    """The pipeline YAML, for the retraining job (default: the bundled demo's path)."""
    overrides: list[str] = field(default_factory=list)


@dataclass
class MonitorResult:
    summary: dict[str, Any]
    report_path: StoragePath
    summary_path: StoragePath

    @property
    def flagged(self) -> bool:
        return bool(self.summary["flagged"])


def quality_verdict(live: dict[str, float], training: dict[str, float], metric: str,
                    max_drop: float) -> tuple[bool, str]:
    """(flagged, sentence): is the live gate metric worse than training by more than allowed?"""
    from pipelines.stages.gate import higher_is_better

    now, then = live.get(metric), training.get(metric)
    if now is None or then is None or not (math.isfinite(now) and math.isfinite(then)):
        return False, f"{metric}: not available (live {now}, training {then})"
    drop = (then - now) if higher_is_better(metric) else (now - then)
    flagged = drop > max_drop
    word = "worse" if drop > 0 else "better"
    return flagged, (f"live {metric} {now:.4f} vs {then:.4f} on the test split: "
                     f"{abs(drop):.4f} {word}" + (f" (more than {max_drop})" if flagged else ""))


def _thresholds(m: MonitorConfig) -> dict[str, Any]:
    return {k: getattr(m, k) for k in ("psi_threshold", "p_value", "min_effect",
                                       "max_missing_increase", "max_new_category_rate",
                                       "max_quality_drop", "min_rows")}


def _compare_all(reference: Any, counts: Any, m: MonitorConfig) -> tuple[list[ColumnDrift],
                                                                         ColumnDrift]:
    kw = {k: v for k, v in _thresholds(m).items() if k != "max_quality_drop"}
    features = [compare(c, p, counts.features[c], **kw) for c, p in reference.features.items()
                if c in counts.features]
    prediction = compare(f"prediction ({reference.prediction_column})", reference.prediction,
                         counts.prediction, **kw)
    return features, prediction


def _mlflow_metrics(features: list[ColumnDrift], prediction: ColumnDrift,
                    summary: dict[str, Any]) -> dict[str, float]:
    import re

    out: dict[str, float] = {"window_rows": float(summary["window"]["rows"]),
                             "features_flagged": float(len(summary["flagged_features"]))}
    for d in [*features, prediction]:
        key = re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", "prediction" if d is prediction else d.column)
        for name in ("psi", "statistic", "p_value", "missing_rate", "new_category_rate"):
            v = getattr(d, name)
            if isinstance(v, float) and math.isfinite(v):
                out[f"{name}.{key}"] = v
    quality = summary.get("quality")
    if quality:
        out |= {f"live_{k}": v for k, v in quality["live"].items()
                if isinstance(v, float) and math.isfinite(v)}
    return out


def monitor(cfg: PipelineConfig, opts: MonitorOptions) -> MonitorResult:
    """Run one monitoring pass; see the module docstring. Raises on unusable input, never
    because a threshold was crossed (``result.flagged`` says that)."""
    import mlflow

    from pipelines import tracking
    from pipelines.model.engine import resolve_model
    from pipelines.monitoring.alerts import post_webhook, submit_retraining
    from pipelines.monitoring.reference import load_reference
    from pipelines.monitoring.report import write_report
    from pipelines.monitoring.window import count_window, filter_time, live_quality, read_table
    from pipelines.stages.gate import default_gate_metric

    m = cfg.monitor
    model_uri = opts.model_uri or cfg.model_uri
    created = datetime.now(UTC)
    with tracking.tracking_scope(cfg):
        ref = resolve_model(model_uri)
        if not ref.run_id:
            raise ValueError(f"{model_uri} names no training run; give a registered model "
                             "(models:/NAME@alias or models:/NAME/VERSION)")
        reference, run_metrics = load_reference(ref.run_id)
        window = read_table(opts.window, opts.window_format)
        counts = count_window(window, reference, since=opts.since, until=opts.until,
                              origin=opts.window)
        features, prediction = _compare_all(reference, counts, m)
        flagged_features = [d.column for d in features if d.flagged]
        alerts = [f"{d.column}: {'; '.join(d.reasons)}" for d in features if d.flagged]
        if prediction.flagged:
            alerts.append(f"{prediction.column}: {'; '.join(prediction.reasons)}")
        summary: dict[str, Any] = {
            "created_at": created.isoformat(),
            "model": {"uri": model_uri, "name": ref.name, "version": ref.version,
                      "run_id": ref.run_id},
            "window": {"path": opts.window, "rows": counts.rows, "since": opts.since,
                       "until": opts.until},
            "reference_rows": reference.rows,
            "thresholds": _thresholds(m),
            "features": [d.model_dump(exclude={"labels", "reference_shares", "current_shares"})
                         for d in features],
            "prediction": prediction.model_dump(exclude={"labels", "reference_shares",
                                                         "current_shares"}),
            "flagged_features": flagged_features,
            "not_logged": counts.not_logged,
            "quality": None,
        }
        if counts.rows < m.min_rows:
            logger.warning("window %s holds %d rows (< monitor.min_rows %d): nothing flagged",
                           opts.window, counts.rows, m.min_rows)
        if opts.labels:
            if opts.since or opts.until:
                window = filter_time(window, opts.since, opts.until)
            live, labelled = live_quality(
                window, read_table(opts.labels, opts.labels_format), id_column=m.id_column,
                reference=reference, classes=reference.classes)
            training = {k.removeprefix("test_"): v for k, v in run_metrics.items()
                        if k.startswith("test_")}
            metric = cfg.evaluate.gate.metric or default_gate_metric(reference.task)
            q_flag, verdict = quality_verdict(live, training, metric, m.max_quality_drop)
            q_flag = q_flag and labelled >= m.min_rows
            summary["quality"] = {"rows": labelled, "metric": metric, "flagged": q_flag,
                                  "verdict": verdict, "live": live,
                                  "training": {k: training[k] for k in live if k in training}}
            if q_flag:
                alerts.append(f"quality: {verdict}")
        summary["alerts"] = alerts
        summary["flagged"] = bool(alerts)

        out = storage_path(cfg.monitor_dir) / created.strftime("%Y%m%d-%H%M%S")
        drifts = [*features, prediction]
        if summary["flagged"] and m.webhook_url:
            summary["webhook"] = post_webhook(m.webhook_url, summary)
        if summary["flagged"] and m.retrain.enabled:
            config_path = opts.config_path or "pipelines/configs/demo.yaml"
            summary["retrain_job"] = submit_retraining(
                config_path, opts.overrides, m.retrain,
                metadata={"raypipe.trigger": "monitor", "raypipe.model_version": ref.version})
        report = write_report(summary, drifts, out / "report.html")
        summary_path = out / "summary.json"
        summary_path.write_text(json.dumps(summary, indent=2, default=str))
        with mlflow.start_run(run_name=f"monitor-v{ref.version}-{out.name}") as run:
            mlflow.set_tags({"raypipe.kind": "monitor", "raypipe.pipeline": cfg.name,
                             "raypipe.model_version": ref.version,
                             "raypipe.training_run": ref.run_id or "",
                             "raypipe.monitor.flagged": str(summary["flagged"]).lower()})
            mlflow.log_metrics(_mlflow_metrics(features, prediction, summary))
            tracking.log_artifact(report, "monitoring")
            tracking.log_artifact(summary_path, "monitoring")
            summary["mlflow_run_id"] = run.info.run_id
        summary_path.write_text(json.dumps(summary, indent=2, default=str))
    logger.info("monitor: %d rows, %d feature(s) flagged, report %s", counts.rows,
                len(flagged_features), report)
    return MonitorResult(summary=summary, report_path=report, summary_path=summary_path)
