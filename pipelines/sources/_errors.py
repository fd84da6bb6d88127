"""The one error type every source raises for input it cannot read."""

from __future__ import annotations

from pipelines.errors import RaypipeError

__all__ = ["InputError", "error_chain", "unwrap_input_error"]


class InputError(RaypipeError, ValueError):
    """Input data that cannot be read; the message names the file, table or page."""


def error_chain(err: BaseException) -> list[BaseException]:
    """``err`` and its causes, outermost first.

    Ray re-raises a task's exception as a ``RayTaskError`` whose text is the remote traceback;
    the original is kept in ``.cause``, and Python's own chain continues from there.
    """
    out: list[BaseException] = []
    node: BaseException | None = err
    while node is not None and all(node is not e for e in out):
        out.append(node)
        node = getattr(node, "cause", None) or node.__cause__ or node.__context__
    return out


def unwrap_input_error(err: BaseException) -> InputError | None:
    """The :class:`InputError` raised inside a Ray task, if ``err`` wraps one."""
    return next((e for e in error_chain(err) if type(e) is InputError), None)
