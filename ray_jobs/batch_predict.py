"""Batch inference as a Ray job: one Parquet prediction row per raw input row.

    ray job submit --working-dir . -- python ray_jobs/batch_predict.py CONFIG.yaml \
        [--input s3://bucket/raw/] --output s3://bucket/predictions/ [--model models:/NAME@champion]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from pipelines.config import ConfigError, load_config

logger = logging.getLogger("ray_jobs.batch_predict")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="pipeline YAML: batch and tracking settings, model name")
    parser.add_argument("--input", help="raw rows: file, folder or glob, local or remote "
                        "(default: the config's batch.input, any source kind)")
    parser.add_argument("--output", required=True, help="folder for the Parquet predictions")
    parser.add_argument("--format", choices=["parquet", "csv", "json"], default="parquet")
    parser.add_argument("--model", help="model URI (default: models:/<name>@<alias> of the config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="override a field: section.field=value (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        logger.error("%s", err)
        return 2

    import ray

    from pipelines.stages.batch import predict_dataset
    from pipelines.stages.ingest import read_files, read_source
    from pipelines.storage import Location, require_shared

    if args.input is None and cfg.batch.input is None:
        logger.error("give --input, or batch.input in the config")
        return 2
    if not ray.is_initialized():
        ray.init(address=cfg.runtime.ray_address)
    require_shared([*([Location("--input", args.input)] if args.input else []),
                    Location("--output", args.output), Location("tracking.uri", cfg.tracking_uri)])
    model = args.model or f"models:/{cfg.model_name}@{cfg.tracking.alias}"
    if args.input:
        ds = read_files(args.input, args.format)
    else:
        assert cfg.batch.input is not None  # checked above
        ds = read_source(cfg.batch.input, cfg.work_dir)
    rows_in = ds.count()
    predict_dataset(ds, model_uri=model, tracking_uri=cfg.tracking_uri,
                    cfg=cfg.batch).write_parquet(args.output)
    rows_out = read_files(args.output, "parquet").count()
    if rows_out != rows_in:  # e.g. an output folder that already held predictions
        logger.error("%s holds %d rows for %d input rows", args.output, rows_out, rows_in)
        return 1
    print(json.dumps({"model": model, "rows_in": rows_in, "rows_out": rows_out, "output": args.output}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
