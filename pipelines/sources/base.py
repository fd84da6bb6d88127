"""The interface every source kind implements: one reader class per kind.

As Ray Data's datasources do, each kind answers every question about its data in one class
(read it, fingerprint it, count it, say where it lives, explain a failed read), so no other
module asks which kind a source is. :func:`pipelines.sources.get_reader` picks the class by
``source.kind``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from pipelines.config.sources import SourceConfig

if TYPE_CHECKING:
    from ray.data import Dataset

    from pipelines.sources._errors import InputError
    from pipelines.storage import StoragePath
    from pipelines.storage.shared import Location

__all__ = ["SourceReader"]

ConfigT = TypeVar("ConfigT", bound=SourceConfig)


class SourceReader(ABC, Generic[ConfigT]):
    """Reads one configured source of kind :attr:`kind` (settings: :attr:`config_type`).

    A reader is made per use, ``Reader(config, work_dir)``; making one does no work, so the
    runner can ask for a fingerprint without reading and the CLI can check a config without
    Ray. Heavy imports (Ray, pyarrow, drivers) belong inside the methods.

    Only ``read`` runs Ray; the reader object itself stays on the driver. What a read task
    needs travels inside the Dataset it returns, so a kind registered in the driver alone
    (a test, a notebook) still works on the workers.
    """

    kind: ClassVar[str]
    """The ``source.kind`` this reader handles."""
    config_type: ClassVar[type[SourceConfig]]
    """The model of its ``source`` section (its ``kind`` field defaults to :attr:`kind`)."""
    snapshot: ClassVar[bool] = False
    """True for a kind whose :meth:`fingerprint` and :meth:`rows` are taken from the Dataset
    :meth:`read` returns (HTTP: the fetched pages): the runner reads before it asks them."""

    def __init__(self, config: ConfigT, work_dir: StoragePath) -> None:
        self.config = config
        self.work_dir = work_dir
        """The run's ``runtime.work_dir``: where a reader may keep files it generates."""

    @abstractmethod
    def read(self) -> Dataset:
        """The source's rows as a Dataset: lazy where the kind allows, so that the stages
        after stream them.

        Raises:
            InputError: the source cannot be read; the message names the file, table or page.
        """

    @abstractmethod
    def fingerprint(self, dataset: Dataset | None = None) -> tuple[str, str]:
        """``(uri, sha256)`` of the data, for lineage and the stage cache: the same data must
        give the same digest, changed data another.

        ``dataset`` is what :meth:`read` returned when the runner has read already (a
        snapshot kind such as HTTP hashes it rather than fetching twice), else None.
        """

    def rows(self, dataset: Dataset | None) -> int | None:
        """Rows the source delivers, where that is cheap to know before the data is consumed
        (file footers, a database's ``COUNT(*)``); None lets validation count them."""
        return None

    def locations(self) -> list[Location]:
        """The local or remote places the read touches, named by their config field, so
        that a run on a multi-node cluster can refuse a node-local one before it starts
        (:func:`pipelines.storage.shared.pipeline_locations`). Default: none (e.g. a network API)."""
        return []

    def explain(self, err: BaseException) -> InputError | None:
        """One :class:`InputError` naming the bad input, for a lazy read that failed inside a
        Ray task (``err`` is what the consuming stage raised); None leaves ``err`` as it is.

        An :class:`InputError` raised in a read task is unwrapped before this is asked.
        """
        return None
