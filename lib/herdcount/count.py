"""The count job's library side: plan on the driver, one photo per task on the executors.

Outputs under OUT:

- ``photos/<id>.json``: the counts of one photo, written by the executor that counted
  it; its presence marks the photo as done, so a rerun skips it.
- ``settings.json``: what decides the counts (model, its fingerprint, scale or scale
  model, stride); a rerun with other settings into the same OUT is refused rather than
  mixed.
- ``points/<id>.geojson``: where the photo's animals are, written by its executor before
  its record.
- ``submission.csv`` (Kaggle format, rounded), ``counts.csv`` (unrounded), ``points.csv``
  (one row per animal), ``totals.csv`` (survey totals per class with an interval, and
  ``totals_by_group.csv`` with ``--groups``), ``errors.csv`` and ``run.json``, written by the
  driver at the end.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from herdcount import storage
from herdcount.config import Config, resolve_scheme
from herdcount.imaging import PhotoError, decode_rgb, decode_rgb_scaled, image_shape, resize_rgb
from herdcount.intervals import (
    DEFAULT_SURVEY_SHIFT,
    SurveyTotals,
    ValidationCounts,
    annotated_errors,
    interval_errors,
    read_validation_counts,
    survey_totals,
)
from herdcount.kaggle import id_key
from herdcount.kinds import SCALE as SCALE_KIND
from herdcount.kinds import kind_of, rounded
from herdcount.locate import (
    PEAK_CONTEXT,
    Peaks,
    Points,
    density_peaks,
    peak_points,
    points_geojson,
)
from herdcount.modelrun import MODEL_KERAS, ModelRun
from herdcount.mosaic import (
    RASTER_EXTENSIONS,
    RasterError,
    RasterInfo,
    RasterWindow,
    pixel_to_map,
    plan_windows,
    raster_info,
    read_window,
    window_density,
)
from herdcount.predictors import LOADS, LoadedModel, load_model
from herdcount.records import Status, TaskError
from herdcount.runinfo import fingerprint_files, read_run
from herdcount.runner import SOME_FAILED, Job, Outcome
from herdcount.scale import estimate_scale, resize_for

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
    #: Classifier only: offset between windows; None means the patch size (the seed's tiles).
    stride: int | None = None
    tile: int = 1024
    batch_size: int = 4
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
class WindowTask:
    """One window of a raster to count (see :mod:`herdcount.mosaic`)."""

    photo_id: str
    path: str
    name: str
    info: RasterInfo
    window: RasterWindow
    #: Windows of the raster in all.
    windows: int


def is_raster(name: str) -> bool:
    """Whether a file is read as a raster, window by window (GeoTIFF and TIFF)."""
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
    #: A raster window's peaks, over which the raster's points are shared out when its
    #: windows are merged (window records only).
    peaks: Peaks | None = None
    #: A raster's window (its index in the raster's plan), for a window's record; a
    #: raster's record has the windows it was counted in.
    window: int | None = None
    windows: int | None = None
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
    job: _CountContext | None = None
    #: Rasters counted in windows: id to the raster's task, header, windows and the windows
    #: an earlier run finished.
    rasters: dict[str, RasterPlan] = field(default_factory=dict)


@dataclass
class RasterPlan:
    """One raster of a plan: its header and windows, and what an earlier run counted."""

    task: PhotoTask
    info: RasterInfo
    windows: int
    done: dict[int, PhotoResult] = field(default_factory=dict)


def raster_windows(model: ModelRun, info: RasterInfo, window: int) -> list[RasterWindow]:
    """The windows a raster is counted in by a density model: each reads the model's margin
    and the :data:`~herdcount.locate.PEAK_CONTEXT` cells its peaks need to gather what they
    gather in the whole raster's map."""
    stride = model.output_stride or 8
    margin = (model.margin or 0) + PEAK_CONTEXT * stride
    return plan_windows(info.height, info.width, window=window, margin=margin, stride=stride)


def plan_rasters(
    plan: CountPlan,
    settings: CountSettings,
    model: ModelRun,
    *,
    window: int,
    map_coordinates: bool = False,
) -> None:
    """Replace each raster among the plan's photos by one task per window of ``window``
    pixels (:func:`raster_windows`); windows an earlier run counted
    (``OUT/windows/<id>/<n>.json``) are not planned again. A raster that cannot be counted
    becomes an error row naming it and why; every other file is still counted. With
    ``map_coordinates`` a raster without georeferencing is such a raster: its points could
    not be put on the map."""
    tasks: list[PhotoTask | WindowTask] = []
    for task in plan.tasks:
        if not is_raster(task.name):
            tasks.append(task)
            continue
        try:
            if not kind_of(settings.kind).counts_rasters:
                raise RasterError(f"rasters are counted with density models, not a {settings.kind}")
            if settings.scale != 1 or settings.scale_model:
                raise RasterError("rasters are counted at their own resolution (--scale 1)")
            if settings.input_scale != 1:
                raise RasterError(
                    f"the model works at {settings.input_scale:g} of a photo's size; rasters are counted at "
                    "their own resolution"
                )
            info = raster_info(task.path, task.name)
            if map_coordinates and not info.georeferenced:
                raise RasterError(
                    "no georeferencing (CRS and transform), so no map coordinates for its points "
                    "(--map-coordinates); give the raster a CRS, or count without the option for pixel coordinates"
                )
        except RasterError as exc:
            plan.rows.append(_error(task.photo_id, task.name, str(exc).removeprefix(f"{task.name}: ")))
            continue
        wins = raster_windows(model, info, window)
        done = _finished(storage.join(settings.out, "windows", task.photo_id), key="window")
        plan.rasters[task.photo_id] = RasterPlan(task, info, len(wins), done)
        tasks += [
            WindowTask(task.photo_id, task.path, task.name, info, w, len(wins))
            for w in wins
            if w.index not in done
        ]
    plan.tasks = tasks


