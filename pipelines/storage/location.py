"""Read and write a pipeline's state the same way in a local folder and in an object store.

:class:`StoragePath` names one file or folder by URI: a local path (``.raypipe``, ``/data``,
``file:///data``) or an object-store URI (``s3://bucket/raypipe``, ``gs://bucket/x``). I/O goes
through ``pyarrow.fs``, the layer Ray Data and Ray Train use for the same URIs, so the stage
cache, Ray Data's Parquet and Tune's checkpoints reach the same store with the same
credentials: the SDK's own (``AWS_ACCESS_KEY_ID``/``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for an
S3-compatible server, workload identity on Kubernetes). None of them is in the config.

Two differences between the back ends are settled here, so callers need not know which one
they write to:

* atomic writes: a local file is written beside its name and renamed into place; an object
  store has no rename, but an object becomes visible only when its upload completes, so one
  ``write_bytes`` is atomic there too;
* folders: an object store has none; :meth:`StoragePath.mkdir` is a no-op there and an empty
  "folder" simply has no objects under its prefix.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlparse

from pipelines.errors import RaypipeError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

__all__ = ["StorageError", "StoragePath", "Where", "storage_path"]

logger = logging.getLogger(__name__)


class StorageError(RaypipeError, OSError):
    """A location cannot be read or written (missing bucket, no permission, ...); names it."""


def _explain(uri: str, action: str, err: OSError) -> StorageError:
    text = str(err)
    if "NO_SUCH_BUCKET" in text or "NoSuchBucket" in text or "bucket does not exist" in text:
        why = "the bucket does not exist (create it, or fix the URI)"
    elif ("ACCESS_DENIED" in text or "AccessDenied" in text or isinstance(err, PermissionError)
          or err.errno == errno.EROFS):
        why = ("access denied: the credentials in this process's environment may not "
               "do this (AWS_ACCESS_KEY_ID / AWS_PROFILE, or the pod's workload identity)")
    elif isinstance(err, NotADirectoryError | FileExistsError):
        why = "a file is in the way of the folder"
    else:
        # pyarrow's and the OS's messages name the key and the cause, never a credential.
        why = text.splitlines()[0] if text else type(err).__name__
    return StorageError(f"cannot {action} {uri}: {why}")


@lru_cache(maxsize=32)
def _filesystem(root: str) -> pafs.FileSystem:
    """One file system per ``scheme://netloc``: pyarrow resolves credentials once per store."""
    import pyarrow.fs as pafs

    fs, _ = pafs.FileSystem.from_uri(root)
    return fs


