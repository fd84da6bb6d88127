"""Strict validation of the Kubernetes manifests in cluster/.

* ``ray.io/v1`` objects: the openAPIV3Schema of the KubeRay CRDs in ``../shared/kuberay-crds``
  (v1.7.0), plus what the API server would do and plain JSON Schema does not: an object schema
  that lists ``properties`` and neither ``additionalProperties`` nor
  ``x-kubernetes-preserve-unknown-fields`` rejects keys it does not list (the API server
  prunes them silently, so a typo would vanish instead of failing). Their ``metadata`` and
  every embedded pod template are also checked against Kubernetes' own strict schemas.
* Core objects (Deployment, Service, StatefulSet, PersistentVolumeClaim, CronJob, ...):
  ``kubernetes-validate`` in strict mode (unknown fields are errors there too).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import Draft202012Validator
from jsonschema import _keywords as keywords  # the stock "properties" check, extended below
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
CRD_DIR = (REPO / ".." / "shared" / "kuberay-crds").resolve()
K8S_VERSION = "1.33.0"  # a Kubernetes minor that KubeRay 1.7 supports and current managed clusters run

Manifest = tuple[Path, int, dict[str, Any]]


def manifests() -> list[Manifest]:
    """Every object in cluster/kuberay/*.yaml as (file, index in file, object); the
    kustomization.yaml there lists them for kustomize and is no Kubernetes object itself."""
    found = []
    for path in sorted((CLUSTER / "kuberay").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                found.append((path, i, doc))
    return found


def crd_dir() -> Path:
    """The shared KubeRay CRDs; a clear failure (not a skip) when they are missing."""
    if not CRD_DIR.is_dir() or not list(CRD_DIR.glob("ray.io_*.yaml")):
        raise FileNotFoundError(
            f"KubeRay CRDs not found at {CRD_DIR}: the tests expect the shared/ folder beside the "
            "repository (../shared/kuberay-crds/ray.io_*.yaml, KubeRay v1.7.0; see its SOURCE.txt)"
        )
    return CRD_DIR


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema for every served version of every shared CRD."""
    schemas = {}
    for path in sorted(crd_dir().glob("ray.io_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def _closed(schema: dict[str, Any]) -> bool:
    return ("additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields", False))


def _strict_properties(
    validator: Any, properties: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    yield from keywords.properties(validator, properties, instance, schema)
    if validator.is_type(instance, "object") and _closed(schema):
        for key in sorted(set(instance) - set(properties)):
            yield jsonschema.ValidationError(f"unknown field {key!r}", path=[key],
                                             validator="properties", validator_value=sorted(properties))


StrictValidator = jsonschema.validators.extend(Draft202012Validator, {"properties": _strict_properties})
"""JSON Schema 2020-12 validation where closed object schemas reject unknown keys."""


def _messages(validator: Any, instance: Any, prefix: str = "") -> list[str]:
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{(prefix + '.'.join(str(p) for p in e.absolute_path)).rstrip('.') or '<root>'}: {e.message}"
            for e in errors]


@cache
def _k8s_registry() -> tuple[Registry, str]:
    from kubernetes_validate.utils import schema_contents

    defs = schema_contents(f"kubernetes-json-schema/v{K8S_VERSION}-local-strict/_definitions.json",
                           K8S_VERSION)
    return Resource.from_contents(defs) @ Registry(), defs["$id"]


def k8s_definition_errors(definition: str, instance: Any, prefix: str = "") -> list[str]:
    """Errors of ``instance`` against Kubernetes' strict schema of ``definition``
    (e.g. ``io.k8s.api.core.v1.PodTemplateSpec``)."""
    registry, base = _k8s_registry()
    validator = Draft202012Validator({"$ref": f"{base}#/$defs/{definition}"}, registry=registry)
    return _messages(validator, instance, prefix)


def pod_templates(obj: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, pod template) for every pod template nested in ``obj``."""
    if isinstance(obj, dict):
        spec = obj.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("containers"), list):
            yield path, obj
            return
        for key, value in obj.items():
            yield from pod_templates(value, f"{path}.{key}" if path else key)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from pod_templates(value, f"{path}[{i}]")


def crd_errors(doc: dict[str, Any], schema: dict[str, Any] | None = None) -> list[str]:
    """Every problem of a ray.io object: CRD schema (strict), metadata, embedded pod templates."""
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if schema is None:
        if key not in crd_schemas():
            return [f"<root>: no shared KubeRay CRD for {key[0]} {key[1]}"]
        schema = crd_schemas()[key]
    errors = _messages(StrictValidator(schema), doc)
    errors += k8s_definition_errors("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                                    doc.get("metadata", {}), "metadata.")
    for path, template in pod_templates(doc.get("spec", {}), "spec"):
        # Template metadata may be partial; the pod spec is checked in full.
        errors += k8s_definition_errors("io.k8s.api.core.v1.PodTemplateSpec", template, f"{path}.")
    return errors


def core_errors(doc: dict[str, Any]) -> list[str]:
    """Problems of a core Kubernetes object under kubernetes-validate's strict schemas."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'.'.join(str(p) for p in err.path) or '<root>'}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [f"<root>: {err.message}"]
    return []


def errors(doc: dict[str, Any]) -> list[str]:
    """Dispatch on the API group: KubeRay CRDs for ray.io, Kubernetes' schemas otherwise."""
    if str(doc.get("apiVersion", "")).startswith("ray.io/"):
        return crd_errors(doc)
    return core_errors(doc)


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def ray_pin() -> str:
    """The one exact Ray version pyproject.toml pins (images and manifests must match it)."""
    deps = pyproject()["project"]["dependencies"]
    pins = [m.group(1) for d in deps if (m := re.match(r"ray(?:\[[^\]]*\])?==([\w.]+)$", d.replace(" ", "")))]
    assert len(pins) == 1, f"expected one exact ray[...]==X pin in pyproject.toml, found {deps}"
    return pins[0]
