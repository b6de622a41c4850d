"""Model-agnostic tiled inference: density maps and counts of whole photos.

The functions here take the model as a plain ``predict`` callable from a batch of RGB
images ``(N, h, w, 3)`` uint8 to maps ``(N, h / stride, w / stride, C)``, so they stay
pure numpy and are shared by validation during training and by the count job.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from herdcount.dot_cells import masked_at
from herdcount.patches import tile_grid

Predict = Callable[[np.ndarray], np.ndarray]


def pad_to_stride(image: np.ndarray, stride: int) -> np.ndarray:
    """``image`` padded at the bottom and right to multiples of ``stride`` by repeating its
    last row and column (black bands would look like masked areas or shadows to a model)."""
    height, width = image.shape[:2]
    extra = (-height % stride, -width % stride)
    if not any(extra):
        return image
    return np.pad(image, ((0, extra[0]), (0, extra[1]), (0, 0)), mode="edge")


def density_map(
    image: np.ndarray,
    predict: Predict,
    *,
    stride: int,
    tile: int = 1024,
    margin: int = 0,
    batch_size: int = 4,
) -> NDArray[np.float32]:
    """Per-class density map of a whole photo, computed tile by tile.

    Parameters
    ----------
    image : (H, W, 3) uint8 array
        The photo; padded to multiples of ``stride`` first (see :func:`pad_to_stride`).
    predict : callable
        The model, from ``(N, h, w, 3)`` images to ``(N, h // stride, w // stride, C)``.
    stride : int
        The model's output stride.
    tile, margin : int, optional
        Kept side and context of each tile in pixels (see :func:`tile_grid`); with a margin
        of at least half the receptive field the result does not depend on ``tile``.
    batch_size : int, optional
        Tiles per call of ``predict``; bounds memory.

    Returns
    -------
    (ceil(H / stride), ceil(W / stride), C) float32 array
        Counts are its sums over regions.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an (H, W, 3) RGB array, got shape {image.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    image = pad_to_stride(image, stride)
    tiles = tile_grid(image.shape, tile, margin, stride=stride)
    result: NDArray[np.float32] | None = None
    for first in range(0, len(tiles), batch_size):
        group = tiles[first : first + batch_size]
        batch = np.stack([image[t.read[0] : t.read[2], t.read[1] : t.read[3]] for t in group])
        maps = np.asarray(predict(batch))
        if result is None:
            result = np.zeros(
                (image.shape[0] // stride, image.shape[1] // stride, maps.shape[-1]), np.float32
            )
        for t, out in zip(group, maps):
            top, left, bottom, right = (v // stride for v in t.keep)
            row, col = (t.keep[0] - t.read[0]) // stride, (t.keep[1] - t.read[1]) // stride
            result[top:bottom, left:right] = out[row : row + bottom - top, col : col + right - left]
    assert result is not None
    return result


def masked_counts(
    density: np.ndarray, masked: NDArray[np.bool_] | None = None, *, stride: int, block: int = 8
) -> NDArray[np.float64]:
    """Counts per class: sums of ``density`` over the cells outside a block ``masked`` grid.

    ``masked`` is a grid of ``block``-pixel cells (as from :func:`herdcount.dot_cells.black_blocks`);
    each density cell takes the value of the block under its centre.
    """
    if masked is None:
        return density.sum(axis=(0, 1), dtype=np.float64)
    centres = np.arange(max(density.shape[:2])) * stride + stride // 2
    keep = ~masked_at(masked, centres[: density.shape[0]], centres[: density.shape[1]], block=block)
    return (density * keep[..., None]).sum(axis=(0, 1), dtype=np.float64)


def tile_scores(image: np.ndarray, predict: Predict, *, patch: int = 64, batch_size: int = 256) -> np.ndarray:
    """Class scores of the non-overlapping ``patch`` x ``patch`` tiles of a photo (the
    seed's method), classified ``batch_size`` tiles per call of ``predict``.

    The photo is first padded to multiples of ``patch`` (see :func:`pad_to_stride`), so
    its last partial tiles are classified too.

    Returns
    -------
    (ceil(H / patch), ceil(W / patch), C) array
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an (H, W, 3) RGB array, got shape {image.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    image = pad_to_stride(image, patch)
    rows, cols = image.shape[0] // patch, image.shape[1] // patch
    tiles = image.reshape(rows, patch, cols, patch, 3).swapaxes(1, 2).reshape(-1, patch, patch, 3)
    scores = [np.asarray(predict(tiles[i : i + batch_size])) for i in range(0, len(tiles), batch_size)]
    return np.concatenate(scores).reshape(rows, cols, -1)


def patch_scores(
    image: np.ndarray,
    predict_maps: Predict,
    *,
    patch: int = 64,
    stride: int = 8,
    step: int = 8,
    tile: int = 1024,
    batch_size: int = 4,
) -> np.ndarray:
    """Class scores of every ``patch``-sided patch at ``stride`` pixel offsets, from a
    classifier in fully convolutional form, computed over tiles of about ``tile`` pixels.

    Parameters
    ----------
    image : (H, W, 3) uint8 array
        The photo; padded at the bottom and right by repeating its edge until the patches
        cover it.
    predict_maps : callable
        From ``(N, h, w, 3)`` to ``(N, (h - patch) // step + 1, (w - patch) // step + 1, C)``,
        cell ``(i, j)`` scoring the patch at ``(i * step, j * step)`` (see
        :func:`herdcount.predictors.fully_convolutional`).
    patch : int, optional
        Patch side.
    stride : int, optional
        Offset between the patches wanted; a multiple of ``step``.
    step : int, optional
        The model's native stride: the offset between the patches ``predict_maps`` scores.
    tile : int, optional
        Side of the photo region whose patches one call scores; bounds memory. The
        result does not depend on it: every patch is scored whole.
    batch_size : int, optional
        Tiles per call of ``predict_maps``.

    Returns
    -------
    (n_rows, n_cols, C) array
        ``n = ceil((side - patch) / stride) + 1`` patches per axis (at least 1); with
        ``stride == patch`` the same patches as :func:`tile_scores`.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an (H, W, 3) RGB array, got shape {image.shape}")
    if step < 1 or stride < step or stride % step:
        raise ValueError(f"stride must be a positive multiple of the model's step {step}, got {stride}")
    every = stride // step
    wanted = [max(0, -(-(side - patch) // stride)) + 1 for side in image.shape[:2]]
    counts = [(n - 1) * every + 1 for n in wanted]
    needed = [(n - 1) * step + patch for n in counts]
    pad = [(0, max(0, need - side)) for need, side in zip(needed, image.shape[:2])]
    image = np.pad(image, [*pad, (0, 0)], mode="edge")
    cells = [min(n, max(1, tile // step)) for n in counts]
    starts = [sorted({*range(0, n - k + 1, k), n - k}) for n, k in zip(counts, cells)]
    origins = [(r, c) for r in starts[0] for c in starts[1]]
    span = [(k - 1) * step + patch for k in cells]
    result: np.ndarray | None = None
    for first in range(0, len(origins), batch_size):
        group = origins[first : first + batch_size]
        batch = np.stack(
            [image[r * step : r * step + span[0], c * step : c * step + span[1]] for r, c in group]
        )
        maps = np.asarray(predict_maps(batch))
        if result is None:
            result = np.zeros((*counts, maps.shape[-1]), maps.dtype)
        for (r, c), scores in zip(group, maps):
            result[r : r + cells[0], c : c + cells[1]] = scores
    assert result is not None
    return result[::every, ::every]


def class_counts(scores: np.ndarray, num_classes: int, *, weight: float = 1.0) -> NDArray[np.float64]:
    """Counts of the first ``num_classes`` classes (the animals; a background class comes
    after them) among patches classified by their highest score, each patch counting
    ``weight`` animals: 1 for non-overlapping tiles, ``(step / patch) ** 2`` for patches
    at ``step`` offsets, which cover each pixel ``(patch / step) ** 2`` times."""
    winners = np.argmax(scores, axis=-1).ravel()
    return np.bincount(winners, minlength=scores.shape[-1])[:num_classes].astype(np.float64) * weight
