"""The one error type every source raises for input it cannot read."""

from __future__ import annotations

__all__ = ["InputError", "unwrap_input_error"]


class InputError(ValueError):
    """Input data that cannot be read; the message names the file, table or page."""


def unwrap_input_error(err: BaseException) -> InputError | None:
    """The :class:`InputError` raised inside a Ray task, if ``err`` wraps one.

    Ray re-raises a task's exception as a ``RayTaskError`` whose text is the remote traceback;
    the original is kept in ``.cause`` (or the ``__cause__`` chain), and its message is the
    one line a user needs.
    """
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if type(node) is InputError:
            return node
        node = getattr(node, "cause", None) or node.__cause__
    return None
