"""Training windows in shards: the Spark stage that cuts them, and the tf.data reader that
streams them into training.

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

Training streams them (:func:`window_dataset`): shards interleaved, records shuffled in a
buffer, each class's dot windows and the grid windows drawn with today's sampler's
shares, tiles cut and augmented in parallel, batches prefetched. Memory does not grow with
the number of photos.
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
from herdcount.config import Config, config_from_dict, resolve_scheme
from herdcount.dots import black_blocks
from herdcount.imaging import PhotoError, decode_rgb, encode_jpeg
from herdcount.kaggle import id_key
from herdcount.models.training_data import PhotoDots, read_extract
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
    extract: str
    data: str
    out: str
    settings: WindowSettings = field(default_factory=WindowSettings)
    seed: int = 0
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


# --- the reader ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardIndex:
    """A windows output as training reads it."""

    folder: str
    block: int
    size: int
    #: Family -> shard files (full paths).
    files: dict[str, list[str]]
    #: Family -> photo id -> windows.
    windows: dict[str, dict[str, int]]

    def families_with(self, ids: set[str]) -> list[str]:
        """The families holding a window of one of ``ids``."""
        return sorted(f for f, per in self.windows.items() if any(i in ids for i in per))


def read_index(folder: str, config: Config) -> ShardIndex:
    """Read and check a windows output before training starts.

    Raises
    ------
    ValueError
        If there is no index.json, its scheme's classes are not ``config``'s, or a shard
        file is missing or not the size the index recorded (truncated), naming the file.
    """
    path = storage.join(folder, INDEX)
    if not storage.exists(path):
        raise ValueError(f"{folder!r} has no {INDEX}; expected the output of herdcount windows")
    index = json.loads(storage.read_text(path))
    classes = config_from_dict(index["scheme"]).class_names
    if classes != config.class_names:
        raise ValueError(f"{path}: windows of classes {classes}, but the scheme has {config.class_names}")
    files: dict[str, list[str]] = {}
    windows: dict[str, dict[str, int]] = {}
    sizes = {}
    for shard in index["shards"]:
        for name, entry in shard["files"].items():
            full = storage.join(folder, SHARDS, entry["file"])
            files.setdefault(name, []).append(full)
            sizes[full] = entry["bytes"]
        for name, per in shard["windows"].items():
            windows.setdefault(name, {}).update(per)
    listed = {}
    for name in {storage.parent(f) for f in sizes}:
        listed.update({storage.join(name, n): s for n, s in storage.file_stats(name)})
    for full, size in sizes.items():
        if full not in listed:
            raise ValueError(f"{full}: shard missing (listed in {path})")
        if listed[full] != size:
            raise ValueError(f"{full}: {listed[full]} bytes but {INDEX} says {size}: truncated or rewritten")
    return ShardIndex(folder, int(index["block"]), int(index["settings"]["size"]), files, windows)


def _parse(serialized):
    import tensorflow as tf

    spec = {
        "train_id": tf.io.FixedLenFeature([], tf.string),
        "image": tf.io.FixedLenFeature([], tf.string),
        "origin": tf.io.FixedLenFeature([2], tf.int64),
        "photo_shape": tf.io.FixedLenFeature([2], tf.int64),
        "points": tf.io.VarLenFeature(tf.float32),
        "classes": tf.io.VarLenFeature(tf.int64),
        "masked": tf.io.FixedLenFeature([], tf.string),
        "masked_shape": tf.io.FixedLenFeature([2], tf.int64),
        "centre": tf.io.FixedLenFeature([2], tf.float32),
    }
    x = tf.io.parse_single_example(serialized, spec)
    x["points"] = tf.sparse.to_dense(x["points"])
    x["classes"] = tf.sparse.to_dense(x["classes"])
    return x


def _tile(
    image, origin, photo_shape, points, classes, masked, masked_shape, centre, seed, *, num_classes, sampling
):
    from herdcount.models.targets import augment, sample_tile
    from herdcount.models.training_data import draw_scale

    # The count job's decoder (libjpeg-turbo through simplejpeg), not tf.io.decode_jpeg: the
    # two differ by about one grey level on average, and a whole photo's count, a sum over
    # tens of thousands of cells, is sensitive to a shift the model learned and never sees.
    image = decode_rgb(image)
    rng = np.random.default_rng(seed.tolist())
    scale = draw_scale(rng, sampling["scale_range"], sampling["scale_sigma"])
    cells = np.frombuffer(masked, dtype=np.uint8).reshape(masked_shape).astype(bool)
    tile = sample_tile(
        image,
        points.reshape(-1, 2),
        classes,
        num_classes,
        rng,
        size=sampling["size"],
        stride=sampling["stride"],
        sigma=sampling["sigma"],
        scale=scale,
        masked=cells,
        block=sampling["block"],
        centre=None if centre[0] < 0 else centre,
        offset=(int(origin[0]), int(origin[1])),
        bounds=(int(photo_shape[0]), int(photo_shape[1])),
    )
    if sampling["augmented"]:
        tile = augment(tile, rng, brightness=0.08, contrast=0.1)
    target = np.concatenate([tile.target, tile.weight[..., None]], axis=-1).astype(np.float32)
    return tile.image, target


def _records(
    shards: ShardIndex,
    ids: list[str],
    *,
    training: bool,
    seed: int,
    shuffle_buffer: int,
    per_family: int | None = None,
):
    """The parsed records of photos ``ids``, one dataset per family (``grid`` first).

    Training: each family's files shuffled, read interleaved, its records shuffled in a
    buffer of ``shuffle_buffer`` (encoded, ~60 KB each) and repeated without end.
    Otherwise each family's records once, in file order, at most ``per_family`` of them.

    Raises
    ------
    ValueError
        If none of ``ids`` has a window in the shards.
    """
    import tensorflow as tf

    wanted = set(ids)
    families = shards.families_with(wanted)
    if not families:
        raise ValueError(f"{shards.folder}: no windows of the {len(wanted)} photos asked for")
    keys = tf.constant(sorted(wanted))
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, tf.ones_like(keys, tf.int32)), 0
    )

    def stream(name: str, n: int) -> tf.data.Dataset:
        files = shards.files[name]
        ds = tf.data.Dataset.from_tensor_slices(files)
        if training:
            ds = ds.shuffle(len(files), seed=seed + n)
        ds = ds.interleave(
            tf.data.TFRecordDataset,
            # Every file open at once (a 256 KB buffer each), a record from each in turn.
            cycle_length=min(16, len(files)) if training else 1,
            block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        ds = ds.map(_parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.filter(lambda x: table.lookup(x["train_id"]) > 0)
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed + n, reshuffle_each_iteration=True).repeat()
        elif per_family is not None:
            ds = ds.take(per_family)
        return ds

    ordered = [f for f in families if f == GRID] + [f for f in families if f != GRID]
    return {name: stream(name, n) for n, name in enumerate(ordered)}


def _mixed(parts: list, weights: list[float], seed: int):
    import tensorflow as tf

    if len(parts) == 1:
        return parts[0]
    return tf.data.Dataset.sample_from_datasets(parts, weights=weights, seed=seed)


_FIELDS = ("image", "origin", "photo_shape", "points", "classes", "masked", "masked_shape", "centre")


def window_dataset(
    shards: ShardIndex,
    ids: list[str],
    num_classes: int,
    *,
    size: int = 256,
    stride: int = 8,
    sigma: float = 1.0,
    empty_share: float = 0.5,
    scale_range: tuple[float, float] = (0.5, 1.5),
    scale_sigma: float = 0.0,
    augmented: bool = True,
    seed: int = 0,
    shuffle_buffer: int = 256,
):
    """Endless training tiles ``(image, target)`` streamed from the windows of photos ``ids``.

    The same tiles as :func:`herdcount.models.training_data.tile_stream` draws from photos
    held in memory: a share ``empty_share`` placed at random (in a random grid window),
    the others around a dot of a class drawn uniformly (in a dot window of that class),
    each resized by a drawn scale, augmented, with its density target and loss weight as
    the last channel. Shards are read interleaved, records shuffled in a buffer, tiles cut
    in parallel; the order, and so the run, repeats for a ``seed``.

    Raises
    ------
    ValueError
        If none of ``ids`` has a window in the shards.
    """
    import tensorflow as tf

    streams = _records(shards, ids, training=True, seed=seed, shuffle_buffer=shuffle_buffer)
    dots = [name for name in streams if name != GRID]
    weights = [
        (empty_share if dots else 1.0)
        if name == GRID
        else (1.0 - empty_share if GRID in streams else 1.0) / len(dots)
        for name in streams
    ]
    ds = _mixed(list(streams.values()), weights, seed)
    sampling = {
        "size": size,
        "stride": stride,
        "sigma": sigma,
        "scale_range": scale_range,
        "scale_sigma": scale_sigma,
        "block": shards.block,
        "augmented": augmented,
    }
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    cells = size // stride
    tile = functools.partial(_tile, num_classes=num_classes, sampling=sampling)

    def cut(x, s):
        pixels, target = tf.numpy_function(
            tile, [*(x[k] for k in _FIELDS), s], [tf.uint8, tf.float32], stateful=False
        )
        pixels.set_shape((size, size, 3))
        target.set_shape((cells, cells, num_classes + 1))
        return pixels, target

    return tf.data.Dataset.zip((ds, seeds)).map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _patch(image, origin, photo_shape, points, classes, masked, masked_shape, centre, seed, *, sampling):
    from herdcount.windows import window_patch

    del photo_shape  # a patch is cut inside its window
    rng = np.random.default_rng(seed.tolist())
    cells = np.frombuffer(masked, dtype=np.uint8).reshape(masked_shape).astype(bool)
    size = sampling["size"]
    found = window_patch(
        decode_rgb(image),
        (int(origin[0]), int(origin[1])),
        points.reshape(-1, 2),
        classes,
        cells,
        None if centre[0] < 0 else (float(centre[0]), float(centre[1])),
        rng,
        size=size,
        offsets=sampling["offsets"],
        min_distance=sampling["min_distance"],
        block=sampling["block"],
    )
    if found is None:  # no room for a background here: dropped by the caller
        return np.zeros((size, size, 3), np.uint8), np.int64(-1)
    patch, label = found
    return patch, np.int64(sampling["background"] if label < 0 else label)


def patch_dataset(
    shards: ShardIndex,
    ids: list[str],
    num_classes: int,
    *,
    size: int = 64,
    offsets: tuple[int, ...] = (-1, 0, 1),
    min_distance: float = 40.0,
    training: bool = True,
    seed: int = 0,
    brightness: float = 0.15,
    shuffle_buffer: int = 256,
    per_family: int | None = None,
):
    """The classifier's patches ``(uint8 image, one-hot label)`` streamed from the windows
    of photos ``ids``; labels index the scheme's classes, then background (``num_classes``).

    Training: endless, each class and background drawn equally often (what class weights
    did for thumbnails), a dot's patch shifted diagonally by one of ``offsets``, background
    patches at random places of random grid windows clear of dots and masks, augmented
    with flips, quarter turns and brightness; repeats for a ``seed``. Otherwise (validation):
    every dot window's centred patch and one background patch per grid window (where one
    fits), once, in shard order; at most ``per_family`` windows of each family, so that
    validation stays small however many photos are held out.

    Raises
    ------
    ValueError
        If none of ``ids`` has a window in the shards.
    """
    import tensorflow as tf

    streams = _records(
        shards, ids, training=training, seed=seed, shuffle_buffer=shuffle_buffer, per_family=per_family
    )
    if training:
        ds = _mixed(list(streams.values()), [1.0 / len(streams)] * len(streams), seed)
    else:
        parts = list(streams.values())
        ds = parts[0]
        for part in parts[1:]:
            ds = ds.concatenate(part)
        offsets = (0,)
    sampling = {
        "size": size,
        "offsets": offsets,
        "min_distance": min_distance,
        "block": shards.block,
        "background": num_classes,
    }
    patch = functools.partial(_patch, sampling=sampling)

    def cut(x, s):
        pixels, label = tf.numpy_function(
            patch, [*(x[k] for k in _FIELDS), s], [tf.uint8, tf.int64], stateful=False
        )
        pixels.set_shape((size, size, 3))
        label.set_shape(())
        return pixels, label

    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(lambda pixels, label: label >= 0)
    ds = ds.map(lambda pixels, label: (pixels, tf.one_hot(label, num_classes + 1)))
    if training:
        ds = _augmented(ds, seed + 1, brightness)
    return ds


def _augmented(ds, seed: int, brightness: float):
    """``ds`` of ``(image, label)`` with each image flipped, turned and brightened
    (:func:`augment_patch`) from a stream of seeds that repeats for ``seed``."""
    import tensorflow as tf

    return tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2))).map(
        lambda xy, s: (augment_patch(xy[0], s, brightness), xy[1]),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def augment_patch(image, seed, brightness: float):
    """A flip, a quarter turn and a brightness shift of a patch, drawn from ``seed`` (a
    pair of int64) with stateless ops, so a run repeats."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    turns = tf.random.stateless_uniform([], seeds[1], 0, 4, dtype=tf.int32)
    image = tf.image.rot90(image, turns)
    pixels = tf.cast(image, tf.float32)
    shift = tf.random.stateless_uniform([], seeds[2], -brightness, brightness) * 255.0
    return tf.cast(tf.clip_by_value(pixels + shift, 0.0, 255.0), tf.uint8)


