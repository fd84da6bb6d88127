"""Output folders: raypipe replaces only a folder it wrote, never one holding its input, and a
failed run leaves the previous output as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.outputs import (
    MARKER,
    OutputFolderError,
    check_overlap,
    check_replaceable,
    read_marker,
    replacing,
)


def _folder(path: Path, **files: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def _ours(path: Path) -> Path:
    """A folder as a finished predict run leaves it."""
    with replacing(str(path), overwrite=False, writer={"command": "test"}) as staging:
        _folder(Path(staging), **{"part-0.parquet": "old"})
    return path


# --------------------------------------------------------------------------- the marker


def test_a_missing_or_empty_output_can_be_written_without_overwrite(tmp_path: Path) -> None:
    check_replaceable(str(tmp_path / "new"), overwrite=False)
    check_replaceable(str(_folder(tmp_path / "empty")), overwrite=False)


def test_a_full_folder_is_refused_without_overwrite(tmp_path: Path) -> None:
    out = _ours(tmp_path / "out")
    with pytest.raises(OutputFolderError, match=r"--output.*not empty.*--overwrite"):
        check_replaceable(str(out), overwrite=False)


def test_overwrite_refuses_a_folder_raypipe_did_not_write(tmp_path: Path) -> None:
    home = _folder(tmp_path / "home", **{"thesis.tex": "years of work"})
    with pytest.raises(OutputFolderError) as info:
        check_replaceable(str(home), overwrite=True)
    assert str(home) in str(info.value) and MARKER in str(info.value)
    assert (home / "thesis.tex").read_text() == "years of work"


def test_overwrite_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(OutputFolderError, match="not a folder"):
        check_replaceable(str(target), overwrite=True)


def test_overwrite_accepts_a_folder_raypipe_wrote(tmp_path: Path) -> None:
    out = _ours(tmp_path / "out")
    check_replaceable(str(out), overwrite=True)
    marker = read_marker(str(out))
    assert marker is not None and marker["command"] == "test" and "created_at" in marker
    assert json.loads((out / MARKER).read_text()) == marker


def test_a_marker_that_is_not_raypipe_json_does_not_count(tmp_path: Path) -> None:
    out = _folder(tmp_path / "out", **{MARKER: "not json", "data.csv": "1,2"})
    assert read_marker(str(out)) is None
    with pytest.raises(OutputFolderError):
        check_replaceable(str(out), overwrite=True)


# --------------------------------------------------------------------------- overlap


@pytest.mark.parametrize(("inp", "out"), [
    ("data", "data"),                        # the same folder
    ("data/raw.parquet", "data"),            # input inside the output
    ("data/sub/*.parquet", "data"),          # a glob inside the output
    ("data", "data/preds"),                  # output inside the input
    ("data/../data/raw.parquet", "./data"),  # compared resolved
])
def test_overlapping_local_input_and_output_are_refused(tmp_path: Path, inp: str,
                                                        out: str) -> None:
    _folder(tmp_path / "data" / "sub", **{"a.parquet": "x"})
    with pytest.raises(OutputFolderError, match=r"--input.*--output"):
        check_overlap(str(tmp_path / inp), str(tmp_path / out))
    assert (tmp_path / "data" / "sub" / "a.parquet").exists()


@pytest.mark.parametrize(("inp", "out"), [
    ("data/raw.parquet", "preds"),
    ("data", "data-preds"),                  # a shared name prefix is not containment
    ("data/*.parquet", "preds"),
])
def test_separate_local_paths_pass(tmp_path: Path, inp: str, out: str) -> None:
    check_overlap(str(tmp_path / inp), str(tmp_path / out))


@pytest.mark.parametrize(("inp", "out", "refused"), [
    ("s3://bucket/raw/part.parquet", "s3://bucket/raw", True),
    ("s3://bucket/raw", "s3://bucket/raw/preds/", True),
    ("s3://bucket/raw/*.parquet", "s3://bucket/raw/", True),
    ("s3://bucket/raw", "s3://bucket/raw-preds", False),
    ("s3://bucket/raw", "gs://bucket/raw", False),
    ("s3://bucket/raw", "/tmp/raw", False),
])
def test_remote_uris_compare_as_strings(inp: str, out: str, refused: bool) -> None:
    if refused:
        with pytest.raises(OutputFolderError):
            check_overlap(inp, out)
    else:
        check_overlap(inp, out)


def test_overlap_error_names_the_fields_given(tmp_path: Path) -> None:
    with pytest.raises(OutputFolderError, match=r"batch\.input.*batch\.output_dir"):
        check_overlap(str(tmp_path / "a" / "x.csv"), str(tmp_path / "a"),
                      input_field="batch.input", output_field="batch.output_dir")


# --------------------------------------------------------------------------- swap into place


def test_a_finished_run_replaces_the_old_output_whole(tmp_path: Path) -> None:
    out = _ours(tmp_path / "out")
    _folder(out / "model_version=1", **{"old.parquet": "old"})
    with replacing(str(out), overwrite=True, writer={"command": "test", "run": 2}) as staging:
        assert Path(staging).parent == out.parent and not Path(staging).is_relative_to(out)
        _folder(Path(staging), **{"part-1.parquet": "new"})
        assert (out / "part-0.parquet").read_text() == "old"  # untouched while the run writes
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "part-1.parquet"]
    assert read_marker(str(out))["run"] == 2  # type: ignore[index]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old copy left


def test_a_failed_run_keeps_the_old_output(tmp_path: Path) -> None:
    out = _ours(tmp_path / "out")
    with pytest.raises(RuntimeError, match="boom"), \
            replacing(str(out), overwrite=True, writer={"command": "test"}) as staging:
        _folder(Path(staging), **{"part-1.parquet": "half"})
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "part-0.parquet"]
    assert (out / "part-0.parquet").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_swap_checks_again_and_never_replaces_a_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(OutputFolderError), \
            replacing(str(out), overwrite=True, writer={"command": "test"}) as staging:
        _folder(Path(staging), **{"part-1.parquet": "new"})
        _folder(out, **{"notes.txt": "someone else's"})  # appeared while the run wrote
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_empty_existing_folder_is_replaced(tmp_path: Path) -> None:
    out = _folder(tmp_path / "out")
    with replacing(str(out), overwrite=False, writer={"command": "test"}) as staging:
        _folder(Path(staging), **{"part-0.parquet": "new"})
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "part-0.parquet"]


def test_a_folder_that_cannot_be_listed_is_refused_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(OutputFolderError, match=r"batch\.output_dir: cannot look into"):
        check_replaceable("nosuchscheme://bucket/x", overwrite=True, field="batch.output_dir")