def count_item(task: PhotoTask | WindowTask, settings: CountSettings) -> PhotoResult:
    """Count a photo or a raster's window (what one Spark task item is)."""
    if isinstance(task, WindowTask):
        return count_window(task, settings)
    return count_photo(task, settings)


def count_window(task: WindowTask, settings: CountSettings) -> PhotoResult:
    """Count one window of a raster on an executor and write
    ``OUT/windows/<id>/<n>.json``; never raises for bad input. Its points are in the
    raster's pixels."""
    cpu, wall = time.process_time(), time.monotonic()
    index = task.window.index
    result = storage.join(settings.out, "windows", task.photo_id, f"{index}.json")
    try:
        if storage.exists(result):
            return PhotoResult.from_dict(json.loads(storage.read_text(result)), resumed=True)
        model = load_model(settings.model, threads=settings.threads)
        load_cpu = time.process_time() - cpu
        cpu = time.process_time()
        stride, margin = model.run.output_stride, model.run.margin
        rgb, valid = read_window(task.path, task.window, task.info)
        density, (ct, cl, cb, cr), (ot, ol) = window_density(
            rgb,
            valid,
            task.window,
            model.predict,
            stride=stride,
            margin=margin,
            tile=settings.tile,
            batch_size=settings.batch_size,
            context=PEAK_CONTEXT,
        )
        counts = density[ct:cb, cl:cr].sum(axis=(0, 1), dtype=np.float64)
        peaks = density_peaks(density, stride=stride, keep=(ct, cl, cb, cr)).shifted([ot, ol])
        found = peak_points(peaks, rounded(counts))
        top, left, bottom, right = task.window.keep
        points = Points(_inside(found.coords, task.info), found.classes, found.scores)
    except Exception as exc:
        keep = task.window.keep
        where = f"window {index} of {task.windows} (rows {keep[0]}-{keep[2]}, columns {keep[1]}-{keep[3]})"
        reason = (
            str(exc).removeprefix(f"{task.path}: ")
            if isinstance(exc, RasterError)
            else f"{type(exc).__name__}: {exc}"
        )
        failed = _error(task.photo_id, task.name, f"{where}: {reason}")
        failed.window = index
        return failed
    record = PhotoResult(
        test_id=task.photo_id,
        status=OK,
        file=task.name,
        counts=[round(float(c), 4) for c in counts],
        width=right - left,
        height=bottom - top,
        points=points,
        **_costs(cpu, wall, load_cpu, model, settings),
        peaks=peaks,
        window=index,
        windows=task.windows,
    )
    storage.write_text_atomic(result, json.dumps(record.to_dict()))
    return record


def _inside(coords: np.ndarray, info: RasterInfo) -> np.ndarray:
    """Positions moved inside the raster: the map of its padding to the model's stride can
    place a point past its last pixel."""
    return np.minimum(coords, np.array([info.height - 1, info.width - 1], np.float64))


def merge_rasters(plan: CountPlan, results: list[PhotoResult], settings: CountSettings) -> list[PhotoResult]:
    """The results with each raster's windows merged into one record per raster (counts
    summed, points gathered), written as ``OUT/photos/<id>.json`` and its points'
    GeoJSON (WGS84 longitude and latitude when georeferenced); a raster with a failed
    window is an error naming the window."""
    merged = [r for r in results if r.window is None]
    for photo_id, raster in plan.rasters.items():
        mine = dict(raster.done)
        mine.update({r.window: r for r in results if r.window is not None and r.test_id == photo_id})
        failed = [r for _, r in sorted(mine.items()) if r.status == ERROR]
        if failed or len(mine) < raster.windows:
            reason = (
                f"{len(failed)} of {raster.windows} windows failed; {failed[0].error.reason}"
                if failed
                else f"{raster.windows - len(mine)} of {raster.windows} windows were not counted"
            )
            merged.append(_error(photo_id, raster.task.name, reason))
            continue
        parts = [mine[i] for i in range(raster.windows)]
        info = raster.info
        counts = np.sum([p.counts for p in parts], axis=0)
        # The raster's points shared out over all its windows' peaks at once, as over one map
        # of the whole raster: points per class are its rounded counts, and a peak on a seam
        # is one peak.
        found = peak_points(Peaks.concat([p.peaks for p in parts]), rounded(counts))
        points = Points(_inside(found.coords, info), found.classes, found.scores)
        record = PhotoResult(
            test_id=photo_id,
            status=OK,
            file=raster.task.name,
            counts=[round(float(c), 4) for c in counts],
            width=info.width,
            height=info.height,
            points=points,
            cpu_s=round(sum(p.cpu_s for p in parts), 3),
            wall_s=round(sum(p.wall_s for p in parts), 3),
            load_cpu_s=round(sum(p.load_cpu_s for p in parts), 3),
            finished_at=round(time.time(), 3),
            pid=parts[-1].pid,
            model_loads=max(p.model_loads for p in parts),
            threads=parts[-1].threads,
            runtime=parts[-1].runtime,
            windows=raster.windows,
            crs=info.crs if info.georeferenced else None,
            transform=list(info.transform) if info.georeferenced else None,
            resumed=all(p.resumed for p in parts),
        )
        storage.write_text_atomic(
            storage.join(settings.out, "points", f"{photo_id}.geojson"),
            points_geojson(
                points,
                list(settings.class_names),
                name=raster.task.name,
                crs=record.crs,
                transform=record.transform,
            ),
        )
        storage.write_text_atomic(
            storage.join(settings.out, "photos", f"{photo_id}.json"), json.dumps(record.to_dict())
        )
        merged.append(record)
    return merged


