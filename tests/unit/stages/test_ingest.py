"""Read failures that surface inside Ray tasks become one line naming the file (no Ray here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import FileSource, HttpSource
from pipelines.sources import InputError
from pipelines.stages.ingest import source_errors


class FakeTaskError(RuntimeError):
    """Stands for Ray's RayTaskError: a remote traceback as text, the original in ``.cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("ray::ReadCSV() (pid=1)\nTraceback ...")
        self.cause = cause


def test_csv_failure_is_explained_with_file_row_and_value(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\nthree,4\n")
    source = FileSource(path=str(tmp_path), format="csv", column_types={"a": "int"})
    ray_error = ValueError(f"Failed to read CSV file: {path}. Please check the CSV file has "
                           "correct format, or filter out non-CSV file...")
    with pytest.raises(InputError) as info, source_errors(source):
        raise FakeTaskError(ray_error)
    message = str(info.value)
    assert message.startswith(f"cannot read csv file {path}: ")
    assert "'three'" in message and "source.column_types" in message
    assert "Traceback" not in message


def test_a_broken_json_lines_file_is_found_among_good_ones(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n{"x": 2}\n')
    (tmp_path / "b.jsonl").write_text('{"x": 3}\n{"x": \n')
    source = FileSource(path=str(tmp_path / "*.jsonl"), format="json")
    with pytest.raises(InputError, match=rf"cannot read json file {tmp_path}/b.jsonl: "), \
            source_errors(source):
        raise FakeTaskError(ValueError("JSON parse error (Ray names no file)"))


def test_a_file_error_that_no_file_explains_passes_unchanged(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n')
    with pytest.raises(FakeTaskError), \
            source_errors(FileSource(path=str(tmp_path / "a.jsonl"), format="json")):
        raise FakeTaskError(ValueError("something else"))


def test_an_input_error_from_a_task_keeps_its_own_message() -> None:
    source = HttpSource(url="http://api/x")
    with pytest.raises(InputError, match=r"^http source http://api/x \(page 4\): HTTP 500$"), \
            source_errors(source):
        raise FakeTaskError(InputError("http source http://api/x (page 4): HTTP 500"))


def test_other_errors_pass_unchanged() -> None:
    with pytest.raises(KeyError), source_errors(HttpSource(url="http://api/x")):
        raise KeyError("not a read failure")
