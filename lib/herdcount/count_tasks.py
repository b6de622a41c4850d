"""The count job's typed records: its settings, its tasks (a photo, a raster's chunk), a
photo's result and the plan."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from herdcount import storage
from herdcount.config import Config
from herdcount.intervals import ValidationCounts
from herdcount.locate import (
    Peaks,
    Points,
)
from herdcount.modelrun import ModelRun
from herdcount.mosaic import (
    RASTER_EXTENSIONS,
    RasterChunk,
    RasterInfo,
)
from herdcount.records import Status, TaskError

OK, ERROR = Status.OK, Status.ERROR
PHOTO_EXTENSIONS = ("jpg", "jpeg", "png", "tif", "tiff")


@dataclass(frozen=True)
class CountSettings:
    """What the executors need to count a photo; small enough to ship with every task."""

    out: str
    model: str
    kind: str
    num_classes: int
    scale: float = 1.0
    #: Classifier only: offset between patches; None means the patch size (the seed's tiles).
    stride: int | None = None
    tile: int = 1024
    batch_size: int = 4
    #: ``float`` or ``int8``: which export the executors run (the job resolves ``auto``).
    precision: str = "float"
    threads: int = 1
    #: A scale run (``--scale auto``): each photo is resized by the inverse of the ground
    #: scale it reads there, instead of by ``scale``.
    scale_model: str | None = None
    #: Resize factors ``--scale auto`` keeps to: what the estimate may ask for.
    auto_range: tuple[float, float] = (0.25, 4.0)
    #: Class names, for the points' GeoJSON.
    class_names: tuple[str, ...] = ()
    #: The resize factor the model works at (model.json's ``input_scale``): photos are resized by it times ``scale``.
    input_scale: float = 1.0


@dataclass(frozen=True)
class PhotoTask:
    """One photo to count; ``name`` is how messages refer to it (``Test/12.jpg``)."""

    photo_id: str
    path: str
    name: str


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of a raster to count (see :mod:`herdcount.mosaic`)."""

    photo_id: str
    path: str
    name: str
    info: RasterInfo
    chunk: RasterChunk
    #: Chunks of the raster in all.
    chunks: int


def is_raster(name: str) -> bool:
    """Whether a file is read as a raster, chunk by chunk (GeoTIFF and TIFF)."""
    return "." in name and name.rsplit(".", 1)[-1].lower() in RASTER_EXTENSIONS


