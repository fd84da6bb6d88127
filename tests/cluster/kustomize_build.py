"""``kustomize build`` for the tests, for exactly the features cluster/ uses.

There is no kustomize or kubectl binary on the test machines (and no PyPI package that ships
one), so the tests render the overlays themselves. This renderer supports these kustomization
fields and refuses every other one, so that a manifest cannot come to rely on a feature the
tests would silently skip:

* ``resources``: YAML files (one or more documents) and directories holding a
  ``kustomization.yaml``, built recursively first, as kustomize does.
* ``patches``: ``path`` + ``target`` (``group``, ``version``, ``kind``, ``name``), the file
  being a JSON 6902 patch with ``add``, ``remove`` and ``replace`` operations (RFC 6901
  pointers, ``-`` appends to a list). Strategic-merge patches are refused: KubeRay's CRDs give
  no merge key for ``workerGroupSpecs``, so kustomize would replace that whole list, and the
  overlays use JSON 6902 patches instead.
* ``images``: ``name`` with ``newName``, ``newTag`` or ``digest``, applied to the ``image`` of
  every container and init container anywhere in an object (kustomize's default).
* ``namespace``: set on every object.

Where kustomize is lenient and a mistake would go unnoticed, this is strict: a patch target
must match exactly one object, a JSON 6902 ``replace``/``remove`` path must exist, and two
objects may not share kind, namespace and name. Like kustomize's default load restrictor,
files (resources, patches) must lie inside their kustomization's folder; directories of
other kustomizations may lie anywhere.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

Rendered = tuple[Path, int, dict[str, Any]]
"""(file the object comes from, index in that file, the object after all transformations)."""

_FIELDS = {"apiVersion", "kind", "resources", "patches", "images", "namespace"}
_TARGET_FIELDS = {"group", "version", "kind", "name"}
_IMAGE_FIELDS = {"name", "newName", "newTag", "digest"}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot build, or one kustomize would reject."""


def build(directory: Path) -> list[Rendered]:
    """Every object the kustomization in ``directory`` renders, in resource order."""
    directory = directory.resolve()
    spec = _kustomization(directory)
    objects: list[Rendered] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects += build(path)
        else:
            _inside(directory, path, "resource")
            docs = yaml.safe_load_all(path.read_text())
            objects += [(path, i, doc) for i, doc in enumerate(docs) if doc]
    _check_unique(directory, objects)
    for patch in spec.get("patches", []):
        _apply_patch(directory, patch, objects)
    for image in spec.get("images", []):
        _set_image(image, objects)
    if "namespace" in spec:
        for _, _, doc in objects:
            doc["metadata"]["namespace"] = spec["namespace"]
    return objects


def _kustomization(directory: Path) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    spec = yaml.safe_load(path.read_text())
    unknown = set(spec) - _FIELDS
    if unknown:
        raise KustomizeError(f"{path}: fields {sorted(unknown)} are not supported by the test renderer "
                             f"(supported: {sorted(_FIELDS)}); extend tests/cluster/kustomize_build.py")
    if spec.get("kind") != "Kustomization":
        raise KustomizeError(f"{path}: kind must be Kustomization")
    return dict(spec)


def _inside(directory: Path, path: Path, what: str) -> None:
    if not path.is_relative_to(directory):
        raise KustomizeError(f"{directory}: {what} {path} lies outside the kustomization's folder "
                             "(kustomize's load restrictor refuses it): list its folder instead")
    if not path.is_file():
        raise KustomizeError(f"{directory}: {what} {path} does not exist")


def _key(doc: dict[str, Any]) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def _check_unique(directory: Path, objects: list[Rendered]) -> None:
    seen: dict[tuple[str, str, str], Path] = {}
    for path, _, doc in objects:
        key = _key(doc)
        if key in seen:
            raise KustomizeError(f"{directory}: {key} comes from both {seen[key]} and {path}")
        seen[key] = path


