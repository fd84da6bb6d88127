"""Credentials are masked in any text; the rest stays readable."""

from __future__ import annotations

import io
import logging
import time

import pytest

from pipelines.redact import RedactingFilter, redact, redact_url, url_label


@pytest.mark.parametrize(("text", "secret", "kept"), [
    ("API request to http://admin:" "pw123@mlflow:5000/api/2.0/x failed", "pw123", "admin:***@mlflow:5000"),
    ("postgresql://u:pa/ss@db/x", "pa/ss", "u:***@db/x"),
    ("cannot fetch https://ghp_abcdef123456@github.com/a", "ghp_abcdef123456", "https://***@github.com"),
    ("GET https://api.example.com/v1?page=2&api_key=K3Y&per_page=9", "K3Y", "page=2&api_key=***&per_page=9"),
    ("s3 url https://b.s3.amazonaws.com/o?X-Amz-Signature=abc&X-Amz-Credential=AKIA", "AKIA",
     "X-Amz-Signature=***"),
    ("postgresql://db/x?sslmode=require&password=hunter2", "hunter2", "sslmode=require"),
    ("header Authorization: Bearer eyJhbGciOi.J9.abc", "eyJhbGciOi", "Bearer ***"),
])
def test_secrets_are_masked_and_the_rest_kept(text: str, secret: str, kept: str) -> None:
    out = redact(text)
    assert secret not in out
    assert kept in out


def test_text_without_secrets_is_unchanged() -> None:
    text = "cannot load models:/churn/3: MlflowException: RESOURCE_DOES_NOT_EXIST (page=2)"
    assert redact(text) == text


def test_cost_is_linear_in_hostile_text() -> None:
    # Texts built to make a backtracking pattern explode: many scheme starts, no "@".
    hostile = "a://" + "b" * 200_000 + ("x://" + ":" * 50) * 2_000 + "?k=" * 50_000
    t0 = time.perf_counter()
    redact(hostile)
    assert time.perf_counter() - t0 < 2.0


def test_a_printed_url_keeps_no_userinfo_and_no_query_value() -> None:
    shown = redact_url("https://bot:t0k@api.example.com/v1/items?cursor=c2&custom_key=abc#frag")
    assert shown == "https://api.example.com/v1/items?cursor=***&custom_key=***"


def test_a_config_dump_is_masked_where_it_may_hold_credentials() -> None:
    """What the runner logs to MLflow as config.yaml: no header, parameter or URL secret."""
    from pipelines.config import load_config, parse_config
    from pipelines.redact import redact_config

    data = load_config(None).model_dump(mode="json", by_alias=True)
    data["source"] = {"kind": "http", "url": "https://api.example.com/v1/items",
                      "headers": {"X-Api-Key": "k3y-from-yaml"},
                      "params": {"api_key": "p4ram-key", "status": "active"}}
    data["tracking"]["uri"] = "http://ml:" + "tr4ck-pw@mlflow:5000"
    cfg = parse_config(data)
    logged = redact_config(cfg.model_dump(mode="json", by_alias=True))
    text = repr(logged)
    for secret in ("k3y-from-yaml", "p4ram-key", "tr4ck-pw"):
        assert secret not in text
    assert logged["source"]["params"]["status"] == "active"
    assert logged["source"]["url"] == "https://api.example.com/v1/items"
    assert logged["tracking"]["uri"] == "http://ml:***@mlflow:5000"


def test_a_webhook_url_is_shown_as_its_scheme_and_host_only() -> None:
    assert url_label("https://hooks.slack.com/services/T0/B0/SECRETPART") == \
        "https://hooks.slack.com/***"
    assert url_label("https://u:pw@alerts.example.com") == "https://alerts.example.com"


def test_the_log_filter_masks_the_formatted_message_of_any_logger() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("some.library")  # not raypipe's: the filter sits on the handler
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("cannot reach %s: %s", "postgresql://etl:" + "hunter2@db:5432/x", "timeout")
        log.warning("plain %d rows", 3)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    lines = stream.getvalue().splitlines()
    assert lines == ["cannot reach postgresql://etl:***@db:5432/x: timeout", "plain 3 rows"]