@dataclass
class PhotoResult:
    """What became of one photo: its counts and what they cost, or the error.

    Written as ``OUT/photos/<id>.json`` when counted (:meth:`to_dict`), which a rerun reads
    back (:meth:`from_dict`).
    """

    test_id: str
    status: Status
    #: The photo as messages name it (``Test/12.jpg``).
    file: str
    #: Unrounded, per class.
    counts: list[float] = field(default_factory=list)
    #: Of the photo as counted (after ``--scale``).
    width: int = 0
    height: int = 0
    #: One per animal counted, in the original photo's pixels (as read, before ``--scale``).
    points: Points | None = None
    #: The resize factor it was counted at, and with ``--scale auto`` the ground scale read
    #: in it (see :func:`herdcount.scale.resize_for`) and the spread of the tiles' readings.
    scale: float = 1.0
    ground_scale: float | None = None
    scale_spread: float | None = None
    #: Decoding and inference; ``load_cpu_s`` is the model load (a worker's first photo).
    cpu_s: float = 0.0
    wall_s: float = 0.0
    load_cpu_s: float = 0.0
    #: Unix time.
    finished_at: float = 0.0
    #: The worker process, how often it loaded the model (1), TensorFlow's intra- and
    #: inter-op threads and the runtime that ran the model.
    pid: int = 0
    model_loads: int = 0
    threads: list[int] = field(default_factory=list)
    runtime: str = ""
    #: A raster chunk's peaks, over which the raster's points are shared out when its
    #: chunks are merged (chunk records only).
    peaks: Peaks | None = None
    #: A raster's chunk (its index in the raster's plan), for a chunk's record; a
    #: raster's record has the chunks it was counted in.
    chunk: int | None = None
    chunks: int | None = None
    #: A georeferenced raster's CRS and affine transform (map coordinates of its points).
    crs: str | None = None
    transform: list[float] | None = None
    #: Counted by an earlier run (read back, not written).
    resumed: bool = False
    error: TaskError | None = None

    _TRANSIENT: ClassVar[tuple[str, ...]] = ("resumed", "error")

    def to_dict(self) -> dict[str, Any]:
        """The photo's JSON record, as photos/<id>.json holds it."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._TRANSIENT}
        data["status"] = str(self.status)
        data["points"] = None if self.points is None else self.points.to_dict()
        if self.peaks is None:
            del data["peaks"]
        else:
            data["peaks"] = self.peaks.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, resumed: bool = False) -> PhotoResult:
        """Read a photo's JSON record.

        Raises
        ------
        ValueError
            If the record has keys this version does not know.
        """
        # Records written before a raster's parts were called chunks (they were windows).
        data = {_RENAMED.get(key, key): value for key, value in data.items()}
        known = {f.name for f in fields(cls)} - set(cls._TRANSIENT)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"not a photo record: unknown keys {unknown}")
        points, peaks = data.get("points"), data.get("peaks")
        return cls(
            **{
                **data,
                "status": Status(data["status"]),
                "points": None if points is None else Points.from_dict(points),
                "peaks": None if peaks is None else Peaks.from_dict(peaks),
            },
            resumed=resumed,
        )


@dataclass
class CountPlan:
    """What the driver decided before any Spark work starts."""

    out: str
    tasks: list[PhotoTask]
    #: Results of photos counted by an earlier run into the same OUT.
    done: list[PhotoResult] = field(default_factory=list)
    #: Error results that need no Spark work (files that are not photos, missing ids).
    rows: list[PhotoResult] = field(default_factory=list)
    #: Submission ids in order: sample_submission.csv's, or the photos' in numeric order.
    order: list[str] = field(default_factory=list)
    sample: str | None = None
    #: ``(name, size)`` of the files in the photo folder, as listed for the plan.
    listing: list[tuple[str, int]] = field(default_factory=list)
    #: The count job's settings, scheme and model, when the job made the plan.
    job: CountContext | None = None
    #: Rasters counted in chunks: id to the raster's task, header, chunks and the chunks
    #: an earlier run finished.
    rasters: dict[str, RasterPlan] = field(default_factory=dict)


@dataclass
class RasterPlan:
    """One raster of a plan: its header and chunks, and what an earlier run counted."""

    task: PhotoTask
    info: RasterInfo
    chunks: int
    done: dict[int, PhotoResult] = field(default_factory=dict)


def error_result(photo_id: str, name: str, reason: str) -> PhotoResult:
    return PhotoResult(photo_id, ERROR, name, error=TaskError(photo_id, name, reason))


#: Keys of photo records under their names before the current ones.
_RENAMED = {"window": "chunk", "windows": "chunks"}


def finished_records(folder: str, *, key: str = "test_id") -> dict:
    """The records an earlier run wrote into ``folder``, by ``key`` (test_id, or a raster's
    chunk index)."""
    done = {}
    for name in storage.list_files(folder):
        if name.endswith(".json"):
            data = json.loads(storage.read_text(storage.join(folder, name)))
            done[data[key]] = PhotoResult.from_dict(data, resumed=True)
    return done


def inside_raster(coords: np.ndarray, info: RasterInfo) -> np.ndarray:
    """Positions moved inside the raster: the map of its padding to the model's stride can
    place a point past its last pixel."""
    return np.minimum(coords, np.array([info.height - 1, info.width - 1], np.float64))


@dataclass(frozen=True)
class CountContext:
    """What the count job's plan decided beside the photo list."""

    settings: CountSettings
    config: Config
    model: ModelRun
    trained_at: str | None
    #: The model's held-out photos' counts (its measured errors), when its run has them.
    errors: ValidationCounts | None = None
    #: Photo id to group, from ``--groups``.
    groups: dict[str, str] | None = None
    #: Photo id to its true counts, from ``--calibration``.
    calibration: dict[str, np.ndarray] | None = None
    #: Which held-out photos ``errors`` are: ``held-out`` (all of them) or
    #: ``held-out-unchosen`` (those that did not choose the training epoch).
    errors_source: str = "held-out"
