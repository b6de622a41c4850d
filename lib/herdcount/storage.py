"""The edge of the library that touches files: local paths and ``s3://bucket/key`` URIs alike.

Paths are plain strings. Local files are written under a temporary name in the same
folder and renamed; an S3 object is written by one PUT (or one multipart upload), which
S3 makes visible only once complete. Either way a killed job leaves complete files or
none, and a rerun can trust any file it finds.

S3 goes through boto3, configured by the standard AWS environment and files
(``AWS_ENDPOINT_URL`` for S3-compatible servers, ``AWS_PROFILE``, region, the credentials
chain). A client is made lazily in each process (clients cannot be pickled, so executors
make their own), with botocore's standard retry mode for transient errors.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

#: Objects larger than this go up in parts (and in parallel).
MULTIPART_BYTES = 16 * 1024 * 1024
_CLIENTS: dict[int, Any] = {}
_TEMP_NAMES = itertools.count()


def is_s3(path: str | Path) -> bool:
    """Whether ``path`` is an ``s3://`` URI."""
    return str(path).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``(bucket, key)`` of an ``s3://bucket/key`` URI.

    Raises
    ------
    ValueError
        If the URI names no bucket.
    """
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket; expected s3://bucket/prefix")
    return bucket, key


def join(base: str | Path, *names: str) -> str:
    """``base`` and ``names`` joined with ``/`` (S3) or the platform's separator."""
    if is_s3(base):
        return "/".join([str(base).rstrip("/"), *(n.strip("/") for n in names)])
    return str(Path(base, *names))


def basename(path: str | Path) -> str:
    """The last component of a path or URI."""
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def parent(path: str | Path) -> str:
    """The folder holding ``path``."""
    if is_s3(path):
        return str(path).rstrip("/").rsplit("/", 1)[0]
    return str(Path(path).parent)


def absolute(path: str | Path) -> str:
    """``path`` made absolute: local paths resolved, URIs as they are."""
    return str(path) if is_s3(path) else str(Path(path).resolve())


def client() -> Any:
    """This process's S3 client (made on first use; one per process, never pickled)."""
    pid = os.getpid()
    if pid not in _CLIENTS:
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=10, read_timeout=60)
        _CLIENTS[pid] = boto3.session.Session().client("s3", config=config)
    return _CLIENTS[pid]


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound")


def read_bytes(path: str | Path) -> bytes:
    """The contents of a file or object.

    Raises
    ------
    FileNotFoundError
        If it does not exist.
    """
    if not is_s3(path):
        return Path(path).read_bytes()
    from botocore.exceptions import ClientError

    bucket, key = split_s3(str(path))
    try:
        return client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if _missing(exc):
            raise FileNotFoundError(f"{path}: no such object") from None
        raise


class RangedReader(io.RawIOBase):
    """A read-only, seekable file object over one S3 object: each read is one ranged GET.

    Rasterio reads a tiled GeoTIFF's header and then only the blocks a window covers; over
    this object that is a few GETs of those bytes, never the whole object (which may be tens
    of GB). Wrap it in :class:`io.BufferedReader` to merge small reads.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.bucket, self.key = split_s3(path)
        self.size = version(path)[0]
        self._pos = 0
        #: Bytes fetched so far (what a benchmark or test checks against the object's size).
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"{self.path}: seek to {base + offset}, before the start")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.size - self._pos)
        if want <= 0:
            return 0
        body = (
            client()
            .get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self._pos}-{self._pos + want - 1}")[
                "Body"
            ]
            .read()
        )
        buffer[: len(body)] = body
        self._pos += len(body)
        self.fetched += len(body)
        return len(body)


def open_ranged(path: str | Path, mode: str = "rb") -> Any:
    """A buffered, seekable read-only file object of ``path``: the local file, or ranged GETs
    of an S3 object (:class:`RangedReader`); rasterio's ``opener``.

    Raises
    ------
    FileNotFoundError
        If it does not exist.
    ValueError
        If ``mode`` is not a read mode.
    """
    if mode not in ("r", "rb"):
        raise ValueError(f"{path}: mode {mode!r}; only reading is supported")
    if not is_s3(path):
        return open(path, "rb")
    return io.BufferedReader(RangedReader(str(path)), buffer_size=64 * 1024)


def read_text(path: str | Path) -> str:
    """UTF-8 text of a file or object (see :func:`read_bytes`)."""
    return read_bytes(path).decode("utf-8")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file, the new one, or none.

    Local: through a temporary name in the same folder, then a rename (atomic on one file
    system). S3: one PUT, or a multipart upload above :data:`MULTIPART_BYTES`; S3 shows
    the object only when it is complete.
    """
    if is_s3(path):
        bucket, key = split_s3(str(path))
        if len(data) < MULTIPART_BYTES:
            # A transfer manager per call would start threads for a single small PUT.
            client().put_object(Bucket=bucket, Key=key, Body=data)
            return
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES)
        client().upload_fileobj(io.BytesIO(data), bucket, key, Config=config)
        return
    write_files_atomic(parent(path), [(basename(path), data)])


