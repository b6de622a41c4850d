"""What a collection of photos holds: one record per file, with quality measures and hashes.

The manifest job lists every file under DIR on the driver, describes each on the
executors (:func:`describe_file`: read, hash, decode at reduced size, measure) and
writes ``OUT/manifest.parquet`` and ``OUT/manifest.csv``. A rerun reuses the rows of files
whose size and version (modification time or ETag) are unchanged, so it reads only new or
changed files. The originals are only ever read.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError
from scipy import fft, ndimage

from herdcount import storage
from herdcount.options import option
from herdcount.records import Status, TaskError
from herdcount.runner import Job, Outcome

#: The formats the framework decodes (herdcount.imaging); other images are "unsupported".
SUPPORTED_FORMATS = ("JPEG", "PNG", "TIFF")
#: Camera formats Pillow cannot open: flagged "unsupported", not "unreadable".
UNSUPPORTED_EXTENSIONS = ("heic", "heif", "cr2", "cr3", "nef", "arw", "dng", "orf", "rw2", "raf")
OK, UNREADABLE, UNSUPPORTED = Status.OK, Status.UNREADABLE, Status.UNSUPPORTED
#: Side in pixels of the grey image the quality measures are taken on.
MEASURE_SIDE = 512
THUMBNAIL_SIDE = 96
#: A pixel darker than this (0..255 grey) counts as near-black.
DARK_LEVEL = 16

COLUMNS = [
    "path",
    "bytes",
    "version",
    "md5",
    "status",
    "detail",
    "width",
    "height",
    "mode",
    "format",
    "captured_at",
    "camera_model",
    "brightness",
    "contrast",
    "sharpness",
    "dark_share",
    "phash",
    "thumbnail",
]


def layout_pattern(layout: str) -> re.Pattern[str]:
    """A regular expression for a folder layout such as
    ``"{location}/{contributor}_{date}/{label}/{file}"``: each ``{name}`` matches a part of
    one path component and becomes a named group.

    Raises
    ------
    ValueError
        If a name repeats or is not an identifier.
    """
    parts, names = [], []
    for literal, name in re.findall(r"([^{]*)(?:\{([^}]*)\})?", layout):
        parts.append(re.escape(literal))
        if name:
            if not name.isidentifier() or name in names:
                raise ValueError(f"layout {layout!r}: field {name!r} must be a unique identifier")
            names.append(name)
            parts.append(f"(?P<{name}>[^/]+?)")
    return re.compile("".join(parts))


def layout_fields(path: str, pattern: re.Pattern[str] | None) -> dict[str, str]:
    """The fields of ``path`` under the layout, all empty when it does not fit."""
    if pattern is None:
        return {}
    match = pattern.fullmatch(path)
    return {name: (match[name] if match else "") for name in pattern.groupindex}


def phash(grey: np.ndarray) -> str:
    """Perceptual hash (64 bits, 16 hex digits): the signs of the lowest 8x8 DCT frequencies
    of the image shrunk to 32x32, against their median. Resized or recompressed copies of a
    photo land a few bits apart; different photos about 32."""
    small = np.asarray(Image.fromarray(grey).resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = fft.dctn(small, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hashes from :func:`phash`."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def quality(grey: np.ndarray) -> dict[str, float]:
    """Mean brightness, contrast (standard deviation), sharpness and the share of near-black
    pixels of a grey uint8 image.

    Sharpness is the variance of the Laplacian of the image averaged over 2x2 blocks: at
    full resolution it mostly measures JPEG and sensor noise, so that a copy saved at a
    lower quality looked four times less sharp; at half resolution it measures detail.
    """
    values = grey.astype(np.float32)
    h, w = (values.shape[0] // 2) * 2, (values.shape[1] // 2) * 2
    half = values[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return {
        "brightness": round(float(values.mean()), 3),
        "contrast": round(float(values.std()), 3),
        "sharpness": round(float(ndimage.laplace(half).var()), 3),
        "dark_share": round(float((grey < DARK_LEVEL).mean()), 5),
    }


def describe_bytes(data: bytes, name: str) -> dict[str, Any]:
    """Format, size, EXIF, quality measures, perceptual hash and thumbnail of one file's bytes.

    JPEGs are decoded at reduced size (libjpeg's DCT scaling through Pillow's draft mode):
    the measures need about 512 pixels a side, not 16 MP. Returns the ``status`` ``ok``,
    ``unreadable`` (truncated, corrupt, or not an image) or ``unsupported`` (an image in a
    format the framework does not read), with a ``detail`` for the last two.
    """
    record: dict[str, Any] = {"status": OK, "detail": ""}
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                record.update(width=img.width, height=img.height, mode=img.mode, format=img.format or "")
                if img.format not in SUPPORTED_FORMATS:
                    return {**record, "status": UNSUPPORTED, "detail": f"{img.format} images are not read"}
                record.update(_exif(img))
                img.draft("RGB", (MEASURE_SIDE, MEASURE_SIDE))
                img.thumbnail((MEASURE_SIDE, MEASURE_SIDE), Image.Resampling.BILINEAR)
                rgb = img.convert("RGB")
    except UnidentifiedImageError:
        if extension in UNSUPPORTED_EXTENSIONS:
            return {**record, "status": UNSUPPORTED, "detail": f".{extension} files are not read"}
        return {**record, "status": UNREADABLE, "detail": "not an image (Pillow cannot identify it)"}
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        return {**record, "status": UNREADABLE, "detail": f"truncated or corrupt ({exc})"}
    grey = np.asarray(rgb.convert("L"))
    thumb = rgb.copy()
    thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=80)
    return {**record, **quality(grey), "phash": phash(grey), "thumbnail": buf.getvalue()}


def _exif(img: Image.Image) -> dict[str, str]:
    exif = img.getexif()
    when = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.DateTimeOriginal) or exif.get(
        ExifTags.Base.DateTime
    )
    model = exif.get(ExifTags.Base.Model)
    return {
        "captured_at": str(when).strip() if when else "",
        "camera_model": str(model).strip() if model else "",
    }


@dataclass(frozen=True)
class FileTask:
    """One file to describe: its path relative to the collection and its listing."""

    path: str
    bytes: int
    version: str


@dataclass
class FileRecord:
    """One file of the collection as the manifest describes it: a row of its table.

    ``status`` is ``ok``, ``unreadable`` or ``unsupported``; for the last two ``detail``
    says why (:attr:`error`). The measures are None where the file could not be decoded.
    """

    path: str
    bytes: int
    version: str
    md5: str
    status: Status
    detail: str = ""
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    format: str | None = None
    captured_at: str | None = None
    camera_model: str | None = None
    brightness: float | None = None
    contrast: float | None = None
    sharpness: float | None = None
    dark_share: float | None = None
    phash: str | None = None
    thumbnail: bytes | None = None
    #: What describing it cost (not a column).
    cpu_s: float = 0.0

    @property
    def error(self) -> TaskError | None:
        """Why the file cannot be used, or None when it is ok."""
        return None if self.status == OK else TaskError(self.path, self.path, self.detail)

    def to_row(self) -> dict[str, Any]:
        """The manifest's columns (:data:`COLUMNS`) of this file."""
        row = {c: getattr(self, c) for c in COLUMNS}
        row["status"] = str(self.status)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FileRecord:
        """A record from a manifest row; layout fields and other extra columns are left out."""
        values = {c: row.get(c) for c in COLUMNS}
        values["detail"] = values["detail"] or ""
        return cls(**{**values, "status": Status(row["status"])})


