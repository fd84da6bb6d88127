"""The monitoring report: one self-contained HTML page (plots inlined) next to the JSON summary."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

from pipelines.monitoring.drift import ColumnDrift
from pipelines.storage.location import StoragePath

__all__ = ["write_report"]

_MAX_BARS = 30  # categories beyond this are left off the plot (the JSON keeps them)


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _distribution_plot(d: ColumnDrift) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    labels = d.labels[:_MAX_BARS]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.bar(x - 0.2, d.reference_shares[:_MAX_BARS], 0.4, label="reference (training)")
    ax.bar(x + 0.2, d.current_shares[:_MAX_BARS], 0.4, label="current window")
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("share of rows")
    ax.set_title(d.column + ("  (flagged)" if d.flagged else ""), fontsize=9,
                 color="crimson" if d.flagged else "black")
    ax.legend(fontsize=7)
    return _png(fig)


def _scores_plot(drifts: list[ColumnDrift], psi_threshold: float) -> str:
    import matplotlib.pyplot as plt

    names = [d.column for d in drifts]
    scores = [d.psi if d.psi is not None else 0.0 for d in drifts]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1))
    ax.barh(names, scores, color=["crimson" if d.flagged else "steelblue" for d in drifts])
    ax.axvline(psi_threshold, color="black", linestyle="--", linewidth=1,
               label=f"threshold {psi_threshold}")
    ax.set_xlabel("PSI")
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    return _png(fig)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.4g}"
    return html.escape(str(v))


def _not_logged(summary: dict[str, Any]) -> str:
    names = summary.get("not_logged") or []
    if not names:
        return ""
    return ("<p>Not in the window, so not checked for drift (kept out of the request log by "
            "<code>monitor.request_log</code>?): "
            f"{html.escape(', '.join(names))}</p>")


def write_report(summary: dict[str, Any], drifts: list[ColumnDrift], path: StoragePath) -> StoragePath:
    """Write the HTML report of one monitoring run to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and in Ray workers
    psi_threshold = summary["thresholds"]["psi_threshold"]
    rows = "".join(
        f"<tr class={'flag' if d.flagged else 'ok'}><td>{html.escape(d.column)}</td>"
        f"<td>{d.kind}</td><td>{_fmt(d.psi)}</td><td>{_fmt(d.test)}</td>"
        f"<td>{_fmt(d.statistic)}</td><td>{_fmt(d.p_value)}</td><td>{_fmt(d.missing_rate)}"
        f" ({_fmt(d.reference_missing_rate)})</td><td>{_fmt(d.new_category_rate)}</td>"
        f"<td>{html.escape('; '.join(d.reasons)) or 'ok'}</td></tr>"
        for d in drifts
    )
    quality = summary.get("quality")
    quality_html = ""
    if quality:
        qrows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td>"
            f"<td>{_fmt(quality['training'].get(k))}</td></tr>"
            for k, v in quality["live"].items() if "_class_" not in k
        )
        quality_html = (
            f"<h2>Live quality ({quality['rows']} labelled rows)</h2>"
            f"<p>{html.escape(quality['verdict'])}</p>"
            f"<table><tr><th>metric</th><th>live</th><th>training (test split)</th></tr>"
            f"{qrows}</table>")
    plots = "".join(f"<img src='data:image/png;base64,{_distribution_plot(d)}'>"
                    for d in drifts if d.labels)
    verdict = ("THRESHOLD CROSSED: " + html.escape("; ".join(summary["alerts"]))
               if summary["flagged"] else "no threshold crossed")
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>raypipe monitor: {html.escape(summary['model']['name'])}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}} tr.flag{{background:#fdd}}
img{{margin:4px}} .verdict{{font-weight:bold;color:{'crimson' if summary['flagged'] else 'green'}}}
</style></head><body>
<h1>Monitoring report: {html.escape(summary['model']['name'])} version
{html.escape(str(summary['model']['version']))}</h1>
<p>window <code>{html.escape(summary['window']['path'])}</code>: {summary['window']['rows']} rows
(since {_fmt(summary['window']['since'])}, until {_fmt(summary['window']['until'])});
reference: {summary['reference_rows']} training rows; created {summary['created_at']}</p>
<p class="verdict">{verdict}</p>
{_not_logged(summary)}
<h2>Drift scores</h2><img src='data:image/png;base64,{_scores_plot(drifts, psi_threshold)}'>
<table><tr><th>column</th><th>kind</th><th>PSI</th><th>test</th><th>statistic</th>
<th>p-value</th><th>missing (training)</th><th>new categories</th><th>verdict</th></tr>{rows}</table>
{quality_html}
<h2>Distributions: reference vs current</h2>{plots}
</body></html>"""
    path.write_text(page)
    return path
