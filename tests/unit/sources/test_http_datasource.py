"""The http datasource against a real local HTTP server, its read tasks run in this process.

The fake fetcher of ``test_http_pages`` cannot see how httpx builds a request (a next URL's
own query string) or which headers reach which host; a ``ThreadingHTTPServer`` on 127.0.0.1
can. Ray is not started: a read task is called directly.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.config import HttpSource
from pipelines.sources import InputError
from pipelines.sources.http import HttpDatasource, Secrets
from tests.integration.servers import PagedApi, serve_api

RECORDS = [{"id": i} for i in range(600)]
TOKEN = "t0k"  # a throwaway value the servers check


def _read(source: HttpSource, token: str | None = None,
          secrets: Secrets | None = None) -> list[dict[str, Any]]:
    tasks = HttpDatasource(source, token, secrets=secrets).get_read_tasks(1)
    return [row for task in tasks for block in task() for row in block.to_pylist()]


def test_full_next_urls_keep_their_own_query_string() -> None:
    api = PagedApi(RECORDS)
    with serve_api(api) as base:
        src = HttpSource(url=f"{base}/links?limit=200", pagination="cursor",
                         records_path="items", next_cursor_path="next")
        assert [r["id"] for r in _read(src)] == list(range(600))
    # Three pages of 200: the source URL's limit and each next URL's cursor reached the server.
    assert api.hits["/links?cursor=200"] == 1 and api.hits["/links?cursor=400"] == 1
    assert sum(api.hits.values()) == 3


def test_the_token_never_follows_a_next_url_to_another_host() -> None:
    elsewhere = PagedApi(RECORDS, token=TOKEN)
    with serve_api(elsewhere) as other:
        api = PagedApi(RECORDS, token=TOKEN, next_base=other)
        with serve_api(api) as base:
            src = HttpSource(url=f"{base}/links", pagination="cursor", records_path="items",
                             next_cursor_path="next", token_env="API_TOKEN")
            with pytest.raises(InputError, match=rf"next URL {other}/links\?cursor=\*\*\*"
                               r"&limit=\*\*\*: .*add it to next_url_hosts"):
                _read(src, TOKEN)
    assert not elsewhere.hits  # not a single request, so the token never left the source host


def test_a_next_url_host_in_next_url_hosts_is_followed() -> None:
    elsewhere = PagedApi(RECORDS, token=TOKEN)
    with serve_api(elsewhere) as other:
        api = PagedApi(RECORDS, token=TOKEN, next_base=other)
        with serve_api(api) as base:
            src = HttpSource(url=f"{base}/links", pagination="cursor", records_path="items",
                             next_cursor_path="next", token_env="API_TOKEN",
                             next_url_hosts=[other.removeprefix("http://")])
            assert [r["id"] for r in _read(src, TOKEN)] == list(range(600))
    assert sum(api.hits.values()) == 1 and sum(elsewhere.hits.values()) == 2


def test_a_claimed_total_over_max_pages_is_refused_before_any_task_is_planned() -> None:
    api = PagedApi(RECORDS[:30], claimed_total=10**12)
    with serve_api(api) as base:
        src = HttpSource(url=f"{base}/page", records_path="data", total_path="meta.total")
        with pytest.raises(InputError, match=r"total_path 'meta.total' gives 1000000000000 "
                           r"records, 10000000000 pages of 100: more than max_pages=10000"):
            HttpDatasource(src).get_read_tasks(4)
    assert sum(api.hits.values()) == 1  # the first page, which states the total; nothing more


def test_headers_env_and_params_env_are_read_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret header (here the API's Authorization) comes from headers_env, never from the
    YAML; a variable that is not set is named."""
    from pipelines.sources.http import read_secrets

    api = PagedApi(RECORDS, token=TOKEN)
    with serve_api(api) as base:
        src = HttpSource(url=f"{base}/links", pagination="cursor", records_path="items",
                         next_cursor_path="next", headers_env={"Authorization": "API_AUTH"},
                         params_env={"api_key": "API_KEY"})
        with pytest.raises(InputError, match=r"source\.headers_env\.Authorization: environment "
                                             r"variable API_AUTH is not set"):
            read_secrets(src)
        monkeypatch.setenv("API_AUTH", f"Bearer {TOKEN}")
        monkeypatch.setenv("API_KEY", "k-9f3e")
        secrets = read_secrets(src)
        assert "k-9f3e" not in repr(secrets) and TOKEN not in repr(secrets)
        rows = _read(src, secrets=secrets)
    assert [r["id"] for r in rows] == list(range(600))  # the server took the header: no 401
