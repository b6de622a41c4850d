"""Find the coloured dots that annotators painted on a copy of a survey photo.

Pure numpy/scipy: arrays in, arrays out. Coordinates are ``(row, col)``.

The recipe (see ``shared/DESIGN.md`` for why not ``blob_log``):

1. In horizontal strips that stay in cache, over every second row, take the largest
   per-channel absolute difference of the plain and dotted copies, threshold it, and
   reduce it to a coarse grid of ``block`` x ``block`` cells. The same pass marks the
   cells where two rows of the dotted copy are mostly black (masked areas, which JPEG
   leaves near-black rather than zero).
2. Label the coarse cells that changed, outside the (slightly grown) masked cells.
   Each coarse component is a small window holding one or a few dots.
3. Copy the windows, at full resolution, side by side onto one small canvas and, in one
   pass over it, explain every changed pixel as the plain colour partly covered by one
   dot colour (``dotted = plain + a * (dot - plain)``): the class is the dot colour with
   the smallest residual, ``a`` is the pixel's coverage. Pixels of each class are
   labelled separately, so touching dots of two colours stay two dots; a component
   covering about ``k`` full discs is split into ``k`` dots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage as ndi
from scipy.cluster.vq import kmeans2

_EIGHT = np.ones((3, 3), dtype=bool)
_STRIP_BLOCKS = 8


@dataclass(frozen=True)
class DotSearch:
    """What :func:`find_dots` found in one photo.

    Attributes
    ----------
    coords : (N, 2) float64 array
        Dot centres as ``(row, col)``.
    classes : (N,) int64 array
        Index into the colours passed to :func:`find_dots`.
    masked : (R, C) bool array
        Coarse grid of ``block`` x ``block`` cells that are black in the dotted copy,
        grown by one cell; never sample background there.
    block : int
        Cell size of ``masked`` in pixels.
    """

    coords: NDArray[np.float64]
    classes: NDArray[np.int64]
    masked: NDArray[np.bool_]
    block: int

    def counts(self, n_classes: int) -> NDArray[np.int64]:
        """Number of dots per class, as an array of length ``n_classes``."""
        return np.bincount(self.classes, minlength=n_classes).astype(np.int64)

    def masked_fraction(self) -> float:
        """Share of the photo's cells that are masked (including the grown border)."""
        return float(self.masked.mean()) if self.masked.size else 0.0


def find_dots(
    plain: ArrayLike,
    dotted: ArrayLike,
    colours: ArrayLike,
    *,
    diff_threshold: int = 30,
    pixel_threshold: int = 18,
    colour_tolerance: float = 60.0,
    min_coverage: float = 0.45,
    dot_radius: float = 3.0,
    black_level: int = 30,
    block: int = 8,
) -> DotSearch:
    """Locate and classify the dots painted on ``dotted`` that are absent from ``plain``.

    Parameters
    ----------
    plain, dotted : (H, W, 3) uint8 arrays
        The photo and its annotated copy, same shape.
    colours : (K, 3) array_like
        Mean RGB colour of the dots of each class.
    diff_threshold : int, optional
        A dot needs a pixel where some channel differs by more than this.
    pixel_threshold : int, optional
        Around such a pixel, pixels that differ by more than this are explained by dot
        colours; a lower value keeps dark dots on dark animals (brown on a pup) whole.
    colour_tolerance : float, optional
        Largest RGB distance between a changed pixel and the line from its plain colour
        to a dot colour for the pixel to count towards that class.
    min_coverage : float, optional
        Least summed coverage, as a share of a full disc of ``dot_radius``, of a dot.
    dot_radius : float, optional
        Radius of the painted dots in pixels.
    black_level : int, optional
        A cell of the dotted copy is masked when most of its pixels in rows 0 and
        ``block // 2`` are darker than this in every channel.
    block : int, optional
        Cell size of the coarse search grid and of the returned mask; even.

    Returns
    -------
    DotSearch
        Dot centres ``(row, col)``, class indices and the coarse mask.

    Raises
    ------
    ValueError
        If the images are not equal-shaped RGB uint8 arrays or a knob is out of range.
    """
    plain = np.asarray(plain)
    dotted = np.asarray(dotted)
    colours = np.asarray(colours, dtype=np.float32)
    _check_pair(plain, dotted)
    if colours.ndim != 2 or colours.shape[1] != 3 or len(colours) == 0:
        raise ValueError(f"colours must be a (K, 3) array, got shape {colours.shape}")
    if not 0 < diff_threshold < 255:
        raise ValueError(f"diff_threshold must be in 1..254, got {diff_threshold}")
    if not 0 < pixel_threshold <= diff_threshold:
        raise ValueError(f"pixel_threshold must be in 1..diff_threshold, got {pixel_threshold}")
    if block < 2 or block % 2:
        raise ValueError(f"block must be an even number of at least 2, got {block}")
    if dot_radius <= 0:
        raise ValueError(f"dot_radius must be positive, got {dot_radius}")

    changed, masked = _coarse_maps(plain, dotted, diff_threshold, black_level, block)
    # Grow the mask by one cell: JPEG leaves a fringe of changed, darkened pixels
    # around every black area that would otherwise look like brown dots.
    masked = ndi.binary_dilation(masked, structure=_EIGHT)
    labels, _ = ndi.label(changed & ~masked, structure=_EIGHT)
    disc_area = float(np.pi * dot_radius**2)
    windows = _windows(labels, block, plain.shape)
    # One pass over all windows packed side by side, rather than a pass per window: a
    # photo has hundreds of small windows and numpy's per-call cost would dominate.
    canvas_plain, canvas_dotted, origin = _pack(plain, dotted, windows)
    coords, classes = _dots_in_window(
        canvas_plain, canvas_dotted, colours,
        pixel_threshold, colour_tolerance, min_coverage * disc_area, disc_area,
    )  # fmt: skip
    if len(coords):
        at = origin[coords[:, 0].astype(int), coords[:, 1].astype(int)]
        coords = coords + at
        order = np.lexsort((coords[:, 1], coords[:, 0]))
        coords, classes = coords[order], classes[order]
    return DotSearch(coords, classes.astype(np.int64), masked, block)


