"""The two storage flavours of the KubeRay manifests, rendered from their kustomize overlays.

cluster/kuberay is the base both share; cluster/overlays/object-storage (the default, and
what cluster/overlays/production builds on) and cluster/overlays/shared-volume add where the
runs write and how the Ray pods reach it. No kustomize binary is needed: the overlays are
rendered by tests/cluster/kustomize_build.py, and the renderings are checked like the base
(strict schemas, pod rules, credentials) plus each flavour's storage promises."""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import k8s_schema
from tests.cluster import test_manifests as base_rules
from tests.cluster.k8s_schema import CLUSTER, REPO
from tests.cluster.kustomize_build import KustomizeError, Rendered, build

OVERLAYS = CLUSTER / "overlays"
BASE = CLUSTER / "kuberay"
OBJECT_STORAGE = ("object-storage", "production")  # production = object storage + pinned digests
FLAVOURS = ("object-storage", "shared-volume", "production")
STORAGE_SECRET = "raypipe-object-storage"
RAY_SERVICE_ACCOUNT = "raypipe-ray"
SHARED = "/mnt/shared"


@cache
def _render(flavour: str) -> tuple[Rendered, ...]:
    return tuple(build(OVERLAYS / flavour))


def _rendered(flavour: str) -> list[Rendered]:
    return [(path, i, copy.deepcopy(doc)) for path, i, doc in _render(flavour)]