def check_model(run: str | Path, config: Config) -> ModelRun:
    """The finished run in RUN, checked against the scheme.

    Raises
    ------
    ValueError
        If RUN is not a finished training run of a kind that counts animals, or its classes
        differ from the scheme's (a classifier adds the background class last).
    """
    model = ModelRun.read(run)
    if not model.model_kind.counts_animals:
        raise ValueError(f"{model.file('model.json')}: a {model.kind} model counts no animals")
    expected = model.model_kind.class_names(config)
    if list(model.class_names) != expected:
        raise ValueError(
            f"{model.file('model.json')}: classes {list(model.class_names)} do not match the scheme; "
            f"expected {expected} (a {model.kind} model trained with this scheme)"
        )
    return model


def plan_count(images: str | Path, out: str | Path, *, sample: str | Path | None = None) -> CountPlan:
    """List the photos to count, what an earlier run finished, and the submission order.

    Raises
    ------
    ValueError
        If the photo folder is missing or holds no photos, or sample_submission.csv is
        unreadable.
    """
    images = str(images)
    if not storage.is_dir(images):
        raise ValueError(f"photo folder {images!r} does not exist; expected a folder of <id>.jpg photos")
    listing = storage.file_stats(images)
    names = [name for name, _ in listing]
    photos = [n for n in names if n.rsplit(".", 1)[-1].lower() in PHOTO_EXTENSIONS and "." in n]
    if not photos:
        raise ValueError(
            f"photo folder {images!r} holds no photos ({len(names)} other files); expected <id>.jpg files"
        )
    plan = CountPlan(str(out), [], listing=listing)
    done = _finished(storage.join(str(out), "photos"))
    seen: dict[str, str] = {}
    for name in names:
        photo_id, label = name.rsplit(".", 1)[0], f"{storage.basename(images)}/{name}"
        if name not in photos:
            plan.rows.append(_error(photo_id, label, "not a photo; expected <id>.jpg"))
        elif photo_id in seen:
            plan.rows.append(
                _error(photo_id, label, f"id {photo_id!r} is also {seen[photo_id]}; counted once")
            )
        else:
            seen[photo_id] = label
            if photo_id in done:
                plan.done.append(done[photo_id])
            else:
                plan.tasks.append(PhotoTask(photo_id, storage.join(images, name), label))
    if sample is not None and storage.exists(sample):
        plan.sample = str(sample)
        plan.order = read_sample_ids(sample)
        for photo_id in plan.order:
            if photo_id not in seen:
                plan.rows.append(
                    _error(
                        photo_id,
                        f"{storage.basename(images)}/{photo_id}.jpg",
                        "missing from the photo folder",
                    )
                )
    else:
        plan.order = sorted(seen, key=id_key)
    return plan


def read_sample_ids(path: str | Path) -> list[str]:
    """The ``test_id`` column of sample_submission.csv, in its order.

    Raises
    ------
    ValueError
        If the first column is not ``test_id`` or an id appears twice.
    """
    rows = list(csv.reader(io.StringIO(storage.read_text(path), newline="")))
    if not rows or not rows[0] or rows[0][0].strip() != "test_id":
        raise ValueError(f"{path}: the first column must be test_id")
    ids, seen = [], set()
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        key = row[0].strip()
        if key in seen:
            raise ValueError(f"{path}, line {line}: id {key!r} appears twice")
        seen.add(key)
        ids.append(key)
    return ids


def read_calibration(path: str | Path, ids: set[str], class_names: list[str]) -> dict[str, np.ndarray]:
    """True counts of annotated photos of the survey: photo id to a (K,) array, from a CSV of
    ``test_id`` and a column per class (the layout of train.csv and the generator's
    test_counts.csv; other columns are ignored).

    Raises
    ------
    ValueError
        If a class column is missing, a count is not a number >= 0, an id appears twice or is
        not a photo of the survey, or fewer than 2 photos are listed; the message names the
        file and line.
    """
    header, rows = _read_table(path)
    missing = [c for c in ["test_id", *class_names] if c not in header]
    if missing:
        raise ValueError(f"{path}: columns {header}; missing {missing} (test_id and one column per class)")
    at = [header.index(c) for c in class_names]
    truth: dict[str, np.ndarray] = {}
    for line, photo, row in _photo_rows(path, header, rows, ids, key="test_id"):
        try:
            values = np.array([float(row[i]) for i in at])
        except ValueError:
            raise ValueError(
                f"{path}, line {line}: counts must be numbers, got {[row[i] for i in at]}"
            ) from None
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError(f"{path}, line {line}: counts must be numbers >= 0, got {values.tolist()}")
        truth[photo] = values
    if len(truth) < 2:
        raise ValueError(f"{path}: {len(truth)} annotated photo; an interval needs at least 2")
    return truth


