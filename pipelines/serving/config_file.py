"""The Ray Serve config file (``serve deploy`` format) a pipeline's ``serve:`` section stands for.

``raypipe serve --config PIPELINE.yaml --print-config`` prints it. The shipped
``cluster/serve/raypipe.serve.yaml`` and the RayService's ``serveConfigV2`` are its output, so
Serve settings live in the pipeline YAML (and the ``--set`` overrides the header names) only.
"""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from pipelines.config import ServeConfig
from pipelines.serving.app import ModelServer, deployment_options

__all__ = ["IMPORT_PATH", "command_in", "render", "serve_config"]

IMPORT_PATH = "pipelines.serving:build_app"
"""The application builder every way of serving starts (``serve run``, ``raypipe serve``, files)."""

# Bind address and port are the proxy's (http_options), not the application's.
_HTTP_FIELDS = ("host", "port", "proxy_location")


def serve_config(serve: ServeConfig, model_uri: str, name: str) -> dict[str, Any]:
    """The Serve config of application ``name`` serving ``model_uri`` with ``serve``'s settings.

    ``args`` holds the model and every setting that differs from its default, so the builder
    makes the same deployment from them alone; ``deployments`` spells out the options Serve
    applies (from :func:`deployment_options`, as ``raypipe serve`` applies them).
    """
    defaults = ServeConfig().model_dump()
    settings = {k: v for k, v in serve.model_dump().items()
                if k not in _HTTP_FIELDS and v != defaults[k]}
    proxies = ({} if serve.proxy_location == defaults["proxy_location"]
               else {"proxy_location": serve.proxy_location})
    return {
        **proxies,
        "http_options": {"host": serve.host, "port": serve.port},
        "applications": [{
            "name": name,
            "route_prefix": "/",
            "import_path": IMPORT_PATH,
            "args": {"model_uri": model_uri, **settings},
            "deployments": [{"name": ModelServer.name,  # type: ignore[attr-defined]
                             **deployment_options(serve)}],
        }],
    }


def render(config: dict[str, Any], command: list[str]) -> str:
    """``config`` as YAML under a header saying it is generated, and by ``command``."""
    lines = [""]
    for token in command:
        if token.startswith("--") and lines[-1]:
            lines.append("")
        lines[-1] = f"{lines[-1]} {shlex.quote(token)}".lstrip()
    header = ("# Generated from a pipeline config by `raypipe serve --print-config`: change the config\n"
              "# or the overrides and rerun the command below instead of editing this file.\n"
              "# Deploy with `serve deploy FILE --address http://HEAD:8265` or as a RayService's\n"
              "# serveConfigV2.\n"
              "#   " + " \\\n#     ".join(lines) + "\n")
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def command_in(text: str) -> list[str]:
    """The command a file made by :func:`render` names in its header (to rerun it)."""
    lines = [line.removeprefix("#").strip() for line in text.splitlines() if line.startswith("#   ")]
    return shlex.split(" ".join(line.removesuffix("\\") for line in lines))
