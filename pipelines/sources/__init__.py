"""Readers of every configured source kind; one module per kind.

``pipelines.stages.ingest`` is the single entry point the runner uses; these modules hold the
kind-specific work and import their heavy libraries inside functions.
"""

from pipelines.sources._errors import InputError

__all__ = ["InputError"]