def _read_table(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """A CSV's header (stripped) and its other rows."""
    rows = list(csv.reader(io.StringIO(storage.read_text(path), newline="")))
    return ([c.strip() for c in rows[0]] if rows else []), rows[1:]


def _photo_rows(
    path: str | Path, header: list[str], rows: list[list[str]], ids: set[str], *, key: str
) -> Iterator[tuple[int, str, list[str]]]:
    """``(line, photo id, row)`` of each non-empty row of a table that lists photos of the
    survey by its ``key`` column (``path``: the file's stem is the id, as in manifest.csv).

    Raises
    ------
    ValueError
        If a row has another number of fields than the header, or its id appears twice or is
        not in ``ids``; the message names the file and line.
    """
    at, seen = header.index(key), set()
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}, line {line}: {len(row)} fields; expected {len(header)}")
        photo = row[at].strip()
        if key == "path":
            photo = storage.basename(photo).rsplit(".", 1)[0]
        if photo in seen:
            raise ValueError(f"{path}, line {line}: id {photo!r} appears twice")
        if photo not in ids:
            raise ValueError(f"{path}, line {line}: id {photo!r} is not a photo of this survey")
        seen.add(photo)
        yield line, photo, row


def read_groups(path: str | Path, ids: set[str], *, column: str = "group") -> dict[str, str]:
    """Photo id to group, from a CSV with a ``test_id`` (or ``path``: the file's stem is the
    id, as in manifest.csv) and a ``column`` column; photos it does not list are in no group.

    Raises
    ------
    ValueError
        If a column is missing, an id appears twice or is not a photo of the survey; the
        message names the file and line.
    """
    header, rows = _read_table(path)
    key = "test_id" if "test_id" in header else "path" if "path" in header else None
    if key is None or column not in header:
        raise ValueError(f"{path}: columns {header}; expected test_id (or path) and {column!r}")
    at = header.index(column)
    return {photo: row[at].strip() for _, photo, row in _photo_rows(path, header, rows, ids, key=key)}


def settings_key(settings: CountSettings) -> dict[str, Any]:
    """What decides the counts of a photo: the model file and the options that change them."""
    model = storage.read_bytes(storage.join(settings.model, "model.keras"))
    return {
        "model": storage.absolute(settings.model),
        "model_sha256": hashlib.sha256(model).hexdigest(),
        "kind": settings.kind,
        "scale": "auto" if settings.scale_model else settings.scale,
        "stride": settings.stride,
        **(
            {
                "scale_model": storage.absolute(settings.scale_model),
                "scale_model_sha256": hashlib.sha256(
                    storage.read_bytes(storage.join(settings.scale_model, "model.keras"))
                ).hexdigest(),
            }
            if settings.scale_model
            else {}
        ),
    }


def claim_out(settings: CountSettings) -> None:
    """Record in OUT/settings.json what its counts are made with, or check an earlier
    run's record against it.

    Raises
    ------
    ValueError
        If OUT holds counts made with another model, scale or stride.
    """
    path = storage.join(settings.out, "settings.json")
    key = settings_key(settings)
    if storage.exists(path):
        earlier = json.loads(storage.read_text(path))
        changed = sorted(k for k in key if earlier.get(k) != key[k])
        if changed:
            raise ValueError(
                f"{settings.out} holds counts made with other settings ({', '.join(changed)} differ); "
                "give another --out, or delete its photos/ folder and settings.json to count again"
            )
        return
    storage.write_text_atomic(path, json.dumps(key, indent=2))


def count_photo(task: PhotoTask, settings: CountSettings) -> PhotoResult:
    """Count one photo on an executor and write ``OUT/photos/<id>.json``; never raises for
    bad input, returns an error result instead.

    ``cpu_s`` is decoding and inference; ``load_cpu_s`` the model load (on a worker's first
    photo) or the cache lookup. ``wall_s`` covers both.
    """
    cpu, wall = time.process_time(), time.monotonic()
    result = storage.join(settings.out, "photos", f"{task.photo_id}.json")
    try:
        if storage.exists(result):  # a retried task whose first attempt finished
            return PhotoResult.from_dict(json.loads(storage.read_text(result)), resumed=True)
        model = load_model(settings.model, threads=settings.threads)
        reader = load_model(settings.scale_model, threads=settings.threads) if settings.scale_model else None
        # The first photo of a worker pays for TensorFlow's start and the model load:
        # timed apart, so cpu_s is the steady cost per photo.
        load_cpu = time.process_time() - cpu
        cpu = time.process_time()
        found = None
        data = _read(task)
        # The model may work at a fraction of the photos' size (its animals' sizes chose it).
        working = settings.input_scale
        if reader is None:
            scale = settings.scale * working
            image = decode_rgb_scaled(data, task.name, scale=scale)
            # The header's size, or the counted one (a photo read at scale 1 is its own size).
            original = (image_shape(data) if scale != 1 else None) or image.shape
        else:
            image = decode_rgb(data, task.name)
            original = image.shape
            found = estimate_scale(image, reader.predict, size=reader.run.tile_size)
            trained = model.run.training_scale_range or (1.0, 1.0)
            scale = resize_for(found.scale, trained=tuple(trained), limits=settings.auto_range) * working
            image = resize_rgb(image, scale)
        counts, points = count_image(image, model, settings)
        points = points.resized(image.shape[0] / original[0], image.shape[1] / original[1])
        storage.write_text_atomic(
            storage.join(settings.out, "points", f"{task.photo_id}.geojson"),
            points_geojson(points, list(settings.class_names or model.run.class_names), name=task.name),
        )
    except PhotoError as exc:
        return _error(task.photo_id, task.name, exc.reason)
    except Exception as exc:
        return _error(task.photo_id, task.name, f"{type(exc).__name__}: {exc}")
    record = PhotoResult(
        test_id=task.photo_id,
        status=OK,
        file=task.name,
        counts=[round(float(c), 4) for c in counts],
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        points=points,
        scale=round(scale, 4),
        ground_scale=None if found is None else round(found.scale, 4),
        scale_spread=None if found is None else round(found.spread, 4),
        **_costs(cpu, wall, load_cpu, model, settings),
    )
    storage.write_text_atomic(result, json.dumps(record.to_dict()))
    return record


