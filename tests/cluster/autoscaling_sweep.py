"""Run a raypipe sweep on an autoscaling fake-node Ray cluster and report what the autoscaler did.

Run by test_autoscaling.py as ``python -m tests.cluster.autoscaling_sweep WORK_DIR`` in its
own process, so that its Ray connection cannot fight the test session's, with the environment
of ``local_cluster.isolated_env(WORK_DIR)`` (Ray reads its auth settings at import, so they
must be in place before this module imports Ray). The head has fewer
CPUs than one trial asks for, so the sweep completes only if the autoscaler adds worker nodes;
afterwards the idle workers must be removed. The last stdout line is ``REPORT {json}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ray.cluster_utils import AutoscalingCluster

from tests.cluster.local_cluster import (
    REPO,
    free_port,
    head_args,
    isolated_env,
    start_node,
    stop_nodes,
    wait_until,
)

logger = logging.getLogger("autoscaling_sweep")

HEAD_TYPE = "ray.head.default"
WORKER_TYPE = "cpu-worker"


class LocalAutoscalingCluster(AutoscalingCluster):
    """Ray's AutoscalingCluster (fake nodes on one machine), made to share the machine.

    Ray's class builds its config from ``fake_multi_node/example.yaml``, which the 2.60 wheel
    does not ship, and its ``start()``/``shutdown()`` run ``ray stop --force``, which kills every
    Ray process on the machine. This keeps its node-type contract and fake node provider, and
    starts the head like the other test nodes: free ports, own temp dir, own process group.
    """

    def __init__(self, root: Path, head_resources: dict[str, Any],
                 worker_node_types: dict[str, Any], **config_kwargs: Any) -> None:
        self.root = root
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.gcs_address = f"127.0.0.1:{self.gcs_port}"
        self.env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        self.processes: list[Any] = []
        super().__init__(head_resources, worker_node_types, **config_kwargs)

    def _generate_config(self, head_resources: dict[str, Any], worker_node_types: dict[str, Any],
                         autoscaler_v2: bool = False, **config_kwargs: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "cluster_name": "raypipe-autoscaling-test",
            "max_workers": sum(t.get("max_workers", 0) for t in worker_node_types.values()),
            "provider": {
                "type": "fake_multinode",
                "use_node_id_as_ip": True,
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
                "gcs_address": self.gcs_address,   # the provider's default is port 6379
            },
            "available_node_types": {
                **copy.deepcopy(worker_node_types),
                HEAD_TYPE: {"resources": dict(head_resources), "node_config": {}, "max_workers": 0},
            },
            "head_node_type": HEAD_TYPE,
            "auth": {},
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": 0.1,
            "docker": {},
            "file_mounts": {},
            "cluster_synced_files": [],
            "file_mounts_sync_continuously": False,
            "rsync_exclude": [],
            "rsync_filter": [],
            "initialization_commands": [],
            "setup_commands": [],
            "head_setup_commands": [],
            "worker_setup_commands": [],
            "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
        }
        config.update(config_kwargs)
        return config

    def start(self, _system_config: Any = None, override_env: Any = None) -> None:
        config_path = self.root / "autoscaling.json"
        config_path.write_text(json.dumps(self._config))
        args = head_args(self.root, self._head_resources.get("CPU", 0), self.gcs_port,
                         self.dashboard_port)
        self.processes.append(start_node(self.root, "head", [*args, f"--autoscaling-config={config_path}"],
                                         self.env))

    def shutdown(self) -> None:
        stop_nodes(self.processes)


def _alive(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in nodes if n.get("Alive")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--idle-timeout-min", type=float, default=0.25,
                        help="the autoscaler's idle_timeout_minutes")
    parser.add_argument("--scale-down-timeout-s", type=float, default=90,
                        help="how long idle workers may take to disappear after the run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    root = args.work_dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    cluster = LocalAutoscalingCluster(
        root,
        head_resources={"CPU": 2},
        # Each trial asks for 3 CPUs (train.cpus_per_worker=3): more than the head has, so
        # trials can only run on workers the autoscaler adds.
        worker_node_types={WORKER_TYPE: {"resources": {"CPU": 3}, "node_config": {},
                                         "min_workers": 0, "max_workers": 2}},
        idle_timeout_minutes=args.idle_timeout_min,
    )
    report: dict[str, Any] = {"peak_worker_nodes_in_sweep": 0}
    if os.environ.get("RAY_AUTH_TOKEN_PATH") != isolated_env(root)["RAY_AUTH_TOKEN_PATH"]:
        print("REPORT " + json.dumps({"error": "run with the environment of isolated_env(WORK_DIR)"}))
        return 2
    cluster.start()
    stop = threading.Event()
    try:
        import ray

        from pipelines.config import load_config
        from pipelines.runner import run_pipeline

        wait_until(lambda: socket.create_connection(("127.0.0.1", cluster.gcs_port), timeout=1),
                   60, "the head's GCS port")
        ray.init(address=cluster.gcs_address, log_to_driver=False)
        head_id = ray.get_runtime_context().get_node_id()
        report["head_node"] = head_id
        in_sweep = threading.Event()

        def workers() -> int:
            return sum(1 for n in _alive(ray.nodes()) if n["NodeID"] != head_id)

        dashboard = f"http://127.0.0.1:{cluster.dashboard_port}"
        trial_nodes: set[str] = set()

        def trial_actor_nodes() -> set[str]:
            from ray.util.state import list_actors

            trials = list_actors(address=dashboard, detail=True, limit=1000,
                                 filters=[("class_name", "=", "ImplicitFunc")])
            return {a.node_id for a in trials if a.node_id}

        def watch() -> None:
            """While the trials run: the peak number of worker nodes, and where trial actors
            live. Asked only after the run, the state API once came back with no trial actor
            on any node (a CI run on a loaded machine, the pipeline and the model finished
            fine), by which time the autoscaler may already have removed the idle workers."""
            ticks = 0
            while not stop.wait(0.5):
                if in_sweep.is_set():
                    report["peak_worker_nodes_in_sweep"] = max(
                        report["peak_worker_nodes_in_sweep"], workers())
                    ticks += 1
                    if ticks % 4 == 0:
                        try:
                            trial_nodes.update(trial_actor_nodes())
                        except Exception:  # the state API is busy; the next tick asks again
                            logger.warning("listing trial actors failed", exc_info=True)

        def on_stage(stage: str, event: str, detail: str) -> None:
            if stage == "train":
                (in_sweep.set if event == "start" else in_sweep.clear)()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        cfg = load_config(REPO / "pipelines" / "configs" / "demo.yaml", [
            "source.rows=1500", f"runtime.work_dir={root / 'work'}",
            "train.num_samples=2", "train.cpus_per_worker=3", "train.max_concurrent_trials=2",
        ])
        t0 = time.monotonic()
        summary = run_pipeline(cfg, on_stage=on_stage)
        report["pipeline_s"] = round(time.monotonic() - t0, 1)
        report["model_uri"] = summary.model_uri
        report["stage_seconds"] = {k: round(v, 1) for k, v in summary.stage_seconds.items()}
        report["trial_nodes_seen_in_sweep"] = sorted(trial_nodes)
        report["trial_nodes"] = sorted(trial_nodes | trial_actor_nodes())
        t1 = time.monotonic()
        wait_until(lambda: workers() == 0, args.scale_down_timeout_s,
                   "idle worker nodes to be removed", interval=1)
        report["scale_down_s"] = round(time.monotonic() - t1, 1)
        report["final_nodes"] = len(_alive(ray.nodes()))
    except Exception as err:
        logger.exception("autoscaling sweep failed")
        report["error"] = f"{type(err).__name__}: {err}"[:4000]
    finally:
        stop.set()
        import ray

        ray.shutdown()
        cluster.shutdown()
    print("REPORT " + json.dumps(report), flush=True)
    return 0 if "error" not in report else 1


if __name__ == "__main__":
    sys.exit(main())
