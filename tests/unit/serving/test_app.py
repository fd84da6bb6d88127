"""The replica's request plumbing that needs no running Serve."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pipelines.serving.app import _INLINE_PARSE_BYTES, _off_loop


def _parse_where(raw: bytes) -> str:
    async def main() -> tuple[str, str]:
        loop_thread = threading.current_thread().name
        parsed_in = await _off_loop(raw, lambda: threading.current_thread().name)
        return loop_thread, parsed_in

    loop_thread, parsed_in = asyncio.run(main())
    return "loop" if parsed_in == loop_thread else "worker"


def test_a_large_body_is_parsed_off_the_event_loop() -> None:
    assert _parse_where(b" " * (_INLINE_PARSE_BYTES + 1)) == "worker"


def test_a_small_body_is_parsed_inline() -> None:
    assert _parse_where(b'{"instances": [{"a": 1}]}') == "loop"


def test_a_parse_error_reaches_the_caller() -> None:
    def bad() -> None:
        raise ValueError("row 3: field 'age' is not a number")

    async def main() -> None:
        await _off_loop(b" " * (_INLINE_PARSE_BYTES + 1), bad)

    with pytest.raises(ValueError, match="row 3"):
        asyncio.run(main())


@pytest.mark.parametrize("uri", ["models:/../../tmp/x@champion", "models:/churn@a/b"])
def test_the_app_builder_refuses_a_model_uri_outside_the_name_rules(uri: str) -> None:
    """Serve config files and RayServices reach the builder without the CLI's check."""
    from pydantic import ValidationError

    from pipelines.serving.app import ServeArgs

    with pytest.raises(ValidationError, match="model_uri"):
        ServeArgs.model_validate({"model_uri": uri})
    assert ServeArgs.model_validate({"model_uri": "models:/churn@champion"}).model_uri