def _costs(
    cpu: float, wall: float, load_cpu: float, model: LoadedModel, settings: CountSettings
) -> dict[str, Any]:
    """What a photo's or window's record says of its cost and of the worker that counted it,
    from the CPU and wall clocks read when its work began."""
    return {
        "cpu_s": round(time.process_time() - cpu, 3),
        "wall_s": round(time.monotonic() - wall, 3),
        "load_cpu_s": round(load_cpu, 3),
        "finished_at": round(time.time(), 3),
        "pid": os.getpid(),
        "model_loads": LOADS[storage.absolute(storage.join(settings.model, MODEL_KERAS))],
        "threads": list(model.threads),
        "runtime": model.runtime,
    }


def count_image(image: np.ndarray, model: LoadedModel, settings: CountSettings) -> tuple[np.ndarray, Points]:
    """Counts per animal class in one decoded photo, and a point per counted animal, as the
    model's kind counts them (:meth:`herdcount.kinds.ModelKind.count_image`).

    Returns
    -------
    (K,) float64 array
        Unrounded counts.
    Points
        In the pixels of ``image``.
    """
    return model.run.model_kind.count_image(
        image,
        model,
        num_classes=settings.num_classes,
        tile=settings.tile,
        batch_size=settings.batch_size,
        stride=settings.stride,
    )


def _read(task: PhotoTask) -> bytes:
    try:
        return storage.read_bytes(task.path)
    except FileNotFoundError:
        raise PhotoError(task.name, "missing (deleted after listing?)") from None


def _error(photo_id: str, name: str, reason: str) -> PhotoResult:
    return PhotoResult(photo_id, ERROR, name, error=TaskError(photo_id, name, reason))


def _finished(folder: str, *, key: str = "test_id") -> dict:
    """The records an earlier run wrote into ``folder``, by ``key`` (test_id, or a raster's
    window index)."""
    done = {}
    for name in storage.list_files(folder):
        if name.endswith(".json"):
            data = json.loads(storage.read_text(storage.join(folder, name)))
            done[data[key]] = PhotoResult.from_dict(data, resumed=True)
    return done


# --- outputs on the driver -------------------------------------------------------------


