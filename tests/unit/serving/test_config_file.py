"""The Serve config file a ``serve:`` section stands for: the same options the builder applies."""

from __future__ import annotations

import yaml

from pipelines.config import ServeConfig
from pipelines.serving import deployment_options
from pipelines.serving.config_file import IMPORT_PATH, command_in, render, serve_config

URI = "models:/m@champion"


def test_defaults_give_only_the_model_and_the_builders_options() -> None:
    doc = serve_config(ServeConfig(), URI, "raypipe")
    assert doc["http_options"] == {"host": "127.0.0.1", "port": 8000}
    (app,) = doc["applications"]
    assert (app["name"], app["route_prefix"], app["import_path"]) == ("raypipe", "/", IMPORT_PATH)
    assert app["args"] == {"model_uri": URI}
    (dep,) = app["deployments"]
    assert dep == {"name": "ModelServer", **deployment_options(ServeConfig())}


def test_changed_settings_reach_args_and_deployment_alike() -> None:
    serve = ServeConfig(host="0.0.0.0", num_cpus_per_replica=1, auth_token_env="TOKEN",
                        autoscaling=True, max_replicas=8, downscale_delay_s=300)
    (app,) = serve_config(serve, URI, "raypipe")["applications"]
    assert app["args"] == {"model_uri": URI, "num_cpus_per_replica": 1, "auth_token_env": "TOKEN",
                           "autoscaling": True, "max_replicas": 8, "downscale_delay_s": 300}
    (dep,) = app["deployments"]
    assert dep["ray_actor_options"] == {"num_cpus": 1}
    assert dep["autoscaling_config"]["max_replicas"] == 8
    assert dep["autoscaling_config"]["downscale_delay_s"] == 300


def test_render_heads_the_yaml_with_the_command_that_makes_it() -> None:
    doc = serve_config(ServeConfig(), URI, "raypipe")
    command = ["raypipe", "serve", "--config", "my dir/p.yaml", "--set", "serve.port=9000",
               "--print-config"]
    text = render(doc, command)
    assert text.startswith("# Generated from a pipeline config by `raypipe serve --print-config`")
    assert command_in(text) == command
    assert yaml.safe_load(text) == doc
