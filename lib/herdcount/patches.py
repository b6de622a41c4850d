"""Cut thumbnails, background patches and inference tiles out of photos. Pure numpy; ``(row, col)``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


def patch_origins(centres: ArrayLike, size: int, shape: tuple[int, ...]) -> NDArray[np.int64]:
    """Top-left ``(row, col)`` of the ``size`` x ``size`` patch centred on each of ``centres``.

    A patch that would cross the photo's border is shifted inside it, so every patch
    has the full size; the centre then sits off the patch's middle. This is what happens
    to thumbnails of dots near the border.

    Parameters
    ----------
    centres : (N, 2) array_like
        Patch centres ``(row, col)``, rounded to the nearest pixel.
    size : int
        Patch side in pixels.
    shape : tuple
        Shape of the photo.

    Returns
    -------
    (N, 2) int64 array

    Raises
    ------
    ValueError
        If the photo is smaller than the patch.
    """
    height, width = shape[:2]
    if height < size or width < size:
        raise ValueError(f"a {size}x{size} patch does not fit in a {height}x{width} photo")
    corners = np.rint(np.asarray(centres, dtype=float).reshape(-1, 2)).astype(np.int64) - size // 2
    return np.clip(corners, 0, [height - size, width - size])


def patch_origin(centre: ArrayLike, size: int, shape: tuple[int, ...]) -> tuple[int, int]:
    """Top-left ``(row, col)`` of the patch centred on one ``centre`` (see :func:`patch_origins`)."""
    top, left = patch_origins([centre], size, shape)[0]
    return int(top), int(left)


def crop_centred(image: np.ndarray, centre: ArrayLike, size: int = 64) -> np.ndarray:
    """The ``size`` x ``size`` crop of ``image`` around ``centre``, shifted inside at borders."""
    top, left = patch_origin(centre, size, image.shape)
    return image[top : top + size, left : left + size]


def thumbnail_origins(
    centres: ArrayLike, size: int, shape: tuple[int, ...], offsets: ArrayLike = (-1, 0, 1)
) -> NDArray[np.int64]:
    """Top-left ``(row, col)`` of the patches around each of ``centres`` shifted diagonally
    by each offset (``(d, d)`` pixels), shifted inside the photo at its borders.

    Returns
    -------
    (N, len(offsets), 2) int64 array
    """
    centres = np.asarray(centres, dtype=float).reshape(-1, 2)
    offsets = np.asarray(offsets, dtype=float)
    shifted = centres[:, None, :] + offsets[None, :, None]
    return patch_origins(shifted.reshape(-1, 2), size, shape).reshape(len(centres), len(offsets), 2)


def thumbnails(
    image: np.ndarray, centre: ArrayLike, size: int = 64, offsets: ArrayLike = (-1, 0, 1)
) -> list[np.ndarray]:
    """Crops around ``centre`` shifted diagonally by each offset (``(d, d)`` pixels)."""
    return [
        image[top : top + size, left : left + size]
        for top, left in thumbnail_origins([centre], size, image.shape, offsets)[0]
    ]


def sample_background(
    shape: tuple[int, ...],
    dots: ArrayLike,
    n: int,
    *,
    size: int = 64,
    min_distance: float = 40.0,
    masked: NDArray[np.bool_] | None = None,
    block: int = 8,
    rng: np.random.Generator | None = None,
    tries: int = 50,
) -> NDArray[np.int64]:
    """Top-left corners of up to ``n`` patches that hold no dotted animal and no masked area.

    Parameters
    ----------
    shape : tuple
        Shape of the photo.
    dots : (N, 2) array_like
        Dot centres ``(row, col)``.
    n : int
        Patches wanted; fewer are returned when the photo has no room for them.
    size : int, optional
        Patch side in pixels.
    min_distance : float, optional
        Least distance between a dot's centre and the patch (its nearest pixel).
    masked : (R, C) bool array, optional
        Coarse grid of masked cells (see :class:`herdcount.dots.DotSearch`); patches
        touching a masked cell are refused, since masks hide undotted animals.
    block : int, optional
        Cell size of ``masked``.
    rng : numpy.random.Generator, optional
        Source of randomness (seed it for repeatable patches).
    tries : int, optional
        Candidates drawn per wanted patch before giving up.

    Returns
    -------
    (M, 2) int64 array
        Top-left ``(row, col)`` of each patch, M <= n; patches do not overlap.
    """
    height, width = shape[:2]
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0 or height < size or width < size:
        return np.zeros((0, 2), dtype=np.int64)
    rng = np.random.default_rng() if rng is None else rng
    cand = np.column_stack(
        [rng.integers(0, height - size + 1, n * tries), rng.integers(0, width - size + 1, n * tries)]
    )
    ok = np.ones(len(cand), dtype=bool)
    dots = np.asarray(dots, dtype=float).reshape(-1, 2)
    for start in range(0, len(dots), 512):
        d = dots[start : start + 512]
        # Distance from each dot to the nearest pixel of each candidate patch.
        dr = np.maximum(
            np.maximum(cand[:, None, 0] - d[None, :, 0], d[None, :, 0] - (cand[:, None, 0] + size - 1)), 0
        )
        dc = np.maximum(
            np.maximum(cand[:, None, 1] - d[None, :, 1], d[None, :, 1] - (cand[:, None, 1] + size - 1)), 0
        )
        ok &= (np.hypot(dr, dc) >= min_distance).all(axis=1)
    if masked is not None and masked.any():
        ok &= _patch_clear(masked, cand, size, block)
    chosen: list[np.ndarray] = []
    for top_left in cand[ok]:
        if all(np.abs(top_left - c).max() >= size for c in chosen):
            chosen.append(top_left)
            if len(chosen) == n:
                break
    return np.asarray(chosen, dtype=np.int64).reshape(-1, 2)


def _patch_clear(masked: np.ndarray, corners: np.ndarray, size: int, block: int) -> np.ndarray:
    """Whether each patch misses every masked cell, via a summed-area table."""
    table = np.pad(masked.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    r0, c0 = corners[:, 0] // block, corners[:, 1] // block
    r1 = np.minimum((corners[:, 0] + size - 1) // block + 1, masked.shape[0])
    c1 = np.minimum((corners[:, 1] + size - 1) // block + 1, masked.shape[1])
    return (table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]) == 0


@dataclass(frozen=True)
class Tile:
    """One tile of a photo for fully convolutional inference, in pixels, ``(row, col)``.

    The model reads ``read`` (the tile grown by a margin on each side, shifted inside the
    photo at its borders); of the model's output only ``keep`` is used. Both are
    ``(top, left, bottom, right)`` with exclusive ends.
    """

    read: tuple[int, int, int, int]
    keep: tuple[int, int, int, int]


def tile_grid(shape: tuple[int, ...], tile: int, margin: int, *, stride: int = 1) -> list[Tile]:
    """Tiles that cover a photo of ``shape`` exactly once, each with ``margin`` pixels of context.

    The kept parts partition the photo. Every read part has the same size, ``tile + 2 * margin``
    (or the photo's side where that is shorter), so they can be stacked into a batch.
    A read part is shifted inside the photo rather than cut at its border, so each kept pixel
    has at least ``margin`` pixels of context on every side or lies that close to the photo's
    own border, where a model run on the whole photo would see its edge too. With a
    margin of at least half the model's receptive field, tiled inference therefore equals
    inference on the whole photo.

    Parameters
    ----------
    shape : tuple
        ``(height, width, ...)`` of the photo; height and width multiples of ``stride``.
    tile, margin : int
        Side of the kept part and the context on each side, in pixels; multiples of
        ``stride`` so that tiles meet on the model's output grid.
    stride : int, optional
        The model's output stride.

    Raises
    ------
    ValueError
        If a size is not a positive multiple of ``stride`` (margin may be 0).
    """
    height, width = shape[:2]
    for name, value, least in (
        ("tile", tile, 1),
        ("margin", margin, 0),
        ("height", height, 1),
        ("width", width, 1),
    ):
        if value < least or value % stride:
            raise ValueError(
                f"{name} must be a {'positive ' if least else ''}multiple of stride {stride}, got {value}"
            )
    rows = _spans(height, tile, margin)
    cols = _spans(width, tile, margin)
    return [
        Tile((wt, wl, wb, wr), (kt, kl, kb, kr)) for (wt, wb, kt, kb) in rows for (wl, wr, kl, kr) in cols
    ]


def _spans(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    size = min(tile + 2 * margin, length)
    spans = []
    for start in range(0, length, tile):
        first = int(np.clip(start - margin, 0, length - size))
        spans.append((first, first + size, start, min(start + tile, length)))
    return spans
