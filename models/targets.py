"""Density targets and training tiles with their augmentation. Pure numpy, ``(row, col)``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from PIL import Image

from herdcount.dot_cells import masked_at


def density_target(
    points: ArrayLike,
    classes: ArrayLike,
    num_classes: int,
    out_shape: tuple[int, int],
    *,
    stride: int = 8,
    sigma: float = 1.0,
    origin: tuple[float, float] = (0.0, 0.0),
    bounds: tuple[float, float] | None = None,
) -> NDArray[np.float32]:
    """Density maps with one Gaussian per point, each summing to one.

    Cell ``(i, j)`` of the ``out_shape`` grid covers the pixels from
    ``origin + stride * (i, j)`` to ``origin + stride * (i + 1, j + 1)``. A point's Gaussian
    is normalised over the cells inside ``bounds`` (the photo), so a dot near the photo's
    border still sums to one there, while the part of a dot's mass that falls on cells of
    the photo outside this grid (a neighbouring tile) is not in this map: the maps of the
    tiles of a photo add up to its counts.

    Parameters
    ----------
    points : (N, 2) array_like
        Dot centres ``(row, col)`` in pixels, in the photo's coordinates.
    classes : (N,) array_like
        Class index of each point.
    num_classes : int
        Maps to return.
    out_shape : tuple
        ``(rows, cols)`` of the grid.
    stride : int, optional
        Pixels per cell side.
    sigma : float, optional
        Standard deviation of each Gaussian in cells.
    origin : tuple, optional
        Pixel position of the grid's top-left corner in the photo.
    bounds : tuple, optional
        ``(height, width)`` of the photo; cells starting outside it receive nothing.
        Defaults to the extent of the grid.

    Returns
    -------
    (rows, cols, num_classes) float32 array
    """
    points, classes = _checked(points, classes, num_classes, sigma)
    rows, cols = out_shape
    if bounds is None:
        bounds = (origin[0] + rows * stride, origin[1] + cols * stride)
    target = np.zeros((rows, cols, num_classes), np.float32)
    for (row, col), k in zip(points, classes):
        r_index, r_weight = _weights(row, origin[0], rows, stride, sigma, bounds[0])
        c_index, c_weight = _weights(col, origin[1], cols, stride, sigma, bounds[1])
        if len(r_index) and len(c_index):
            target[np.ix_(r_index, c_index, [k])] += np.outer(r_weight, c_weight)[..., None]
    return target


def _checked(
    points: ArrayLike, classes: ArrayLike, num_classes: int, sigma: float
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Points ``(N, 2)`` and classes ``(N,)`` as arrays, checked (the targets' inputs).

    Raises
    ------
    ValueError
        Naming the counts that differ, the class indices out of range or the sigma.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    classes = np.asarray(classes, dtype=int).reshape(-1)
    if len(points) != len(classes):
        raise ValueError(f"{len(points)} points but {len(classes)} classes")
    if len(classes) and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(
            f"class indices must be in 0..{num_classes - 1}, got {sorted(set(classes.tolist()))}"
        )
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return points, classes


def centre_target(
    points: ArrayLike,
    classes: ArrayLike,
    num_classes: int,
    out_shape: tuple[int, int],
    *,
    stride: int = 8,
    sigma: float = 1.0,
    origin: tuple[float, float] = (0.0, 0.0),
) -> NDArray[np.float32]:
    """Heatmaps of animals' centres, as CenterNet's: per class, 1 in the cell that holds a
    point and ``exp(-d**2 / (2 * sigma**2))`` around it (``d`` from the cell's centre to the
    point, in cells), the largest where two animals' overlap.

    Parameters are as :func:`density_target`'s (points in the photo's pixels, the grid's
    top-left corner at ``origin``); points outside the grid still mark the cells near them.

    Returns
    -------
    (rows, cols, num_classes) float32 array
    """
    points, classes = _checked(points, classes, num_classes, sigma)
    rows, cols = out_shape
    heat = np.zeros((rows, cols, num_classes), np.float32)
    reach = math.ceil(3 * sigma)
    for (row, col), k in zip(points, classes):
        at = ((row - origin[0]) / stride, (col - origin[1]) / stride)
        cell = (math.floor(at[0]), math.floor(at[1]))
        r = np.arange(max(cell[0] - reach, 0), min(cell[0] + reach + 1, rows))
        c = np.arange(max(cell[1] - reach, 0), min(cell[1] + reach + 1, cols))
        if not (len(r) and len(c)):
            continue
        near = np.exp(-((r[:, None] + 0.5 - at[0]) ** 2 + (c[None, :] + 0.5 - at[1]) ** 2) / (2 * sigma**2))
        if 0 <= cell[0] < rows and 0 <= cell[1] < cols:
            near[cell[0] - r[0], cell[1] - c[0]] = 1.0
        block = heat[r[0] : r[-1] + 1, c[0] : c[-1] + 1, k]
        np.maximum(block, near, out=block)
    return heat


def _weights(pos: float, start: float, n: int, stride: int, sigma: float, limit: float):
    """1-D Gaussian weights of one point over the cells of the photo near it, normalised
    over those cells; returned for the cells of the grid only."""
    reach = math.ceil(4 * sigma) + 1
    centre = math.floor((pos - start) / stride)
    cells = np.arange(centre - reach, centre + reach + 1)
    lo = start + stride * cells
    inside = (lo + stride > 0) & (lo < limit)
    weight = np.exp(-0.5 * ((lo + stride / 2 - pos) / (stride * sigma)) ** 2) * inside
    if weight.sum() <= 0:
        return cells[:0], weight[:0]
    weight /= weight.sum()
    keep = (cells >= 0) & (cells < n) & (weight > 0)
    return cells[keep], weight[keep]


@dataclass(frozen=True)
class TrainingTile:
    """A training tile: pixels, per-class density targets, and loss weights (0 where masked)."""

    image: NDArray[np.uint8]
    target: NDArray[np.float32]
    weight: NDArray[np.float32]


def sample_tile(
    photo: np.ndarray,
    points: ArrayLike,
    classes: ArrayLike,
    num_classes: int,
    rng: np.random.Generator,
    *,
    size: int = 256,
    stride: int = 8,
    sigma: float = 1.0,
    scale: float = 1.0,
    masked: NDArray[np.bool_] | None = None,
    block: int = 8,
    centre: ArrayLike | None = None,
    offset: tuple[int, int] = (0, 0),
    bounds: tuple[int, int] | None = None,
    centres: bool = False,
) -> TrainingTile:
    """Cut a ``size`` x ``size`` training tile out of ``photo`` resized by ``scale``.

    The tile covers ``size / scale`` photo pixels, resized to ``size``; dots follow, so a
    tile shows the same animals at any scale, only larger or smaller. ``centre`` (photo
    pixels) places the tile around a point; otherwise the position is random.
    ``masked`` is the grid of masked ``block`` cells of ``photo``: those cells get weight 0.

    ``photo`` may be a window of a larger photo: ``offset`` is its top-left corner in the
    photo and ``bounds`` the photo's ``(height, width)``. ``points`` and ``centre`` stay in
    the photo's pixels, so a dot near the window's edge is normalised over the photo, as
    when the tile is cut from the whole photo.

    With ``centres``, the target holds the centre heatmaps (:func:`centre_target`) after the
    density maps: ``2 * num_classes`` channels.
    """
    if size % stride:
        raise ValueError(f"size must be a multiple of stride {stride}, got {size}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    height, width = photo.shape[:2]
    span = min(max(round(size / scale), stride), height, width)
    scale = size / span
    if centre is None:
        top, left = int(rng.integers(0, height - span + 1)), int(rng.integers(0, width - span + 1))
    else:
        jitter = rng.uniform(-span / 2, span / 2, size=2)
        row, col = np.asarray(centre, dtype=float) - np.asarray(offset, dtype=float) + jitter
        top = int(np.clip(round(row - span / 2), 0, height - span))
        left = int(np.clip(round(col - span / 2), 0, width - span))
    crop = photo[top : top + span, left : left + span]
    if span != size:
        crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    cells = size // stride
    # In the resized photo's pixels: the tile's grid starts at (top, left) * scale.
    scaled = points * scale
    origin = ((offset[0] + top) * scale, (offset[1] + left) * scale)
    photo_height, photo_width = bounds if bounds is not None else (height, width)
    near = np.all(
        (scaled > np.subtract(origin, 4 * stride)) & (scaled < np.add(origin, size + 4 * stride)), axis=1
    )
    target = density_target(
        scaled[near],
        np.asarray(classes)[near],
        num_classes,
        (cells, cells),
        stride=stride,
        sigma=sigma,
        origin=origin,
        bounds=(photo_height * scale, photo_width * scale),
    )
    if centres:
        heat = centre_target(
            scaled[near], np.asarray(classes)[near], num_classes, (cells, cells), stride=stride, origin=origin
        )
        target = np.concatenate([target, heat], axis=-1)
    weight = np.ones((cells, cells), np.float32)
    if masked is not None:
        centres = (np.arange(cells) + 0.5) * stride / scale
        weight[masked_at(masked, top + centres, left + centres, block=block)] = 0.0
    return TrainingTile(np.ascontiguousarray(crop), target, weight)


def augment(
    tile: TrainingTile, rng: np.random.Generator, *, brightness: float = 0.15, contrast: float = 0.2
) -> TrainingTile:
    """A random flip, quarter turn, brightness and contrast change of a tile and its maps."""
    image, target, weight = tile.image, tile.target, tile.weight
    turns = int(rng.integers(4))
    image, target, weight = (np.rot90(a, turns) for a in (image, target, weight))
    if rng.random() < 0.5:
        image, target, weight = (a[:, ::-1] for a in (image, target, weight))
    pixels = image.astype(np.float32)
    mean = pixels.mean()
    factor = rng.uniform(1 - contrast, 1 + contrast)
    shift = rng.uniform(-brightness, brightness) * 255
    pixels = (pixels - mean) * factor + mean + shift
    image = np.clip(pixels, 0, 255).astype(np.uint8)
    return TrainingTile(image, np.ascontiguousarray(target), np.ascontiguousarray(weight))