def describe_file(task: FileTask, root: str) -> FileRecord:
    """Read and describe one file on an executor; never raises for bad input."""
    started = time.process_time()
    try:
        data = storage.read_bytes(storage.join(root, *task.path.split("/")))
    except (OSError, ValueError) as exc:
        record = {"status": UNREADABLE, "detail": f"cannot be read ({exc})"}
        data = b""
    else:
        record = describe_bytes(data, task.path)
    return FileRecord(
        **{**record, "status": Status(record["status"])},
        path=task.path,
        bytes=task.bytes,
        version=task.version,
        md5=hashlib.md5(data).hexdigest(),
        cpu_s=round(time.process_time() - started, 4),
    )


@dataclass
class ManifestPlan:
    """Files to describe, and the records of unchanged files taken from the previous manifest."""

    root: str
    out: str
    tasks: list[FileTask] = field(default_factory=list)
    reused: list[FileRecord] = field(default_factory=list)


def plan_manifest(root: str, out: str) -> ManifestPlan:
    """List every file under ROOT and reuse the previous manifest's rows for unchanged ones.

    Raises
    ------
    ValueError
        If ROOT does not exist or holds no files.
    """
    if not storage.is_dir(root):
        raise ValueError(f"DIR {root!r} does not exist; expected a folder of photos")
    listing = storage.walk_files(root)
    if not listing:
        raise ValueError(f"DIR {root!r} holds no files")
    previous = {r["path"]: r for r in read_manifest(storage.join(out, "manifest.parquet"))}
    plan = ManifestPlan(root, out)
    for path, size, version in listing:
        old = previous.get(path)
        if old is not None and old["bytes"] == size and old["version"] == version:
            plan.reused.append(FileRecord.from_row(old))
        else:
            plan.tasks.append(FileTask(path, size, version))
    return plan


