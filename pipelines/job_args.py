"""What every ``ray_jobs/`` entrypoint shares: the ``--set`` option, logging and the config.

The entrypoints run as plain scripts (``python ray_jobs/x.py`` under ``ray job submit``), so
their common part lives in the installed package rather than in ``ray_jobs/``.
"""

from __future__ import annotations

import argparse
import logging

from pipelines.config import ConfigError, FileSource, PipelineConfig, load_config, parse_model_uri
from pipelines.redact import RedactingFilter, keep_mlflow_logs_with_ours

__all__ = ["add_set_argument", "job_config", "job_model_uri", "job_output_ok"]

logger = logging.getLogger("ray_jobs")


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="override a field: section.field=value (repeatable)")


def job_config(args: argparse.Namespace) -> PipelineConfig | None:
    """Set up logging and load ``args.config`` with ``args.overrides``; None (logged, naming
    the field) when the config is invalid, so the job exits 2 without a traceback."""
    keep_mlflow_logs_with_ours()  # MLflow's lines too go through the redacting handler
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:  # a job's log is kept and shown on the dashboard
        handler.addFilter(RedactingFilter())
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as err:
        logger.error("%s", err)
        return None


def job_model_uri(given: str | None, cfg: PipelineConfig) -> str | None:
    """``--model`` (default: the config's ``models:/<name>@<alias>``); None (logged) when its
    name, alias or version breaks the naming rules, so the job exits 2 before Ray starts."""
    uri = given or cfg.model_uri
    try:
        parse_model_uri(uri)
    except ConfigError as err:
        logger.error("--model: %s", err)
        return None
    return uri


def job_output_ok(output: str, given_input: str | None, cfg: PipelineConfig) -> bool:
    """Whether ``output`` may receive predictions (see :func:`pipelines.outputs.check_output`):
    new or empty, and apart from the input (``--input``, else the config's ``batch.input``
    files). False (logged) otherwise, so the job exits 2 before Ray starts."""
    from pipelines.outputs import OutputFolderError, check_output

    source = cfg.batch.input
    files = source.path if isinstance(source, FileSource) else None
    try:
        check_output(output, given_input or files, overwrite=False,
                     input_field="--input" if given_input else "batch.input.path",
                     how_to_replace="choose a new or empty folder")
    except OutputFolderError as err:
        logger.error("%s", err)
        return False
    return True
