"""The extract job's library side: plan on the driver, one pair per task on the executors.

Outputs under OUT:

- ``metadata/<id>.json``: the Kaggle-format dots ``{"<annotation_key>": {class: [[x, y], ...]},
  "filename": "<id>.jpg"}`` plus ``width``, ``height``, ``counts``, ``backgrounds``
  (top-left ``[x, y]`` of each background patch) and ``masked_fraction``. It is written
  last for its photo, so its presence means the photo is complete: a rerun skips it.
- ``thumbnails/<class>/img_<id>-<class>-<n>-<offset>.jpg`` and background patches in
  ``thumbnails/<background_class>/``.
- ``training_metadata.json``, ``extract_report.csv`` and ``run.json`` (written by the job).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from herdcount import storage
from herdcount.annotated import (
    AnnotatedPlan,
    ImageTask,
    LabelSource,
    annotation_scheme,
    label_image,
    labelled_record,
    measured_sizes,
    plan_annotated,
    read_labels,
)
from herdcount.annotations import image_id
from herdcount.config import DEFAULT_SCHEME, Config, load_config, resolve_scheme
from herdcount.dots import find_dots
from herdcount.extract_report import diagnoses, format_summary, report_csv, summarise
from herdcount.imaging import PhotoError, decode_rgb, encode_jpeg, jpeg_shape
from herdcount.kaggle import id_key, read_data_scheme, read_mismatched, read_train_csv, thumbnail_name
from herdcount.options import option
from herdcount.patches import sample_background, thumbnail_origins
from herdcount.records import Status, TaskError
from herdcount.runinfo import fingerprint_files
from herdcount.runner import Job, Outcome
from herdcount.windows import WindowSettings, keep_shares

OK, SKIPPED, ERROR = Status.OK, Status.SKIPPED, Status.ERROR


@dataclass(frozen=True)
class PairTask:
    """One training pair to extract; paths are absolute."""

    train_id: str
    plain: str
    dotted: str


@dataclass
class PairResult:
    """What became of one training pair: done (now or by an earlier run), skipped or failed."""

    train_id: str
    status: Status
    #: Why a pair was skipped, or "resumed".
    note: str = ""
    error: TaskError | None = None
    #: Dots found per class.
    counts: list[int] | None = None
    #: The photo's metadata/<id>.json.
    annotation: dict[str, Any] | None = None
    resumed: bool = False
    cpu_s: float = 0.0
    #: Annotated images: the rows of the annotation file it could not use, and why.
    rejected: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        """The report's message: the error with its file, or the note."""
        return str(self.error) if self.error else self.note

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairResult:
        error = data.get("error")
        return cls(
            **{**data, "status": Status(data["status"]), "error": error and TaskError.from_dict(error)}
        )


@dataclass
class ExtractPlan:
    """What the driver found in DATA before any Spark work starts."""

    data: str
    out: str
    config: Config
    tasks: list[PairTask]
    # Results for ids that need no Spark work: mismatched pairs, missing copies, stray files.
    rows: list[PairResult] = field(default_factory=list)
    expected: dict[str, list[int]] | None = None
    #: ``(name, size)`` of the files in Train/ and TrainDotted/, as listed for the plan.
    listings: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    #: Training windows cut while each pair is decoded (``--windows``), else None.
    windows: PairWindows | None = None
    #: Where labels come from an annotation file: the file and what its reading found.
    source: LabelSource | None = None
    annotated: AnnotatedPlan | None = None


@dataclass(frozen=True)
class PairWindows:
    """How the extract job cuts each pair's training windows into ``out/parts`` for the
    windows stage (:mod:`herdcount.shards`), which then need not decode it again."""

    out: str
    settings: WindowSettings
    #: Each class's share of dots that get a dot window, from train.csv's counts.
    shares: list[float]
    seed: int = 0


