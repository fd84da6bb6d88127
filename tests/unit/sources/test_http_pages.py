"""Pagination, JSON paths and record conversion of the http source, without a server or Ray."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from pipelines.config import HttpSource
from pipelines.sources import InputError
from pipelines.sources.http import dig, page_params, records_to_table, walk_pages

ROWS = [{"id": i, "x": i * 1.5} for i in range(23)]


class FakeApi:
    """Answers like a paginated API over ROWS; records each request's parameters."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.calls: list[tuple[str, dict[str, str]]] = []

    def get(self, url: str, params: Mapping[str, str], label: str) -> Any:
        self.calls.append((url, dict(params)))
        if self.style == "page":
            size, page = int(params["per_page"]), int(params["page"])
            return {"data": {"items": ROWS[(page - 1) * size: page * size]}, "total": len(ROWS)}
        if self.style == "offset":
            off, size = int(params["offset"]), int(params["limit"])
            return {"results": ROWS[off: off + size]}
        start = int(params.get("cursor", 0)) if "after=" not in url else int(url.split("=")[-1])
        nxt = start + 10 if start + 10 < len(ROWS) else None
        return {"items": ROWS[start: start + 10], "meta": {"next": nxt}}


def _read(source: HttpSource, api: FakeApi, **kw: Any) -> list[dict[str, Any]]:
    return [r for _, records in walk_pages(source, api, **kw) for r in records]  # type: ignore[arg-type]


def test_page_style_walks_until_a_short_page() -> None:
    src = HttpSource(url="http://api/items", records_path="data.items", page_size=10)
    api = FakeApi("page")
    assert _read(src, api) == ROWS
    assert [c[1]["page"] for c in api.calls] == ["1", "2", "3"]  # the third page is short


def test_page_style_with_an_exact_multiple_asks_for_one_empty_page() -> None:
    src = HttpSource(url="http://api/items", records_path="data.items", page_size=23)
    api = FakeApi("page")
    assert _read(src, api) == ROWS
    assert len(api.calls) == 2


def test_offset_style_and_extra_params() -> None:
    src = HttpSource(url="http://api/items", pagination="offset", size_param="limit",
                     records_path="results", page_size=5, params={"q": "all"})
    api = FakeApi("offset")
    assert _read(src, api) == ROWS
    assert api.calls[1][1] == {"q": "all", "offset": "5", "limit": "5"}


def test_page_range_for_parallel_tasks() -> None:
    src = HttpSource(url="http://api/items", records_path="data.items", page_size=5,
                     total_path="total")
    api = FakeApi("page")
    assert _read(src, api, start=2, stop=4) == ROWS[10:20]
    assert page_params(src, 2) == {"page": "3", "per_page": "5"}


def test_cursor_style_follows_cursors_and_next_urls() -> None:
    src = HttpSource(url="http://api/items", pagination="cursor", records_path="items",
                     next_cursor_path="meta.next")
    api = FakeApi("cursor")
    assert _read(src, api) == ROWS
    assert [c[1].get("cursor") for c in api.calls] == [None, "10", "20"]


class NextUrls(FakeApi):
    """Cursor pages whose next is the full URL ``links[i]``, one record each."""

    def __init__(self, links: list[str]) -> None:
        super().__init__("cursor")
        self.links = links

    def get(self, url: str, params: Mapping[str, str], label: str) -> Any:
        self.calls.append((url, dict(params)))
        i = len(self.calls) - 1
        return {"items": [{"page": i}], "next": self.links[i] if i < len(self.links) else None}


def test_next_urls_on_the_source_origin_are_followed() -> None:
    src = HttpSource(url="https://API.example.com/items", pagination="cursor",
                     records_path="items", next_cursor_path="next")
    links = ["https://api.example.com:443/items?cursor=2", "https://api.example.com/items?c=3"]
    api = NextUrls(links)
    assert _read(src, api) == [{"page": 0}, {"page": 1}, {"page": 2}]
    assert api.calls[1:] == [(links[0], {}), (links[1], {})]


@pytest.mark.parametrize("link", [
    "http://169.254.169.254/latest/meta-data/iam?sig=s3cr3t",  # another host, plain http
    "http://api.example.com/items?cursor=2&sig=s3cr3t",  # the source host, https downgraded
    "https://api.example.com:8443/items?sig=s3cr3t",  # the source host, another port
    "https://user:" + "pw0rd@evil.example/items?sig=s3cr3t",  # another host, with userinfo
])
def test_a_next_url_off_the_source_origin_is_refused_and_never_fetched(link: str) -> None:
    src = HttpSource(url="https://api.example.com/items", pagination="cursor",
                     records_path="items", next_cursor_path="next")
    api = NextUrls([link])
    with pytest.raises(InputError, match=r"^http source https://api.example.com/items "
                       r"\(page 1\): refusing the next URL .*sig=\*\*\*") as info:
        _read(src, api)
    assert api.calls == [("https://api.example.com/items", {})]  # the token never left
    assert "s3cr3t" not in str(info.value) and "pw0rd" not in str(info.value)


