"""File resolution, remote glob matching and footer checks of the files source (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.sources import InputError
from pipelines.sources.files import _glob_regex, parquet_rows, resolve_paths


def _tree(root: Path) -> None:
    for rel in ("a/x=1/p.parquet", "a/x=2/p.parquet", "a/_SUCCESS", "a/.p.crc", "b.csv"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")


def test_folders_and_globs_list_data_files_only(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert resolve_paths(str(tmp_path / "a")) == [str(tmp_path / "a/x=1/p.parquet"),
                                                  str(tmp_path / "a/x=2/p.parquet")]
    assert resolve_paths(str(tmp_path / "a/*/p.parquet")) == resolve_paths(str(tmp_path / "a"))
    assert resolve_paths(f"file://{tmp_path}/b.csv") == [str(tmp_path / "b.csv")]


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no input file matches"):
        resolve_paths(str(tmp_path / "*.parquet"))
    with pytest.raises(InputError, match="does not exist"):
        resolve_paths(str(tmp_path / "none.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no data files"):
        resolve_paths(str(tmp_path / "empty"))


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    ("*.parquet", "a.parquet", True),
    ("*.parquet", "d/a.parquet", False),           # * stays within one folder
    ("**/*.parquet", "d/e/a.parquet", True),
    ("**/*.parquet", "a.parquet", True),
    ("year=202[34]/*.csv", "year=2024/x.csv", True),
    ("year=202[!34]/*.csv", "year=2024/x.csv", False),
    ("part-?.json", "part-1.json", True),
    ("part-?.json", "part-10.json", False),
])
def test_remote_glob_semantics_match_local_glob(pattern: str, path: str, hit: bool) -> None:
    assert bool(_glob_regex(pattern).match(path)) is hit


def test_parquet_footers_count_rows_and_name_a_truncated_file(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    pd.DataFrame({"a": range(10)}).to_parquet(good)
    assert parquet_rows([str(good), str(good)]) == 20
    bad.write_bytes(good.read_bytes()[:50])
    with pytest.raises(InputError, match=r"cannot read Parquet file '.*bad.parquet' \(truncated"):
        parquet_rows([str(good), str(bad)])


def test_text_in_another_encoding_is_named_by_file_and_column(tmp_path: Path) -> None:
    from pipelines.config import FileSource
    from pipelines.sources.files import find_unreadable_file

    path = tmp_path / "latin1.csv"
    pd.DataFrame({"city": ["Zürich", "Bern"], "y": [1, 0]}).to_csv(path, index=False,
                                                                   encoding="latin-1")
    source = FileSource(path=str(path), format="csv")
    bad = find_unreadable_file(source)
    assert bad is not None and bad[0] == str(path)
    assert "'city' is not valid utf-8 text" in bad[1] and "source.encoding" in bad[1]
    # Read in its own encoding, the file is fine.
    assert find_unreadable_file(FileSource(path=str(path), format="csv", encoding="latin-1")) is None


def test_encoding_is_checked_and_csv_only() -> None:
    from pipelines.config import FileSource

    assert FileSource(path="x.csv", format="csv", encoding="Latin1").encoding == "iso8859-1"
    with pytest.raises(ValueError, match="encoding"):
        FileSource(path="x.csv", format="csv", encoding="klingon")
    with pytest.raises(ValueError, match="encoding only apply to format csv"):
        FileSource(path="x.parquet", encoding="latin-1")


def test_the_unreadable_parquet_file_is_found_among_good_ones(tmp_path: Path) -> None:
    from pipelines.config import FileSource
    from pipelines.sources.files import find_unreadable_file

    pd.DataFrame({"a": range(10)}).to_parquet(tmp_path / "a.parquet")
    whole = (tmp_path / "a.parquet").read_bytes()
    (tmp_path / "b.parquet").write_bytes(whole[:40])
    source = FileSource(path=str(tmp_path))
    # The good file is read (Parquet needs a seekable file), the truncated one is named.
    assert find_unreadable_file(source, first=str(tmp_path / "a.parquet")) == (
        str(tmp_path / "b.parquet"),
        "Parquet magic bytes not found in footer. Either the file is corrupted or this is not "
        "a parquet file.")
