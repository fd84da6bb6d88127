"""One storage layer for local folders and object stores alike.

:class:`StoragePath` reads and writes a pipeline's state in a local folder or an object store
(``s3://``, ``gs://``, ...) through ``pyarrow.fs``, the file-system layer Ray Data and Ray
Train use. :mod:`pipelines.storage.shared` checks, before a run, that every location a
multi-node run touches is reachable from every node (it needs the config, which itself names
locations, so it is imported from its module rather than re-exported here).
"""

from pipelines.storage.location import StorageError, StoragePath, Where, storage_path

__all__ = ["StorageError", "StoragePath", "Where", "storage_path"]
