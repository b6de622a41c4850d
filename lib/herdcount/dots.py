"""Find the coloured dots that annotators painted on a copy of a survey photo.

Pure numpy/scipy: arrays in, arrays out. Coordinates are ``(row, col)``.

The recipe (see ``shared/DESIGN.md`` for why not ``blob_log``):

1. In horizontal strips that stay in cache, over every second row, take the largest
   per-channel absolute difference of the plain and dotted copies, threshold it, and
   reduce it to a coarse grid of ``block`` x ``block`` cells. The same pass marks the
   cells where the dotted copy is black (masked areas, which JPEG leaves near-black
   rather than zero).
2. Label the coarse cells that changed, outside the (slightly grown) masked cells.
   Each coarse component is a small window holding one or a few dots.
3. In each window, at full resolution, explain every changed pixel as the plain colour
   partly covered by one dot colour (``dotted = plain + a * (dot - plain)``): the class
   is the dot colour with the smallest residual, ``a`` is the pixel's coverage. Pixels
   of each class are labelled separately, so touching dots of two colours stay two dots;
   a component covering about ``k`` full discs is split into ``k`` dots.
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
        A cell of the dotted copy is masked when most of its pixels are darker than
        this in every channel.
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
    coords, classes = [], []
    for lab, window in enumerate(ndi.find_objects(labels), start=1):
        # Windows of neighbouring components may overlap: each keeps the pixels of its
        # own cells and of the unchanged cells around them, so no dot is found twice.
        window = tuple(slice(max(w.start - 1, 0), w.stop + 1) for w in window)
        cells = labels[window]
        own = cells == lab
        own |= (cells == 0) & ndi.binary_dilation(own, structure=_EIGHT)
        rows = slice(window[0].start * block, window[0].stop * block)
        cols = slice(window[1].start * block, window[1].stop * block)
        keep = np.kron(own, np.ones((block, block), dtype=bool))
        a, b = plain[rows, cols], dotted[rows, cols]
        keep = keep[: a.shape[0], : a.shape[1]]
        c, k = _dots_in_window(
            np.where(keep[..., None], a, b), b, colours,
            pixel_threshold, colour_tolerance, min_coverage * disc_area, disc_area,
        )  # fmt: skip
        if len(c):
            coords.append(c + np.array([rows.start, cols.start]))
            classes.append(k)
    if coords:
        all_coords = np.concatenate(coords)
        all_classes = np.concatenate(classes)
        order = np.lexsort((all_coords[:, 1], all_coords[:, 0]))
        all_coords, all_classes = all_coords[order], all_classes[order]
    else:
        all_coords, all_classes = np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    return DotSearch(all_coords, all_classes.astype(np.int64), masked, block)


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
    cell_widths = np.diff(np.append(col_starts, width))
    changed = np.zeros((len(np.arange(0, height, block)), len(col_starts)), dtype=bool)
    masked = np.zeros_like(changed)
    step = block * _STRIP_BLOCKS
    for top in range(0, height, step):
        # Every second row: a dot is at least 5 rows tall, so it keeps 2 or more rows here;
        # the windows of step 3 look at every pixel again.
        a = plain[top : top + step : 2]
        b = dotted[top : top + step : 2]
        row_starts = np.arange(0, len(a), block // 2)
        # uint8 absolute difference without widening: max - min per channel.
        diff = np.maximum(a, b)
        diff -= np.minimum(a, b)
        most = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])
        hit = _cell_reduce(most, np.maximum, block, row_starts, col_starts) > threshold
        bright = np.maximum(np.maximum(b[..., 0], b[..., 1]), b[..., 2])
        dark = _cell_reduce((bright < black_level).astype(np.int32), np.add, block, row_starts, col_starts)
        cell_heights = np.diff(np.append(row_starts, len(a)))
        area = cell_heights[:, None] * cell_widths[None, :]
        cells = slice(top // block, top // block + len(row_starts))
        changed[cells] = hit
        masked[cells] = 2 * dark > area
    return changed, masked


def _cell_reduce(values: np.ndarray, ufunc: np.ufunc, block: int, row_starts, col_starts) -> np.ndarray:
    """``ufunc`` over the cells of a strip of half-height rows (``block // 2`` rows by
    ``block`` columns). Whole cells go through a reshape, which numpy reduces with SIMD
    several times faster than ``reduceat``; a ragged last row or column of cells through
    ``reduceat``."""
    rows, cols = values.shape
    whole_rows, whole_cols = rows // (block // 2), cols // block
    if whole_rows == len(row_starts) and whole_cols == len(col_starts):
        cells = values.reshape(whole_rows, block // 2, whole_cols, block)
        return ufunc.reduce(ufunc.reduce(cells, axis=1), axis=2)
    return ufunc.reduceat(ufunc.reduceat(values, col_starts, axis=1), row_starts, axis=0)


def _dots_in_window(
    plain: np.ndarray,
    dotted: np.ndarray,
    colours: np.ndarray,
    threshold: int,
    tolerance: float,
    min_cover: float,
    disc_area: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Dots of one small window: (N, 2) centres relative to the window, (N,) classes."""
    cover, klass = classify_pixels(plain, dotted, colours, diff_threshold=threshold,
                                   colour_tolerance=tolerance)  # fmt: skip
    coords, classes = [], []
    for k in np.unique(klass[klass >= 0]):
        weight = np.where(klass == k, cover, 0.0)
        labels, n = ndi.label(weight > 0, structure=_EIGHT)
        if n == 0:
            continue
        index = np.arange(1, n + 1)
        total = ndi.sum_labels(weight, labels, index)
        for lab in index[total >= min_cover]:
            coords.extend(_split_component(weight, labels == lab, total[lab - 1] / disc_area))
            classes.extend([k] * (len(coords) - len(classes)))
    return np.asarray(coords, dtype=np.float64).reshape(-1, 2), np.asarray(classes, np.int64)