def test_a_next_url_host_must_be_listed_in_next_url_hosts() -> None:
    src = HttpSource(url="https://api.example.com/items", pagination="cursor",
                     records_path="items", next_cursor_path="next",
                     next_url_hosts=["api-eu.example.com", "mirror.example.com:8443"])
    links = ["https://api-eu.example.com/items?c=2", "https://mirror.example.com:8443/x?c=3"]
    assert len(_read(src, NextUrls(links))) == 3
    with pytest.raises(InputError, match=r"clear text"):  # listed, but not over https
        _read(src, NextUrls(["http://api-eu.example.com/items?c=2"]))
    with pytest.raises(InputError, match=r"add it to next_url_hosts"):  # listed, other port
        _read(src, NextUrls(["https://mirror.example.com/x?c=3"]))


def test_a_repeated_next_url_is_named_without_its_query() -> None:
    src = HttpSource(url="https://api.example.com/items", pagination="cursor",
                     records_path="items", next_cursor_path="next")
    link = "https://api.example.com/items?sig=s3cr3t"
    with pytest.raises(InputError, match=r"cursor 'https://api.example.com/items\?sig=\*\*\*' "
                       r"twice"):
        _read(src, NextUrls([link, link]))


@pytest.mark.parametrize(("style", "records_path"), [("cursor", "items"), ("page", "data.items")])
def test_max_pages_refuses_a_read_with_more_pages(style: str, records_path: str) -> None:
    def source(max_pages: int) -> HttpSource:
        return HttpSource(url="http://api/items", pagination=style, records_path=records_path,
                          next_cursor_path="meta.next", page_size=10, max_pages=max_pages)

    with pytest.raises(InputError, match=r"\(page 2\): the API has more pages than "
                       r"max_pages=2; raise max_pages"):
        _read(source(2), FakeApi(style))
    assert _read(source(3), FakeApi(style)) == ROWS  # exactly max_pages pages: no error


def test_max_pages_by_default_ends_a_runaway_cursor_chain() -> None:
    class Endless(FakeApi):
        def get(self, url: str, params: Mapping[str, str], label: str) -> Any:
            self.calls.append((url, dict(params)))
            if len(self.calls) > 10_001:
                raise RuntimeError("still fetching")
            return {"items": [{"a": 1}], "next": f"c{len(self.calls)}"}

    src = HttpSource(url="http://api/items", pagination="cursor", records_path="items",
                     next_cursor_path="next")
    api = Endless("cursor")
    with pytest.raises(InputError, match=r"more pages than max_pages=10000"):
        _read(src, api)
    assert len(api.calls) == 10_000


def test_a_page_range_ends_at_the_first_empty_page() -> None:
    src = HttpSource(url="http://api/items", records_path="data.items", page_size=5,
                     total_path="total")
    api = FakeApi("page")
    assert _read(src, api, start=3, stop=1000) == ROWS[15:]
    assert len(api.calls) == 3  # pages 4 and 5 hold records, page 6 is empty: the total lied


def test_errors_name_the_page_without_userinfo_or_secret_params() -> None:
    src = HttpSource(url="https://user:" + "pw0rd@api.example.com/items?api_key=k3y",
                     records_path="data.rows", page_size=10, params={"key": "k3y"})
    with pytest.raises(InputError, match=r"^http source https://api.example.com/items\?"
                       r"api_key=\*\*\*&key=\*\*\*&page=1&per_page=10 \(page 1\): the "
                       r"response has no 'data.rows'") as info:
        _read(src, FakeApi("page"))
    assert "k3y" not in str(info.value) and "pw0rd" not in str(info.value)


def test_a_repeated_cursor_stops_with_an_error() -> None:
    class Loop(FakeApi):
        def get(self, url: str, params: Mapping[str, str], label: str) -> Any:
            return {"items": [{"a": 1}], "next": "same"}

    src = HttpSource(url="http://api/items", pagination="cursor", records_path="items",
                     next_cursor_path="next")
    with pytest.raises(InputError, match="cursor 'same' twice"):
        _read(src, Loop("cursor"))


def test_missing_records_path_names_the_page() -> None:
    src = HttpSource(url="http://api/items", records_path="data.rows", page_size=10)
    with pytest.raises(InputError, match=r"http://api/items\?page=1&per_page=10 \(page 1\): "
                       r"the response has no 'data.rows'"):
        _read(src, FakeApi("page"))


def test_records_must_be_objects() -> None:
    class Scalars(FakeApi):
        def get(self, url: str, params: Mapping[str, str], label: str) -> Any:
            return [1, 2]

    with pytest.raises(InputError, match="record 0 is a int, not an object"):
        _read(HttpSource(url="http://api/x", pagination="none"), Scalars("none"))


def test_dig_paths() -> None:
    body = {"a": {"b": [{"c": 3}]}}
    assert dig(body, "a.b.0.c", "p") == 3
    assert dig(body, "", "p") is body
    assert dig(body, "a.x", "p", required=False) is None


def test_records_to_table_unions_keys_and_flattens_nested_objects() -> None:
    table = records_to_table([{"a": 1, "n": {"b": "x"}}, {"a": 2.5, "c": True}], "p")
    assert sorted(table.column_names) == ["a", "c", "n.b"]
    assert table.column("a").to_pylist() == [1.0, 2.5]
    assert table.column("c").to_pylist() == [None, True]


def test_records_with_mixed_types_keep_every_value_as_text() -> None:
    table = records_to_table([{"a": 1, "b": 1}, {"a": "n/a", "b": 2}], "p")
    assert table.column("a").to_pylist() == ["1", "n/a"]  # nothing lost; the contract decides
    assert table.column("b").to_pylist() == [1, 2]
