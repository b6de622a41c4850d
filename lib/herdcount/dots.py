"""Find the coloured dots that annotators painted on a copy of a survey photo.

Pure numpy/scipy: arrays in, arrays out. Coordinates are ``(row, col)``. Nothing about a
survey's dots is assumed: their size and the pair's JPEG noise are measured in each pair.

The recipe (``bench/extract.py`` measures it against the ``blob_log`` recipe of public kernels;
docs/results.md has the figures):

1. Measure the pair's JPEG noise (:func:`herdcount.dot_cells.noise_threshold`): a dot must change a pixel by
   twice its 99th percentile.
2. In horizontal strips that stay in cache, over every second row, take the largest
   per-channel absolute difference of the plain and dotted copies, threshold it, and
   reduce it to a coarse grid of ``block`` x ``block`` cells. The same pass marks the
   cells painted black in the dotted copy (masks: dark there, not in the plain copy).
3. Label the coarse cells that changed, outside the (slightly grown) masked cells.
   Each coarse component is a small crop holding one or a few dots.
4. Copy the crops, at full resolution, side by side onto one small canvas (at even
   coordinates, so its 2x2 blocks are JPEG's chroma blocks) and, in one pass over it,
   explain every changed pixel as the plain colour partly covered by one dot colour
   (``dotted = plain + a * (dot - plain)``): the class is the colour with the smallest
   residual on the pixel's 2x2 block, ``a`` the pixel's coverage. Pixels that fit only
   loosely count where they join one that fits well (hysteresis).
5. Label each class's pixels a pixel wider (touching dots of two colours stay two),
   measure each component's painted area and shape, take the photo's footprint (one
   dot's area) as the median area, and give each component ``round(area / footprint)``
   dots, its shape deciding the near tie between one and two (:func:`herdcount.dot_components.count_dots`).

Steps 1-3 live in :mod:`herdcount.dot_cells`, step 4 in :mod:`herdcount.dot_colours`, step 5
in :mod:`herdcount.dot_components`; this module runs them (:func:`find_dots`) and finds
the faint dots the coarse pass misses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from herdcount.dot_cells import (
    _EIGHT,
    _blackened,
    _check_pair,
    _coarse_maps,
    _crops,
    _grow,
    _pack,
    _squares,
    _squares_at,
    noise_threshold,
)
from herdcount.dot_colours import ColourStats
from herdcount.dot_components import _SPECK_AREA, _dots_in_crop


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
    footprint : float or None
        Painted area of one dot in pixels, as measured in this photo (or as given); None
        where the photo had too few dots to measure it.
    colours : ColourStats or None
        Colours of the dots' fully painted pixels, per class.
    threshold : int or None
        The change threshold used (``diff_threshold``, or the one set by the pair's noise).
    """

    coords: NDArray[np.float64]
    classes: NDArray[np.int64]
    masked: NDArray[np.bool_]
    block: int
    footprint: float | None = None
    colours: ColourStats | None = None
    threshold: int | None = None

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
    diff_threshold: int | None = None,
    pixel_threshold: int | None = None,
    colour_tolerance: float = 60.0,
    min_coverage: float = 0.45,
    dot_radius: float | None = None,
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
    diff_threshold : int or None, optional
        A dot needs a pixel where some channel differs by more than this. None (the
        default) sets it from the pair's JPEG noise, see :func:`noise_threshold`.
    pixel_threshold : int or None, optional
        Around such a pixel, pixels that differ by more than this are explained by dot
        colours; a lower value keeps dark dots on dark animals (brown on a pup) whole.
        None (the default): 0.6 times ``diff_threshold``.
    colour_tolerance : float, optional
        Largest RGB distance between a changed pixel and the line from its plain colour
        to a dot colour for the pixel to count towards that class.
    min_coverage : float, optional
        Least summed coverage of a dot, as a share of the footprint (one dot's area).
    dot_radius : float or None, optional
        Radius of the painted dots in pixels; None (the default) measures the footprint
        in this photo: the median area of its round same-colour components.
    black_level : int, optional
        A cell of the dotted copy is masked when most of its pixels in rows 0 and
        ``block // 2`` are darker than this in every channel, and brighter by as much in
        the plain copy; 0..127.
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
    if diff_threshold is None:
        diff_threshold = noise_threshold(plain, dotted, black_level=black_level)
    if not 0 < diff_threshold < 128:
        raise ValueError(f"diff_threshold must be in 1..127, got {diff_threshold}")
    if pixel_threshold is None:
        pixel_threshold = max(1, round(0.6 * diff_threshold))
    if not 0 < pixel_threshold <= diff_threshold:
        raise ValueError(f"pixel_threshold must be in 1..diff_threshold, got {pixel_threshold}")
    if block < 2 or block % 2:
        raise ValueError(f"block must be an even number of at least 2, got {block}")
    if not 0 <= black_level <= 127:
        raise ValueError(f"black_level must be in 0..127, got {black_level}")
    if dot_radius is not None and not dot_radius > 0:
        raise ValueError(f"dot_radius must be positive or None (measured), got {dot_radius}")

    changed, masked = _coarse_maps(plain, dotted, diff_threshold, black_level, block)
    # Grow the mask by one cell: JPEG leaves a fringe of changed, darkened pixels
    # around every black area that would otherwise look like brown dots.
    masked = _grow(masked)
    labels, _ = ndi.label(changed & ~masked, structure=_EIGHT)
    dot_area = None if dot_radius is None else float(np.pi * dot_radius**2)
    crops = _crops(labels, block, plain.shape)
    # One pass over all crops packed side by side, rather than a pass per crop: a
    # photo has hundreds of small crops and numpy's per-call cost would dominate.
    canvas_plain, canvas_dotted, origin = _pack(plain, dotted, crops)
    coords, classes, specks, footprint, stats = _dots_in_crop(
        canvas_plain,
        canvas_dotted,
        colours,
        pixel_threshold,
        colour_tolerance,
        min_coverage,
        dot_area,
        black_level,
    )
    coords, specks = (
        xy + origin[xy[:, 0].astype(int), xy[:, 1].astype(int)] if len(xy) else xy for xy in (coords, specks)
    )
    # A dot's change summed over its area stands out of the pixel noise (its 99th percentile,
    # half the threshold); a few noisy pixels that fit a colour do not. In a photo without
    # dots JPEG noise on textured ground made specks that passed for dots, and their median
    # for a footprint.
    radius = 1.5 if footprint is None else float(np.sqrt(footprint / np.pi))
    loud = _summed_length(plain, dotted, coords, max(2, round(radius))) > diff_threshold / 2
    coords, classes = coords.reshape(-1, 2)[loud], classes[loud]
    if footprint is not None:
        # Dots too faint per pixel are judged by their change summed over a dot's area,
        # which stands out of the pixel noise (its 99th percentile, half the threshold):
        # specks of the search above, where JPEG spread a small dot's colour thin (a
        # radius-2 dot at quality 70), and cells where the photo is nearly a dot's colour,
        # where a dot of it changes no pixel by the threshold (brown on a dark animal).
        floor = max(_SPECK_AREA, min_coverage * footprint)
        level = diff_threshold / 2
        found = [(coords, classes, np.zeros(len(coords)))]
        found.append(_judge_sums(plain, dotted, colours, specks, footprint, floor, level, black_level))
        near = _near_colour_cells(plain, colours, 2 * diff_threshold, block, changed.shape)
        faint = near & ~changed & ~masked
        if faint.any():
            found.append(
                _faint_dots(plain, dotted, colours, faint, block, footprint, floor, level, black_level)
            )
        coords, classes, score = (np.concatenate(parts) for parts in zip(*found))
        keep = _settle_summed(coords.reshape(-1, 2), score, float(np.sqrt(footprint / np.pi)))
        coords, classes = coords.reshape(-1, 2)[keep], classes[keep]
    if len(coords):
        order = np.lexsort((coords[:, 1], coords[:, 0]))
        coords, classes = coords[order], classes[order]
    return DotSearch(coords, classes.astype(np.int64), masked, block, footprint, stats, diff_threshold)


def _near_colour_cells(
    plain: np.ndarray, colours: np.ndarray, reach: float, block: int, shape: tuple[int, int]
) -> np.ndarray:
    """Cells whose centre pixel in ``plain`` lies within ``reach`` of some dot colour in
    every channel, on the coarse grid of ``shape``.

    A dot changes a pixel by at most its colour's distance from the pixel's, and JPEG keeps
    about half of that at a small dot's centre: a dot within twice the change threshold of
    the animal under it (brown on a dark animal) may change no pixel by the threshold. A
    lookup table of 32 levels per channel keeps this a gather over a pixel per cell.
    """
    centres = np.arange(32) * 8 + 3.5
    # Per class and channel the levels within reach; a colour is near a class when all
    # three of its channels are.
    within = np.abs(centres[None, None, :] - colours[:, :, None]) <= reach + 4  # (K, 3, 32)
    table = np.zeros((32, 32, 32), dtype=bool)
    for r, g, b in within:
        table |= r[:, None, None] & g[None, :, None] & b[None, None, :]
    sample = plain[block // 2 :: block, block // 2 :: block]
    # One index into the flat table: a single gather instead of three indexed axes.
    index = (sample[..., 0] >> 3).astype(np.uint16) << 10
    index |= (sample[..., 1] >> 3).astype(np.uint16) << 5
    index |= sample[..., 2] >> 3
    near = np.zeros(shape, dtype=bool)
    hit = np.take(table.ravel(), index)
    near[: hit.shape[0], : hit.shape[1]] = hit
    return near


#: Pixels beyond a dot's radius over which its change is summed to be judged: JPEG moves
#: part of a small dot's colour out of it, within its 8x8 block, and most of that within 2.
SMEAR = 2

#: Largest angle, as its sine, between the change summed over a faint dot and the line from
#: the animal's colour to the dot's: a dot's change is ``A * (dot - plain)`` up to noise.
FAINT_MISFIT = 0.5


def _faint_dots(
    plain: np.ndarray,
    dotted: np.ndarray,
    colours: np.ndarray,
    cells: np.ndarray,
    block: int,
    footprint: float,
    floor: float,
    level: float,
    black_level: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dots in ``cells`` too faint for the per-pixel threshold, found by their summed change.

    The change is summed over a square of about a dot's area around each pixel: averaging
    over the square keeps a dot's change and shrinks JPEG's pixel noise. Where its mean
    (RGB length) is a local maximum above ``level`` (the pixel noise's 99th percentile), the
    sum is fitted to each colour's line from the square's mean plain colour: a dot is where
    one colour explains the sum within :data:`FAINT_MISFIT` and paints ``floor`` to two
    footprints; a mask's edge is never a dot.

    Returns
    -------
    (N, 2) float64 array, (N,) int64 array, (N,) float64 array
        Photo coordinates ``(row, col)``, classes and the summed changes' lengths.
    """
    radius = float(np.sqrt(footprint / np.pi))
    half = max(1, round(radius))
    size = 2 * half + 1
    # Each cell with a cell's margin, as one stack of equal squares: a peak counts in the
    # cell its centre lies in, so neighbouring cells never report one dot twice.
    margin, width = block, 3 * block
    cell_rows, cell_cols = np.nonzero(cells)
    middle = cell_rows * block + block // 2, cell_cols * block + block // 2
    q, d = (_squares(image, *middle, width // 2, width) for image in (plain, dotted))
    # Box sums from an integral image: two cumulative sums and four slices for any size.
    integral = np.zeros((len(q), width + 1, width + 1, 3), dtype=np.int32)
    np.subtract(d, q, out=integral[:, 1:, 1:], dtype=np.int32)
    integral.cumsum(axis=1, out=integral)
    integral.cumsum(axis=2, out=integral)
    sums = integral[:, size:, size:] - integral[:, :-size, size:] - integral[:, size:, :-size]
    sums += integral[:, :-size, :-size]  # the box whose top-left is (r, c) is centred on (r + half, c + half)
    squared = (sums.astype(np.float32) ** 2).sum(axis=3)
    inner = slice(max(margin - half, 0), margin + block - half)
    n, r, c = np.nonzero(squared[:, inner, inner] > (level * size**2) ** 2)
    r, c = r + inner.start, c + inner.start
    none = np.zeros((0, 2)), np.zeros(0, dtype=np.int64), np.zeros(0)
    if not len(n):
        return none
    peak = squared[n, r, c] >= _squares_at(squared, n, r, c, half).max(axis=(1, 2))
    n, r, c = n[peak], r[peak] + half, c[peak] + half  # centres in the squares
    centres = np.column_stack([cell_rows[n] * block - margin + r, cell_cols[n] * block - margin + c])
    return _judge_sums(plain, dotted, colours, centres, footprint, floor, level, black_level)


def _summed_length(plain: np.ndarray, dotted: np.ndarray, centres: np.ndarray, half: int) -> np.ndarray:
    """Per centre (N, 2), the length per pixel of the change summed over the square ``half``
    pixels each side of it (edges repeated)."""
    centres = np.rint(centres).astype(np.int64).reshape(-1, 2)
    q, d = (_squares(image, centres[:, 0], centres[:, 1], half).astype(np.int32) for image in (plain, dotted))
    return np.linalg.norm((d - q).sum(axis=(1, 2)).astype(np.float64), axis=1) / (2 * half + 1) ** 2


def _judge_sums(
    plain: np.ndarray,
    dotted: np.ndarray,
    colours: np.ndarray,
    centres: np.ndarray,
    footprint: float,
    floor: float,
    level: float,
    black_level: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dots among candidate ``centres`` (N, 2) of the photo, judged by their summed change.

    A candidate is a dot when the change summed over a dot-sized square (``round(radius)``
    each side) is longer than ``level`` per pixel and the change summed :data:`SMEAR`
    pixels wider, where JPEG moved part of it, is one colour's (:func:`_fit_sums`); a
    square with a mask's edge in it is none, and one reaching past the photo's edge is not
    judged. Returns their centres (the centroids of the change along their colour), classes
    and the dot-sized sums' lengths.
    """
    radius = float(np.sqrt(footprint / np.pi))
    half = max(1, round(radius))
    wide = half + SMEAR
    centres = np.rint(centres).astype(np.int64).reshape(-1, 2)
    inside = ((centres >= wide) & (centres < np.array(plain.shape[:2]) - wide)).all(axis=1)
    centres = centres[inside]
    # The dot-sized sum first: most candidates (specks of JPEG noise) end there.
    length = _summed_length(plain, dotted, centres, half)
    strong = length > level
    centres, length = centres[strong], length[strong] * (2 * half + 1) ** 2
    q, d = (_squares(image, centres[:, 0], centres[:, 1], wide) for image in (plain, dotted))
    mean_plain = q.mean(axis=(1, 2))
    best, ok = _fit_sums((d.astype(np.float64) - q).sum(axis=(1, 2)), mean_plain, colours, floor, footprint)
    ok &= ~_blackened(q, d, black_level).any(axis=(1, 2))
    shift = _centroids(q[ok], d[ok], colours[best[ok]] - mean_plain[ok])
    return centres[ok] + shift, best[ok].astype(np.int64), length[ok]


def _centroids(plain: np.ndarray, dotted: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """Offsets from the centres of (N, S, S, 3) squares to the centroids of the change along
    each square's ``towards`` (N, 3): a box sum's peak lies where the box holds most of a
    dot, which JPEG's uneven smear and the animal's edge can move by a pixel or two."""
    v = towards.astype(np.float64)[:, None, None, :]
    cover = ((dotted.astype(np.float64) - plain) * v).sum(axis=3) / np.maximum((v * v).sum(axis=3), 1.0)
    cover = np.clip(cover, 0.0, 1.0)
    offsets = np.arange(plain.shape[1]) - (plain.shape[1] - 1) / 2
    weight = np.maximum(cover.sum(axis=(1, 2)), 1e-9)
    return (
        np.column_stack(
            [(cover.sum(axis=2) * offsets).sum(axis=1), (cover.sum(axis=1) * offsets).sum(axis=1)]
        )
        / weight[:, None]
    )


def _settle_summed(coords: np.ndarray, score: np.ndarray, radius: float) -> np.ndarray:
    """Indices of the dots to keep: every dot found by its pixels (``score`` 0) and those
    found by their summed change (``score`` the sum's length) that lie more than two radii
    and :data:`SMEAR` pixels from the former, and two radii from a stronger one of their
    own kind.

    What JPEG smeared out of a dot's pixels lies within its radius and :data:`SMEAR`, and
    is centred closer still; touching dots are two radii apart, so a faint dot touching
    one found by its pixels is lost with its smear.
    """
    summed = np.flatnonzero(score > 0)
    keep = np.flatnonzero(score == 0)
    if not len(summed):
        return keep
    if len(keep):
        far = (
            cKDTree(coords[keep]).query(coords[summed], distance_upper_bound=2 * radius + SMEAR)[0] == np.inf
        )
        summed = summed[far]
    taken: list[int] = []
    for i in summed[np.argsort(-score[summed], kind="stable")]:
        if all(np.hypot(*(coords[i] - coords[j])) >= 2 * radius for j in taken):
            taken.append(int(i))
    return np.concatenate([keep, np.asarray(taken, dtype=np.int64)])


def _fit_sums(
    total: np.ndarray, mean_plain: np.ndarray, colours: np.ndarray, floor: float, footprint: float
) -> tuple[np.ndarray, np.ndarray]:
    """For changes summed around N places, (N, 3) each, and the mean plain colours there:
    the colour whose line from the plain colour explains each sum best, among those that
    paint ``floor`` to two footprints, and whether it explains it within
    :data:`FAINT_MISFIT` (the sine of the angle between the sum and the line)."""
    total = np.asarray(total, dtype=np.float64)
    v = colours[None, :, :].astype(np.float64) - np.asarray(mean_plain, dtype=np.float64)[:, None, :]
    area = (total[:, None, :] * v).sum(axis=2) / np.maximum((v * v).sum(axis=2), 1.0)
    misfit = np.linalg.norm(total[:, None, :] - area[..., None] * v, axis=2)
    misfit /= np.maximum(np.linalg.norm(total, axis=1), 1e-9)[:, None]
    misfit = np.where((area >= floor) & (area <= 2 * footprint), misfit, np.inf)
    best = misfit.argmin(axis=1)
    return best, misfit[np.arange(len(best)), best] <= FAINT_MISFIT