def _split_component(weight: np.ndarray, member: np.ndarray, discs: float) -> list[np.ndarray]:
    """Centres of a same-colour component that covers ``discs`` full dots' worth of pixels."""
    rows, cols = np.nonzero(member)
    w = weight[rows, cols]
    points = np.column_stack([rows, cols]).astype(np.float64)
    # A lone dot varies by about +-30% in coverage under JPEG noise; 1.6 discs is two dots.
    n = max(1, int(discs + 0.4))
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
    plain = np.asarray(plain, dtype=np.float32)
    dotted = np.asarray(dotted, dtype=np.float32)
    colours = np.asarray(colours, dtype=np.float32)
    coverage = np.zeros(plain.shape[:2], dtype=np.float32)
    classes = np.full(plain.shape[:2], -1, dtype=np.int64)
    changed = np.abs(dotted - plain).max(axis=2) > diff_threshold
    if not changed.any():
        return coverage, classes
    q = plain[changed]  # (N, 3)
    delta = dotted[changed] - q
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

    A cell is masked when most of its pixels are darker than ``black_level`` in every
    channel, as in :func:`find_dots`. Animals under such areas were never dotted, so
    training excludes them from its loss and validation from its counts.

    Returns
    -------
    (ceil(H / block), ceil(W / block)) bool array
    """
    dotted = np.asarray(dotted)
    if dotted.ndim != 3 or dotted.shape[2] != 3:
        raise ValueError(f"dotted must be an (H, W, 3) RGB array, got shape {dotted.shape}")
    if block < 1:
        raise ValueError(f"block must be positive, got {block}")
    height, width = dotted.shape[:2]
    dark = (dotted.max(axis=2) < black_level).astype(np.int32)
    rows, cols = np.arange(0, height, block), np.arange(0, width, block)
    counts = np.add.reduceat(np.add.reduceat(dark, rows, axis=0), cols, axis=1)
    area = np.diff(np.append(rows, height))[:, None] * np.diff(np.append(cols, width))[None, :]
    return ndi.binary_dilation(2 * counts > area, structure=_EIGHT)


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
