"""The count job's executor side: count one photo, or one raster chunk, and write its record."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from herdcount import storage
from herdcount.count_tasks import (
    OK,
    ChunkTask,
    CountSettings,
    PhotoResult,
    PhotoTask,
    error_result,
    inside_raster,
)
from herdcount.imaging import PhotoError, decode_rgb, decode_rgb_scaled, image_shape, resize_rgb
from herdcount.kinds import rounded
from herdcount.locate import (
    PEAK_CONTEXT,
    Points,
    density_peaks,
    peak_points,
    points_geojson,
)
from herdcount.mosaic import (
    RasterError,
    chunk_density,
    read_chunk,
)
from herdcount.predictors import LOADS, LoadedModel, load_model, model_key
from herdcount.readahead import Clock, Read, read_now
from herdcount.scale import estimate_scale, resize_for


@dataclass(frozen=True, eq=False)
class DecodedPhoto:
    """A photo read and decoded as :func:`count_photo` counts it.

    Attributes
    ----------
    image : (H, W, 3) uint8 array
        The photo at ``scale`` (DCT-scaled where the scale allows), or at full size when a
        scale run is to read the ground first.
    original : (int, int)
        The photo's own ``(height, width)``.
    scale : float or None
        The factor ``image`` is at; None: full size, the scale run chooses.
    """

    image: np.ndarray
    original: tuple[int, int]
    scale: float | None


def count_item(
    task: PhotoTask | ChunkTask, read: Read | None = None, *, settings: CountSettings
) -> PhotoResult:
    """Count a photo or a raster's chunk (what one Spark task item is); ``read`` is what
    :func:`read_item` gave for it ahead of time, if anything."""
    if isinstance(task, ChunkTask):
        return count_chunk(task, settings, time.process_time if read is None else read.work_clock)
    return count_photo(task, settings, read)


def read_item(task: PhotoTask | ChunkTask, settings: CountSettings) -> DecodedPhoto | None:
    """Read and decode a photo ahead of its counting (the count job's reader, see
    :mod:`herdcount.readahead`); None for a raster's chunk, which reads only its window when
    it is counted.

    Raises
    ------
    PhotoError
        For a missing, empty or corrupt photo.
    """
    if isinstance(task, ChunkTask):
        return None
    data = _read(task)
    # The model may work at a fraction of the photos' size (its animals' sizes chose it).
    if settings.scale_model is None:
        scale = settings.scale * settings.input_scale
        image = decode_rgb_scaled(data, task.name, scale=scale)
        # The header's size, or the decoded one (a photo read at scale 1 is its own size).
        height, width = ((image_shape(data) if scale != 1 else None) or image.shape)[:2]
        return DecodedPhoto(image, (height, width), scale)
    image = decode_rgb(data, task.name)
    return DecodedPhoto(image, image.shape[:2], None)


def count_chunk(task: ChunkTask, settings: CountSettings, clock: Clock = time.process_time) -> PhotoResult:
    """Count one chunk of a raster on an executor and write
    ``OUT/chunks/<id>/<n>.json``; never raises for bad input. Its points are in the
    raster's pixels. ``clock`` times its CPU (see :func:`herdcount.readahead.work_clock`)."""
    cpu, wall = clock(), time.monotonic()
    index = task.chunk.index
    result = storage.join(settings.out, "chunks", task.photo_id, f"{index}.json")
    try:
        if storage.exists(result):
            return PhotoResult.from_dict(json.loads(storage.read_text(result)), resumed=True)
        model = load_model(settings.model, threads=settings.threads, precision=settings.precision)
        load_cpu = clock() - cpu
        cpu = clock()
        stride, margin = model.run.output_stride, model.run.margin
        rgb, valid = read_chunk(task.path, task.chunk, task.info)
        density, (ct, cl, cb, cr), (ot, ol) = chunk_density(
            rgb,
            valid,
            task.chunk,
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
        top, left, bottom, right = task.chunk.keep
        points = Points(inside_raster(found.coords, task.info), found.classes, found.scores)
    except Exception as exc:
        keep = task.chunk.keep
        where = f"chunk {index} of {task.chunks} (rows {keep[0]}-{keep[2]}, columns {keep[1]}-{keep[3]})"
        reason = (
            str(exc).removeprefix(f"{task.path}: ")
            if isinstance(exc, RasterError)
            else f"{type(exc).__name__}: {exc}"
        )
        failed = error_result(task.photo_id, task.name, f"{where}: {reason}")
        failed.chunk = index
        return failed
    record = PhotoResult(
        test_id=task.photo_id,
        status=OK,
        file=task.name,
        counts=[round(float(c), 4) for c in counts],
        width=right - left,
        height=bottom - top,
        points=points,
        **_costs(clock() - cpu, wall, load_cpu, model, settings),
        peaks=peaks,
        chunk=index,
        chunks=task.chunks,
    )
    storage.write_text_atomic(result, json.dumps(record.to_dict()))
    return record


def count_photo(task: PhotoTask, settings: CountSettings, read: Read | None = None) -> PhotoResult:
    """Count one photo on an executor and write ``OUT/photos/<id>.json``; never raises for
    bad input, returns an error result instead.

    ``read`` is the photo read and decoded ahead (:func:`read_item` in the runner's reading
    thread); without it the photo is read here. ``cpu_s`` is the decoding (on the reading
    thread's clock) and the inference (this thread's work, without the reading of the next
    photo beside it); ``load_cpu_s`` the model load (on a worker's first photo) or the cache
    lookup; ``wall_s`` the counting, and the reading where it happened here.
    """
    wall = time.monotonic()
    result = storage.join(settings.out, "photos", f"{task.photo_id}.json")
    clock = read.work_clock if read is not None else time.process_time
    cpu = clock()
    try:
        if storage.exists(result):  # a retried task whose first attempt finished
            return PhotoResult.from_dict(json.loads(storage.read_text(result)), resumed=True)
        model = load_model(settings.model, threads=settings.threads, precision=settings.precision)
        reader = load_model(settings.scale_model, threads=settings.threads) if settings.scale_model else None
        # The first photo of a worker pays for TensorFlow's start and the model load:
        # timed apart, so cpu_s is the steady cost per photo.
        load_cpu = clock() - cpu
        if read is None:
            # Timed by its own clock (read.cpu_s), added below.
            read = read_now(lambda t: read_item(t, settings), task)
        cpu = clock()
        decoded = read.get()
        found = None
        image, original, scale = decoded.image, decoded.original, decoded.scale
        if scale is None:
            found = estimate_scale(image, reader.predict, size=reader.run.tile_size)
            trained = model.run.training_scale_range or (1.0, 1.0)
            scale = resize_for(found.scale, trained=tuple(trained), limits=settings.auto_range)
            scale *= settings.input_scale
            image = resize_rgb(image, scale)
        counts, points = count_image(image, model, settings)
        points = points.resized(image.shape[0] / original[0], image.shape[1] / original[1])
        storage.write_text_atomic(
            storage.join(settings.out, "points", f"{task.photo_id}.geojson"),
            points_geojson(points, list(settings.class_names or model.run.class_names), name=task.name),
        )
    except PhotoError as exc:
        return error_result(task.photo_id, task.name, exc.reason)
    except Exception as exc:
        return error_result(task.photo_id, task.name, f"{type(exc).__name__}: {exc}")
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
        **_costs(clock() - cpu + read.cpu_s, wall, load_cpu, model, settings),
    )
    storage.write_text_atomic(result, json.dumps(record.to_dict()))
    return record


def _costs(
    cpu_s: float, wall: float, load_cpu: float, model: LoadedModel, settings: CountSettings
) -> dict[str, Any]:
    """What a photo's or chunk's record says of its cost and of the worker that counted it,
    from its CPU seconds and the wall clock read when its work began."""
    return {
        "cpu_s": round(cpu_s, 3),
        "wall_s": round(time.monotonic() - wall, 3),
        "load_cpu_s": round(load_cpu, 3),
        "finished_at": round(time.time(), 3),
        "pid": os.getpid(),
        "model_loads": LOADS[model_key(settings.model, settings.precision)],
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