def plan_extract(data: str | Path, out: str | Path, config: Config) -> ExtractPlan:
    """List the pairs of a Kaggle-layout dataset and decide what each needs.

    Raises
    ------
    ValueError
        If DATA does not exist or lacks ``Train/`` or ``TrainDotted/``, or if train.csv
        does not have the scheme's columns.
    """
    data, out = str(data), str(out)
    missing = [d for d in ("Train", "TrainDotted") if not storage.is_dir(storage.join(data, d))]
    if len(missing) == 2 and not storage.is_dir(data):
        raise ValueError(f"DATA {data!r} does not exist; expected a folder with Train/ and TrainDotted/")
    if missing:
        raise ValueError(
            f"DATA {data!r} has no {' or '.join(d + '/' for d in missing)}; "
            "expected the Kaggle layout: Train/<id>.jpg and TrainDotted/<id>.jpg"
        )
    expected = read_train_csv(storage.join(data, "Train", "train.csv"), config)
    mismatched = read_mismatched(storage.join(data, "MismatchedTrainImages.txt"))
    listings = {folder: storage.file_stats(storage.join(data, folder)) for folder in ("Train", "TrainDotted")}
    dotted = {name for name, _ in listings["TrainDotted"]}
    plan = ExtractPlan(data, out, config, [], expected=expected, listings=listings)
    for name, _ in listings["Train"]:
        stem, ext = name.rsplit(".", 1) if "." in name else (name, "")
        if name == "train.csv":
            continue
        if ext.lower() not in ("jpg", "jpeg"):
            plan.rows.append(_failed(name, f"Train/{name}", "not a photo; expected Train/<id>.jpg"))
        elif stem in mismatched:
            plan.rows.append(PairResult(stem, SKIPPED, note="listed in MismatchedTrainImages.txt"))
        elif name not in dotted:
            plan.rows.append(_failed(stem, f"TrainDotted/{name}", "is missing"))
        else:
            plan.tasks.append(
                PairTask(stem, storage.join(data, "Train", name), storage.join(data, "TrainDotted", name))
            )
    return plan


def extract_pair(task: PairTask, out: str, config: Config, windows: PairWindows | None = None) -> PairResult:
    """Extract one pair on an executor; never raises for bad input, returns its result
    (``ok`` or ``error``)."""
    return _guarded(task, out, task.plain, lambda: _extract(task, str(out), config, windows))


def extract_image(
    task: ImageTask, out: str, config: Config, source: LabelSource, windows: PairWindows | None = None
) -> PairResult:
    """Extract one annotated image on an executor: as :func:`extract_pair`, with the animals
    read from the annotation file's rows instead of found in a dotted copy."""
    return _guarded(task, out, task.name, lambda: _extract_labelled(task, out, config, source, windows))


def _guarded(task: PairTask | ImageTask, out: str, file: str, work: Callable[[], dict]) -> PairResult:
    """A photo's result: resumed from its metadata, or made by ``work``; bad input becomes an
    error naming the file (``file`` for an error that is not about a photo's bytes)."""
    started = time.process_time()
    meta_path = storage.join(out, "metadata", f"{task.train_id}.json")
    try:
        if storage.exists(meta_path):
            meta = json.loads(storage.read_text(meta_path))
            return _ok(task, meta, resumed=True, started=started)
        return _ok(task, work(), resumed=False, started=started)
    except PhotoError as exc:
        return _failed(task.train_id, exc.file, exc.reason, cpu_s=time.process_time() - started)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return _failed(task.train_id, file, reason, cpu_s=time.process_time() - started)


def _extract_labelled(
    task: ImageTask, out: str, config: Config, source: LabelSource, windows: PairWindows | None
) -> dict[str, Any]:
    photo = label_image(task, config, source, _read(task.path, task.name), block=config.dots.block)
    meta = labelled_record(task, photo, config)
    meta.update(_outputs(task.train_id, photo.image, photo.points, photo.classes, photo.masked, out, config))
    if windows is not None:
        _write_windows(task.train_id, photo.image, photo.masked, config.dots.block, meta, config, windows)
    meta["rejected"] = [str(e) for e in photo.rejected]
    # Written last: its presence marks the photo as complete for a rerun.
    storage.write_text_atomic(storage.join(out, "metadata", f"{task.train_id}.json"), json.dumps(meta))
    return meta


