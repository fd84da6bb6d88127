"""The CLI refuses, with exit code 2 and before Ray starts, what would delete a folder raypipe
did not write or send files outside the work dir."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipelines.cli import _model_uri, _request_log_args, app

BAD_MODEL = "models:/../../tmp/x@champion"


def _predict(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["predict", "--tracking-uri",
                                      (tmp_path / "mlruns").as_uri(), *args])
    # Rich wraps long lines at the terminal width; compare without whitespace.
    return result.exit_code, "".join(result.output.split())


def test_predict_overwrite_refuses_a_folder_raypipe_did_not_write(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    raw = tmp_path / "raw.parquet"
    raw.write_bytes(b"")
    code, shown = _predict(tmp_path, "--model", "models:/m@champion", "--input", str(raw),
                           "--output", str(home), "--overwrite")
    assert code == 2
    assert str(home) in shown and "_RAYPIPE_OUTPUT" in shown
    assert (home / "thesis.tex").read_text() == "years of work"


def test_predict_refuses_an_input_inside_the_output(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "_RAYPIPE_OUTPUT").write_text('{"writer": "raypipe predict"}')
    raw = data / "raw.parquet"
    raw.write_bytes(b"")
    code, shown = _predict(tmp_path, "--model", "models:/m@champion", "--input", str(raw),
                           "--output", str(data), "--overwrite")
    assert code == 2 and "--input" in shown and "--output" in shown
    assert raw.exists()


def test_predict_refuses_a_model_uri_that_leaves_the_registry(tmp_path: Path) -> None:
    code, shown = _predict(tmp_path, "--model", BAD_MODEL, "--input", "raw.parquet",
                           "--output", str(tmp_path / "out"))
    assert code == 2 and "--model" in shown


@pytest.mark.parametrize("uri", [
    BAD_MODEL, "models:/a/b/c", "models:/churn/latest", "models:/churn@../x", "models:/@champion",
])
def test_the_model_option_refuses_uris_outside_the_name_rules(uri: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as info:
        _model_uri(uri, None)
    assert info.value.exit_code == 2
    assert "--model" in capsys.readouterr().err


def test_request_logs_stay_under_the_work_dir() -> None:
    with pytest.raises(ValueError, match="models:/"):
        _request_log_args(None, BAD_MODEL)
    path = Path(_request_log_args(None, "models:/churn@champion")["request_log_path"])
    assert path.name == "churn" and path.parent.name == "request_logs"
