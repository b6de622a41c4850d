"""Model-agnostic tiled inference: density maps and counts of whole photos.

The functions here take the model as a plain ``predict`` callable from a batch of RGB
windows ``(N, h, w, 3)`` uint8 to maps ``(N, h / stride, w / stride, C)``, so they stay
pure numpy and are shared by validation during training and by the count job.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from herdcount.dots import masked_at
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
        The model, from ``(N, h, w, 3)`` windows to ``(N, h // stride, w // stride, C)``.
    stride : int
        The model's output stride.
    tile, margin : int, optional
        Kept side and context of each tile in pixels (see :func:`tile_grid`); with a margin
        of at least half the receptive field the result does not depend on ``tile``.
    batch_size : int, optional
        Windows per call of ``predict``; bounds memory.

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
        batch = np.stack([image[t.window[0] : t.window[2], t.window[1] : t.window[3]] for t in group])
        maps = np.asarray(predict(batch))
        if result is None:
            result = np.zeros(
                (image.shape[0] // stride, image.shape[1] // stride, maps.shape[-1]), np.float32
            )
        for t, out in zip(group, maps):
            top, left, bottom, right = (v // stride for v in t.keep)
            row, col = (t.keep[0] - t.window[0]) // stride, (t.keep[1] - t.window[1]) // stride
            result[top:bottom, left:right] = out[row : row + bottom - top, col : col + right - left]
    assert result is not None
    return result


def masked_counts(
    density: np.ndarray, masked: NDArray[np.bool_] | None = None, *, stride: int, block: int = 8
) -> NDArray[np.float64]:
    """Counts per class: sums of ``density`` over the cells outside a block ``masked`` grid.

    ``masked`` is a grid of ``block``-pixel cells (as from :func:`herdcount.dots.black_blocks`);
    each density cell takes the value of the block under its centre.
    """
    if masked is None:
        return density.sum(axis=(0, 1), dtype=np.float64)
    centres = np.arange(max(density.shape[:2])) * stride + stride // 2
    keep = ~masked_at(masked, centres[: density.shape[0]], centres[: density.shape[1]], block=block)
    return (density * keep[..., None]).sum(axis=(0, 1), dtype=np.float64)