def _docs(flavour: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [doc for _, _, doc in _rendered(flavour) if kind is None or doc["kind"] == kind]


def _one(flavour: str, kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in _docs(flavour, kind) if d["metadata"]["name"] == name]
    return doc


def _ray_pods(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, pod template) of the Ray head and worker pods of a ray.io object."""
    return [(path, t) for path, t in k8s_schema.pod_templates(doc)
            if doc["apiVersion"].startswith("ray.io/") and "submitterPodTemplate" not in path]


def _other_pods(flavour: str) -> list[tuple[str, dict[str, Any]]]:
    """Pod templates that are no Ray head or worker: submitters, CronJobs, MLflow, PostgreSQL."""
    docs = _docs(flavour)
    ray = {id(t) for doc in docs for _, t in _ray_pods(doc)}
    return [(f"{doc['kind']}/{doc['metadata']['name']} {path}", t) for doc in docs
            for path, t in k8s_schema.pod_templates(doc) if id(t) not in ray]


def _pipeline_commands(flavour: str) -> dict[str, list[str]]:
    """argv of every pipeline run a flavour starts: the RayJob's and both CronJobs'."""
    commands = {"RayJob": shlex.split(_one(flavour, "RayJob", "raypipe-train")["spec"]["entrypoint"])}
    for name in ("raypipe-retrain", "raypipe-monitor"):
        pod = _one(flavour, "CronJob", name)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        command = pod["containers"][0]["command"]
        commands[name] = command[command.index("--") + 1:]
    return commands


def _work_dir(argv: list[str]) -> str:
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    found = [s.split("=", 1)[1] for s in sets if s.startswith("runtime.work_dir=")]
    assert len(found) == 1, f"expected one --set runtime.work_dir=... in {argv}"
    return found[0]


# ------------------------------------------------------------------ rendering and validity


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_flavour_renders_the_base_plus_its_storage(flavour: str) -> None:
    base = {(d["kind"], d["metadata"]["name"]) for _, _, d in k8s_schema.manifests()}
    rendered = {(d["kind"], d["metadata"]["name"]) for d in _docs(flavour)}
    extra = ({("ServiceAccount", RAY_SERVICE_ACCOUNT)} if flavour in OBJECT_STORAGE
             else {("PersistentVolumeClaim", "raypipe-shared")})
    assert rendered == base | extra
    if flavour == "production":
        assert {d["metadata"].get("namespace") for d in _docs(flavour)} == {"raypipe"}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_rendered_object_passes_strict_validation(flavour: str) -> None:
    problems = []
    for path, _, doc in _rendered(flavour):
        try:
            errors = k8s_schema.errors(doc)
        except FileNotFoundError as err:  # the shared CRDs are missing: a failure, not a skip
            pytest.fail(str(err))
        problems += [f"{path.name} {doc['kind']}/{doc['metadata']['name']}: {e}" for e in errors]
    assert problems == [], f"{flavour}:\n" + "\n".join(problems)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_rendered_pods_follow_the_base_pod_rules(flavour: str) -> None:
    for manifest in _rendered(flavour):
        if list(k8s_schema.pod_templates(manifest[2])):
            base_rules.test_pods_run_non_root_without_privilege_escalation(manifest)
            base_rules.test_requests_equal_limits(manifest)
            base_rules.test_our_containers_have_a_read_only_root_and_an_emptydir_tmp(manifest)
            base_rules.test_only_an_autoscaling_head_mounts_a_service_account_token(manifest)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_rendered_credentials_are_references_only(flavour: str) -> None:
    sensitive = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|STORE_URI", re.I)
    referenced = set()
    for path, _, doc in _rendered(flavour):
        assert doc["kind"] != "Secret", f"{path.name}: Secrets are created by hand, never committed"
        for cpath, c in base_rules._containers(doc):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                assert not (sensitive.search(env["name"]) and not ref), f"{cpath}: {env['name']} literal"
                referenced |= {ref["name"]} if ref else set()
            for source in c.get("envFrom", []):
                assert set(source) == {"secretRef"}, f"{cpath}: envFrom only from Secrets: {source}"
                referenced.add(source["secretRef"]["name"])
    text = "\n".join(yaml.safe_dump(d) for d in _docs(flavour))
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key\s*[:=]", text, re.I), "a key in a manifest"
    readme = (CLUSTER / "README.md").read_text()
    for name in sorted(referenced):
        assert f"kubectl create secret generic {name}" in readme, f"README: no command creating {name}"


# ------------------------------------------------------------------ object storage


@pytest.mark.parametrize("flavour", OBJECT_STORAGE)
def test_object_storage_flavour_has_no_shared_volume(flavour: str) -> None:
    assert not _docs(flavour, "PersistentVolumeClaim")
    for doc in _docs(flavour):
        for path, template in k8s_schema.pod_templates(doc):
            spec = template["spec"]
            for volume in spec.get("volumes", []):
                assert "persistentVolumeClaim" not in volume and "shared" not in volume["name"], \
                    f"{doc['kind']} {path}: volume {volume}"
            for c in spec["containers"]:
                for mount in c.get("volumeMounts", []):
                    assert "shared" not in mount["name"] and not mount["mountPath"].startswith(SHARED), mount
                assert "RAYPIPE_SHARED_DIRS" not in base_rules._env(c), f"{path}: RAYPIPE_SHARED_DIRS"
    text = "\n".join(yaml.safe_dump(d) for d in _docs(flavour))
    assert SHARED not in text and "RAYPIPE_SHARED_DIRS" not in text


@pytest.mark.parametrize("flavour", OBJECT_STORAGE)
def test_object_storage_flavour_gives_every_ray_pod_bucket_credentials(flavour: str) -> None:
    (account,) = _docs(flavour, "ServiceAccount")
    assert account["metadata"]["name"] == RAY_SERVICE_ACCOUNT
    ray_objects = [d for d in _docs(flavour) if d["apiVersion"].startswith("ray.io/")]
    assert len(ray_objects) == 3
    for doc in ray_objects:
        pods = _ray_pods(doc)
        assert len(pods) >= 2, f"{doc['kind']}: head and workers"
        for path, template in pods:
            spec = template["spec"]
            where = f"{doc['kind']}/{doc['metadata']['name']} {path}"
            assert spec.get("serviceAccountName") == RAY_SERVICE_ACCOUNT, f"{where}: workload identity"
            for c in spec["containers"]:
                assert {"secretRef": {"name": STORAGE_SECRET, "optional": True}} in c.get("envFrom", []), \
                    f"{where}: envFrom the optional Secret {STORAGE_SECRET} (or none: workload identity)"
    # Pods that never touch the bucket (submitters only call Ray's job API) get no credentials.
    for where, template in _other_pods(flavour):
        assert "serviceAccountName" not in template["spec"], where
        assert not any(c.get("envFrom") for c in template["spec"]["containers"]), where
    text = (OVERLAYS / "object-storage" / "serviceaccount.ray.yaml").read_text()
    for annotation in ("eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account"):
        assert annotation in text, f"serviceaccount.ray.yaml shows no {annotation} placeholder"


@pytest.mark.parametrize("flavour", OBJECT_STORAGE)
def test_object_storage_flavour_runs_write_to_the_bucket(flavour: str) -> None:
    from pipelines.config import load_config

    for where, argv in _pipeline_commands(flavour).items():
        work_dir = _work_dir(argv)
        assert re.fullmatch(r"s3://[^/\s]+/raypipe", work_dir), f"{where}: runtime.work_dir={work_dir}"
        config, sets = base_rules._overrides([a.replace("ray_jobs/monitor.py", "ray_jobs/run_pipeline.py")
                                              for a in argv])
        assert config == base_rules.PIPELINE_CONFIG
        load_config(REPO / config, sets)  # valid overrides for the one pipeline config


# ------------------------------------------------------------------ shared volume


def test_shared_volume_flavour_mounts_the_pvc_in_every_ray_pod() -> None:
    (pvc,) = _docs("shared-volume", "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "mounted by every pod at once"
    ray_objects = [d for d in _docs("shared-volume") if d["apiVersion"].startswith("ray.io/")]
    assert len(ray_objects) == 3
    for doc in ray_objects:
        for path, template in _ray_pods(doc):
            spec = template["spec"]
            where = f"{doc['kind']}/{doc['metadata']['name']} {path}"
            claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                      for v in spec["volumes"] if "persistentVolumeClaim" in v}
            assert claims == {"shared": pvc["metadata"]["name"]}, f"{where}: volumes {claims}"
            assert spec["securityContext"]["fsGroup"] == 100, f"{where}: the volume writable for group 100"
            for c in spec["containers"]:
                assert {"name": "shared", "mountPath": SHARED} in c["volumeMounts"], f"{where}: mount"
                assert base_rules._env(c)["RAYPIPE_SHARED_DIRS"] == {"name": "RAYPIPE_SHARED_DIRS",
                                                                     "value": SHARED}, where
    for where, template in _other_pods("shared-volume"):
        assert not any("persistentVolumeClaim" in v for v in template["spec"].get("volumes", [])
                       if v["name"] == "shared"), f"{where}: only Ray pods mount the shared volume"
    for where, argv in _pipeline_commands("shared-volume").items():
        assert _work_dir(argv) == f"{SHARED}/raypipe", where


# ------------------------------------------------------------------ one base


def _strip_storage(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without what a flavour adds: the base object it was rendered from."""
    doc = copy.deepcopy(doc)
    doc["metadata"].pop("namespace", None)
    for _, template in _ray_pods(doc):
        spec = template["spec"]
        spec.pop("serviceAccountName", None)
        if spec["securityContext"].get("fsGroup") == 100:
            del spec["securityContext"]["fsGroup"]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "shared"]
        for c in spec["containers"]:
            c.pop("envFrom", None)
            c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "shared"]
            c["env"] = [e for e in c["env"] if e["name"] != "RAYPIPE_SHARED_DIRS"]
    for _, template in k8s_schema.pod_templates(doc):
        spec = template["spec"]
        for c in spec["containers"]:
            if c.get("command", [])[-2:-1] == ["--set"] and c["command"][-1].startswith("runtime.work_dir="):
                c["command"] = c["command"][:-2]
        for c in spec["containers"] + spec.get("initContainers", []):
            c["image"] = "<image>"  # production pins them: test_manifests.py checks how
    if doc["kind"] == "RayJob":
        argv = shlex.split(doc["spec"]["entrypoint"])
        i = argv.index(f"runtime.work_dir={_work_dir(argv)}")
        doc["spec"]["entrypoint"] = shlex.join(argv[:i - 1] + argv[i + 1:])
    return doc


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_flavours_change_nothing_but_storage(flavour: str) -> None:
    """Everything but storage (and production's images and namespace) is the base's, so the
    flavours cannot drift apart: a change to the base reaches both."""
    base = {(d["kind"], d["metadata"]["name"]): d for _, _, d in k8s_schema.manifests()}
    for doc in _docs(flavour):
        key = (doc["kind"], doc["metadata"]["name"])
        if key in base:
            assert _strip_storage(doc) == _normalized_base(base[key]), f"{flavour}: {key} is not the base's"