def _zoomed(image, origin, photo_shape, points, classes, masked, masked_shape, centre, seed, *, sampling):
    from herdcount.scale import vary_camera, zoom_crop

    del photo_shape, classes, masked, masked_shape  # the scale of a tile is all it teaches
    rng = np.random.default_rng(seed.tolist())
    low, high = np.log(sampling["zoom_range"])
    pixels = decode_rgb(image)
    # A window at a photo's edge may be narrower than the square a low zoom needs.
    zoom = max(float(np.exp(rng.uniform(low, high))), sampling["size"] / min(pixels.shape[:2]))
    offset = np.array([int(origin[0]), int(origin[1])], dtype=np.float64)
    tile, animals = zoom_crop(
        pixels,
        points.reshape(-1, 2) - offset,
        zoom,
        rng,
        size=sampling["size"],
        centre=None if centre[0] < 0 else tuple(np.asarray(centre, dtype=np.float64) - offset),
    )
    if sampling["vary"]:
        tile = vary_camera(tile, rng)
    return tile, np.array([np.log(zoom), float(animals > 0)], dtype=np.float32)


def scale_dataset(
    shards: ShardIndex,
    ids: list[str],
    *,
    size: int = 256,
    zoom_range: tuple[float, float] = (0.5, 2.0),
    training: bool = True,
    seed: int = 0,
    brightness: float = 0.1,
    shuffle_buffer: int = 256,
    per_family: int | None = None,
):
    """The scale model's tiles ``(uint8 image, (log zoom, animal 0/1))`` streamed from the
    windows of photos ``ids``: each a square of a window resized by a zoom drawn
    log-uniform in ``zoom_range`` (see :func:`herdcount.scale.zoom_crop`), so it shows the
    ground as a photo flown at that scale would.

    Training: endless, half from grid windows and half from dot windows of a class drawn
    uniformly (holding their dot), with flips, quarter turns, brightness, and the blur, noise
    and JPEG of another camera (:func:`herdcount.scale.vary_camera`); repeats for a ``seed``. Otherwise each family's windows once (at most ``per_family``), with zooms and
    places drawn from ``seed``.

    Raises
    ------
    ValueError
        If none of ``ids`` has a window in the shards, or the zooms ask for a square larger
        than a window.
    """
    import tensorflow as tf

    if not 0 < zoom_range[0] <= zoom_range[1]:
        raise ValueError(f"zoom range must be 0 < low <= high, got {zoom_range}")
    if size / zoom_range[0] > shards.size:
        raise ValueError(
            f"zoom {zoom_range[0]} needs squares of {size / zoom_range[0]:.0f} px; the windows in "
            f"{shards.folder} are {shards.size} px (raise the lowest zoom to {size / shards.size:.2f})"
        )
    streams = _records(
        shards, ids, training=training, seed=seed, shuffle_buffer=shuffle_buffer, per_family=per_family
    )
    if training:
        dots = [name for name in streams if name != GRID]
        weights = [0.5 if name == GRID else (0.5 if GRID in streams else 1.0) / len(dots) for name in streams]
        ds = _mixed(list(streams.values()), weights, seed)
    else:
        parts = list(streams.values())
        ds = parts[0]
        for part in parts[1:]:
            ds = ds.concatenate(part)
    zoomed = functools.partial(_zoomed, sampling={"size": size, "zoom_range": zoom_range, "vary": training})

    def cut(x, s):
        pixels, label = tf.numpy_function(
            zoomed, [*(x[k] for k in _FIELDS), s], [tf.uint8, tf.float32], stateful=False
        )
        pixels.set_shape((size, size, 3))
        label.set_shape((2,))
        return pixels, label

    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training:
        ds = _augmented(ds, seed + 1, brightness)
    return ds
