"""The count job's library side: plan on the driver, one photo per task on the executors.

Outputs under OUT:

- ``photos/<id>.json``: the counts of one photo, written by the executor that counted
  it; its presence marks the photo as done, so a rerun skips it.
- ``settings.json``: what decides the counts (model, its fingerprint, scale or scale
  model, stride); a rerun with other settings into the same OUT is refused rather than
  mixed.
- ``submission.csv`` (Kaggle format, rounded), ``counts.csv`` (unrounded),
  ``errors.csv`` and ``run.json``, written by the driver at the end.
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
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from herdcount import storage
from herdcount.config import Config, resolve_scheme
from herdcount.imaging import PhotoError, decode_rgb, decode_rgb_scaled, resize_rgb
from herdcount.kaggle import id_key
from herdcount.predictors import LOADS, LoadedModel, load_model, read_model_info
from herdcount.records import Status, TaskError
from herdcount.runinfo import fingerprint_files, read_run
from herdcount.runner import SOME_FAILED, Job, Outcome
from herdcount.scale import estimate_scale
from herdcount.tiling import class_counts, density_map, tile_scores, window_scores

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


@dataclass(frozen=True)
class PhotoTask:
    """One photo to count; ``name`` is how messages refer to it (``Test/12.jpg``)."""

    photo_id: str
    path: str
    name: str


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
    #: The resize factor it was counted at, and with ``--scale auto`` the ground scale read
    #: in it (its inverse, before clipping) and the spread of the tiles' readings.
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
    #: Counted by an earlier run (read back, not written).
    resumed: bool = False
    error: TaskError | None = None

    _TRANSIENT: ClassVar[tuple[str, ...]] = ("resumed", "error")

    def to_dict(self) -> dict[str, Any]:
        """The photo's JSON record, as photos/<id>.json holds it."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._TRANSIENT}
        data["status"] = str(self.status)
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
        return cls(**{**data, "status": Status(data["status"])}, resumed=resumed)


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


def check_model(run: str | Path, config: Config) -> dict[str, Any]:
    """The model.json of RUN, checked against the scheme.

    Raises
    ------
    ValueError
        If RUN is not a finished training run, or its classes differ from the scheme's
        (a classifier adds the background class last).
    """
    info = read_model_info(run)
    expected = list(config.class_names)
    if info["kind"] == "classifier":
        expected.append(config.background_class)
    if list(info["class_names"]) != expected:
        raise ValueError(
            f"{storage.join(run, 'model.json')}: classes {info['class_names']} do not match the scheme; "
            f"expected {expected} (a {info['kind']} model trained with this scheme)"
        )
    return info


def check_stride(info: dict[str, Any], stride: int | None) -> int | None:
    """The classifier's window stride, checked; None for density models.

    Raises
    ------
    ValueError
        If a stride is given for a density model, or it is not the patch size or a
        multiple of 8 below it (8 is the classifier's native stride: three 2x2 poolings).
    """
    if info["kind"] == "density":
        if stride is not None:
            raise ValueError(f"--stride is for classifier models; {info['kind']} models count every pixel")
        return None
    patch = int(info["patch_size"])
    stride = patch if stride is None else stride
    if stride != patch and not (0 < stride < patch and stride % 8 == 0):
        raise ValueError(f"stride must be {patch} (the patch size) or a multiple of 8 below it, got {stride}")
    return stride


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
    done = _finished(str(out))
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
        if reader is None:
            scale = settings.scale
            image = decode_rgb_scaled(_read(task), task.name, scale=scale)
        else:
            image = decode_rgb(_read(task), task.name)
            found = estimate_scale(image, reader.predict, size=int(reader.info["tile_size"]))
            scale = float(np.clip(1.0 / found.scale, *settings.auto_range))
            image = resize_rgb(image, scale)
        counts = count_image(image, model, settings)
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
        scale=round(scale, 4),
        ground_scale=None if found is None else round(found.scale, 4),
        scale_spread=None if found is None else round(found.spread, 4),
        cpu_s=round(time.process_time() - cpu, 3),
        wall_s=round(time.monotonic() - wall, 3),
        load_cpu_s=round(load_cpu, 3),
        finished_at=round(time.time(), 3),
        pid=os.getpid(),
        model_loads=LOADS[storage.absolute(storage.join(settings.model, "model.keras"))],
        threads=list(model.threads),
        runtime=model.runtime,
    )
    storage.write_text_atomic(result, json.dumps(record.to_dict()))
    return record


