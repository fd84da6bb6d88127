"""Installing a plugin package for a test: a module and its dist-info on ``sys.path``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest


def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, body: str,
                   group: str, entry: str) -> None:
    """A distribution on sys.path, as ``pip install`` of a plugin package leaves it: ``module``
    holding ``body``, declaring ``entry`` (``name = module:object``) in entry point ``group``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    info = tmp_path / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