def write_files_atomic(folder: str | Path, files: Iterable[tuple[str, bytes]]) -> None:
    """Write ``(name, data)`` files into ``folder`` (made if missing), each atomically as by
    :func:`write_bytes_atomic`.

    The extract job writes ~500 thumbnails per photo: locally one handle on the folder
    serves them all, so no file pays for parsing and looking up its path again.
    """
    if is_s3(folder):
        for name, data in files:
            write_bytes_atomic(join(folder, name), data)
        return
    try:
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    # A name unique to this process and call: cheaper than mkstemp's random retries and
    # its chmod; the mode, 0o644 less the umask, keeps outputs readable by others.
    suffix = f".{os.getpid()}."
    try:
        for name, data in files:
            tmp = f".{name}{suffix}{next(_TEMP_NAMES)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=folder_fd)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                os.replace(tmp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=folder_fd)
                except FileNotFoundError:
                    pass
                raise
    finally:
        os.close(folder_fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_csv_atomic(path: str | Path, header: list[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV file (a header line, then ``rows``, ``\\n`` line ends) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def exists(path: str | Path) -> bool:
    """Whether a file (or object) exists at ``path``."""
    if not is_s3(path):
        return Path(path).is_file()
    from botocore.exceptions import ClientError

    bucket, key = split_s3(str(path))
    try:
        client().head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if _missing(exc):
            return False
        raise


def remove(path: str | Path) -> None:
    """Delete a file (or object) if it exists."""
    if is_s3(path):
        bucket, key = split_s3(str(path))
        client().delete_object(Bucket=bucket, Key=key)
        return
    Path(path).unlink(missing_ok=True)


def is_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder: a local directory, or an S3 prefix holding objects."""
    if not is_s3(path):
        return Path(path).is_dir()
    bucket, key = split_s3(str(path))
    prefix = key.rstrip("/") + "/" if key else ""
    return bool(client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0))


def _s3_objects(folder: str | Path, *, recursive: bool) -> Iterator[tuple[str, int, str]]:
    """``(key relative to the folder, size, ETag)`` of the objects under an S3 folder, at any
    depth or directly in it; listed with a paginator, 1,000 keys per request."""
    bucket, key = split_s3(str(folder))
    prefix = key.rstrip("/") + "/" if key else ""
    options = {} if recursive else {"Delimiter": "/"}
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, **options):
        for item in page.get("Contents", []):
            if item["Key"] != prefix:
                yield item["Key"][len(prefix) :], int(item["Size"]), item["ETag"].strip('"')


def file_stats(folder: str | Path) -> list[tuple[str, int]]:
    """``(name, size)`` of the files directly in ``folder``, sorted by name; hidden and
    temporary files (names starting with a dot) are left out. Empty when the folder does
    not exist."""
    if is_s3(folder):
        found = _s3_objects(folder, recursive=False)
        return sorted((name, size) for name, size, _ in found if not name.startswith("."))
    folder = Path(folder)
    if not folder.is_dir():
        return []
    entries = (e for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))
    return sorted((e.name, e.stat().st_size) for e in entries)


def walk_files(folder: str | Path) -> list[tuple[str, int, str]]:
    """``(relative path, size, version)`` of every file under ``folder``, at any depth, sorted
    by path (``/``-separated); hidden files and folders are left out. The version is the
    modification time (local) or the ETag (S3), as in :func:`version`."""
    if is_s3(folder):
        found = _s3_objects(folder, recursive=True)
        return sorted(f for f in found if not any(part.startswith(".") for part in f[0].split("/")))
    root = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                stat = os.stat(os.path.join(dirpath, name))
                rel = Path(dirpath, name).relative_to(root).as_posix()
                found.append((rel, stat.st_size, str(stat.st_mtime_ns)))
    return sorted(found)


def list_files(folder: str | Path) -> list[str]:
    """Names of the files directly in ``folder``, sorted (see :func:`file_stats`)."""
    return [name for name, _ in file_stats(folder)]


def version(path: str | Path) -> tuple[int, str]:
    """``(size, tag)`` of a file that changes when its contents do: the modification time
    of a local file, the ETag of an object.

    Raises
    ------
    FileNotFoundError
        If it does not exist.
    """
    if not is_s3(path):
        stat = Path(path).stat()
        return stat.st_size, str(stat.st_mtime_ns)
    from botocore.exceptions import ClientError

    bucket, key = split_s3(str(path))
    try:
        head = client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _missing(exc):
            raise FileNotFoundError(f"{path}: no such object") from None
        raise
    return int(head["ContentLength"]), head["ETag"].strip('"')


def local_copy(path: str | Path) -> str:
    """A local path with the contents of ``path``, for libraries that need a file name
    (Keras): the path itself when local, else a download cached by ETag in the temp folder."""
    if not is_s3(path):
        return str(path)
    _size, tag = version(path)
    bucket, key = split_s3(str(path))
    cache = Path(tempfile.gettempdir()) / "herdcount-s3-cache" / bucket / key / tag
    target = cache / basename(path)
    if not target.is_file():
        write_bytes_atomic(target, read_bytes(path))
    return str(target)


def check_bucket(path: str | Path) -> None:
    """For an S3 path, check that its bucket exists and can be reached; nothing for local paths.

    Raises
    ------
    ValueError
        If the bucket does not exist or access to it is denied, naming the bucket and the
        endpoint (never credentials).
    """
    if not is_s3(path):
        return
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _ = split_s3(str(path))
    s3 = client()
    where = s3.meta.endpoint_url
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise ValueError(f"S3 bucket {bucket!r} does not exist (endpoint {where})") from None
        if code in ("403", "AccessDenied"):
            raise ValueError(
                f"access to S3 bucket {bucket!r} is denied (endpoint {where}); check the AWS "
                "credentials and the bucket policy"
            ) from None
        raise ValueError(f"S3 bucket {bucket!r} cannot be used: {code} (endpoint {where})") from None
    except BotoCoreError as exc:
        raise ValueError(f"S3 bucket {bucket!r} cannot be reached at {where}: {exc}") from None


def download_tree(prefix: str, local: str | Path) -> Path:
    """Copy every object under an S3 prefix into a local folder (keeping relative paths);
    objects already there with the same size are skipped. Returns the local folder."""
    local = Path(local)
    for rel, size, _ in _s3_objects(prefix, recursive=True):
        target = local / rel
        if not (target.is_file() and target.stat().st_size == size):
            write_bytes_atomic(target, read_bytes(join(prefix, rel)))
    return local


def upload_tree(local: str | Path, prefix: str, *, last: tuple[str, ...] = ()) -> None:
    """Copy every file under a local folder to an S3 prefix; the names in ``last`` go
    last (a run's marker file, so that it appears only once the rest is there)."""
    local = Path(local)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.name in last)
    for path in files:
        write_bytes_atomic(join(prefix, *path.relative_to(local).parts), path.read_bytes())