def _outputs(
    train_id, plain, coords, classes, masked, out: str, config: Config, block=None
) -> dict[str, Any]:
    """Thumbnails and background patches of a labelled photo; the metadata record's shared
    part (its animals per class, size, counts and background corners)."""
    size, names = config.thumbnail_size, config.class_names
    per_class: dict[str, list[list[int]]] = {name: [] for name in names}
    for (row, col), k in zip(coords, classes):
        per_class[names[k]].append([round(col), round(row)])
    if min(plain.shape[:2]) >= size:
        _write_thumbnails(plain, coords, classes, train_id, out, config)
    rng = np.random.default_rng([config.seed, int.from_bytes(train_id.encode()[:8], "little")])
    corners = sample_background(
        plain.shape,
        coords,
        config.backgrounds_per_photo,
        size=size,
        min_distance=config.background_min_distance,
        masked=masked,
        block=block or config.dots.block,
        rng=rng,
    )
    background, quality = config.background_class, config.jpeg_quality
    patches = [
        (
            thumbnail_name(train_id, background, n, 0),
            encode_jpeg(plain[top : top + size, left : left + size], quality),
        )
        for n, (top, left) in enumerate(corners)
    ]
    if patches:
        storage.write_files_atomic(storage.join(out, "thumbnails", background), patches)
    return {
        config.annotation_key: per_class,
        "filename": f"{train_id}.jpg",
        "width": int(plain.shape[1]),
        "height": int(plain.shape[0]),
        "counts": np.bincount(np.asarray(classes, np.int64), minlength=len(names)).tolist(),
        "backgrounds": [[int(c), int(r)] for r, c in corners],
        "masked_fraction": round(float(np.mean(masked)) if masked.size else 0.0, 4),
    }


def _extract(task: PairTask, out: str, config: Config, windows: PairWindows | None = None) -> dict[str, Any]:
    plain_name, dotted_name = (
        f"Train/{storage.basename(task.plain)}",
        f"TrainDotted/{storage.basename(task.dotted)}",
    )
    plain = _decode(_read(task.plain), plain_name, "plain")
    dotted = _decode(_read(task.dotted), dotted_name, "dotted")
    if plain.shape != dotted.shape:
        raise PhotoError(
            dotted_name,
            f"is {dotted.shape[1]}x{dotted.shape[0]} but {plain_name} is {plain.shape[1]}x{plain.shape[0]}",
        )
    found = find_dots(plain, dotted, config.dot_colours, **dataclasses.asdict(config.dots))
    del dotted
    shared = _outputs(
        task.train_id, plain, found.coords, found.classes, found.masked, out, config, found.block
    )
    if windows is not None:
        _write_windows(task.train_id, plain, found.masked, found.block, shared, config, windows)
    meta = {
        **shared,
        # What one dot looked like in this photo, pooled over the survey by the job.
        "dot_footprint": None if found.footprint is None else round(found.footprint, 2),
        "dot_colours": found.colours.to_dict() if found.colours is not None else None,
    }
    # Written last: its presence marks the photo as complete for a rerun.
    storage.write_text_atomic(storage.join(out, "metadata", f"{task.train_id}.json"), json.dumps(meta))
    return meta


def _write_windows(train_id, plain, masked, block, meta, config: Config, windows: PairWindows) -> None:
    from herdcount.extracted import PhotoDots
    from herdcount.shards import photo_windows, write_part

    # The dots as training reads them back from the metadata (rounded, in class order), so
    # that the windows are those the stage would cut.
    dots = PhotoDots.from_metadata(train_id, meta, config)
    cut = photo_windows(dots, plain, masked, windows.settings, windows.shares, windows.seed, block=block)
    write_part(windows.out, cut, config.class_names, windows.settings, windows.seed)


def _write_thumbnails(plain, coords, classes, train_id: str, out: str, config: Config) -> None:
    names, size = config.class_names, config.thumbnail_size
    corners = thumbnail_origins(coords, size, plain.shape, config.offsets)
    files: dict[str, list[tuple[str, bytes]]] = {name: [] for name in names}
    for k, dot_corners in zip(classes, corners):
        name = names[k]
        n = len(files[name]) // len(config.offsets)
        for offset, (top, left) in zip(config.offsets, dot_corners):
            crop = plain[top : top + size, left : left + size]
            files[name].append(
                (thumbnail_name(train_id, name, n, offset), encode_jpeg(crop, config.jpeg_quality))
            )
    for name, batch in files.items():
        if batch:
            storage.write_files_atomic(storage.join(out, "thumbnails", name), batch)


# Each worker decodes its pairs into the same two arrays: fresh 50 MB arrays cost the
# kernel ~10 ms per pair to map and zero. They stay allocated between tasks.
_DECODED: dict[str, np.ndarray] = {}


def _decode(data: bytes, name: str, slot: str) -> np.ndarray:
    shape = jpeg_shape(data)
    if shape is None:
        return decode_rgb(data, name)
    if slot not in _DECODED or _DECODED[slot].shape != shape:
        _DECODED.pop(slot, None)  # freed before its successor is made: one 50 MB peak less
        _DECODED[slot] = np.empty(shape, dtype=np.uint8)
    return decode_rgb(data, name, out=_DECODED[slot])


