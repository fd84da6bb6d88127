"""Demo source: the bundled, generated churn-like data set, written once as Parquet and read
as files."""

from __future__ import annotations

from pipelines.config import DemoSource, FileSource
from pipelines.demo import write_demo_parquet
from pipelines.sources.files import FileBackedReader
from pipelines.storage.shared import Location

__all__ = ["DemoReader"]


class DemoReader(FileBackedReader[DemoSource]):
    """``kind: demo``: generated under ``<work_dir>/data`` once per (rows, seed), then read,
    fingerprinted and counted as that Parquet file. A generated file is never corrupt, so a
    failed read is left unexplained."""

    kind = "demo"
    config_type = DemoSource

    def files(self) -> FileSource:
        path = write_demo_parquet(self.work_dir / "data", self.config.rows, self.config.seed)
        return FileSource(path=str(path))

    def locations(self) -> list[Location]:
        return [Location("runtime.work_dir", str(self.work_dir / "data"), "the generated demo data")]