def _matches(target: dict[str, Any], doc: dict[str, Any]) -> bool:
    group, _, version = doc["apiVersion"].rpartition("/")
    return (target.get("kind", doc["kind"]) == doc["kind"]
            and target.get("name", doc["metadata"]["name"]) == doc["metadata"]["name"]
            and target.get("group", group) == group
            and target.get("version", version) == version)


def _apply_patch(directory: Path, patch: dict[str, Any], objects: list[Rendered]) -> None:
    if set(patch) != {"path", "target"}:
        raise KustomizeError(f"{directory}: a patch needs exactly `path` and `target`, got {sorted(patch)}")
    target = patch["target"]
    if not set(target) <= _TARGET_FIELDS or "kind" not in target or "name" not in target:
        raise KustomizeError(f"{directory}: target {target}: give kind and name (group, version optional)")
    path = (directory / patch["path"]).resolve()
    _inside(directory, path, "patch")
    ops = yaml.safe_load(path.read_text())
    if not isinstance(ops, list):
        raise KustomizeError(f"{path}: not a JSON 6902 patch (a list of operations); strategic-merge "
                             "patches are not supported (see this module's docstring)")
    hits = [doc for _, _, doc in objects if _matches(target, doc)]
    if len(hits) != 1:
        raise KustomizeError(f"{path}: target {target} matches {len(hits)} objects, expected 1")
    for op in ops:
        try:
            _apply_op(hits[0], op)
        except (KeyError, IndexError, ValueError, TypeError) as err:
            raise KustomizeError(f"{path}: {op.get('op')} {op.get('path')}: {err}") from err


def _tokens(pointer: str) -> list[str]:
    if not pointer.startswith("/"):
        raise ValueError("a JSON pointer starts with /")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(token: str, size: int) -> int:
    if not re.fullmatch(r"0|[1-9][0-9]*", token) or int(token) >= size:
        raise IndexError(f"no list index {token!r} (length {size})")
    return int(token)


def _apply_op(doc: dict[str, Any], op: dict[str, Any]) -> None:
    kind, tokens = op["op"], _tokens(op["path"])
    if kind not in ("add", "remove", "replace"):
        raise ValueError(f"operation {kind!r} is not supported by the test renderer")
    parent: Any = doc
    for token in tokens[:-1]:
        parent = parent[_index(token, len(parent))] if isinstance(parent, list) else parent[token]
    last = tokens[-1]
    if isinstance(parent, list):
        if kind == "add":
            at = len(parent) if last == "-" else _index(last, len(parent) + 1)
            parent.insert(at, copy.deepcopy(op["value"]))
        elif kind == "remove":
            del parent[_index(last, len(parent))]
        else:
            parent[_index(last, len(parent))] = copy.deepcopy(op["value"])
    elif isinstance(parent, dict):
        if kind != "add" and last not in parent:
            raise KeyError(f"{last!r} does not exist")
        if kind == "remove":
            del parent[last]
        else:
            parent[last] = copy.deepcopy(op["value"])
    else:
        raise TypeError(f"cannot address {last!r} inside a {type(parent).__name__}")


def _containers(obj: Any) -> list[dict[str, Any]]:
    """Every container and init container anywhere in ``obj`` (kustomize's image fields)."""
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found += [c for c in value if isinstance(c, dict) and "image" in c]
            else:
                found += _containers(value)
    elif isinstance(obj, list):
        for value in obj:
            found += _containers(value)
    return found


def _set_image(image: dict[str, Any], objects: list[Rendered]) -> None:
    if not set(image) <= _IMAGE_FIELDS or "name" not in image:
        raise KustomizeError(f"images entry {image}: supported fields are {sorted(_IMAGE_FIELDS)}")
    for _, _, doc in objects:
        for container in _containers(doc):
            name, tag, digest = split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{name}:{image['newTag']}"
            else:
                container["image"] = name + (f"@{digest}" if digest else f":{tag}" if tag else "")


def split_image(image: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference; a registry port is part of the name."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:], digest
    return name, "", digest
