"""Run the whole training pipeline as a Ray job.

    ray job submit --working-dir . -- python ray_jobs/run_pipeline.py CONFIG.yaml \
        --set runtime.storage_path=s3://bucket/ray_results
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict

from pipelines.job_args import add_set_argument, job_config

logger = logging.getLogger("ray_jobs.run_pipeline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="pipeline YAML (default: the bundled demo)")
    add_set_argument(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run (finished stages, sweep, MLflow run)")
    parser.add_argument("--from", dest="from_stage", metavar="STAGE",
                        help="recompute this stage and every later one")
    parser.add_argument("--only", metavar="STAGE", help="run only this stage on cached inputs")
    parser.add_argument("--no-cache", action="store_true", help="recompute every stage")
    args = parser.parse_args(argv)
    cfg = job_config(args)
    if cfg is None:
        return 2

    import ray

    from pipelines.runner import plan_stages, run_pipeline

    try:
        plan_stages(args.from_stage, args.only, no_cache=args.no_cache)
    except ValueError as err:
        logger.error("%s", err)
        return 2

    if not ray.is_initialized():
        # Under `ray job submit` this joins the job's cluster; elsewhere the configured one.
        ray.init(address=cfg.runtime.ray_address)
    summary = run_pipeline(cfg, resume=args.resume, from_stage=args.from_stage, only=args.only,
                           use_cache=not args.no_cache)
    print(json.dumps(asdict(summary), default=str))  # the job's result, one JSON line
    return 0


if __name__ == "__main__":
    sys.exit(main())
