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


def test_max_pages_caps_every_style() -> None:
    src = HttpSource(url="http://api/items", pagination="cursor", records_path="items",
                     next_cursor_path="meta.next", max_pages=2)
    assert _read(src, FakeApi("cursor")) == ROWS[:20]


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
