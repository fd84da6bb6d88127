"""Online inference: the Ray Serve app, one module per wire protocol, hot swap, metrics, client.

``pipelines.serving:build_app`` is the application builder that ``serve run``, the Serve config
files under ``cluster/``, a RayService and ``raypipe serve`` name. The app's names are
re-exported lazily (PEP 562): the app imports Ray Serve and FastAPI, which
:mod:`pipelines.serving.client` (a plain HTTP client) and :mod:`pipelines.serving.swap`
(``raypipe promote``) do not need.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.serving.app import ServeArgs, build_app, deployment_options, resolve_version, row_model

__all__ = ["ServeArgs", "build_app", "deployment_options", "resolve_version", "row_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pipelines.serving import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
