"""The windows stage: training windows cut from the extracted photos into TFRecord shards.

The stage (``herdcount windows``, ``spark-submit jobs/windows.py``) reads an extract job's
metadata and the survey's photos, and writes under OUT:

- ``shards/grid-NNNNN.tfrecord`` and ``shards/dots-<class>-NNNNN.tfrecord``: TFRecord files
  of ``tf.train.Example`` records, one per window (see :data:`FEATURES`), the windows of
  ``photos_per_shard`` photos each; ``dots-<class>`` holds the windows centred on a dot of
  that class;
- ``shards/NNNNN.json``: what shard NNNNN holds (photos, windows per file and photo, dots
  per class), written last and only when every photo was cut: its presence means the shard
  is complete, so a rerun skips it and cuts again a shard where a photo failed;
- ``index.json`` (every shard, its files, sizes and counts, the scheme and the settings)
  and ``run.json``.

The extract job cuts each pair's windows while it holds the pair (:func:`photo_windows`,
:func:`write_part`), and the stage copies those parts into shards. The windows themselves
are cut by :mod:`herdcount.windows` (numpy); only the records' encoding imports TensorFlow,
inside the functions that write them. The tf.data reader that streams the shards into
training is :mod:`herdcount.models.shard_reader`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from herdcount.predictors import QUIET_TENSORFLOW

os.environ.setdefault(*QUIET_TENSORFLOW)  # before TensorFlow is imported, here or in a Spark worker

import numpy as np

from herdcount import storage
from herdcount.annotated import labelled_run, load_labelled
from herdcount.config import Config, resolve_scheme
from herdcount.dot_cells import black_blocks
from herdcount.extracted import PhotoDots, read_extract
from herdcount.imaging import PhotoError, decode_rgb, encode_jpeg
from herdcount.kaggle import id_key
from herdcount.options import option
from herdcount.records import Status, TaskError
from herdcount.runinfo import read_run
from herdcount.runner import SOME_FAILED, Job, Outcome
from herdcount.windows import GRID, Window, WindowSettings, cut_windows, keep_shares

#: The record of one window (``tf.train.Example`` features).
FEATURES = (
    ("train_id", "bytes: the photo's id"),
    ("image", "bytes: the window's pixels, JPEG"),
    ("origin", "int64 [2]: its top-left corner (row, col) in the photo"),
    ("photo_shape", "int64 [2]: the photo's (height, width)"),
    ("points", "float [2N]: dots inside or near it, (row, col) photo pixels, flattened"),
    ("classes", "int64 [N]: their class indices"),
    ("masked", "bytes: its masked cells, one byte each, row by row"),
    ("masked_shape", "int64 [2]: (rows, cols) of those cells"),
    ("centre", "float [2]: the dot a dot window is centred on; (-1, -1) for grid windows"),
)
INDEX = "index.json"
SHARDS = "shards"
PARTS = "parts"


def family(kind: str | int, class_names: list[str]) -> str:
    """The shard family of a window: ``grid`` or ``dots-<class>``."""
    return GRID if kind == GRID else f"dots-{class_names[int(kind)]}"


def encode_window(window: Window, quality: int = 95) -> bytes:
    """The window as a serialized ``tf.train.Example`` (see :data:`FEATURES`)."""
    import tensorflow as tf

    def ints(values) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    def floats(values) -> tf.train.Feature:
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))

    def raw(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    centre = window.centre if window.centre is not None else (-1.0, -1.0)
    features = {
        "train_id": raw(window.train_id.encode()),
        "image": raw(encode_jpeg(window.image, quality)),
        "origin": ints(window.origin),
        "photo_shape": ints(window.photo_shape),
        "points": floats(np.asarray(window.points, dtype=np.float32).ravel()),
        "classes": ints(window.classes),
        "masked": raw(np.asarray(window.masked, dtype=np.uint8).tobytes()),
        "masked_shape": ints(window.masked.shape),
        "centre": floats(centre),
    }
    # Deterministic: map entries sorted, so the same window is the same bytes in any process.
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(
        deterministic=True
    )


def write_records(path: str, records: list[bytes]) -> int:
    """Write a TFRecord file atomically (local or S3); return its size in bytes."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="herdcount-shard-") as tmp:
        local = os.path.join(tmp, "part.tfrecord")
        with tf.io.TFRecordWriter(local) as writer:
            for record in records:
                writer.write(record)
        data = Path(local).read_bytes()
    storage.write_bytes_atomic(path, data)
    return len(data)


# --- the Spark stage ----------------------------------------------------------------------


@dataclass(frozen=True)
class ShardTask:
    """The photos of one shard, with their dots."""

    index: int
    photos: tuple[PhotoDots, ...]

    @property
    def name(self) -> str:
        return f"{self.index:05d}"


