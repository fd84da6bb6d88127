"""Cluster tests: manifests and images (static), storage checks, and real multi-node Ray runs.

The slow ones carry the ``cluster`` marker: ``pytest -m cluster`` runs only them,
``pytest -m "not cluster"`` everything else.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: starts its own multi-node Ray cluster (ray start / autoscaler); slow"
    )
