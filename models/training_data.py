"""The in-memory tile stream and its tf.data pipeline (training from photos held in memory,
without shards); the photos and their dots come from :mod:`herdcount.extracted`."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from herdcount.extracted import TrainingPhoto
from herdcount.models.targets import augment, sample_tile


def tile_stream(
    photos: list[TrainingPhoto],
    num_classes: int,
    rng: np.random.Generator,
    *,
    size: int = 256,
    stride: int = 8,
    sigma: float = 1.0,
    empty_share: float = 0.2,
    scale_range=(0.5, 1.5),
    scale_sigma: float = 0.0,
    block: int = 8,
    augmented: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless training tiles ``(image, target)``; the target's last channel is the loss weight.

    Each tile is resized by a factor in ``scale_range``: log-uniform when ``scale_sigma`` is
    0, otherwise log-normal around 1 with that spread, truncated to the range. Classes
    differ in size, so most tiles stay near their true size while the tails still show
    the model animals from other altitudes.
    A share ``empty_share`` of tiles are placed at random (mostly empty sea and rock, as
    most of a photo is); the others around a dot of a class drawn uniformly, so that rare
    classes (adult males are a few percent of the dots) are seen as often as common ones.
    """
    by_class: dict[int, list[tuple[int, int]]] = {}
    for n, photo in enumerate(photos):
        for d, k in enumerate(photo.dots.classes):
            by_class.setdefault(int(k), []).append((n, d))
    present = sorted(by_class)
    while True:
        scale = draw_scale(rng, scale_range, scale_sigma)
        if not present or rng.random() < empty_share:
            photo, centre = photos[int(rng.integers(len(photos)))], None
        else:
            dots = by_class[present[int(rng.integers(len(present)))]]
            n, d = dots[int(rng.integers(len(dots)))]
            photo, centre = photos[n], photos[n].dots.points[d]
        tile = sample_tile(
            photo.image,
            photo.dots.points,
            photo.dots.classes,
            num_classes,
            rng,
            size=size,
            stride=stride,
            sigma=sigma,
            scale=scale,
            masked=photo.masked,
            block=block,
            centre=centre,
        )
        if augmented:
            tile = augment(tile, rng, brightness=0.08, contrast=0.1)
        yield tile.image, np.concatenate([tile.target, tile.weight[..., None]], axis=-1)


def draw_scale(rng: np.random.Generator, scale_range: tuple[float, float], sigma: float) -> float:
    low, high = np.log(scale_range)
    if sigma <= 0 or low == high:
        return float(np.exp(rng.uniform(low, high)))
    while True:
        value = rng.normal(0.0, sigma)
        if low <= value <= high:
            return float(np.exp(value))


def density_dataset(
    stream: Iterator[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    *,
    size: int,
    stride: int,
    batch_size: int,
) -> tf.data.Dataset:
    """Batches from a :func:`tile_stream`, prepared ahead of the model by tf.data."""
    cells = size // stride
    signature = (
        tf.TensorSpec((size, size, 3), tf.uint8),
        tf.TensorSpec((cells, cells, num_classes + 1), tf.float32),
    )
    ds = tf.data.Dataset.from_generator(lambda: stream, output_signature=signature)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
