"""The coarse pass of dot finding (:mod:`herdcount.dots`, steps 1-3): the pair's JPEG noise,
the cells that changed or were painted black, and the crops cut around the changes; and
the masks of black cells that training and counting share.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage as ndi

_EIGHT = np.ones((3, 3), dtype=bool)
_STRIP_BLOCKS = 8


def _squares(
    image: np.ndarray, rows: np.ndarray, cols: np.ndarray, half: int, size: int | None = None
) -> np.ndarray:
    """The squares of ``size`` (default ``2 * half + 1``) pixels of ``image`` starting
    ``half`` before each of ``(rows, cols)``, edges repeated: (N, size, size, ...)."""
    offsets = np.arange(size or 2 * half + 1) - half
    r = np.clip(np.asarray(rows)[:, None, None] + offsets[None, :, None], 0, image.shape[0] - 1)
    c = np.clip(np.asarray(cols)[:, None, None] + offsets[None, None, :], 0, image.shape[1] - 1)
    return image[r, c]


def _squares_at(
    stack: np.ndarray, n: np.ndarray, rows: np.ndarray, cols: np.ndarray, half: int
) -> np.ndarray:
    """:func:`_squares` of the ``n``-th image of ``stack`` for each of ``(rows, cols)``."""
    offsets = np.arange(-half, half + 1)
    r = np.clip(rows[:, None, None] + offsets[None, :, None], 0, stack.shape[1] - 1)
    c = np.clip(cols[:, None, None] + offsets[None, None, :], 0, stack.shape[2] - 1)
    return stack[n[:, None, None], r, c]


def _grow(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one pixel in all eight directions (a 3x3 dilation, done as two
    passes of shifts: scipy's per-call cost dominates on the small arrays used here)."""
    rows = mask.copy()
    rows[1:] |= mask[:-1]
    rows[:-1] |= mask[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def noise_threshold(
    plain: ArrayLike,
    dotted: ArrayLike,
    *,
    black_level: int = 30,
    step: int = 64,
    lowest: int = 16,
    highest: int = 30,
) -> int:
    """The change a dot must make to stand out from the JPEG noise between the two copies.

    Twice the 99th percentile of the largest per-channel difference over every
    ``step``-th row, outside black (masked) areas, within ``lowest..highest``. Dots cover
    well under 1 % of a photo, so the percentile measures the noise of two separate
    compressions: about 2-12 in surveys saved at quality 70-95.

    Returns
    -------
    int
    """
    plain, dotted = np.asarray(plain)[::step], np.asarray(dotted)[::step]
    diff = np.maximum(plain, dotted)
    diff -= np.minimum(plain, dotted)
    largest = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])
    bright = np.maximum(np.maximum(dotted[..., 0], dotted[..., 1]), dotted[..., 2]) >= black_level
    counts = np.bincount(largest[bright], minlength=256)
    if counts.sum() == 0:
        return highest
    p99 = int(np.searchsorted(np.cumsum(counts), 0.99 * counts.sum()))
    return int(np.clip(2 * p99, lowest, highest))


def _crops(labels: np.ndarray, block: int, shape: tuple[int, ...]) -> list[tuple[int, int, np.ndarray]]:
    """``(top, left, keep)`` in pixels of the crop around each changed component of cells.

    Crops of neighbouring components may overlap: each keeps the pixels of its own
    cells and of the unchanged cells around them, so no dot is found twice.
    """
    crops = []
    for lab, crop in enumerate(ndi.find_objects(labels), start=1):
        crop = tuple(slice(max(w.start - 1, 0), w.stop + 1) for w in crop)
        cells = labels[crop]
        own = cells == lab
        own |= (cells == 0) & _grow(own)
        top, left = crop[0].start * block, crop[1].start * block
        keep = own.repeat(block, axis=0).repeat(block, axis=1)[: shape[0] - top, : shape[1] - left]
        crops.append((top, left, keep))
    return crops