@dataclass
class ShardResult:
    """What one shard holds; ``shards/NNNNN.json`` (written last) is its :meth:`to_dict`."""

    index: int
    status: Status
    #: Family -> file name, windows and bytes.
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Family -> photo id -> windows, so that training knows which families its photos fill.
    windows: dict[str, dict[str, int]] = field(default_factory=dict)
    photos: list[str] = field(default_factory=list)
    #: Dots of its photos per class, in the scheme's order.
    dots: list[int] = field(default_factory=list)
    errors: list[TaskError] = field(default_factory=list)
    cpu_s: float = 0.0
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = str(self.status)
        data.pop("resumed")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, resumed: bool = False) -> ShardResult:
        errors = [TaskError.from_dict(e) for e in data.get("errors", [])]
        return cls(**{**data, "status": Status(data["status"]), "errors": errors}, resumed=resumed)


def cut_shard(
    task: ShardTask,
    *,
    data: str,
    out: str,
    config: Config,
    settings: WindowSettings,
    shares: list[float],
    seed: int,
) -> ShardResult:
    """Cut the windows of one shard's photos and write its files; never raises for bad input:
    a photo that cannot be read is an error of the shard's result, the others are written."""
    started = time.process_time()
    marker = storage.join(out, SHARDS, f"{task.name}.json")
    if storage.exists(marker):
        return ShardResult.from_dict(json.loads(storage.read_text(marker)), resumed=True)
    names = config.class_names
    records: dict[str, list[bytes]] = {}
    result = ShardResult(task.index, Status.OK)
    for dots in task.photos:
        try:
            part = read_part(out, dots.train_id, settings, seed)
            if part is None:
                part = [
                    (family(w.kind, names), encode_window(w, settings.quality))
                    for w in _photo_windows(dots, data, config, settings, shares, seed)
                ]
        except PhotoError as exc:
            result.errors.append(TaskError(dots.train_id, exc.file, exc.reason))
            continue
        except Exception as exc:
            file = f"Train/{dots.train_id}.jpg"
            result.errors.append(TaskError(dots.train_id, file, f"{type(exc).__name__}: {exc}"))
            continue
        result.photos.append(dots.train_id)
        counts = dots.counts(len(names))
        result.dots = (np.add(result.dots, counts) if result.dots else counts).tolist()
        for name, record in part:
            records.setdefault(name, []).append(record)
            per_photo = result.windows.setdefault(name, {})
            per_photo[dots.train_id] = per_photo.get(dots.train_id, 0) + 1
    # Mixed, so that a reader's shuffle buffer, which holds a few hundred records, draws from
    # all the shard's photos and not from one or two; seeded, so a recut shard is the same.
    order = np.random.default_rng([seed, task.index])
    for name, batch in sorted(records.items()):
        batch = [batch[i] for i in order.permutation(len(batch))]
        file = f"{name}-{task.name}.tfrecord"
        size = write_records(storage.join(out, SHARDS, file), batch)
        result.files[name] = {"file": file, "windows": len(batch), "bytes": size}
    if result.errors and not result.photos:
        result.status = Status.ERROR
    result.cpu_s = round(time.process_time() - started, 3)
    if not result.errors:
        # A shard with a failed photo is cut again by a rerun, once the photo is fixed.
        storage.write_text_atomic(marker, json.dumps(result.to_dict()))
        for dots in task.photos:  # their records are in the shard now
            for ext in ("json", "tfrecord"):
                storage.remove(storage.join(out, PARTS, f"{dots.train_id}.{ext}"))
    return result


def _photo_windows(
    dots: PhotoDots, data: str, config: Config, settings: WindowSettings, shares: list[float], seed: int
) -> list[Window]:
    block = config.dots.block
    if dots.image is not None:
        plain, masked = load_labelled(data, dots.image, dots.ignored, block=block)
        return photo_windows(dots, plain, masked, settings, shares, seed, block=block)
    plain_name, dotted_name = f"Train/{dots.train_id}.jpg", f"TrainDotted/{dots.train_id}.jpg"
    plain = decode_rgb(_read(data, plain_name), plain_name)
    dotted = decode_rgb(_read(data, dotted_name), dotted_name)
    if plain.shape != dotted.shape:
        raise PhotoError(dotted_name, f"is {dotted.shape[1]}x{dotted.shape[0]} but {plain_name} is not")
    if plain.shape[:2] != (dots.height, dots.width):
        raise PhotoError(
            plain_name,
            f"is {plain.shape[1]}x{plain.shape[0]} but the extract metadata says {dots.width}x{dots.height}",
        )
    masked = black_blocks(dotted, plain=plain, black_level=config.dots.black_level, block=block)
    del dotted
    return photo_windows(dots, plain, masked, settings, shares, seed, block=block)


