"""The KubeRay and Kubernetes manifests in cluster/: strict schema validation and the rules
every manifest follows (pinned versions, pod security, requests = limits, named ports,
Secret-only credentials, one pipeline config). No Ray, no Kubernetes cluster needed."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import k8s_schema
from tests.cluster.k8s_schema import CLUSTER, REPO, Manifest, pyproject, ray_pin

PIPELINE_CONFIG = "pipelines/configs/demo.yaml"
# Fields a deployment may override on the command line: where things are stored and how big
# the run is. Everything else comes from the one config file.
STORAGE_AND_SCALE = {
    "runtime.work_dir", "runtime.storage_path", "runtime.ray_address", "tracking.uri",
    "batch.output_dir", "source.rows", "train.num_samples", "train.num_workers",
    "train.cpus_per_worker", "train.max_concurrent_trials", "train.use_gpu", "batch.concurrency",
}
ALL = k8s_schema.manifests()


def _id(m: Manifest) -> str:
    return f"{m[0].name}#{m[1]}:{m[2]['kind']}"


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, _, doc in ALL if doc["kind"] == kind]


def _one(kind: str) -> dict[str, Any]:
    docs = _of_kind(kind)
    assert len(docs) == 1, f"expected one {kind} in cluster/kuberay, found {len(docs)}"
    return docs[0]


def _containers(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path, template in k8s_schema.pod_templates(doc):
        for kind in ("initContainers", "containers"):
            for c in template["spec"].get(kind, []):
                found.append((f"{path}.{kind}[{c['name']}]", c))
    return found


def _ray_cluster_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    return [s for s in (spec if doc["kind"] == "RayCluster" else None,
                        spec.get("rayClusterSpec"), spec.get("rayClusterConfig")) if s]


def _overrides(argv: list[str]) -> tuple[str, list[str]]:
    """(config path, --set overrides) of a `python ray_jobs/run_pipeline.py ...` command."""
    i = argv.index("ray_jobs/run_pipeline.py")
    config, rest = argv[i + 1], argv[i + 2:]
    sets = [rest[j + 1] for j, a in enumerate(rest) if a == "--set"]
    assert len(rest) == 2 * len(sets), f"only --set overrides may follow the config: {rest}"
    return config, sets


# ------------------------------------------------------------------ strict schema validation


def test_manifests_exist_and_shared_crds_are_found() -> None:
    kinds = sorted(doc["kind"] for _, _, doc in ALL)
    # No PersistentVolumeClaim: storage comes from the flavours (test_manifests_flavours.py).
    for kind in ("RayCluster", "RayJob", "RayService", "CronJob", "Deployment", "Service",
                 "StatefulSet"):
        assert kind in kinds, f"cluster/kuberay has no {kind}"
    try:
        schemas = k8s_schema.crd_schemas()
    except FileNotFoundError as err:
        pytest.fail(str(err))  # a missing shared/ folder is a failure, not a skip
    assert {("ray.io/v1", k) for k in ("RayCluster", "RayJob", "RayService")} <= set(schemas)


@pytest.mark.parametrize("manifest", ALL, ids=_id)
def test_manifest_passes_strict_validation(manifest: Manifest) -> None:
    path, _, doc = manifest
    if doc["apiVersion"].startswith("ray.io/"):
        assert doc["apiVersion"] == "ray.io/v1", f"{path.name}: use the served storage version ray.io/v1"
        try:
            errors = k8s_schema.crd_errors(doc)
        except FileNotFoundError as err:
            pytest.fail(str(err))
    else:
        errors = k8s_schema.core_errors(doc)
    assert errors == [], f"{path.name} {doc['kind']}/{doc['metadata']['name']}:\n" + "\n".join(errors)


def test_validator_rejects_unknown_fields_and_wrong_types() -> None:
    cluster = copy.deepcopy(_one("RayCluster"))
    # The CRD schema alone lets an unknown key through (the API server would prune it)...
    cluster["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    schema = k8s_schema.crd_schemas()[("ray.io/v1", "RayCluster")]
    import jsonschema

    assert list(jsonschema.Draft202012Validator(schema).iter_errors(cluster)) == []
    # ... the strict validator names it, and every other kind of mistake.
    head = cluster["spec"]["headGroupSpec"]
    head["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    head["rayStartParams"]["num-cpus"] = 0                # must be a string
    cluster["spec"]["enableInTreeAutoscaling"] = "yes"     # must be a boolean
    cluster["metadata"]["lables"] = {"a": "b"}
    errors = "\n".join(k8s_schema.crd_errors(cluster))
    for expected in ("spec.workerGroupSpecs.0.maxReplica: unknown field 'maxReplica'",
                     "spec.headGroupSpec.template.spec.containers.0.imagePullPolicyy: unknown field",
                     "spec.headGroupSpec.rayStartParams.num-cpus: 0 is not of type 'string'",
                     "spec.enableInTreeAutoscaling: 'yes' is not of type 'boolean'",
                     "'lables' was unexpected"):
        assert expected in errors, f"{expected!r} not reported in:\n{errors}"

    deployment = copy.deepcopy(_one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert "'imagePullPolicyy' was unexpected" in "\n".join(k8s_schema.core_errors(deployment))
    deployment = copy.deepcopy(_one("Deployment"))
    deployment["spec"]["replicas"] = "one"
    assert "spec.replicas: 'one' is not of type" in "\n".join(k8s_schema.core_errors(deployment))


# ------------------------------------------------------------------ versions


def _dockerfile_base(path: Path) -> str:
    text = re.sub(r"\\\n", " ", path.read_text())
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base, f"{path} has no FROM"
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base.group(1))


def test_ray_version_is_one_everywhere() -> None:
    pin = ray_pin()
    version = pyproject()["project"]["version"]
    python = pyproject()["project"]["requires-python"]
    assert ">=3.11" in python and "<3.12" in python, python
    assert _dockerfile_base(CLUSTER / "docker" / "Dockerfile") == f"rayproject/ray:{pin}-py311"
    ray_objects = [d for _, _, d in ALL if d["apiVersion"].startswith("ray.io/")]
    assert len(ray_objects) == 3
    for doc in ray_objects:
        for spec in _ray_cluster_specs(doc):
            assert spec["rayVersion"] == pin, f"{doc['kind']} rayVersion {spec['rayVersion']} != pin {pin}"
        images = {c["image"] for _, c in _containers(doc)}
        assert images <= {f"raypipe:{version}-ray{pin}", f"raypipe-gpu:{version}-ray{pin}"}, images
    for doc in _of_kind("CronJob"):
        assert {c["image"] for _, c in _containers(doc)} == {f"raypipe:{version}-ray{pin}"}


def test_mlflow_server_image_is_within_the_client_range() -> None:
    from packaging.requirements import Requirement

    base = _dockerfile_base(CLUSTER / "docker" / "mlflow.Dockerfile")
    server = base.removeprefix("ghcr.io/mlflow/mlflow:v")
    client = next(Requirement(d) for d in pyproject()["project"]["dependencies"]
                  if Requirement(d).name == "mlflow")
    assert server in client.specifier, f"MLflow server {server} outside the client's {client}"
    images = {c["image"] for _, c in _containers(_one("Deployment"))}
    assert images == {f"raypipe-mlflow:{server}"}


# ------------------------------------------------------------------ pod rules


@pytest.mark.parametrize("manifest", [m for m in ALL if list(k8s_schema.pod_templates(m[2]))], ids=_id)
def test_pods_run_non_root_without_privilege_escalation(manifest: Manifest) -> None:
    _, _, doc = manifest
    for path, template in k8s_schema.pod_templates(doc):
        pod = template["spec"].get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, f"{path}: securityContext.runAsNonRoot"
        assert pod.get("runAsUser", 1000) != 0, f"{path}: runAsUser 0"
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, f"{path}: seccompProfile"
    for path, c in _containers(doc):
        sc = c.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False, f"{path}: allowPrivilegeEscalation"
        assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{path}: capabilities.drop ALL"
    for spec in _ray_cluster_specs(doc) if doc["apiVersion"].startswith("ray.io/") else []:
        if spec.get("enableInTreeAutoscaling"):  # the autoscaler sidecar KubeRay adds to the head
            sc = spec["autoscalerOptions"]["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True


@pytest.mark.parametrize("manifest", [m for m in ALL if list(k8s_schema.pod_templates(m[2]))], ids=_id)
def test_requests_equal_limits(manifest: Manifest) -> None:
    _, _, doc = manifest
    resources = [(path, c.get("resources", {})) for path, c in _containers(doc)]
    for spec in _ray_cluster_specs(doc) if doc["apiVersion"].startswith("ray.io/") else []:
        if spec.get("enableInTreeAutoscaling"):
            resources.append(("autoscalerOptions", spec["autoscalerOptions"]["resources"]))
    for path, r in resources:
        assert r.get("limits"), f"{path}: no resource limits"
        assert r.get("requests") == r.get("limits"), f"{path}: requests {r.get('requests')} != limits"


def test_ports_are_named() -> None:
    for _, _, doc in ALL:
        for path, c in _containers(doc):
            for port in c.get("ports", []):
                assert port.get("name"), f"{doc['kind']} {path}: port {port['containerPort']} unnamed"
        if doc["kind"] == "Service":
            for port in doc["spec"]["ports"]:
                assert port.get("name") and isinstance(port["targetPort"], str), port


def test_credentials_only_come_from_secrets() -> None:
    sensitive = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|STORE_URI", re.I)
    referenced = set()
    for path, _, doc in ALL:
        assert doc["kind"] != "Secret", f"{path.name}: Secrets are created by hand, never committed"
        for cpath, c in _containers(doc):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if sensitive.search(env["name"]):
                    assert ref, f"{path.name} {cpath}: {env['name']} must come from a Secret"
                if ref:
                    referenced.add(ref["name"])
        for spec in _ray_cluster_specs(doc) if doc["apiVersion"].startswith("ray.io/") else []:
            auth = spec.get("authOptions", {})
            assert auth.get("mode") == "token", f"{path.name}: Ray token authentication is off"
            referenced.add(auth["secretName"])
    readme = (CLUSTER / "README.md").read_text()
    for name in sorted(referenced):  # the README says how to create each one
        assert f"kubectl create secret generic {name}" in readme, f"README: no command creating {name}"


# ------------------------------------------------------------------ the Ray objects


def test_raycluster_autoscales_a_cpu_and_a_gpu_group() -> None:
    spec = _one("RayCluster")["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for g in groups.values():
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] and g["maxReplicas"] > 0
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["image"].startswith("raypipe-gpu:"), "the GPU group needs the CUDA image variant"
    cpu = groups["cpu"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]


def test_rayjob_runs_the_pipeline_and_cleans_up() -> None:
    spec = _one("RayJob")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "ray_jobs/run_pipeline.py"]
    working_dir = yaml.safe_load(spec["runtimeEnvYAML"])["working_dir"]
    dockerfile = (CLUSTER / "docker" / "Dockerfile").read_text()
    assert f"WORKDIR {working_dir}" in dockerfile, "the job's working_dir is the image's app folder"
    for copied in ("pipelines/", "ray_jobs/"):
        assert re.search(rf"^COPY .*{copied} {copied}$", dockerfile, re.M), f"image lacks {copied}"


def _cron(name: str) -> dict[str, Any]:
    crons = [d for d in _of_kind("CronJob") if d["metadata"]["name"] == name]
    assert len(crons) == 1, f"expected one CronJob {name} in cluster/kuberay, found {len(crons)}"
    return crons[0]


def _cron_command(name: str = "raypipe-retrain") -> list[str]:
    pod = _cron(name)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return list(pod["containers"][0]["command"])


@pytest.mark.parametrize(("name", "entry"), [("raypipe-retrain", "ray_jobs/run_pipeline.py"),
                                             ("raypipe-monitor", "ray_jobs/monitor.py")])
def test_cronjob_submits_the_same_job_to_the_long_running_cluster(name: str, entry: str) -> None:
    cron = _cron(name)
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    command = _cron_command(name)
    cluster_name = _one("RayCluster")["metadata"]["name"]
    assert command[:3] == ["ray", "job", "submit"]
    assert f"--address=http://{cluster_name}-head-svc:8265" in command
    argv = command[command.index("--") + 1:]
    assert argv[:2] == ["python", entry]
    assert (REPO / entry).is_file()
    if entry == "ray_jobs/monitor.py":  # the same config file, only storage overridden
        config, sets = _overrides([a.replace(entry, "ray_jobs/run_pipeline.py") for a in argv])
        assert config == PIPELINE_CONFIG
        assert {s.split("=", 1)[0] for s in sets} <= STORAGE_AND_SCALE
        load_config_ok = __import__("pipelines.config", fromlist=["load_config"]).load_config
        load_config_ok(REPO / config, sets)


def test_one_pipeline_config_for_laptop_job_submit_and_kuberay() -> None:
    from pipelines.config import demo_config_path, load_config
    from tests.cluster import jobs

    commands = {
        "RayJob": shlex.split(_one("RayJob")["spec"]["entrypoint"]),
        "CronJob": _cron_command(),
        "multi-node test": jobs.submit_command([]),
    }
    for where, argv in commands.items():
        config, sets = _overrides(argv)
        assert config == PIPELINE_CONFIG, f"{where} runs {config}"
        keys = {s.split("=", 1)[0] for s in sets}
        extra = keys - STORAGE_AND_SCALE
        assert not extra, f"{where} overrides more than storage and scale: {extra}"
        load_config(REPO / config, sets)  # the overrides are valid for that file
    # The laptop run (`raypipe run` without an argument) reads the same file.
    assert (REPO / PIPELINE_CONFIG).read_bytes() == demo_config_path().read_bytes()
    readme = (CLUSTER / "README.md").read_text()
    assert f"raypipe run {PIPELINE_CONFIG}" in readme
    assert f"python ray_jobs/run_pipeline.py {PIPELINE_CONFIG}" in readme
    # ... and no copy of a pipeline config lives in cluster/.
    for path in CLUSTER.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (isinstance(doc, dict) and {"name", "source", "target"} <= set(doc)), path


def _serve_configs() -> tuple[dict[str, Any], dict[str, Any]]:
    service = yaml.safe_load(_one("RayService")["spec"]["serveConfigV2"])
    standalone = yaml.safe_load((CLUSTER / "serve" / "raypipe.serve.yaml").read_text())
    return service, standalone


def test_serve_config_is_valid_strict_and_the_same_in_both_places() -> None:
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    service, standalone = _serve_configs()
    assert service == standalone, "rayservice.serve.yaml serveConfigV2 != cluster/serve/raypipe.serve.yaml"
    ServeDeploySchema.model_validate(service)
    strict = k8s_schema.StrictValidator(ServeDeploySchema.model_json_schema())
    assert [e.message for e in strict.iter_errors(service)] == []
    bad = copy.deepcopy(service)
    bad["applications"][0]["deployments"][0]["num_replica"] = 2
    assert any("num_replica" in e.message for e in strict.iter_errors(bad))
    for app in service["applications"]:
        for dep in app["deployments"]:
            scaling = dep["autoscaling_config"]
            assert set(scaling) <= set(AutoscalingConfig.model_fields), set(scaling)
            AutoscalingConfig.model_validate(scaling)
            assert dep["num_replicas"] == "auto"


def test_serve_config_is_what_the_pipeline_config_generates(monkeypatch: pytest.MonkeyPatch) -> None:
    """One place for Serve settings: the shipped file is the output of the command in its
    header, run on the pipeline config (the RayService holds the same, checked above)."""
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.serving.config_file import command_in

    shipped = (CLUSTER / "serve" / "raypipe.serve.yaml").read_text()
    command = command_in(shipped)
    assert command[:2] == ["raypipe", "serve"] and command[-1] == "--print-config", command
    assert command[command.index("--config") + 1] == PIPELINE_CONFIG
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, command[1:])
    assert result.exit_code == 0, result.output
    assert result.stdout == shipped, f"regenerate: {shlex.join(command)} > cluster/serve/raypipe.serve.yaml"


def test_serve_config_builds_the_champion_app() -> None:
    from pipelines.config import load_config

    (app,) = _serve_configs()[0]["applications"]
    module, attr = app["import_path"].split(":")
    assert app["import_path"] == "pipelines.serving:build_app"
    import importlib

    built = getattr(importlib.import_module(module), attr)(app["args"])  # the builder accepts the args
    deployment = built._bound_deployment  # what Serve's per-deployment overrides are matched against
    assert [d["name"] for d in app["deployments"]] == [deployment.name]
    cfg = load_config(REPO / PIPELINE_CONFIG)
    assert app["args"]["model_uri"] == f"models:/{cfg.model_name}@{cfg.tracking.alias}", \
        "the service must serve the model the pipeline registers"


def test_key_fields_say_why() -> None:
    keys = ("enableInTreeAutoscaling", "num-cpus", "minReplicas", "maxReplicas", "rayVersion",
            "shutdownAfterJobFinishes", "ttlSecondsAfterFinished", "idleTimeoutSeconds",
            "schedule", "concurrencyPolicy", "runAsNonRoot", "mode", "readOnlyRootFilesystem",
            "automountServiceAccountToken", "auth_token_env", "default_permission")
    silent = []
    for path in sorted((CLUSTER / "kuberay").glob("*.yaml")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            key = line.strip().lstrip("- ").split(":", 1)[0]
            if key in keys and ":" in line:
                previous = lines[i - 1].strip()
                if not ("#" in line or previous.startswith("#") or _same_block_commented(lines, i)):
                    silent.append(f"{path.name}:{i + 1}: {line.strip()}")
    assert silent == [], "fields without a comment saying why:\n" + "\n".join(silent)


def _same_block_commented(lines: list[str], i: int) -> bool:
    # A repeated block (the second worker group, a second pod template) may rely on the
    # first occurrence's comment: the same key and value commented earlier in the file.
    stripped = lines[i].split("#")[0].strip()
    return any(line.split("#")[0].strip() == stripped and "#" in line for line in lines[:i])


def test_readme_names_only_existing_files() -> None:
    readme = (CLUSTER / "README.md").read_text()
    named = r"(?<![\w/])((?:cluster|pipelines|ray_jobs|tests)/[\w./-]+\.(?:yaml|py|md)|cluster/docker/[\w.]+)"
    paths = set(re.findall(named, readme))
    assert paths, "cluster/README.md names no files"
    for p in sorted(paths):
        assert (REPO / p).exists(), f"cluster/README.md names {p}, which does not exist"


# ------------------------------------------------------------------ security: pods (finding 15)

OUR_IMAGES = ("raypipe:", "raypipe-gpu:", "raypipe-mlflow:")


@pytest.mark.parametrize("manifest", [m for m in ALL if list(k8s_schema.pod_templates(m[2]))], ids=_id)
def test_our_containers_have_a_read_only_root_and_an_emptydir_tmp(manifest: Manifest) -> None:
    _, _, doc = manifest
    for path, template in k8s_schema.pod_templates(doc):
        spec = template["spec"]
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in spec["containers"]:
            if not c["image"].startswith(OUR_IMAGES):
                continue
            where = f"{path}.containers[{c['name']}]"
            assert c["securityContext"].get("readOnlyRootFilesystem") is True, \
                f"{where}: readOnlyRootFilesystem (the image must not change at run time)"
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and tmp[0]["name"] in empty_dirs, f"{where}: no emptyDir at /tmp, where Ray writes"


def _is_autoscaling_head(doc: dict[str, Any], path: str) -> bool:
    return path.endswith("headGroupSpec.template") and any(
        s.get("enableInTreeAutoscaling") for s in _ray_cluster_specs(doc))


@pytest.mark.parametrize("manifest", [m for m in ALL if list(k8s_schema.pod_templates(m[2]))], ids=_id)
def test_only_an_autoscaling_head_mounts_a_service_account_token(manifest: Manifest) -> None:
    _, _, doc = manifest
    for path, template in k8s_schema.pod_templates(doc):
        mounted = template["spec"].get("automountServiceAccountToken")
        # KubeRay's autoscaler sidecar runs in the head pod and scales through the API server.
        expected = _is_autoscaling_head(doc, path) if doc["apiVersion"].startswith("ray.io/") else False
        assert mounted is expected, f"{doc['kind']} {path}: automountServiceAccountToken must be {expected}"


# ------------------------------------------------------------------ security: network (finding 3)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics: matchLabels and matchExpressions, all must hold."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _pods() -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(where, owning object, labels) of every pod template in cluster/kuberay."""
    return [(f"{doc['kind']}/{doc['metadata']['name']} {path}", doc, t.get("metadata", {}).get("labels", {}))
            for _, _, doc in ALL for path, t in k8s_schema.pod_templates(doc)]