def _pack(
    plain: np.ndarray, dotted: np.ndarray, crops: list[tuple[int, int, np.ndarray]], width: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copy the crops onto one canvas in shelves, a pixel apart so none touch.

    Returns the canvas of ``plain`` (``dotted`` where a crop does not keep the pixel),
    the canvas of ``dotted``, and per canvas pixel the offset from canvas to photo
    coordinates.
    """
    sizes = [keep.shape for _, _, keep in crops]
    width = max([width, *(w for _, w in sizes)])
    places, x, y, shelf = [], 0, 0, 0
    # Crops start at even photo coordinates (cell corners) and are placed at even canvas
    # ones, so the canvas's 2x2 blocks are the photo's: JPEG's chroma blocks.
    for i in sorted(range(len(crops)), key=lambda i: -sizes[i][0]):
        h, w = sizes[i]
        if x + w > width:
            x, y, shelf = 0, _even(y + shelf + 1), 0
        places.append((i, y, x))
        x, shelf = _even(x + w + 1), max(shelf, h)
    canvas_a = np.zeros((_even(y + shelf), _even(width), 3), dtype=np.uint8)
    canvas_b = np.zeros_like(canvas_a)
    keep_all = np.zeros(canvas_a.shape[:2], dtype=bool)
    origin = np.zeros((*canvas_a.shape[:2], 2), dtype=np.int32)
    for i, y, x in places:
        top, left, keep = crops[i]
        h, w = keep.shape
        canvas_a[y : y + h, x : x + w] = plain[top : top + h, left : left + w]
        canvas_b[y : y + h, x : x + w] = dotted[top : top + h, left : left + w]
        keep_all[y : y + h, x : x + w] = keep
        origin[y : y + h, x : x + w] = (top - y, left - x)
    np.copyto(canvas_a, canvas_b, where=~keep_all[..., None])
    return canvas_a, canvas_b, origin


def _even(n: int) -> int:
    return n + (n % 2)


def _check_pair(plain: np.ndarray, dotted: np.ndarray) -> None:
    for name, img in (("plain", plain), ("dotted", dotted)):
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{name} must be an (H, W, 3) RGB array, got shape {img.shape}")
        if img.dtype != np.uint8:
            raise ValueError(f"{name} must be uint8, got {img.dtype}")
    if plain.shape != dotted.shape:
        raise ValueError(f"plain and dotted differ in shape: {plain.shape} vs {dotted.shape}")


def _coarse_maps(
    plain: np.ndarray, dotted: np.ndarray, threshold: int, black_level: int, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coarse grids: cells with any changed pixel, and cells mostly black in ``dotted``."""
    height, width = plain.shape[:2]
    col_starts = np.arange(0, width, block)
    changed = np.zeros((len(np.arange(0, height, block)), len(col_starts)), dtype=bool)
    masked = np.zeros_like(changed)
    step = block * _STRIP_BLOCKS
    buffer = np.empty((step // 2, width, 3), dtype=np.uint8)
    for top in range(0, height, step):
        # Every second row: a dot is at least 5 rows tall, so it keeps 2 or more rows here;
        # the crops of step 3 look at every pixel again.
        a = plain[top : top + step : 2]
        b = dotted[top : top + step : 2]
        # |a - b| > t in some channel exactly when (a - b + t) mod 256 > 2t (t < 128): two
        # uint8 passes with wrap-around instead of widening, abs and a max over channels.
        diff = np.subtract(a, b, out=buffer[: len(a)])
        np.add(diff, threshold, out=diff)
        hit = _cells_above(diff, 2 * threshold, block, col_starts)
        cells = slice(top // block, top // block + len(hit))
        changed[cells] = hit
        masked[cells] = _dark_cells(
            dotted[top : top + step], black_level, block, col_starts, plain[top : top + step]
        )
    return changed, masked


def _cells_above(values: np.ndarray, level: int, block: int, col_starts: np.ndarray) -> np.ndarray:
    """Whether some entry of each cell of ``values`` (half-rows: ``block // 2`` rows by
    ``block`` pixels of 3 channels) is above ``level``."""
    rows, width = values.shape[:2]
    if rows % (block // 2) == 0 and width % block == 0 and block % 8 == 0:
        # Rows first (long SIMD runs), then the cell's 3 * block bytes as 64-bit words: a
        # reduce over a short last axis costs numpy more per byte than the rest together.
        top = np.maximum.reduce(values.reshape(rows // (block // 2), block // 2, -1), axis=1) > level
        words = top.view(np.uint64).reshape(len(top), len(col_starts), 3 * block // 8)
        return np.bitwise_or.reduce(words, axis=2) != 0
    flat = values.reshape(rows, -1)
    row_starts = np.arange(0, rows, block // 2)
    return np.maximum.reduceat(np.maximum.reduceat(flat, 3 * col_starts, axis=1), row_starts, axis=0) > level


_BYTE_SUM = np.uint64(0x0101010101010101)


def _dark_cells(
    dotted: np.ndarray, black_level: int, block: int, col_starts: np.ndarray, plain: np.ndarray | None = None
) -> np.ndarray:
    """Cells of a band of ``dotted`` painted black: most sampled pixels are black there and,
    when ``plain`` is given, more than half of those were painted so (:func:`_blackened`).

    A mask is black that the annotators painted over the photo, so it is a change; a
    dark animal (a wet pup in shadow) is as dark in both copies and never a mask, or its
    dot would be lost with it. Masks are large areas, so two rows per cell (rows 0 and
    ``block // 2``) decide, which is a quarter of the work of every pixel; the one-cell
    growth of the mask covers a cell that this misjudges at a mask's edge.
    """
    dark = _black(dotted[:: block // 2], black_level)
    counts, samples = _cell_sums(dark, block, col_starts, dotted.shape[1])
    masked = 2 * counts > samples
    if plain is not None and masked.any():
        painted = _blackened(plain[:: block // 2], dotted[:: block // 2], black_level).view(np.uint8)
        now, _ = _cell_sums(painted, block, col_starts, dotted.shape[1])
        masked &= 2 * now > counts
    return masked


def _blackened(plain: np.ndarray, dotted: np.ndarray, black_level: int) -> np.ndarray:
    """Pixels (..., 3) painted black: darker than ``black_level`` in every channel of
    ``dotted`` and brighter in ``plain`` by ``black_level`` or more.

    A mask darkens what it covers by far more than JPEG's noise; a dark animal at the black
    level (a wet pup in shadow) crosses it back and forth between two separate compressions
    but stays as dark in both.
    """
    now = np.maximum(np.maximum(dotted[..., 0], dotted[..., 1]), dotted[..., 2])
    before = np.maximum(np.maximum(plain[..., 0], plain[..., 1]), plain[..., 2])
    dark = now < black_level
    # uint8 throughout: where ``dark`` holds, now + black_level < 2 * black_level <= 255.
    now += np.uint8(black_level)
    return dark & (before >= now)


def _black(rows: np.ndarray, black_level: int) -> np.ndarray:
    """Pixels darker than ``black_level`` in every channel, as uint8 0/1."""
    bright = np.maximum(rows[..., 0], rows[..., 1])
    np.maximum(bright, rows[..., 2], out=bright)
    return (bright < black_level).view(np.uint8)


def _cell_sums(
    dark: np.ndarray, block: int, col_starts: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray | int]:
    """Per cell, the sum of ``dark`` over its two sampled rows, and the number of samples."""
    if len(dark) % 2 == 0 and width % block == 0 and block % 8 == 0:
        pair = dark[0::2] + dark[1::2]
        # The bytes of a 64-bit word (each 0..2) sum up in the top byte of word * 0x0101...01.
        sums = (pair.view(np.uint64) * _BYTE_SUM) >> np.uint64(56)
        return sums.reshape(len(pair), len(col_starts), block // 8).sum(axis=2).astype(np.int64), 2 * block
    row_starts = np.arange(0, len(dark), 2)
    counts = np.add.reduceat(np.add.reduceat(dark.astype(np.int32), col_starts, axis=1), row_starts, axis=0)
    samples = np.diff(np.append(row_starts, len(dark)))[:, None] * np.diff(np.append(col_starts, width))
    return counts, samples


def black_blocks(
    dotted: ArrayLike, *, plain: ArrayLike | None = None, black_level: int = 30, block: int = 8
) -> NDArray[np.bool_]:
    """The masked cells of a dotted copy: a ``block`` grid, grown by one cell.

    A cell is masked when most of its pixels in rows 0 and ``block // 2`` are darker than
    ``black_level`` in every channel and, with ``plain`` given, more than half of those
    were brighter there by ``black_level`` or more (a dark animal is no mask), as in
    :func:`find_dots`. Animals under such areas were never dotted, so training excludes
    them from its loss and validation from its counts.

    Returns
    -------
    (ceil(H / block), ceil(W / block)) bool array
    """
    dotted = np.asarray(dotted)
    if dotted.ndim != 3 or dotted.shape[2] != 3:
        raise ValueError(f"dotted must be an (H, W, 3) RGB array, got shape {dotted.shape}")
    if block < 2 or block % 2:
        raise ValueError(f"block must be an even number of at least 2, got {block}")
    if plain is not None:
        plain = np.asarray(plain)
        _check_pair(plain, dotted)
    masked = _dark_cells(dotted, black_level, block, np.arange(0, dotted.shape[1], block), plain)
    return _grow(masked)


def grow_cells(masked: ArrayLike, pixels: float, *, block: int = 8) -> NDArray[np.bool_]:
    """A ``block`` grid of masked cells grown by whole cells (8-connected) until it reaches
    ``pixels`` beyond every masked cell: the cells whose surroundings, that far out, hold no
    mask are those left clear.

    Returns
    -------
    bool array of the grid's shape
    """
    if pixels < 0:
        raise ValueError(f"pixels must be >= 0, got {pixels}")
    grown = np.asarray(masked, dtype=bool)
    for _ in range(int(np.ceil(pixels / block))):
        grown = _grow(grown)
    return grown


def masked_at(
    masked: NDArray[np.bool_], rows: ArrayLike, cols: ArrayLike, *, block: int = 8
) -> NDArray[np.bool_]:
    """Look up the pixel grid ``rows`` x ``cols`` (pixel positions) in a ``block`` grid of masked cells.

    Positions past the grid's end (a photo padded to a stride) take its last cell.

    Returns
    -------
    (len(rows), len(cols)) bool array
    """
    return masked[np.ix_(*_cells(masked, rows, cols, block))]


def masked_points(masked: NDArray[np.bool_], points: ArrayLike, *, block: int = 8) -> NDArray[np.bool_]:
    """Look up each of ``points`` (N, 2), ``(row, col)`` in pixels, in a ``block`` grid of
    masked cells, as :func:`masked_at` looks up a grid of them.

    Returns
    -------
    (N,) bool array
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return masked[_cells(masked, points[:, 0], points[:, 1], block)]


def _cells(masked: np.ndarray, rows: ArrayLike, cols: ArrayLike, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell indices of pixel positions; those past the grid's end take its last cell."""
    r = np.minimum((np.asarray(rows) // block).astype(int), masked.shape[0] - 1)
    c = np.minimum((np.asarray(cols) // block).astype(int), masked.shape[1] - 1)
    return r, c