def photo_windows(
    dots: PhotoDots,
    plain: np.ndarray,
    masked: np.ndarray,
    settings: WindowSettings,
    shares: list[float],
    seed: int,
    *,
    block: int = 8,
) -> list[Window]:
    """The windows of one decoded photo (see :func:`cut_windows`), the same wherever they
    are cut: by this stage, or by the extract job while it holds the pair."""
    # Seeded by the run's seed and the photo: a rerun or another task order cuts the same windows.
    rng = np.random.default_rng([seed, int.from_bytes(dots.train_id.encode()[:8], "little")])
    return cut_windows(
        dots.train_id,
        plain,
        masked,
        dots.points,
        dots.classes,
        settings,
        np.asarray(shares),
        rng,
        block=block,
    )


# --- windows cut by the extract job ---------------------------------------------------------


def _part_key(settings: WindowSettings, seed: int) -> dict[str, Any]:
    return {"settings": dataclasses.asdict(settings), "seed": seed}


def write_part(
    out: str, windows: list[Window], class_names: list[str], settings: WindowSettings, seed: int
) -> None:
    """Write one photo's windows as ``OUT/parts/<id>.tfrecord``, then ``<id>.json`` (their
    families and the settings they were cut with). The extract job writes them while it
    holds a decoded pair; the stage then copies their records into shards instead of
    decoding the pair again."""
    if not windows:
        return
    train_id = windows[0].train_id
    write_records(
        storage.join(out, PARTS, f"{train_id}.tfrecord"),
        [encode_window(w, settings.quality) for w in windows],
    )
    meta = {**_part_key(settings, seed), "families": [family(w.kind, class_names) for w in windows]}
    storage.write_text_atomic(storage.join(out, PARTS, f"{train_id}.json"), json.dumps(meta))


def read_part(out: str, train_id: str, settings: WindowSettings, seed: int) -> list[tuple[str, bytes]] | None:
    """A photo's windows as ``(family, record)`` pairs from its part, or None when there is
    no complete part cut with these settings and seed."""
    meta_path = storage.join(out, PARTS, f"{train_id}.json")
    if not storage.exists(meta_path):
        return None
    meta = json.loads(storage.read_text(meta_path))
    if {k: meta.get(k) for k in ("settings", "seed")} != _part_key(settings, seed):
        return None
    try:
        records = split_records(storage.read_bytes(storage.join(out, PARTS, f"{train_id}.tfrecord")))
    except (FileNotFoundError, ValueError):
        return None
    if len(records) != len(meta["families"]):
        return None
    return list(zip(meta["families"], records))


def split_records(data: bytes) -> list[bytes]:
    """The records of a TFRecord file's bytes (length, its CRC, data, its CRC; CRCs not
    checked: a part is written atomically).

    Raises
    ------
    ValueError
        If the bytes end inside a record.
    """
    records, at = [], 0
    while at < len(data):
        if at + 12 > len(data):
            raise ValueError(f"TFRecord data ends inside a record header at byte {at}")
        (length,) = struct.unpack_from("<Q", data, at)
        end = at + 12 + length + 4
        if end > len(data):
            raise ValueError(f"TFRecord data ends inside a record at byte {at}")
        records.append(data[at + 12 : at + 12 + length])
        at = end
    return records


def _read(data: str, name: str) -> bytes:
    try:
        return storage.read_bytes(storage.join(data, *name.split("/")))
    except FileNotFoundError:
        raise PhotoError(name, "missing from DATA") from None


@dataclass
class WindowsPlan:
    """The shards to cut and those an earlier run finished."""

    config: Config
    tasks: list[ShardTask]
    done: list[ShardResult]
    shares: list[float]
    totals: list[int]


