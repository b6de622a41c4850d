"""The tf.data reader of the training windows' shards (:mod:`herdcount.shards` writes them).

Training streams them (:func:`window_dataset`): shards interleaved, records shuffled in a
buffer, each class's dot windows and the grid windows drawn with today's sampler's
shares, tiles cut and augmented in parallel, batches prefetched. Memory does not grow with
the number of photos. :func:`patch_dataset` gives the classifier its patches and
:func:`scale_dataset` the scale model its zoomed tiles.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass

from herdcount.predictors import QUIET_TENSORFLOW

os.environ.setdefault(*QUIET_TENSORFLOW)  # before TensorFlow is imported, here or in a Spark worker

import numpy as np

from herdcount import storage
from herdcount.config import Config, config_from_dict
from herdcount.imaging import decode_rgb
from herdcount.shards import INDEX, SHARDS
from herdcount.windows import GRID

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
        centres=sampling["centres"],
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
    centres: bool = False,
):
    """Endless training tiles ``(image, target)`` streamed from the windows of photos ``ids``.

    The same tiles as :func:`herdcount.models.training_data.tile_stream` draws from photos
    held in memory: a share ``empty_share`` placed at random (in a random grid window),
    the others around a dot of a class drawn uniformly (in a dot window of that class),
    each resized by a drawn scale, augmented, with its density target (and, with
    ``centres``, its centre heatmaps) and the loss weight as the last channel. Shards are read interleaved, records shuffled in a buffer, tiles cut
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
        "centres": centres,
    }
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    cells = size // stride
    maps = 2 * num_classes if centres else num_classes
    tile = functools.partial(_tile, num_classes=num_classes, sampling=sampling)

    def cut(x, s):
        pixels, target = tf.numpy_function(
            tile, [*(x[k] for k in _FIELDS), s], [tf.uint8, tf.float32], stateful=False
        )
        pixels.set_shape((size, size, 3))
        target.set_shape((cells, cells, maps + 1))
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