def submission_csv(plan: CountPlan, counted: dict[str, list[float]], config: Config) -> str:
    """Kaggle ``submission.csv``: one row per id of the plan's order, counts rounded to
    the nearest non-negative integer, zeros for photos that failed."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["test_id", *config.class_names])
    zeros = [0.0] * len(config.class_names)
    for photo_id in plan.order:
        writer.writerow([photo_id, *rounded(np.asarray(counted.get(photo_id, zeros))).tolist()])
    return buf.getvalue()


def write_outputs(
    plan: CountPlan,
    results: list[PhotoResult],
    config: Config,
    *,
    errors_measured: ValidationCounts | None = None,
    groups: dict[str, str] | None = None,
    level: float = 0.9,
    calibration: dict[str, np.ndarray] | None = None,
    errors_source: str = "held-out",
    survey_shift: float = DEFAULT_SURVEY_SHIFT,
) -> dict[str, Any]:
    """Write submission.csv, counts.csv, points.csv, totals.csv (and totals_by_group.csv
    with ``groups``) and errors.csv into OUT; return the run's totals.

    ``errors_measured`` are the model's held-out photos' counts, from which the totals'
    intervals are made (:func:`herdcount.intervals.survey_totals`); without them the totals
    have no interval. ``calibration`` (true counts of annotated photos of the survey) takes
    their place when at least 2 of its photos were counted: their truth enters the totals
    as it is, and their counts measure the model's errors on this survey. ``survey_shift``
    widens intervals from held-out photos for another survey's bias
    (:func:`herdcount.intervals.survey_totals`'s ``shift``)."""
    records = plan.done + results
    ok = sorted((r for r in records if r.status == OK), key=lambda r: id_key(r.test_id))
    errors = sorted((r for r in plan.rows + results if r.status == ERROR), key=lambda r: id_key(r.test_id))
    counted = {r.test_id: r.counts for r in ok}
    out, names = plan.out, config.class_names
    storage.write_text_atomic(storage.join(out, "submission.csv"), submission_csv(plan, counted, config))
    storage.write_csv_atomic(
        storage.join(out, "counts.csv"),
        ["test_id", *names, "width", "height", "scale", "ground_scale", "cpu_s"],
        [
            [
                r.test_id,
                *r.counts,
                r.width,
                r.height,
                r.scale,
                "" if r.ground_scale is None else r.ground_scale,
                r.cpu_s,
            ]
            for r in ok
        ],
    )
    storage.write_csv_atomic(
        storage.join(out, "points.csv"),
        ["test_id", "class", "x", "y", "score", "map_x", "map_y"],
        ([r.test_id, names[k], *row] for r in ok for k, row in _point_rows(r)),
    )
    storage.write_csv_atomic(
        storage.join(out, "errors.csv"),
        ["test_id", "file", "reason"],
        [[e.item, e.file, e.reason] for e in (r.error for r in errors)],
    )
    matrix = np.array([r.counts for r in ok], np.float64).reshape(len(ok), len(names))
    # One held-out photo measures no spread: such a model's totals go without an interval.
    usable = errors_measured if errors_measured is not None and len(errors_measured.ids) >= 2 else None
    known = None
    annotated = [i for i, r in enumerate(ok) if calibration and r.test_id in calibration]
    if len(annotated) >= 2:
        known = np.full(matrix.shape, np.nan)
        for i in annotated:
            known[i] = calibration[ok[i].test_id]
        usable = annotated_errors(
            [ok[i].test_id for i in annotated], known[annotated], matrix[annotated], names
        )
    survey = survey_totals(matrix, usable, known=known, level=level, shift=survey_shift)
    # What the intervals were measured on (or would have been, with enough held-out photos).
    measured = usable if known is not None else errors_measured
    storage.write_csv_atomic(storage.join(out, "totals.csv"), TOTALS_HEADER, totals_rows(survey, names))
    by_group = {}
    if groups is not None:
        members: dict[str, list[int]] = {}
        for i, r in enumerate(ok):
            if r.test_id in groups:
                members.setdefault(groups[r.test_id], []).append(i)
        by_group = {
            g: survey_totals(
                matrix[rows],
                usable,
                known=None if known is None else known[rows],
                level=level,
                shift=survey_shift,
            )
            for g, rows in sorted(members.items())
        }
        storage.write_csv_atomic(
            storage.join(out, "totals_by_group.csv"),
            ["group", *TOTALS_HEADER],
            ([g, *row] for g, t in by_group.items() for row in totals_rows(t, names)),
        )
    in_order = set(plan.order)
    fresh = [r for r in results if r.status == OK and not r.resumed]
    totals = {
        "photos": len({t.photo_id for t in plan.tasks} | set(plan.rasters) | {r.test_id for r in plan.done}),
        "counted": len(ok),
        "resumed": len(ok) - len(fresh),
        "failed": len(errors),
        "submission_rows": len(plan.order),
        "not_in_submission": sorted((i for i in counted if i not in in_order), key=id_key),
        "counts": dict(zip(names, np.sum([r.counts for r in ok], axis=0).round(2).tolist()))
        if ok
        else dict.fromkeys(names, 0.0),
        "cpu_s_per_photo": round(float(np.mean([r.cpu_s for r in fresh])), 3) if fresh else None,
        "workers": len({r.pid for r in fresh}),
        "model_loads_per_worker": max((r.model_loads for r in fresh), default=0),
        "points": int(sum(len(r.points) for r in ok if r.points is not None)),
        "rasters": {
            r.test_id: {"width": r.width, "height": r.height, "windows": r.windows, "crs": r.crs}
            for r in ok
            if r.windows is not None
        },
        "survey_totals": _totals_record(survey, names),
        "interval_from_photos": None if measured is None else len(measured.ids),
        "interval_from": "annotated" if known is not None else errors_source,
        "annotated_listed": len(calibration) if calibration else 0,
        "interval_level": level,
        "interval_survey_shift": None if known is not None else survey_shift,
        **({"group_totals": {g: _totals_record(t, names) for g, t in by_group.items()}} if by_group else {}),
    }
    return totals


#: Columns of totals.csv.
TOTALS_HEADER = ["class", "total", "low", "high", "counted", "photos"]


def totals_rows(totals: SurveyTotals, names: list[str]) -> list[list[Any]]:
    """Rows of totals.csv: per class the estimate, the interval's ends (empty without the
    model's measured errors), the counted sum and the photos summed."""

    def cell(v: float) -> Any:
        return "" if np.isnan(v) else round(float(v), 1)

    return [
        [
            name,
            cell(totals.total[k]),
            cell(totals.low[k]),
            cell(totals.high[k]),
            round(float(totals.counted[k]), 2),
            totals.photos,
        ]
        for k, name in enumerate(names)
    ]


def _totals_record(totals: SurveyTotals, names: list[str]) -> dict[str, dict[str, float | None]]:
    return {
        name: {
            key: None if np.isnan(v[k]) else round(float(v[k]), 1)
            for key, v in (("total", totals.total), ("low", totals.low), ("high", totals.high))
        }
        for k, name in enumerate(names)
    }


def _point_rows(record: PhotoResult) -> list[tuple[int, list[Any]]]:
    """``(class, [x, y, score, map_x, map_y])`` of a photo's points; map coordinates only
    for a georeferenced raster."""
    x, y, k, score = _point_columns(record.points)
    if record.transform is None or not x:
        return [(c, [a, b, s, "", ""]) for a, b, c, s in zip(x, y, k, score)]
    mx, my = pixel_to_map(tuple(record.transform), y, x)
    return [
        (c, [a, b, s, round(float(u), 3), round(float(v), 3)])
        for a, b, c, s, u, v in zip(x, y, k, score, mx, my)
    ]


def _point_columns(points: Points | None) -> tuple[list, list, list, list]:
    """``x, y, class, score`` columns of a photo's points (x = column, y = row)."""
    if points is None or not len(points):
        return [], [], [], []
    data = points.to_dict()
    return data["x"], data["y"], data["class"], data["score"]


def format_summary(totals: dict[str, Any], errors: list[TaskError]) -> str:
    """The lines the job prints at the end."""
    lines = [
        f"photos: {totals['counted']} counted ({totals['resumed']} resumed), {totals['failed']} failed; "
        f"submission.csv has {totals['submission_rows']} rows",
        "counts: " + ", ".join(f"{k} {v:g}" for k, v in totals["counts"].items()),
    ]
    if totals["cpu_s_per_photo"] is not None:
        lines.append(
            f"{totals['cpu_s_per_photo']:.2f} CPU-s per photo (decoding and inference) in {totals['workers']} worker processes"
        )
    if totals["not_in_submission"]:
        lines.append(
            f"{len(totals['not_in_submission'])} counted photos are not in sample_submission.csv and were left "
            "out of submission.csv (they are in counts.csv)"
        )
    survey = totals.get("survey_totals")
    if survey:
        listed, used = totals.get("annotated_listed", 0), totals.get("interval_from_photos") or 0
        if listed and totals.get("interval_from") != "annotated":
            lines.append(
                f"--calibration lists {listed} photos, fewer than 2 of them counted: intervals from the "
                "model's held-out photos instead"
            )
        if totals.get("interval_from") == "annotated":
            lines.append(
                f"survey totals, {round(100 * totals.get('interval_level', 0.9))} % intervals from {used} annotated "
                "photos of this survey (--calibration; their truth counted as it is) (totals.csv): "
                + ", ".join(f"{k} {v['total']:g} ({v['low']:g}-{v['high']:g})" for k, v in survey.items())
            )
        elif (totals.get("interval_from_photos") or 0) >= 2:
            which = (
                " that did not choose its epoch" if totals.get("interval_from") == "held-out-unchosen" else ""
            )
            lines.append(
                f"survey totals, {round(100 * totals.get('interval_level', 0.9))} % intervals from the model's "
                f"{totals['interval_from_photos']} held-out photos{which}, allowing "
                f"{totals.get('interval_survey_shift') or 0:g} for another survey's bias (totals.csv): "
                + ", ".join(f"{k} {v['total']:g} ({v['low']:g}-{v['high']:g})" for k, v in survey.items())
            )
        elif totals.get("interval_from_photos") is not None:
            lines.append(
                f"survey totals without intervals: the model's run measured its errors on "
                f"{totals['interval_from_photos']} held-out photo (validation_counts.csv); an interval needs "
                "at least 2 (train with a larger --val-fraction or more photos)"
            )
        else:
            lines.append(
                "survey totals without intervals: the model's run has no validation_counts.csv (trained before "
                "herdcount wrote it, or a classifier trained without --data)"
            )
    for r in errors:
        lines.append(f"  failed {r.file}: {r.reason}")
    return "\n".join(lines)


@dataclass
class CountJob(Job[CountPlan, PhotoTask, PhotoResult]):
    """The count job: one task per ``photos_per_task`` photos.

    Parameters
    ----------
    images, out, model : str
        The photo folder, the output folder and a finished training run.
    sample : str, optional
        sample_submission.csv, whose ids give the submission's rows and order.
    scheme : str, optional
        ``--scheme``; by default the one the model was trained with.
    scale, stride, tile, batch_size
        As :class:`CountSettings`.
    scale_model : str, optional
        A run of ``herdcount train --kind scale``: count each photo at the scale it reads
        there (``--scale auto``) instead of at ``scale``.
    photos_per_task : int
        Photos per Spark task.
    groups, group_by : str, optional
        A CSV naming each photo's group (column ``group_by``): totals per group too.
    interval : float
        Share of the truth's distribution the totals' intervals hold.
    window : int
        Side of the windows rasters are counted in, pixels.
    map_coordinates : bool
        A raster without georeferencing is an error row rather than counted in pixels.
    calibration : str, optional
        True counts of annotated photos of the survey (:func:`read_calibration`): the totals'
        intervals are measured on them instead of the model's held-out photos.
    survey_shift : float
        With intervals from the model's held-out photos: how far (standard deviation of the
        log ratio of true to counted animals) its bias may move from the training survey to
        this one (:data:`DEFAULT_SURVEY_SHIFT`).
    """

    name: ClassVar[str] = "count"
    images: str
    out: str
    model: str
    sample: str | None = None
    scheme: str | None = None
    scale: float = 1.0
    stride: int | None = None
    tile: int = 1024
    batch_size: int = 4
    photos_per_task: int = 1
    scale_model: str | None = None
    groups: str | None = None
    group_by: str = "group"
    interval: float = 0.9
    window: int = 8192
    map_coordinates: bool = False
    calibration: str | None = None
    survey_shift: float = DEFAULT_SURVEY_SHIFT

    def __post_init__(self) -> None:
        self.items_per_task = self.photos_per_task

    def paths(self) -> list[str | None]:
        return [
            self.images,
            self.model,
            self.out,
            self.scheme,
            self.scale_model,
            self.groups,
            self.calibration,
        ]

    def plan(self) -> CountPlan:
        if not 0 < self.scale <= 4:
            raise ValueError(f"--scale must be in (0, 4], got {self.scale}")
        if not 0 < self.interval < 1:
            raise ValueError(f"--interval must be in (0, 1), got {self.interval}")
        if not 0 <= self.survey_shift <= 1:
            raise ValueError(f"--survey-shift must be in [0, 1], got {self.survey_shift}")
        if self.window < 256 or self.window % 64:
            raise ValueError(f"--window must be a multiple of 64 of at least 256, got {self.window}")
        if self.tile < 8 or self.batch_size < 1 or self.photos_per_task < 1:
            raise ValueError(
                f"--tile must be >= 8 and --batch-size, --photos-per-task >= 1, got "
                f"{self.tile}, {self.batch_size}, {self.photos_per_task}"
            )
        trained = read_run(self.model)
        recorded = trained.config.get("scheme") if trained else None
        config = resolve_scheme(self.scheme, recorded, f"the model {self.model!r}")
        model = check_model(self.model, config)
        stride = model.model_kind.check_stride(model, self.stride)
        if self.scale_model is not None:
            reader = ModelRun.read(self.scale_model)
            if reader.model_kind is not SCALE_KIND:
                raise ValueError(
                    f"--scale-model {self.scale_model!r} is a {reader.kind} run; --scale auto needs a run "
                    f"of herdcount train --kind {SCALE_KIND.name}"
                )
        errors = read_validation_counts(self.model)
        if errors is not None and errors.class_names != list(config.class_names):
            raise ValueError(
                f"{storage.join(self.model, 'validation_counts.csv')}: classes {errors.class_names}; "
                f"expected the scheme's {list(config.class_names)}"
            )
        errors, source = interval_errors(errors, model.epoch_chosen_on)
        plan = plan_count(self.images, self.out, sample=self.sample)
        listed = {t.photo_id for t in plan.tasks} | {r.test_id for r in plan.done}
        groups = None if self.groups is None else read_groups(self.groups, listed, column=self.group_by)
        calibration = (
            None
            if self.calibration is None
            else read_calibration(self.calibration, listed, list(config.class_names))
        )
        settings = CountSettings(
            out=self.out,
            model=self.model,
            kind=model.kind,
            scale=self.scale,
            num_classes=len(config.classes),
            stride=stride,
            tile=self.tile,
            batch_size=self.batch_size,
            scale_model=self.scale_model,
            class_names=tuple(config.class_names),
            input_scale=model.input_scale,
        )
        claim_out(settings)
        if any(is_raster(t.name) for t in plan.tasks):
            plan_rasters(plan, settings, model, window=self.window, map_coordinates=self.map_coordinates)
        plan.job = _CountContext(
            settings,
            config,
            model,
            trained.times.get("started_at") if trained else None,
            errors,
            groups,
            calibration,
            source,
        )
        return plan

    def items(self, plan: CountPlan) -> list[PhotoTask | WindowTask]:
        return plan.tasks

    def announce(self, plan: CountPlan) -> str:
        windows = sum(isinstance(t, WindowTask) for t in plan.tasks)
        rasters = f" and {windows} windows of {len(plan.rasters)} rasters" if plan.rasters else ""
        return (
            f"{len(plan.tasks) - windows} photos{rasters} to count with the {plan.job.model.kind} model, "
            f"{len(plan.done)} done by an earlier run"
        )

    def worker(self, plan: CountPlan, task_cpus: int) -> Callable[[PhotoTask], PhotoResult]:
        # TensorFlow gets the cores Spark gives each task, no more: N tasks never start N x N threads.
        settings = dataclasses.replace(plan.job.settings, threads=task_cpus)
        plan.job = dataclasses.replace(plan.job, settings=settings)
        return functools.partial(count_item, settings=settings)

    def finish(self, plan: CountPlan, results: list[PhotoResult], work_s: float) -> Outcome:
        context = plan.job
        results = merge_rasters(plan, results, context.settings)
        written = write_outputs(
            plan,
            results,
            context.config,
            errors_measured=context.errors,
            groups=context.groups,
            level=self.interval,
            calibration=context.calibration,
            errors_source=context.errors_source,
            survey_shift=self.survey_shift,
        )
        totals = {**written, "count_s": round(work_s, 3)}
        inputs = {
            "images": storage.absolute(self.images),
            "sample_submission": plan.sample,
            "photos": totals["photos"],
            "fingerprint": fingerprint_files(
                storage.parent(self.images),
                [storage.basename(self.images)],
                listings={storage.basename(self.images): plan.listing},
            ),
        }
        described = context.model
        model = {
            "run": storage.absolute(self.model),
            "kind": described.kind,
            "class_names": list(described.class_names),
            "training_data": described.training_data or None,
            "metrics": described.metrics or None,
            "train_run": context.trained_at,
        }
        errors = sorted(
            (r.error for r in plan.rows + results if r.status == ERROR), key=lambda e: id_key(e.item)
        )
        lines = [
            format_summary(totals, errors),
            f"outputs: {storage.join(self.out, 'submission.csv')}, counts.csv, points.csv, totals.csv"
            + (", totals_by_group.csv" if context.groups is not None else "")
            + ", errors.csv, run.json",
        ]
        code = 0
        if totals["failed"]:
            # Everything countable was counted, but a pipeline must not mistake this for success.
            seen = totals["counted"] + totals["failed"]
            lines.append(
                f"count: {totals['failed']} of {seen} photos failed (see errors.csv); exit code {SOME_FAILED}"
            )
            code = SOME_FAILED
        return Outcome(
            config={"settings": dataclasses.asdict(context.settings), "scheme": context.config.to_dict()},
            inputs=inputs,
            totals=totals,
            summary="\n".join(lines),
            model=model,
            exit_code=code,
        )


@dataclass(frozen=True)
class _CountContext:
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