def count_image(image: np.ndarray, model: LoadedModel, settings: CountSettings) -> np.ndarray:
    """Counts per animal class in one decoded photo.

    Density models: the sum of each class map over the whole photo, computed in tiles of
    ``settings.tile`` pixels with the model's margin (see :func:`density_map`).
    Classifiers: windows per class (see :func:`class_counts`); at the patch stride the
    seed's non-overlapping tiles, below it every window from the fully convolutional form.
    """
    info = model.info
    if info["kind"] == "density":
        stride, margin = int(info["output_stride"]), int(info["margin"])
        tile = max(stride, settings.tile // stride * stride)
        density = density_map(
            image, model.predict, stride=stride, tile=tile, margin=margin, batch_size=settings.batch_size
        )
        return density.sum(axis=(0, 1), dtype=np.float64)
    patch = int(info["patch_size"])
    stride = settings.stride or patch
    if stride == patch:
        scores = tile_scores(image, model.predict, patch=patch, batch_size=256)
    else:
        scores = window_scores(
            image,
            model.predict_maps,
            patch=patch,
            stride=stride,
            step=model.map_stride,
            tile=settings.tile,
            batch_size=settings.batch_size,
        )
    return class_counts(scores, settings.num_classes, weight=(stride / patch) ** 2)


def _read(task: PhotoTask) -> bytes:
    try:
        return storage.read_bytes(task.path)
    except FileNotFoundError:
        raise PhotoError(task.name, "missing (deleted after listing?)") from None


def _error(photo_id: str, name: str, reason: str) -> PhotoResult:
    return PhotoResult(photo_id, ERROR, name, error=TaskError(photo_id, name, reason))


def _finished(out: str) -> dict[str, PhotoResult]:
    done = {}
    for name in storage.list_files(storage.join(out, "photos")):
        if name.endswith(".json"):
            data = json.loads(storage.read_text(storage.join(out, "photos", name)))
            done[data["test_id"]] = PhotoResult.from_dict(data, resumed=True)
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
        values = np.rint(np.maximum(counted.get(photo_id, zeros), 0)).astype(int)
        writer.writerow([photo_id, *values.tolist()])
    return buf.getvalue()


def write_outputs(plan: CountPlan, results: list[PhotoResult], config: Config) -> dict[str, Any]:
    """Write submission.csv, counts.csv and errors.csv into OUT; return the run's totals."""
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
        storage.join(out, "errors.csv"),
        ["test_id", "file", "reason"],
        [[e.item, e.file, e.reason] for e in (r.error for r in errors)],
    )
    in_order = set(plan.order)
    fresh = [r for r in results if r.status == OK and not r.resumed]
    totals = {
        "photos": len(plan.tasks) + len(plan.done),
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
    }
    return totals


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

    def __post_init__(self) -> None:
        self.items_per_task = self.photos_per_task

    def paths(self) -> list[str | None]:
        return [self.images, self.model, self.out, self.scheme, self.scale_model]

    def plan(self) -> CountPlan:
        if not 0 < self.scale <= 4:
            raise ValueError(f"--scale must be in (0, 4], got {self.scale}")
        if self.tile < 8 or self.batch_size < 1 or self.photos_per_task < 1:
            raise ValueError(
                f"--tile must be >= 8 and --batch-size, --photos-per-task >= 1, got "
                f"{self.tile}, {self.batch_size}, {self.photos_per_task}"
            )
        trained = read_run(self.model)
        recorded = trained.config.get("scheme") if trained else None
        config = resolve_scheme(self.scheme, recorded, f"the model {self.model!r}")
        info = check_model(self.model, config)
        stride = check_stride(info, self.stride)
        if self.scale_model is not None:
            reader = read_model_info(self.scale_model)
            if reader["kind"] != "scale":
                raise ValueError(
                    f"--scale-model {self.scale_model!r} is a {reader['kind']} run; --scale auto needs a run "
                    "of herdcount train --kind scale"
                )
        plan = plan_count(self.images, self.out, sample=self.sample)
        settings = CountSettings(
            out=self.out,
            model=self.model,
            kind=info["kind"],
            scale=self.scale,
            num_classes=len(config.classes),
            stride=stride,
            tile=self.tile,
            batch_size=self.batch_size,
            scale_model=self.scale_model,
        )
        claim_out(settings)
        plan.job = _CountContext(settings, config, info, trained.times.get("started_at") if trained else None)
        return plan

    def items(self, plan: CountPlan) -> list[PhotoTask]:
        return plan.tasks

    def announce(self, plan: CountPlan) -> str:
        return (
            f"{len(plan.tasks)} photos to count with the {plan.job.info['kind']} model, {len(plan.done)} done "
            "by an earlier run"
        )

    def worker(self, plan: CountPlan, task_cpus: int) -> Callable[[PhotoTask], PhotoResult]:
        # TensorFlow gets the cores Spark gives each task, no more: N tasks never start N x N threads.
        settings = dataclasses.replace(plan.job.settings, threads=task_cpus)
        plan.job = dataclasses.replace(plan.job, settings=settings)
        return functools.partial(count_photo, settings=settings)

    def finish(self, plan: CountPlan, results: list[PhotoResult], work_s: float) -> Outcome:
        context = plan.job
        totals = {**write_outputs(plan, results, context.config), "count_s": round(work_s, 3)}
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
        info = context.info
        model = {
            "run": storage.absolute(self.model),
            "kind": info["kind"],
            "class_names": info["class_names"],
            "training_data": info.get("training_data"),
            "metrics": info.get("metrics"),
            "train_run": context.trained_at,
        }
        errors = sorted(
            (r.error for r in plan.rows + results if r.status == ERROR), key=lambda e: id_key(e.item)
        )
        lines = [
            format_summary(totals, errors),
            f"outputs: {storage.join(self.out, 'submission.csv')}, counts.csv, errors.csv, run.json",
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
    info: dict[str, Any]
    trained_at: str | None
