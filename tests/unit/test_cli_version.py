"""``raypipe --version`` prints the installed distribution's version and exits 0."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from typer.testing import CliRunner

from pipelines.cli import DISTRIBUTION, app


def test_version_prints_the_installed_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"raypipe {version(DISTRIBUTION)}"


def test_version_names_the_distribution_pyproject_declares() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == DISTRIBUTION


def test_commands_still_run_under_the_app_callback() -> None:
    result = CliRunner().invoke(app, ["validate", "--help"])
    assert result.exit_code == 0 and "Check a config file" in result.output


def test_the_distribution_is_not_the_unrelated_raypipe_on_pypi() -> None:
    # "raypipe" on PyPI is someone else's project (checked 2026-12-02): publishing or
    # documenting under that name would make `pip install raypipe` install their code.
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "raypipe-tabular"
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "pip install raypipe-tabular" in readme and "pip install raypipe " not in readme
