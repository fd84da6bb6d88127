"""Batch inference as a Ray job: every raw input row is predicted or quarantined with a reason.

    ray job submit --working-dir . -- python ray_jobs/batch_predict.py CONFIG.yaml \
        --input s3://bucket/raw/ --output s3://bucket/predictions/ [--model models:/NAME@champion]

Without ``--input`` the config's ``batch.input`` source is read (any source kind). Exits 2,
before Ray starts, when the output folder already holds files (predictions would mix) or
overlaps the input; exits 1 when rows do not add up. The predictions are written to a sibling
folder and moved into place, with a ``_RAYPIPE_OUTPUT`` marker, when the run has finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipelines.job_args import add_set_argument, job_config, job_model_uri, job_output_ok

logger = logging.getLogger("ray_jobs.batch_predict")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="pipeline YAML: batch and tracking settings, model name")
    parser.add_argument("--input", help="raw rows: file, folder or glob (local or remote); "
                        "default: the config's batch.input")
    parser.add_argument("--output", required=True, help="folder for the Parquet predictions")
    parser.add_argument("--format", choices=["parquet", "csv", "json"], default="parquet")
    parser.add_argument("--model", help="model URI (default: models:/<name>@<alias> of the config)")
    add_set_argument(parser)
    args = parser.parse_args(argv)
    cfg = job_config(args)
    model = job_model_uri(args.model, cfg) if cfg is not None else None
    if cfg is None or model is None:
        return 2

    import ray

    from pipelines.stages.batch import run_batch_inference
    from pipelines.stages.ingest import read_files, read_source
    from pipelines.storage.shared import Location, require_shared

    if args.input is None and cfg.batch.input is None:
        logger.error("give --input, or batch.input in the config")
        return 2
    if not job_output_ok(args.output, args.input, cfg):
        return 2
    if not ray.is_initialized():
        ray.init(address=cfg.runtime.ray_address)
    inputs = [Location("--input", args.input)] if args.input else []
    require_shared([*inputs, Location("--output", args.output),
                    Location("tracking.uri", cfg.tracking_uri)])
    ds = (read_files(args.input, args.format) if args.input
          else read_source(cfg.batch.input, cfg.work_dir))  # type: ignore[arg-type]
    try:
        result = run_batch_inference(ds, model_uri=model, tracking_uri=cfg.tracking_uri,
                                     cfg=cfg.batch, output_dir=args.output)
    except RuntimeError as err:  # rows that do not add up
        logger.error("%s", err)
        return 1
    print(json.dumps({"model": model, "model_version": result.model_version,
                      "rows_in": result.rows_in, "rows_out": result.rows_predicted,
                      "rows_quarantined": result.rows_quarantined, "output": args.output,
                      "quarantine": result.quarantine_dir}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