@dataclass(frozen=True, eq=False)
class StoragePath:
    """A file or folder on local disk or in an object store; cheap to pickle to Ray workers.

    ``uri`` is an absolute local path (no scheme) or ``scheme://bucket/key``; ``str()`` gives
    it back in the form pandas, pyarrow and Ray Data accept for either.
    """

    uri: str

    # --- naming -------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        # A local location equals the pathlib.Path of the same folder: code and tests that
        # compare with a Path keep working.
        if isinstance(other, StoragePath):
            return self.uri == other.uri
        if isinstance(other, PurePath) and self.is_local:
            return Path(self.uri) == Path(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.uri)

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    @property
    def local(self) -> Path:
        """The local path; only for a local location (callers check :attr:`is_local`)."""
        if not self.is_local:
            raise StorageError(f"{self.uri} is not a local path")
        return Path(self.uri)

    def __truediv__(self, part: str | os.PathLike[str]) -> StoragePath:
        part = os.fspath(part).strip("/")
        return StoragePath(f"{self.uri.rstrip('/')}/{part}" if part else self.uri)

    @property
    def name(self) -> str:
        return PurePosixPath(self._key or "/").name

    @property
    def parent(self) -> StoragePath:
        head, _, _ = self.uri.rstrip("/").rpartition("/")
        return StoragePath(head) if head and not head.endswith(":/") else self

    def joinpath(self, *parts: str) -> StoragePath:
        out = self
        for part in parts:
            out = out / part
        return out

    def relative_to(self, other: StoragePath) -> str:
        """This location's path below ``other``, POSIX style."""
        prefix = other.uri.rstrip("/") + "/"
        if not self.uri.startswith(prefix):
            raise ValueError(f"{self.uri} is not under {other.uri}")
        return self.uri[len(prefix):]

    def resolve(self) -> StoragePath:
        """Already absolute; kept so code written for ``pathlib.Path`` reads the same."""
        return self

    def __str__(self) -> str:
        return self.uri

    @property
    def _key(self) -> str:
        return self.uri if self.is_local else self.uri.split("://", 1)[1]

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        if self.is_local:
            return _filesystem("file:///"), self.uri
        parsed = urlparse(self.uri)
        return _filesystem(f"{parsed.scheme}://{parsed.netloc}"), self._key

    # --- reading ------------------------------------------------------------------------

    def exists(self) -> bool:
        """A file exists, or a folder/prefix with something under it (or an empty local folder)."""
        import pyarrow.fs as pafs

        fs, path = self._fs()
        try:
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.File or (self.is_local and info.type != pafs.FileType.NotFound):
                return True
            if info.type == pafs.FileType.NotFound and self.is_local:
                return False
            # Object stores: a "directory" exists when some object has its prefix.
            return bool(fs.get_file_info(pafs.FileSelector(path, recursive=False,
                                                           allow_not_found=True)))
        except OSError as err:
            raise _explain(self.uri, "look up", err) from err

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        fs, path = self._fs()
        try:
            return bool(fs.get_file_info(path).type == pafs.FileType.File)
        except OSError as err:
            raise _explain(self.uri, "look up", err) from err

    def read_bytes(self) -> bytes:
        fs, path = self._fs()
        try:
            with fs.open_input_stream(path) as f:
                return bytes(f.read())
        except FileNotFoundError:
            raise
        except OSError as err:
            raise _explain(self.uri, "read", err) from err

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def files(self) -> dict[str, int]:
        """Every file below this folder: POSIX path relative to it -> size in bytes."""
        import pyarrow.fs as pafs

        fs, path = self._fs()
        try:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        except OSError as err:
            raise _explain(self.uri, "list", err) from err
        base = path.rstrip("/") + "/"
        return {i.path[len(base):]: int(i.size or 0) for i in infos
                if i.type == pafs.FileType.File and i.path.startswith(base)}

    def download(self, target: Path) -> Path:
        """Copy this file or folder to the local ``target``; returns ``target``."""
        import pyarrow.fs as pafs

        fs, path = self._fs()
        try:
            if self.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.read_bytes())
            else:
                target.mkdir(parents=True, exist_ok=True)
                pafs.copy_files(path, str(target), source_filesystem=fs,
                                destination_filesystem=pafs.LocalFileSystem())
        except OSError as err:
            raise _explain(self.uri, "download", err) from err
        return target

    @contextmanager
    def local_copy(self) -> Iterator[Path]:
        """A local path holding this location's content: itself when local, else a temp copy."""
        if self.is_local:
            yield self.local
            return
        with tempfile.TemporaryDirectory(prefix="raypipe-") as tmp:
            yield self.download(Path(tmp) / (self.name or "data"))

    # --- writing ------------------------------------------------------------------------

    def mkdir(self) -> None:
        """Create the local folder (and parents); object stores need none."""
        if self.is_local:
            try:
                self.local.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise _explain(self.uri, "create", err) from err

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file atomically: readers see the old content or the new, never half."""
        fs, path = self._fs()
        try:
            if self.is_local:
                self.parent.mkdir()
                tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            else:
                # An object is visible only once its upload completes: atomic without a rename.
                with fs.open_output_stream(path) as out:
                    out.write(data)
        except OSError as err:
            raise _explain(self.uri, "write", err) from err

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def upload(self, source: Path) -> None:
        """Copy the local file or folder ``source`` here."""
        import pyarrow.fs as pafs

        if source.is_file():
            self.write_bytes(source.read_bytes())
            return
        fs, path = self._fs()
        try:
            if self.is_local:
                shutil.copytree(source, path, dirs_exist_ok=True)
            else:
                pafs.copy_files(str(source), path, source_filesystem=pafs.LocalFileSystem(),
                                destination_filesystem=fs)
        except OSError as err:
            raise _explain(self.uri, "upload to", err) from err

    @contextmanager
    def writing_dir(self) -> Iterator[Path]:
        """A local folder whose content lands here when the block ends without error.

        Libraries that only write local files (matplotlib, a model's ``save``) write into it;
        for a local location it is the location itself.
        """
        if self.is_local:
            self.mkdir()
            yield self.local
            return
        with tempfile.TemporaryDirectory(prefix="raypipe-") as tmp:
            yield Path(tmp)
            self.upload(Path(tmp))

    def rmtree(self) -> None:
        """Delete this folder and everything below it; nothing there is not an error."""
        fs, path = self._fs()
        try:
            if self.is_local:
                shutil.rmtree(path, ignore_errors=True)
            else:
                fs.delete_dir_contents(path, missing_dir_ok=True)
        except OSError as err:
            raise _explain(self.uri, "delete", err) from err

    def unlink(self) -> None:
        fs, path = self._fs()
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise _explain(self.uri, "delete", err) from err


Where: TypeAlias = StoragePath | str | os.PathLike[str]
"""A location as callers give it: a StoragePath, a local path or a URI string."""


def storage_path(where: Where) -> StoragePath:
    """The :class:`StoragePath` of a config value: a local path (made absolute) or a URI."""
    if isinstance(where, StoragePath):
        return where
    text = os.fspath(where)
    if text.startswith("file://"):
        text = urlparse(text).path
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        return StoragePath(f"{scheme}://{text.split('://', 1)[1].rstrip('/')}")
    return StoragePath(str(Path(text).expanduser().resolve()))