def read_manifest(path: str) -> list[dict[str, Any]]:
    """The rows of a manifest.parquet, or none when it does not exist."""
    if not storage.exists(path):
        return []
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(storage.read_bytes(path))).to_pylist()


def fingerprint(rows: list[dict[str, Any]]) -> str:
    """The dataset fingerprint: a hash over the sorted md5s of its files."""
    digest = hashlib.sha256("\n".join(sorted(r["md5"] for r in rows)).encode())
    return "sha256:" + digest.hexdigest()


def manifest_rows(records: list[FileRecord], layout: str | None) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and complete rows in path order, the layout's fields added to each."""
    pattern = layout_pattern(layout) if layout else None
    fields = list(pattern.groupindex) if pattern else []
    columns = COLUMNS[:2] + fields + COLUMNS[2:]
    complete = []
    for record in sorted(records, key=lambda r: r.path):
        full = record.to_row()
        full.update(layout_fields(record.path, pattern))
        complete.append({c: full.get(c) for c in columns})
    return columns, complete


def write_manifest(out: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """``manifest.parquet`` (thumbnails as JPEG bytes) and ``manifest.csv`` (as base64)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=_schema(columns))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes_atomic(storage.join(out, "manifest.parquet"), buf.getvalue())
    lines = (
        [
            *("" if row[c] is None else row[c] for c in columns[:-1]),
            base64.b64encode(row["thumbnail"]).decode() if row.get("thumbnail") else "",
        ]
        for row in rows
    )
    storage.write_csv_atomic(storage.join(out, "manifest.csv"), columns, lines)


def _schema(columns: list[str]):
    import pyarrow as pa

    types = {
        "bytes": pa.int64(),
        "width": pa.int64(),
        "height": pa.int64(),
        "brightness": pa.float64(),
        "contrast": pa.float64(),
        "sharpness": pa.float64(),
        "dark_share": pa.float64(),
        "thumbnail": pa.binary(),
    }
    return pa.schema([(c, types.get(c, pa.string())) for c in columns])


@dataclass
class ManifestJob(Job[ManifestPlan, FileTask, FileRecord]):
    """The manifest job: one task per ``files_per_task`` files; a rerun reads only new or
    changed files.

    Parameters
    ----------
    data, out : str
        The collection's root (only read) and the output folder.
    layout : str, optional
        A folder layout whose ``{fields}`` become columns (:func:`layout_pattern`).
    files_per_task : int
        Files per Spark task.
    """

    name: ClassVar[str] = "manifest"
    data: str = option(help="the collection's root folder (local or s3://)")
    out: str = option(help="output folder; a rerun reads only new or changed files")
    layout: str | None = option(
        None,
        help='folder layout whose {fields} become columns, e.g. "{location}/{contributor}_{date}/{label}/{file}"',
    )
    files_per_task: int = option(8, help="files per Spark task", metavar="N")

    def __post_init__(self) -> None:
        self.items_per_task = self.files_per_task

    def paths(self) -> list[str | None]:
        return [self.data, self.out]

    def plan(self) -> ManifestPlan:
        if self.layout:
            layout_pattern(self.layout)
        if self.files_per_task < 1:
            raise ValueError(f"--files-per-task must be positive, got {self.files_per_task}")
        return plan_manifest(self.data, self.out)

    def items(self, plan: ManifestPlan) -> list[FileTask]:
        return plan.tasks

    def announce(self, plan: ManifestPlan) -> str:
        return f"{len(plan.tasks)} files to read, {len(plan.reused)} unchanged since the last run"

    def worker(self, plan: ManifestPlan, task_cpus: int) -> Callable[[FileTask], FileRecord]:
        return functools.partial(describe_file, root=plan.root)

    def finish(self, plan: ManifestPlan, results: list[FileRecord], work_s: float) -> Outcome:
        columns, rows = manifest_rows(plan.reused + results, self.layout)
        write_manifest(self.out, columns, rows)
        statuses = Counter(r["status"] for r in rows)
        totals = {
            "files": len(rows),
            "read": len(results),
            "reused": len(plan.reused),
            "status": dict(statuses),
            "cpu_s_per_file": round(sum(r.cpu_s for r in results) / len(results), 4) if results else None,
        }
        inputs = {
            "data": storage.absolute(self.data),
            "layout": self.layout,
            "fingerprint": fingerprint(rows),
        }
        summary = (
            f"files: {len(rows)} ({len(results)} read, {len(plan.reused)} reused); "
            + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
            + f"\nfingerprint: {inputs['fingerprint']}"
        )
        return Outcome(
            config={"layout": self.layout, "files_per_task": self.files_per_task},
            inputs=inputs,
            totals=totals,
            summary=summary,
        )
