"""What happens when monitoring crosses a threshold: a webhook, and a retraining Ray job."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from pipelines.config import RetrainConfig
from pipelines.redact import redact, url_label

__all__ = ["post_webhook", "retrain_entrypoint", "submit_retraining"]

logger = logging.getLogger(__name__)


def post_webhook(url: str, summary: dict[str, Any], timeout_s: float = 10.0) -> str:
    """POST the summary as JSON; return ``"HTTP <status>"`` or the error. Never raises: an
    unreachable hook must not hide the report (the exit code still says what was found)."""
    import httpx

    # A webhook URL is a credential as a whole (Slack and Teams keep the key in the path):
    # only its scheme and host may appear in the log and in the summary MLflow keeps.
    label = url_label(url)
    try:
        r = httpx.post(url, json=summary, timeout=timeout_s)
        if r.status_code >= 400:
            logger.warning("webhook %s answered HTTP %d", label, r.status_code)
        return f"HTTP {r.status_code}"
    except httpx.HTTPError as err:
        reason = redact(str(err).replace(url, label))
        logger.warning("webhook %s failed: %s", label, reason)
        return f"error: {type(err).__name__}: {reason}"


def retrain_entrypoint(config_path: str, overrides: Sequence[str]) -> str:
    """The ``ray job submit`` entrypoint that runs the training pipeline with ``overrides``."""
    argv = ["python", "ray_jobs/run_pipeline.py", config_path]
    for o in overrides:
        argv += ["--set", o]
    return shlex.join(argv)


def submit_retraining(config_path: str, overrides: Sequence[str], cfg: RetrainConfig, *,
                      client_factory: Callable[..., Any] | None = None,
                      metadata: dict[str, str] | None = None) -> str:
    """Submit the training pipeline as a Ray job on the cluster; return the submission id.

    The run registers its model like any other, so the champion gate decides whether it
    replaces the model that drifted. ``config_path`` must be readable inside the job's working
    directory (a path relative to ``cfg.working_dir``) or on shared storage.
    """
    if client_factory is None:
        from ray.job_submission import JobSubmissionClient

        client_factory = JobSubmissionClient
    client = client_factory(cfg.address)
    entrypoint = retrain_entrypoint(config_path, [*overrides, *cfg.overrides])
    job_id = str(client.submit_job(entrypoint=entrypoint,
                                   runtime_env={"working_dir": cfg.working_dir},
                                   metadata=metadata or {}))
    logger.info("retraining submitted as Ray job %s: %s", job_id, entrypoint)
    return job_id