def _read(path: str, name: str | None = None) -> bytes:
    try:
        return storage.read_bytes(path)
    except FileNotFoundError:
        raise PhotoError(name or path, "missing") from None


def _ok(task: PairTask | ImageTask, meta: dict[str, Any], *, resumed: bool, started: float) -> PairResult:
    return PairResult(
        task.train_id,
        OK,
        note="resumed" if resumed else "",
        counts=meta["counts"],
        annotation=meta,
        resumed=resumed,
        cpu_s=time.process_time() - started,
        rejected=list(meta.get("rejected") or []),
    )


def _failed(train_id: str, file: str, reason: str, cpu_s: float = 0.0) -> PairResult:
    return PairResult(train_id, ERROR, error=TaskError(train_id, file, reason), cpu_s=cpu_s)


def write_outputs(plan: ExtractPlan, results: list[PairResult]) -> dict[str, Any]:
    """Write training_metadata.json and extract_report.csv; return the run's totals."""
    rows, config = plan.rows + results, plan.config
    ok = sorted((r for r in results if r.status == OK), key=lambda r: id_key(r.train_id))
    annotations = json.dumps([r.annotation for r in ok])
    storage.write_text_atomic(storage.join(plan.out, "training_metadata.json"), annotations)
    # Once for both the report's rows and the summary's likely cause.
    whys = diagnoses(rows, config, plan.expected)
    storage.write_text_atomic(
        storage.join(plan.out, "extract_report.csv"), report_csv(rows, config, plan.expected, whys)
    )
    return summarise(rows, config, plan.expected, whys)


@dataclass
class ExtractJob(Job[ExtractPlan, PairTask, PairResult]):
    """The extract job: one task per training pair.

    Parameters
    ----------
    data, out : str
        The survey's root in the Kaggle layout, and the output folder.
    scheme : str, optional
        ``--scheme``: a YAML file or a packaged scheme; by default DATA/scheme.yaml when
        the survey records one, else the sea lions'.
    config : Config, optional
        A scheme already resolved (tests, benchmarks): used as it is.
    """

    name: ClassVar[str] = "extract"
    data: str = option(required=False, help="dataset root in the Kaggle layout (dotted pairs)")
    out: str = option(help="output folder (created; reruns resume)")
    scheme: str | None = option(
        None,
        help="class scheme: a YAML file or a packaged scheme (default: DATA/scheme.yaml when the survey "
        f"records one, else {DEFAULT_SCHEME})",
    )
    config: Config | None = None
    #: Cut training windows into ``OUT/windows/parts`` while each pair is decoded (for the
    #: windows stage to shard), with these settings; only where train.csv gives the counts.
    windows: WindowSettings | None = None
    seed: int = 0
    #: Labels from an annotation file over a folder of images (``--annotations``) instead
    #: of dotted pairs; ``data`` is then that folder.
    source: LabelSource | None = None

    def paths(self) -> list[str | None]:
        return [str(self.data), str(self.out), self.scheme]

    def plan(self) -> ExtractPlan:
        if self.source is not None:
            return self._plan_annotated(self.source)
        config = self.config
        if config is None:
            recorded = read_data_scheme(self.data) if storage.is_dir(self.data) else None
            config = resolve_scheme(self.scheme, recorded, f"DATA {self.data!r} (its scheme.yaml)")
            if self.scheme is None and recorded is None:
                print(
                    f"extract: no --scheme and no DATA/scheme.yaml: using the {DEFAULT_SCHEME} scheme",
                    file=sys.stderr,
                )
        plan = plan_extract(self.data, self.out, config)
        if self.windows is not None:
            self.windows.check(config.dots.block)
            if plan.expected is None:
                print(
                    "extract: no train.csv: the windows stage decodes the pairs again to cut windows",
                    file=sys.stderr,
                )
            else:
                # The survey's counts decide how many of a class's dots get a window; train.csv
                # has them before any pair is extracted.
                counts = [plan.expected[t.train_id] for t in plan.tasks if t.train_id in plan.expected]
                totals = np.sum(counts, axis=0) if counts else np.zeros(len(config.classes))
                shares = keep_shares(totals, self.windows.dots_per_class).tolist()
                out = storage.join(self.out, "windows")
                plan.windows = PairWindows(out, self.windows, shares, self.seed)
        return plan

    def _plan_annotated(self, source: LabelSource) -> ExtractPlan:
        labels = read_labels(source)
        given = self.config or (load_config(self.scheme) if self.scheme else None)
        config = annotation_scheme(labels, source, given)
        found = plan_annotated(source, labels)
        if given is not None:
            found.scheme_lengths = {c.name: float(np.mean(c.length_px)) for c in config.classes}
        plan = ExtractPlan(source.images, self.out, config, found.tasks, source=source, annotated=found)
        plan.rows = [_failed(image_id(name), name, "is missing from --images") for name in found.missing]
        if self.windows is not None:
            self.windows.check(config.dots.block)
            index = {n: k for k, n in enumerate(config.class_names)}
            totals = np.zeros(len(index))
            for task in found.tasks:
                for a in task.animals:
                    if a.klass in index:
                        totals[index[a.klass]] += 1
            shares = keep_shares(totals, self.windows.dots_per_class).tolist()
            plan.windows = PairWindows(storage.join(self.out, "windows"), self.windows, shares, self.seed)
        return plan

    def items(self, plan: ExtractPlan) -> list[PairTask | ImageTask]:
        return plan.tasks

    def announce(self, plan: ExtractPlan) -> str:
        if plan.annotated is not None:
            return (
                f"{len(plan.tasks)} annotated images to process ({plan.annotated.format} file), "
                f"{len(plan.rows)} handled without Spark"
            )
        return f"{len(plan.tasks)} pairs to process, {len(plan.rows)} handled without Spark"

    def worker(self, plan: ExtractPlan, task_cpus: int) -> Callable[[PairTask], PairResult]:
        if plan.source is not None:
            return functools.partial(
                extract_image, out=plan.out, config=plan.config, source=plan.source, windows=plan.windows
            )
        return functools.partial(extract_pair, out=plan.out, config=plan.config, windows=plan.windows)

    def finish(self, plan: ExtractPlan, results: list[PairResult], work_s: float) -> Outcome:
        totals = write_outputs(plan, results)
        if plan.source is not None:
            return _finish_annotated(plan, results, totals)
        inputs = {
            "data": storage.absolute(plan.data),
            "scheme": self.scheme,
            "pairs": len(plan.tasks),
            "fingerprint": fingerprint_files(
                plan.data, ["Train", "TrainDotted"], ["MismatchedTrainImages.txt"], listings=plan.listings
            ),
        }
        summary = format_summary(totals, plan.rows + results)
        return Outcome(config=plan.config.to_dict(), inputs=inputs, totals=totals, summary=summary)


