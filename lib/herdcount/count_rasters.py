"""Georeferenced rasters in the count job: cut into chunks that run as Spark tasks, merged
back into one record per raster on the driver."""

from __future__ import annotations

import json
import time

import numpy as np

from herdcount import storage
from herdcount.count_tasks import (
    ERROR,
    OK,
    ChunkTask,
    CountPlan,
    CountSettings,
    PhotoResult,
    PhotoTask,
    RasterPlan,
    error_result,
    finished_records,
    inside_raster,
    is_raster,
)
from herdcount.kinds import kind_of, rounded
from herdcount.locate import (
    PEAK_CONTEXT,
    Peaks,
    Points,
    peak_points,
    points_geojson,
)
from herdcount.modelrun import ModelRun
from herdcount.mosaic import (
    RasterChunk,
    RasterError,
    RasterInfo,
    plan_chunks,
    raster_info,
)


def raster_chunks(model: ModelRun, info: RasterInfo, chunk: int) -> list[RasterChunk]:
    """The chunks a raster is counted in by a density model: each reads the model's margin
    and the :data:`~herdcount.locate.PEAK_CONTEXT` cells its peaks need to gather what they
    gather in the whole raster's map."""
    stride = model.output_stride or 8
    margin = (model.margin or 0) + PEAK_CONTEXT * stride
    return plan_chunks(info.height, info.width, chunk=chunk, margin=margin, stride=stride)


def plan_rasters(
    plan: CountPlan,
    settings: CountSettings,
    model: ModelRun,
    *,
    chunk: int,
    map_coordinates: bool = False,
) -> None:
    """Replace each raster among the plan's photos by one task per chunk of ``chunk``
    pixels (:func:`raster_chunks`); chunks an earlier run counted
    (``OUT/chunks/<id>/<n>.json``) are not planned again. A raster that cannot be counted
    becomes an error row naming it and why; every other file is still counted. With
    ``map_coordinates`` a raster without georeferencing is such a raster: its points could
    not be put on the map."""
    tasks: list[PhotoTask | ChunkTask] = []
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
            plan.rows.append(error_result(task.photo_id, task.name, str(exc).removeprefix(f"{task.name}: ")))
            continue
        chunks = raster_chunks(model, info, chunk)
        done = finished_records(storage.join(settings.out, "chunks", task.photo_id), key="chunk")
        plan.rasters[task.photo_id] = RasterPlan(task, info, len(chunks), done)
        tasks += [
            ChunkTask(task.photo_id, task.path, task.name, info, w, len(chunks))
            for w in chunks
            if w.index not in done
        ]
    plan.tasks = tasks


def merge_rasters(plan: CountPlan, results: list[PhotoResult], settings: CountSettings) -> list[PhotoResult]:
    """The results with each raster's chunks merged into one record per raster (counts
    summed, points gathered), written as ``OUT/photos/<id>.json`` and its points'
    GeoJSON (WGS84 longitude and latitude when georeferenced); a raster with a failed
    chunk is an error naming the chunk."""
    merged = [r for r in results if r.chunk is None]
    for photo_id, raster in plan.rasters.items():
        mine = dict(raster.done)
        mine.update({r.chunk: r for r in results if r.chunk is not None and r.test_id == photo_id})
        failed = [r for _, r in sorted(mine.items()) if r.status == ERROR]
        if failed or len(mine) < raster.chunks:
            reason = (
                f"{len(failed)} of {raster.chunks} chunks failed; {failed[0].error.reason}"
                if failed
                else f"{raster.chunks - len(mine)} of {raster.chunks} chunks were not counted"
            )
            merged.append(error_result(photo_id, raster.task.name, reason))
            continue
        parts = [mine[i] for i in range(raster.chunks)]
        info = raster.info
        counts = np.sum([p.counts for p in parts], axis=0)
        # The raster's points shared out over all its chunks' peaks at once, as over one map
        # of the whole raster: points per class are its rounded counts, and a peak on a seam
        # is one peak.
        found = peak_points(Peaks.concat([p.peaks for p in parts]), rounded(counts))
        points = Points(inside_raster(found.coords, info), found.classes, found.scores)
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
            chunks=raster.chunks,
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
