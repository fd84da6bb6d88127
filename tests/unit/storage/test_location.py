"""pipelines/storage/location.py: one behaviour on local disk and on an S3 server.

Every test here runs twice through the ``store_root`` fixture: in a local folder and under a
fresh prefix of a bucket on the session's S3 server (moto on loopback). Same calls, same
results, same errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.storage import StorageError, StoragePath, storage_path


def test_write_read_and_list(store_root: StoragePath) -> None:
    (store_root / "a" / "one.txt").write_text("1")
    (store_root / "a" / "b" / "two.bin").write_bytes(b"22")
    assert (store_root / "a" / "one.txt").read_text() == "1"
    assert (store_root / "a").files() == {"one.txt": 1, "b/two.bin": 2}
    assert (store_root / "a").exists() and (store_root / "a" / "b" / "two.bin").is_file()
    assert not (store_root / "a").is_file()
    assert not (store_root / "nothing").exists() and (store_root / "nothing").files() == {}


def test_overwrite_is_whole_and_leaves_no_temporary_file(store_root: StoragePath) -> None:
    target = store_root / "f.json"
    target.write_text("old")
    target.write_text("new content")
    assert target.read_text() == "new content"
    assert store_root.files() == {"f.json": len("new content")}


def test_missing_file_raises_file_not_found(store_root: StoragePath) -> None:
    with pytest.raises(FileNotFoundError):
        (store_root / "missing.txt").read_bytes()


def test_rmtree_removes_everything_below_and_tolerates_nothing(store_root: StoragePath) -> None:
    (store_root / "d" / "x").write_text("x")
    (store_root / "d" / "e" / "y").write_text("y")
    (store_root / "keep").write_text("k")
    (store_root / "d").rmtree()
    assert store_root.files() == {"keep": 1}
    (store_root / "d").rmtree()  # nothing there: not an error


def test_upload_download_and_local_copy_round_trip(store_root: StoragePath, tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "weights.json").write_text('{"w": 1}')
    (src / "sub" / "meta").write_bytes(b"\x00\x01")
    (store_root / "model").upload(src)
    assert (store_root / "model").files() == {"weights.json": 8, "sub/meta": 2}
    back = (store_root / "model").download(tmp_path / "back")
    assert (back / "sub" / "meta").read_bytes() == b"\x00\x01"
    with (store_root / "model").local_copy() as local:
        assert json.loads((local / "weights.json").read_text()) == {"w": 1}


def test_writing_dir_lands_only_when_the_block_succeeds(store_root: StoragePath) -> None:
    with (store_root / "plots").writing_dir() as local:
        (local / "a.png").write_bytes(b"png")
    assert (store_root / "plots").files() == {"a.png": 3}
    if store_root.is_local:
        return  # a local folder is written in place; nothing is staged to withhold
    with pytest.raises(RuntimeError), (store_root / "failed").writing_dir() as local:
        (local / "b.png").write_bytes(b"png")
        raise RuntimeError("the plot failed")
    assert not (store_root / "failed").exists()


def test_naming(store_root: StoragePath) -> None:
    f = store_root / "x" / "y.parquet"
    assert f.name == "y.parquet" and f.parent == store_root / "x"
    assert f.relative_to(store_root) == "x/y.parquet"
    assert store_root.joinpath("x", "y.parquet") == f
    assert storage_path(str(f)) == f  # the string form round-trips
    with pytest.raises(ValueError, match="not under"):
        store_root.relative_to(f)


def test_uri_forms() -> None:
    assert storage_path("s3://bucket/a/").uri == "s3://bucket/a"
    assert storage_path("S3://bucket/a").uri == "s3://bucket/a"
    assert storage_path("file:///tmp/x").uri == "/tmp/x"
    assert storage_path("rel").uri == str(Path("rel").resolve())
    assert not storage_path("gs://b/k").is_local and storage_path("/tmp").is_local


def test_missing_bucket_is_named(s3: object, tmp_path: Path) -> None:
    # The local equivalent of a bucket that does not exist: a container that is not a folder.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    for root in (storage_path(f"s3://no-such-bucket-{os.getpid()}/raypipe"), storage_path(blocker)):
        with pytest.raises(StorageError) as err:
            (root / "cache" / "f.json").write_text("{}")
        assert str(root) in str(err.value)
    with pytest.raises(StorageError, match="bucket does not exist"):
        (storage_path(f"s3://no-such-bucket-{os.getpid()}/x") / "f").write_text("{}")


_WRITE = """
import sys
from pipelines.storage import StorageError, storage_path
target = storage_path(sys.argv[1])
before = target.parent.files()  # reading is allowed
try:
    target.write_text("x")
except StorageError as err:
    print(err)
    assert target.parent.files() == before, "a refused write changed nothing"
    sys.exit(3)
"""


@pytest.fixture
def read_only_s3() -> Iterator[dict[str, str]]:
    """A second S3 server that checks credentials and IAM policies, and a read-only user's
    environment; bucket ``locked`` holds ``raypipe/seen.txt``."""
    import boto3

    from tests.s3 import s3_server

    setup_requests = 5  # the server checks rights from the 6th request on
    with s3_server(enforce_auth_after=setup_requests) as server:
        server.bucket("locked")                                                     # 1
        server.client().put_object(Bucket="locked", Key="raypipe/seen.txt", Body=b"seen")  # 2
        iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="reader")                                          # 3
        key = iam.create_access_key(UserName="reader")["AccessKey"]                 # 4
        iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": ["arn:aws:s3:::locked", "arn:aws:s3:::locked/*"]}]}))  # 5
        yield {**os.environ, **server.env, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
               "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_no_permission_is_named_and_loses_nothing(backend: str, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    """A writer without rights gets a StorageError naming the location; nothing changes."""
    env = dict(os.environ)
    if backend == "local" and os.geteuid() != 0:
        root = storage_path(tmp_path / "ro")
        (root / "seen.txt").write_text("seen")
        root.local.chmod(0o555)
    elif backend == "local":
        # root ignores file modes; sysfs refuses new files even to root.
        root = storage_path("/sys/fs")
    else:
        env = request.getfixturevalue("read_only_s3")
        root = storage_path("s3://locked/raypipe")
    repo = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", _WRITE, str(root / "new.txt")], env=env,
                         cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 3, out.stdout + out.stderr[-2000:]
    assert "access denied" in out.stdout and str(root / "new.txt") in out.stdout
    assert env.get("AWS_SECRET_ACCESS_KEY", "-") not in out.stdout + out.stderr
