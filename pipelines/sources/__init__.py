"""Readers of every configured source kind; one module per kind, looked up by ``source.kind``.

Each kind is one :class:`SourceReader` subclass (read, fingerprint, row count, the locations
it touches, a failed read explained) with its own config model. The built-in kinds (demo,
files, sql, http) are imported on first use; another kind joins with :func:`register_source`
or a ``raypipe.sources`` entry point. ``pipelines.stages.ingest`` is the entry point the
runner uses; the reader modules import their heavy libraries inside functions.
"""

from pipelines.sources._errors import InputError
from pipelines.sources.base import SourceReader
from pipelines.sources.registry import SourceKindError, get_reader, register_source, source_kinds

__all__ = ["InputError", "SourceKindError", "SourceReader", "get_reader", "register_source",
           "source_kinds"]
