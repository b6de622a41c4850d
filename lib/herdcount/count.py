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

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from herdcount import storage
from herdcount.config import DEFAULT_SCHEME, resolve_scheme
from herdcount.count_inputs import (
    PRECISIONS,
    check_model,
    claim_out,
    plan_count,
    read_calibration,
    read_groups,
    resolve_precision,
)
from herdcount.count_outputs import format_summary, write_outputs
from herdcount.count_rasters import merge_rasters, plan_rasters
from herdcount.count_tasks import (
    ERROR,
    ChunkTask,
    CountContext,
    CountPlan,
    CountSettings,
    PhotoResult,
    PhotoTask,
    is_raster,
)
from herdcount.count_worker import DecodedPhoto, count_item, read_item
from herdcount.intervals import (
    DEFAULT_SURVEY_SHIFT,
    interval_errors,
    read_validation_counts,
)
from herdcount.kaggle import id_key
from herdcount.kinds import SCALE as SCALE_KIND
from herdcount.modelrun import ModelRun
from herdcount.options import option
from herdcount.runinfo import fingerprint_files, read_run
from herdcount.runner import SOME_FAILED, Job, Outcome

#: When a task decodes its next photo while it counts one (``--read-ahead``).
READ_AHEAD = ("auto", "always", "never")


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
    chunk : int
        Side of the chunks rasters are counted in, pixels.
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
    model: str = option(help="a finished run of herdcount train")
    out: str = option(help="output folder (created; reruns resume)")
    sample: str | None = None
    scale: float = 1.0
    scale_model: str | None = option(
        None,
        help="with --scale auto: a run of herdcount train --kind scale, which reads each photo's ground scale",
    )
    stride: int | None = option(
        None,
        type=int,
        help="classifier only: offset between patches; default the patch size (the seed's "
        "non-overlapping tiles); a multiple of 8 below it slides the patch",
    )
    tile: int = option(
        1024,
        help="side in pixels of the photo regions inferred at once; bounds memory, "
        "does not change counts (default: %(default)s)",
    )
    batch_size: int = option(4, help="tiles per model call (default: %(default)s)")
    photos_per_task: int = option(
        4,
        help="photos per Spark task: a task pays Spark's cost of a task (about 50 ms) once for all, "
        "and may decode its next photo while it counts one (--read-ahead); 1 where rasters are "
        "counted in chunks (default: %(default)s)",
    )
    chunk: int = option(
        8192,
        metavar="N",
        help="rasters (GeoTIFF) larger than N pixels a side are counted in chunks of N, each a Spark task "
        "reading only its chunk and the model's margin (default: %(default)s)",
    )
    map_coordinates: bool = option(
        False,
        help="rasters must be georeferenced: one without a CRS is an error row rather than counted with "
        "pixel coordinates only (JPEG photos keep pixel coordinates)",
    )
    calibration: str | None = option(
        None,
        metavar="CSV",
        help="true counts of some of the survey's own photos (test_id and a column per class, as train.csv): "
        "the totals' intervals are measured on them instead of the model's held-out photos, and their "
        "truth enters the totals as it is",
    )
    groups: str | None = option(
        None,
        metavar="CSV",
        help="survey totals per group too (totals_by_group.csv): a CSV of test_id (or path, as in "
        "manifest.csv) and a group column",
    )
    group_by: str = option(
        "group",
        metavar="COLUMN",
        help="with --groups: the column naming each photo's group, e.g. a manifest layout field such as "
        "site (default: %(default)s)",
    )
    interval: float = option(
        0.9, help="share of the truth's distribution the survey totals' intervals hold (default: %(default)s)"
    )
    survey_shift: float = option(
        DEFAULT_SURVEY_SHIFT,
        metavar="SD",
        help="with intervals from the model's held-out photos: how far the model's bias may move from "
        "the survey it was trained on to this one, as a standard deviation of the log ratio of true to "
        "counted animals (default: %(default)s, measured on fresh synthetic surveys; 0 takes this survey's "
        "photos to be like the held-out ones; not used with --calibration, which measures it)",
    )
    precision: str = option(
        "auto",
        choices=list(PRECISIONS),
        help="which export counts: int8 (several times faster), float, or auto: int8 where training "
        "checked it against float on the held-out photos and it held (default: %(default)s)",
    )
    read_ahead: str = option(
        "auto",
        choices=list(READ_AHEAD),
        help="decode each task's next photo in a thread while it counts one: always, never, or auto: where "
        "the photos come from S3, whose waits it hides (on local disks it costs CPU, docs/results.md) "
        "(default: %(default)s)",
    )
    scheme: str | None = option(
        None,
        help="class scheme: a YAML file or a packaged scheme (default: the one the model was trained with, "
        f"else {DEFAULT_SCHEME})",
    )

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
        if self.read_ahead not in READ_AHEAD:
            raise ValueError(f"--read-ahead must be one of {', '.join(READ_AHEAD)}, got {self.read_ahead!r}")
        if self.chunk < 256 or self.chunk % 64:
            raise ValueError(f"--chunk must be a multiple of 64 of at least 256, got {self.chunk}")
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
            precision=resolve_precision(model, self.precision),
        )
        claim_out(settings)
        if any(is_raster(t.name) for t in plan.tasks):
            plan_rasters(plan, settings, model, chunk=self.chunk, map_coordinates=self.map_coordinates)
            # A chunk is a photo's work or more: one per task, or one large mosaic would
            # keep most cores idle.
            self.items_per_task = 1
        plan.job = CountContext(
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

    def items(self, plan: CountPlan) -> list[PhotoTask | ChunkTask]:
        return plan.tasks

    def announce(self, plan: CountPlan) -> str:
        chunks = sum(isinstance(t, ChunkTask) for t in plan.tasks)
        rasters = f" and {chunks} chunks of {len(plan.rasters)} rasters" if plan.rasters else ""
        return (
            f"{len(plan.tasks) - chunks} photos{rasters} to count with the {plan.job.model.kind} model{' (int8)' if plan.job.settings.precision == 'int8' else ''}, "
            f"{len(plan.done)} done by an earlier run"
        )

    def worker(self, plan: CountPlan, task_cpus: int) -> Callable[..., PhotoResult]:
        # TensorFlow gets the cores Spark gives each task, no more: N tasks never start N x N
        # threads. The plan keeps its settings (threads 0: Spark's spark.task.cpus decides);
        # each photo's record says what its worker ran with.
        return functools.partial(
            count_item, settings=dataclasses.replace(plan.job.settings, threads=task_cpus)
        )

    def reader(self, plan: CountPlan) -> Callable[[PhotoTask | ChunkTask], DecodedPhoto | None] | None:
        # Each task decodes its next photo while it counts one (libjpeg-turbo releases the
        # GIL). That hides the wait for bytes from S3; from a local disk there is no wait,
        # and on this project's machine the overlap cost 3-35 % more CPU a photo.
        remote = any(storage.is_s3(t.path) for t in plan.tasks)
        if self.read_ahead == "never" or (self.read_ahead == "auto" and not remote):
            return None
        return functools.partial(read_item, settings=plan.job.settings)

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
        precision = {"used": context.settings.precision, "check": context.model.int8}
        totals = {**written, "precision": precision, "count_s": round(work_s, 3)}
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