def _windows(labels: np.ndarray, block: int, shape: tuple[int, ...]) -> list[tuple[int, int, np.ndarray]]:
    """``(top, left, keep)`` in pixels of the window around each changed component of cells.

    Windows of neighbouring components may overlap: each keeps the pixels of its own
    cells and of the unchanged cells around them, so no dot is found twice.
    """
    windows = []
    for lab, window in enumerate(ndi.find_objects(labels), start=1):
        window = tuple(slice(max(w.start - 1, 0), w.stop + 1) for w in window)
        cells = labels[window]
        own = cells == lab
        own |= (cells == 0) & ndi.binary_dilation(own, structure=_EIGHT)
        top, left = window[0].start * block, window[1].start * block
        keep = own.repeat(block, axis=0).repeat(block, axis=1)[: shape[0] - top, : shape[1] - left]
        windows.append((top, left, keep))
    return windows


def _pack(
    plain: np.ndarray, dotted: np.ndarray, windows: list[tuple[int, int, np.ndarray]], width: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copy the windows onto one canvas in shelves, a pixel apart so none touch.

    Returns the canvas of ``plain`` (``dotted`` where a window does not keep the pixel),
    the canvas of ``dotted``, and per canvas pixel the offset from canvas to photo
    coordinates.
    """
    sizes = [keep.shape for _, _, keep in windows]
    width = max([width, *(w for _, w in sizes)])
    places, x, y, shelf = [], 0, 0, 0
    for i in sorted(range(len(windows)), key=lambda i: -sizes[i][0]):
        h, w = sizes[i]
        if x + w > width:
            x, y, shelf = 0, y + shelf + 1, 0
        places.append((i, y, x))
        x, shelf = x + w + 1, max(shelf, h)
    canvas_a = np.zeros((y + shelf, width, 3), dtype=np.uint8)
    canvas_b = np.zeros_like(canvas_a)
    keep_all = np.zeros(canvas_a.shape[:2], dtype=bool)
    origin = np.zeros((*canvas_a.shape[:2], 2), dtype=np.int64)
    for i, y, x in places:
        top, left, keep = windows[i]
        h, w = keep.shape
        canvas_a[y : y + h, x : x + w] = plain[top : top + h, left : left + w]
        canvas_b[y : y + h, x : x + w] = dotted[top : top + h, left : left + w]
        keep_all[y : y + h, x : x + w] = keep
        origin[y : y + h, x : x + w] = (top - y, left - x)
    np.copyto(canvas_a, canvas_b, where=~keep_all[..., None])
    return canvas_a, canvas_b, origin


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
        # the windows of step 3 look at every pixel again.
        a = plain[top : top + step : 2]
        b = dotted[top : top + step : 2]
        # |a - b| > t in some channel exactly when (a - b + t) mod 256 > 2t (t < 128): two
        # uint8 passes with wrap-around instead of widening, abs and a max over channels.
        diff = np.subtract(a, b, out=buffer[: len(a)])
        np.add(diff, threshold, out=diff)
        hit = _cells_above(diff, 2 * threshold, block, col_starts)
        cells = slice(top // block, top // block + len(hit))
        changed[cells] = hit
        masked[cells] = _dark_cells(dotted[top : top + step], black_level, block, col_starts)
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


def _dark_cells(dotted: np.ndarray, black_level: int, block: int, col_starts: np.ndarray) -> np.ndarray:
    """Cells of a band of ``dotted`` where most sampled pixels are black.

    Masks are large areas, so two rows per cell (rows 0 and ``block // 2``) decide,
    which is a quarter of the work of every pixel; the one-cell growth of the mask covers
    a cell that this misjudges at a mask's edge.
    """
    rows = dotted[:: block // 2]
    bright = np.maximum(rows[..., 0], rows[..., 1])
    np.maximum(bright, rows[..., 2], out=bright)
    dark = (bright < black_level).view(np.uint8)
    width = dotted.shape[1]
    if len(rows) % 2 == 0 and width % block == 0 and block % 8 == 0:
        pair = dark[0::2] + dark[1::2]
        # The bytes of a 64-bit word (each 0..2) sum up in the top byte of word * 0x0101...01.
        sums = (pair.view(np.uint64) * _BYTE_SUM) >> np.uint64(56)
        return sums.reshape(len(pair), len(col_starts), block // 8).sum(axis=2) > block
    row_starts = np.arange(0, len(rows), 2)
    counts = np.add.reduceat(np.add.reduceat(dark.astype(np.int32), col_starts, axis=1), row_starts, axis=0)
    samples = np.diff(np.append(row_starts, len(rows)))[:, None] * np.diff(np.append(col_starts, width))
    return 2 * counts > samples


def _dots_in_window(
    plain: np.ndarray,
    dotted: np.ndarray,
    colours: np.ndarray,
    threshold: int,
    tolerance: float,
    min_cover: float,
    disc_area: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Dots of a window (or a canvas of windows): (N, 2) centres relative to it, (N,) classes."""
    cover, klass = classify_pixels(plain, dotted, colours, diff_threshold=threshold,
                                   colour_tolerance=tolerance)  # fmt: skip
    # Sums over the few classified pixels rather than over the whole window.
    rows, cols = np.nonzero(klass >= 0)
    pixel_class = klass[rows, cols]
    coords, classes = [], []
    for k in np.unique(pixel_class):
        labels, n = ndi.label(klass == k, structure=_EIGHT)
        pick = pixel_class == k
        r, c = rows[pick], cols[pick]
        lab, w = labels[r, c], cover[r, c].astype(np.float64)
        total = np.bincount(lab, w, minlength=n + 1)[1:]
        moments = np.column_stack([np.bincount(lab, w * r, n + 1)[1:], np.bincount(lab, w * c, n + 1)[1:]])
        found = np.flatnonzero(total >= min_cover)
        # A lone dot varies by about +-30% in coverage under JPEG noise; 1.6 discs is two dots.
        dots = np.maximum(1, (total[found] / disc_area + 0.4).astype(int))
        lone = found[dots == 1]
        coords.extend(moments[lone] / total[lone, None])
        if (dots > 1).any():
            boxes = ndi.find_objects(labels)
            for i, n_dots in zip(found[dots > 1], dots[dots > 1]):
                box = boxes[i]
                member = labels[box] == i + 1
                centres = _split_component(np.where(member, cover[box], 0.0), member, n_dots)
                coords.extend(centre + (box[0].start, box[1].start) for centre in centres)
        classes.extend([k] * (len(coords) - len(classes)))
    return np.asarray(coords, dtype=np.float64).reshape(-1, 2), np.asarray(classes, np.int64)


def _split_component(weight: np.ndarray, member: np.ndarray, n: int) -> list[np.ndarray]:
    """Centres of a same-colour component that covers about ``n`` full dots' worth of pixels."""
    rows, cols = np.nonzero(member)
    w = weight[rows, cols]
    points = np.column_stack([rows, cols]).astype(np.float64)
    if n == 1 or len(points) < 2 * n:
        return [np.average(points, axis=0, weights=w)]
    strong = w > 0.5 * w.max()
    _, assign = kmeans2(points[strong], n, minit="++", seed=np.random.default_rng(0))
    centres = []
    for j in range(n):
        pick = assign == j
        if pick.any():
            centres.append(np.average(points[strong][pick], axis=0, weights=w[strong][pick]))
    return centres


def classify_pixels(
    plain: ArrayLike,
    dotted: ArrayLike,
    colours: ArrayLike,
    *,
    diff_threshold: int = 40,
    colour_tolerance: float = 60.0,
    min_alpha: float = 0.3,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Explain each changed pixel as its plain colour partly covered by a dot colour.

    Parameters
    ----------
    plain, dotted : (H, W, 3) uint8 arrays
        A (small) window of the photo and of its dotted copy.
    colours : (K, 3) array_like
        Dot colours.
    diff_threshold : int, optional
        Pixels that differ by at most this in every channel are left unclassified.
    colour_tolerance : float, optional
        Largest distance of the dotted pixel from the line plain -> dot colour.
    min_alpha : float, optional
        Least coverage for a pixel to count.

    Returns
    -------
    coverage : (H, W) float32 array
        Estimated share of each pixel covered by paint, in [0, 1]; 0 where unclassified.
    classes : (H, W) int64 array
        Index of the dot colour, or -1 where unclassified.
    """
    plain, dotted = np.asarray(plain), np.asarray(dotted)
    colours = np.asarray(colours, dtype=np.float32)
    coverage = np.zeros(plain.shape[:2], dtype=np.float32)
    classes = np.full(plain.shape[:2], -1, dtype=np.int64)
    if plain.dtype == dotted.dtype == np.uint8:
        diff = np.maximum(plain, dotted)
        diff -= np.minimum(plain, dotted)
    else:
        diff = np.abs(dotted.astype(np.float32) - plain.astype(np.float32))
    # Channel by channel: numpy's max over a last axis of length 3 is several times slower.
    changed = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2]) > diff_threshold
    if not changed.any():
        return coverage, classes
    # Only the few changed pixels in floating point.
    q = plain[changed].astype(np.float32)  # (N, 3)
    delta = dotted[changed].astype(np.float32) - q
    v = colours[None, :, :] - q[:, None, :]  # (N, K, 3)
    vv = np.maximum((v * v).sum(axis=2), 1.0)
    alpha = (delta[:, None, :] * v).sum(axis=2) / vv
    alpha_c = np.clip(alpha, 0.0, 1.0)
    residual = np.linalg.norm(delta[:, None, :] - alpha_c[..., None] * v, axis=2)
    best = residual.argmin(axis=1)
    idx = np.arange(len(best))
    ok = (residual[idx, best] <= colour_tolerance) & (alpha[idx, best] >= min_alpha)
    coverage[changed] = np.where(ok, alpha_c[idx, best], 0.0)
    classes[changed] = np.where(ok, best, -1)
    return coverage, classes


def black_blocks(dotted: ArrayLike, *, black_level: int = 30, block: int = 8) -> NDArray[np.bool_]:
    """The masked cells of a dotted copy: a ``block`` grid, grown by one cell.

    A cell is masked when most of its pixels in rows 0 and ``block // 2`` are darker than
    ``black_level`` in every channel, as in :func:`find_dots`. Animals under such areas
    were never dotted, so training excludes them from its loss and validation from its
    counts.

    Returns
    -------
    (ceil(H / block), ceil(W / block)) bool array
    """
    dotted = np.asarray(dotted)
    if dotted.ndim != 3 or dotted.shape[2] != 3:
        raise ValueError(f"dotted must be an (H, W, 3) RGB array, got shape {dotted.shape}")
    if block < 2 or block % 2:
        raise ValueError(f"block must be an even number of at least 2, got {block}")
    masked = _dark_cells(dotted, black_level, block, np.arange(0, dotted.shape[1], block))
    return ndi.binary_dilation(masked, structure=_EIGHT)


def masked_at(
    masked: NDArray[np.bool_], rows: ArrayLike, cols: ArrayLike, *, block: int = 8
) -> NDArray[np.bool_]:
    """Look up the pixel grid ``rows`` x ``cols`` (pixel positions) in a ``block`` grid of masked cells.

    Positions past the grid's end (a photo padded to a stride) take its last cell.

    Returns
    -------
    (len(rows), len(cols)) bool array
    """
    r = np.minimum((np.asarray(rows) // block).astype(int), masked.shape[0] - 1)
    c = np.minimum((np.asarray(cols) // block).astype(int), masked.shape[1] - 1)
    return masked[np.ix_(r, c)]