def _normalized_base(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for _, template in k8s_schema.pod_templates(doc):
        for c in template["spec"]["containers"] + template["spec"].get("initContainers", []):
            c["image"] = "<image>"
    if doc["kind"] == "RayJob":
        doc["spec"]["entrypoint"] = shlex.join(shlex.split(doc["spec"]["entrypoint"]))
    return doc


def test_overlays_share_the_base_and_duplicate_none_of_it() -> None:
    base_files = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    for flavour in ("object-storage", "shared-volume"):
        folder = OVERLAYS / flavour
        spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
        assert spec["resources"][0] == "../../kuberay", f"{flavour}: builds on the base"
        files = {p.name for p in folder.iterdir()} - {"kustomization.yaml"}
        assert not files & base_files, f"{flavour} copies base files: {files & base_files}"
        used = set(spec["resources"][1:]) | {p["path"] for p in spec["patches"]}
        assert files == used, f"{flavour}: files the kustomization does not use: {files - used}"
        for patch in sorted(folder.glob("*.patch.yaml")):  # patches add and replace fields, never objects
            for op in yaml.safe_load(patch.read_text()):
                assert op["op"] in ("add", "replace") and op["path"].count("/") >= 2, f"{patch.name}: {op}"
    production = yaml.safe_load((OVERLAYS / "production" / "kustomization.yaml").read_text())
    assert production["resources"] == ["../object-storage"], "production is the object-storage flavour"


# ------------------------------------------------------------------ the renderer itself


def _kustomization(folder: Path, text: str, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(text)
    for name, content in files.items():
        (folder / name.replace("__", ".")).write_text(content)
    return folder


POD = """apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers:
  - {name: a, image: "raypipe:1", env: [{name: X, value: "1"}]}
  - {name: b, image: "registry.example:5000/raypipe-gpu:1"}
"""


def test_renderer_applies_json6902_images_and_namespace(tmp_path: Path) -> None:
    _kustomization(tmp_path / "base", "kind: Kustomization\nresources: [pod.yaml]\n", pod__yaml=POD)
    patch = """- {op: add, path: /spec/containers/0/env/-, value: {name: Y, value: "2"}}
- {op: add, path: /spec/containers/0/env/0, value: {name: W, value: "0"}}
- {op: replace, path: /spec/containers/1/name, value: c}
- {op: add, path: /spec/serviceAccountName, value: sa}
- {op: remove, path: /metadata/name~1x}
"""
    overlay = _kustomization(tmp_path / "overlay", """kind: Kustomization
namespace: ns
resources: [../base]
patches:
- {path: p.yaml, target: {version: v1, kind: Pod, name: p}}
images:
- {name: raypipe, newName: r.invalid/raypipe, digest: "sha256:00"}
- {name: registry.example:5000/raypipe-gpu, newTag: "2"}
""", p__yaml=patch)
    with pytest.raises(KustomizeError, match="remove /metadata/name~1x"):  # a missing path is an error
        build(overlay)
    (overlay / "p.yaml").write_text(patch.replace("- {op: remove, path: /metadata/name~1x}\n", ""))
    ((_, _, pod),) = build(overlay)
    assert pod["metadata"] == {"name": "p", "namespace": "ns"}
    a, c = pod["spec"]["containers"]
    assert [e["name"] for e in a["env"]] == ["W", "X", "Y"] and c["name"] == "c"
    assert pod["spec"]["serviceAccountName"] == "sa"
    assert a["image"] == "r.invalid/raypipe@sha256:00" and c["image"] == "registry.example:5000/raypipe-gpu:2"


@pytest.mark.parametrize(("kustomization", "files", "error"), [
    ("kind: Kustomization\nresources: [pod.yaml]\ncommonLabels: {a: b}\n", {}, "not supported"),
    ("kind: Kustomization\nresources: [pod.yaml]\npatches:\n- {path: p.yaml, target: {kind: Pod, name: p}}\n",
     {"p__yaml": "spec: {serviceAccountName: sa}\n"}, "strategic-merge"),
    ("kind: Kustomization\nresources: [pod.yaml]\npatches:\n- {path: p.yaml, target: {kind: Pod, name: q}}\n",
     {"p__yaml": "- {op: add, path: /x, value: 1}\n"}, "matches 0 objects"),
    ("kind: Kustomization\nresources: [pod.yaml, ../elsewhere.yaml]\n", {}, "outside the kustomization"),
    ("kind: Kustomization\nresources: [pod.yaml, pod.yaml]\n", {}, "comes from both"),
])
def test_renderer_refuses_what_it_does_not_support(tmp_path: Path, kustomization: str,
                                                   files: dict[str, str], error: str) -> None:
    (tmp_path / "elsewhere.yaml").write_text(POD.replace("name: p", "name: q"))
    folder = _kustomization(tmp_path / "k", kustomization, pod__yaml=POD, **files)
    with pytest.raises(KustomizeError, match=error):
        build(folder)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_renderer_agrees_with_kustomize_where_installed(flavour: str) -> None:
    kustomize = shutil.which("kustomize")
    kubectl = shutil.which("kubectl")
    if not (kustomize or kubectl):
        pytest.skip("no kustomize or kubectl binary: the test renderer alone is checked")
    command = [kustomize, "build"] if kustomize else [kubectl, "kustomize"]
    out = subprocess.run([*command, str(OVERLAYS / flavour)], capture_output=True, text=True, check=True)
    theirs = sorted(yaml.safe_dump(d, sort_keys=True) for d in yaml.safe_load_all(out.stdout) if d)
    ours = sorted(yaml.safe_dump(d, sort_keys=True) for d in _docs(flavour))
    assert ours == theirs
