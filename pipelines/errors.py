"""The one base class of the errors a user can fix (bad config, bad data, a missing input)."""

from __future__ import annotations

__all__ = ["RaypipeError"]


class RaypipeError(Exception):
    """An error the user can fix; the CLI shows its message in one line, without a traceback.

    Each subclass keeps a standard second base (``ValueError``, ``RuntimeError``) so that code
    catching that still works. The message says what is wrong and, where it can, how to fix it.
    """