def _finish_annotated(plan: ExtractPlan, results: list[PairResult], totals: dict[str, Any]) -> Outcome:
    source, found = plan.source, plan.annotated
    rejected = [str(e) for e in found.errors] + [line for r in results for line in r.rejected]
    storage.write_csv_atomic(
        storage.join(plan.out, "annotation_errors.csv"), ["error"], [[line] for line in rejected]
    )
    ok = [r.annotation for r in results if r.status == OK]
    groups = {meta.get("group") for meta in ok}
    totals.update(
        {
            "annotation_format": found.format,
            "annotation_rows_rejected": len(rejected),
            "images_without_annotations": found.unlabelled,
            "groups": len(groups - {None}),
            "ungrouped_images": sum(meta.get("group") is None for meta in ok),
            "sizes": measured_sizes(ok, plan.config, found.scheme_lengths),
        }
    )
    inputs = {
        "images": storage.absolute(source.images),
        "annotations": storage.absolute(source.annotations),
        "format": found.format,
        "classes": source.classes,
        "ignore_class": list(source.ignore),
        "group_pattern": source.group_pattern,
        "images_listed": len(found.listing),
    }
    lines = [format_summary(totals, plan.rows + results)]
    sizes = totals["sizes"]
    lines.append(
        "animal length (median box long side): "
        + ", ".join(f"{k} {v['length_px']} px" for k, v in sizes.items() if v["length_px"] is not None)
    )
    lines.append(f"groups: {totals['groups']} ({totals['ungrouped_images']} images without one)")
    if found.unlabelled:
        lines.append(f"{found.unlabelled} images of --images are not in the annotation file: left out")
    if rejected:
        lines.append(f"{len(rejected)} annotation rows rejected (annotation_errors.csv), e.g. {rejected[0]}")
    return Outcome(config=plan.config.to_dict(), inputs=inputs, totals=totals, summary="\n".join(lines))