def _admitted(policies: list[dict[str, Any]], labels: dict[str, str]) -> list[dict[str, Any]]:
    """The ingress rules of every policy that selects pods with these labels."""
    return [rule for p in policies if _selects(p["spec"]["podSelector"], labels)
            for rule in p["spec"].get("ingress", [])]


def _sources(rule: dict[str, Any]) -> list[str]:
    """Pod templates (same namespace) a rule's peers admit."""
    peers = rule.get("from", [])
    assert peers, f"a rule without `from` admits every source: {rule}"
    for peer in peers:
        assert set(peer) == {"podSelector"}, f"only pod selectors of this namespace may reach it: {peer}"
    return [where for where, _, labels in _pods() if any(_selects(p["podSelector"], labels) for p in peers)]


def test_ingress_is_denied_by_default() -> None:
    deny = [p for p in _of_kind("NetworkPolicy") if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1, "one default-deny policy selecting every pod of the namespace"
    assert deny[0]["spec"]["policyTypes"] == ["Ingress"] and not deny[0]["spec"].get("ingress")


def _pod_labels(kind: str, name: str) -> dict[str, str]:
    (doc,) = [d for d in _of_kind(kind) if d["metadata"]["name"] == name]
    return dict(doc["spec"]["template"]["metadata"]["labels"])


def _ray_pod(where: str) -> bool:
    kind = where.split("/")[0]
    return kind in ("RayCluster", "RayJob", "RayService") and "submitterPodTemplate" not in where


def test_mlflow_is_reachable_only_from_ray_pods_and_the_user_setup_job() -> None:
    rules = _admitted(_of_kind("NetworkPolicy"), _pod_labels("Deployment", "mlflow"))
    assert rules, "no policy opens MLflow's port"
    for rule in rules:
        assert rule.get("ports") == [{"port": "http"}], f"MLflow: only its http port: {rule}"
        sources = _sources(rule)
        assert all(_ray_pod(w) or w.startswith("Job/raypipe-mlflow-users") for w in sources), sources
    admitted = {w for rule in rules for w in _sources(rule)}
    ray_pods = {w for w, _, _ in _pods() if _ray_pod(w)}
    assert ray_pods <= admitted, f"Ray pods that cannot reach MLflow: {ray_pods - admitted}"
    submitters = ("CronJob/", "RayJob/raypipe-train spec.submitterPodTemplate")
    assert not any(w.startswith(submitters) for w in admitted), "submitters only talk to Ray"


def test_postgres_is_reachable_only_from_mlflow() -> None:
    rules = _admitted(_of_kind("NetworkPolicy"), _pod_labels("StatefulSet", "postgres"))
    assert rules
    for rule in rules:
        assert rule.get("ports") == [{"port": "postgres"}], rule
        assert {w.split()[0] for w in _sources(rule)} == {"Deployment/mlflow"}


@pytest.mark.parametrize("ray", [d for d in ALL if d[2]["apiVersion"].startswith("ray.io/")], ids=_id)
def test_ray_ports_are_open_only_inside_the_same_ray_cluster(ray: Manifest) -> None:
    _, _, doc = ray
    own = f"{doc['kind']}/{doc['metadata']['name']} "
    pods = [(w, labels) for w, d, labels in _pods() if d is doc]
    # From outside the cluster: the dashboard (operator, submitters) and, for a RayService, Serve.
    outside = {"dashboard", "serve"} if doc["kind"] == "RayService" else {"dashboard"}
    for where, labels in pods:
        rules = _admitted(_of_kind("NetworkPolicy"), labels)
        assert any("ports" not in r and own.strip() in " ".join(_sources(r)) for r in rules), \
            f"{where}: the cluster's own pods cannot reach each other"
        for rule in rules:
            ports = {p["port"] for p in rule.get("ports", [])}
            namespaces = [p for p in rule.get("from", []) if "podSelector" not in p]
            if namespaces:
                assert all(set(p) == {"namespaceSelector"} for p in namespaces), rule
                assert ports and ports <= outside, f"{where}: other namespaces reach {ports or 'every port'}"
            elif not ports:
                assert all(w.startswith(own) for w in _sources(rule)), f"{where}: all ports open to {rule}"
            else:
                assert ports <= {"dashboard"}, f"{where}: pods of other clusters reach {ports}"
    if doc["kind"] == "RayService":  # users' traffic comes through the ingress controller
        worker = pods[-1][1]
        assert any({"port": "serve"} in r.get("ports", []) and "namespaceSelector" in r["from"][0]
                   for r in _admitted(_of_kind("NetworkPolicy"), worker))


# ------------------------------------------------------------------ security: credentials (finding 3)


def _env(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def _secret(env: dict[str, Any] | None) -> str | None:
    ref = (env or {}).get("valueFrom", {}).get("secretKeyRef")
    return ref["name"] if ref else None


def test_mlflow_runs_the_basic_auth_app_with_credentials_from_secrets() -> None:
    import configparser

    (server,) = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--app-name=basic-auth" in server["args"] and "exec mlflow server" in server["command"][-2]
    env = _env(server)
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        assert _secret(env.get(name)) == "raypipe-mlflow-admin", f"MLflow: {name} from the admin Secret"
    assert _secret(env.get("MLFLOW_FLASK_SERVER_SECRET_KEY")), "the auth app's CSRF key from a Secret"
    (config_map,) = [d for d in _of_kind("ConfigMap") if d["metadata"]["name"] == "mlflow-auth"]
    ini = configparser.ConfigParser()
    ini.read_string(config_map["data"]["basic_auth.ini"])
    assert ini["mlflow"]["default_permission"] == "READ", "a user without a grant may only read"
    assert not {"database_uri", "admin_password"} & set(ini["mlflow"]), "secrets stay in Secrets"
    # Every Ray pod logs in: serving as the read-only user, everything else as the writer.
    for doc in [d for _, _, d in ALL if d["apiVersion"].startswith("ray.io/")]:
        user = "raypipe-mlflow-reader" if doc["kind"] == "RayService" else "raypipe-mlflow-writer"
        for path, c in _containers(doc):
            if "MLFLOW_TRACKING_URI" in _env(c):
                for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                    assert _secret(_env(c).get(name)) == user, f"{doc['kind']} {path}: {name} from {user}"


def test_the_user_setup_job_grants_the_writer_the_served_model() -> None:
    from pipelines.config import load_config

    (job,) = [d for d in _of_kind("Job") if d["metadata"]["name"] == "raypipe-mlflow-users"]
    (c,) = job["spec"]["template"]["spec"]["containers"]
    env = _env(c)
    assert _secret(env["MLFLOW_TRACKING_PASSWORD"]) == "raypipe-mlflow-admin"
    assert {_secret(env[f"{r}_PASSWORD"]) for r in ("WRITER", "READER")} == \
        {"raypipe-mlflow-writer", "raypipe-mlflow-reader"}
    cfg = load_config(REPO / PIPELINE_CONFIG)
    assert env["MODEL_NAME"]["value"] == cfg.model_name == cfg.experiment_name
    script = c["command"][-1]
    compile(script, "job.mlflow-users.yaml", "exec")
    assert '"registered_model", name, "EDIT"' in script and "READER" in script


def test_rayservice_requires_the_serve_token_from_a_secret() -> None:
    service = _one("RayService")
    (app,) = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    variable = app["args"].get("auth_token_env")
    assert variable, "serve args: auth_token_env, else the service answers anyone"
    spec = service["spec"]["rayClusterConfig"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", "replicas must run on workers only"
    for group in spec["workerGroupSpecs"]:
        for c in group["template"]["spec"]["containers"]:
            token = _secret(_env(c).get(variable))
            assert token == "raypipe-serve-token", f"{group['groupName']}: {variable} from a Secret"


# ------------------------------------------------------------------ security: images (finding 15)

OVERLAY = CLUSTER / "overlays" / "production"


def _base_images() -> set[str]:
    return {c["image"] for _, _, doc in ALL for _, c in _containers(doc)}


def test_production_overlay_pins_every_image_by_digest() -> None:
    base = yaml.safe_load((CLUSTER / "kuberay" / "kustomization.yaml").read_text())
    listed = {p.name for p in (CLUSTER / "kuberay").glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(base["resources"]) == sorted(listed), "the base lists every manifest"
    overlay = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../object-storage"], "production = the default flavour, pinned"
    pins = {i["name"]: i for i in overlay["images"]}
    for image in sorted(_base_images()):
        name, _, tag = image.partition(":")
        assert tag and "@" not in image, f"base manifests use release tags: {image}"
        pin = pins.get(name)
        assert pin, f"production overlay: {name} is not pinned"
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", pin.get("digest", "")) and "newTag" not in pin, pin


def test_production_overlay_renders_only_digests() -> None:
    from tests.cluster.kustomize_build import build, split_image

    rendered = [c["image"] for _, _, doc in build(OVERLAY) for _, c in _containers(doc)]
    assert len(rendered) >= len(_base_images())
    assert all(re.search(r"@sha256:[0-9a-f]{64}$", i) for i in rendered), rendered
    pinned = {split_image(i)[0] for i in rendered}
    ours = {f"registry.invalid/{n}" for n in ("raypipe", "raypipe-gpu", "raypipe-mlflow")}
    assert pinned == ours | {"postgres"}
