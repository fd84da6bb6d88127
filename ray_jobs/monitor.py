"""Drift and quality monitoring as a Ray job: compare a window with the model's training reference.

    ray job submit --working-dir . -- python ray_jobs/monitor.py CONFIG.yaml \
        --window s3://bucket/request_logs/churn/ [--labels s3://bucket/labels/] \
        [--since 2026-11-01T00:00] [--set monitor.retrain.enabled=true]

Exit code 0: nothing crossed a threshold; 3: something did (the report says what); 1/2: errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipelines.job_args import add_set_argument, job_config, job_model_uri

logger = logging.getLogger("ray_jobs.monitor")
FLAGGED = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="pipeline YAML (default: the bundled demo)")
    parser.add_argument("--window", help="request logs or batch predictions (default: the "
                        "config's request log folder)")
    parser.add_argument("--model", help="model URI (default: models:/<name>@<alias>)")
    parser.add_argument("--labels", help="late labels keyed by monitor.id_column")
    parser.add_argument("--since", help="only requests at or after this time (ISO, UTC)")
    parser.add_argument("--until", help="only requests before this time (ISO, UTC)")
    add_set_argument(parser)
    args = parser.parse_args(argv)
    cfg = job_config(args)
    model = job_model_uri(args.model, cfg) if cfg is not None else None
    if cfg is None or model is None:
        return 2

    import ray

    from pipelines.monitoring import MonitorOptions, monitor

    if not ray.is_initialized():
        ray.init(address=cfg.runtime.ray_address)
    result = monitor(cfg, MonitorOptions(
        window=args.window or cfg.request_log_path, model_uri=model, labels=args.labels,
        since=args.since, until=args.until, config_path=args.config, overrides=args.overrides))
    print(json.dumps({"flagged": result.flagged, "alerts": result.summary["alerts"],
                      "report": str(result.report_path)}))  # the job's result, one JSON line
    return FLAGGED if result.flagged else 0


if __name__ == "__main__":
    sys.exit(main())