@dataclass
class WindowsJob(Job[WindowsPlan, ShardTask, ShardResult]):
    """The windows stage: one Spark task per shard (``photos_per_shard`` photos).

    Parameters
    ----------
    extract, data, out : str
        An extract job's output, the survey it came from, and the output folder.
    settings : WindowSettings
        How windows are cut.
    seed : int
        Seed of the choice of dot windows.
    config : Config, optional
        The scheme; by default the one the extract run recorded.
    """

    name: ClassVar[str] = "windows"
    extract: str = option(metavar="OUT", help="output folder of herdcount extract")
    data: str = option(help="the survey OUT was extracted from")
    out: str = option(required=False, help="output folder (default: OUT/windows, where training looks)")
    settings: WindowSettings = field(default_factory=WindowSettings)
    seed: int = option(0, help="seed of the choice of dot windows")
    config: Config | None = None
    items_per_task: int = 1

    def paths(self) -> list[str | None]:
        return [self.extract, self.data, self.out]

    def plan(self) -> WindowsPlan:
        config = self.config
        if config is None:
            run = read_run(self.extract)
            if run is None:
                raise ValueError(
                    f"{self.extract!r} has no run.json; expected the output of herdcount extract"
                )
            config = resolve_scheme(None, run.config, f"the extract run {self.extract!r}")
        self.settings.check(config.dots.block)
        if not labelled_run(self.extract) and not storage.is_dir(storage.join(self.data, "Train")):
            raise ValueError(
                f"DATA {self.data!r} has no Train/ folder; expected the survey OUT was extracted from"
            )
        photos = read_extract(self.extract, config, self.data)
        totals = np.sum([p.counts(len(config.classes)) for p in photos], axis=0).astype(int)
        shares = keep_shares(totals, self.settings.dots_per_class).tolist()
        _claim(self.out, self, config)
        step = self.settings.photos_per_shard
        tasks = [ShardTask(n, tuple(photos[i : i + step])) for n, i in enumerate(range(0, len(photos), step))]
        done, todo = [], []
        for task in tasks:
            marker = storage.join(self.out, SHARDS, f"{task.name}.json")
            if storage.exists(marker):
                done.append(ShardResult.from_dict(json.loads(storage.read_text(marker)), resumed=True))
            else:
                todo.append(task)
        return WindowsPlan(config, todo, done, shares, totals.tolist())

    def items(self, plan: WindowsPlan) -> list[ShardTask]:
        return plan.tasks

    def announce(self, plan: WindowsPlan) -> str:
        return f"{len(plan.tasks)} shards to cut, {len(plan.done)} done by an earlier run"

    def worker(self, plan: WindowsPlan, task_cpus: int) -> Callable[[ShardTask], ShardResult]:
        return functools.partial(
            cut_shard,
            data=self.data,
            out=self.out,
            config=plan.config,
            settings=self.settings,
            shares=plan.shares,
            seed=self.seed,
        )

    def finish(self, plan: WindowsPlan, results: list[ShardResult], work_s: float) -> Outcome:
        shards = sorted(plan.done + results, key=lambda r: r.index)
        names = plan.config.class_names
        index = {
            "scheme": plan.config.to_dict(),
            "settings": dataclasses.asdict(self.settings),
            "seed": self.seed,
            "block": plan.config.dots.block,
            "shards": [s.to_dict() for s in shards],
        }
        storage.write_text_atomic(storage.join(self.out, INDEX), json.dumps(index, indent=1))
        errors = sorted((e for s in shards for e in s.errors), key=lambda e: id_key(e.item))
        windows: dict[str, int] = {}
        for s in shards:
            for name, entry in s.files.items():
                windows[name] = windows.get(name, 0) + entry["windows"]
        totals = {
            "shards": len(shards),
            "resumed": len(plan.done),
            "photos": sum(len(s.photos) for s in shards),
            "failed": len(errors),
            "windows": dict(sorted(windows.items())),
            "dots": dict(zip(names, plan.totals)),
            "dot_window_share": dict(zip(names, [round(v, 4) for v in plan.shares])),
            "bytes": sum(e["bytes"] for s in shards for e in s.files.values()),
            "task_cpu_s": round(sum(s.cpu_s for s in results), 3),
        }
        lines = [
            f"shards: {len(shards)} ({len(plan.done)} resumed) of {totals['photos']} photos, "
            f"{totals['bytes'] / 1e6:.1f} MB",
            "windows: " + ", ".join(f"{k} {v}" for k, v in totals["windows"].items()),
        ]
        lines += [f"  failed {e.file}: {e.reason}" for e in errors]
        code = 0
        if errors:
            lines.append(f"windows: {len(errors)} photos failed; exit code {SOME_FAILED}")
            code = SOME_FAILED
        return Outcome(
            config={
                "settings": dataclasses.asdict(self.settings),
                "seed": self.seed,
                "scheme": plan.config.to_dict(),
            },
            inputs={"extract": storage.absolute(self.extract), "data": storage.absolute(self.data)},
            totals=totals,
            summary="\n".join(lines),
            exit_code=code,
        )


def _claim(out: str, job: WindowsJob, config: Config) -> None:
    path = storage.join(out, "windows.json")
    key = {"settings": dataclasses.asdict(job.settings), "seed": job.seed, "classes": config.class_names}
    if storage.exists(path):
        earlier = json.loads(storage.read_text(path))
        if earlier != key:
            raise ValueError(
                f"{out} holds windows cut with other settings ({path}); give another --out, or delete it"
            )
        return
    storage.write_text_atomic(path, json.dumps(key, indent=1))
