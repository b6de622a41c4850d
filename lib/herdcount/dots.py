"""Find the coloured dots that annotators painted on a copy of a survey photo.

Pure numpy/scipy: arrays in, arrays out. Coordinates are ``(row, col)``. Nothing about a
survey's dots is assumed: their size and the pair's JPEG noise are measured in each pair.

The recipe (``bench/extract.py`` measures it against the ``blob_log`` recipe of public kernels;
docs/results.md has the figures):

1. Measure the pair's JPEG noise (:func:`noise_threshold`): a dot must change a pixel by
   twice its 99th percentile.
2. In horizontal strips that stay in cache, over every second row, take the largest
   per-channel absolute difference of the plain and dotted copies, threshold it, and
   reduce it to a coarse grid of ``block`` x ``block`` cells. The same pass marks the
   cells painted black in the dotted copy (masks: dark there, not in the plain copy).
3. Label the coarse cells that changed, outside the (slightly grown) masked cells.
   Each coarse component is a small window holding one or a few dots.
4. Copy the windows, at full resolution, side by side onto one small canvas (at even
   coordinates, so its 2x2 blocks are JPEG's chroma blocks) and, in one pass over it,
   explain every changed pixel as the plain colour partly covered by one dot colour
   (``dotted = plain + a * (dot - plain)``): the class is the colour with the smallest
   residual on the pixel's 2x2 block, ``a`` the pixel's coverage. Pixels that fit only
   loosely count where they join one that fits well (hysteresis).
5. Label each class's pixels a pixel wider (touching dots of two colours stay two),
   measure each component's painted area and shape, take the photo's footprint (one
   dot's area) as the median area, and give each component ``round(area / footprint)``
   dots, its shape deciding the near tie between one and two (:func:`count_dots`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage as ndi
from scipy.cluster.vq import kmeans2
from scipy.spatial import cKDTree

_EIGHT = np.ones((3, 3), dtype=bool)
_STRIP_BLOCKS = 8


@dataclass(frozen=True)
class ColourStats:
    """Sums over the fully painted pixels of dots, per class, that pool over photos.

    Attributes
    ----------
    pixels : (K,) float64 array
        Number of pixels per class.
    total, squares : (K, 3) float64 arrays
        Sums of their RGB values and of the squares.
    """

    pixels: NDArray[np.float64]
    total: NDArray[np.float64]
    squares: NDArray[np.float64]

    @classmethod
    def empty(cls, n_classes: int) -> ColourStats:
        """No pixels of any of ``n_classes`` classes."""
        return cls(np.zeros(n_classes), np.zeros((n_classes, 3)), np.zeros((n_classes, 3)))

    def __add__(self, other: ColourStats) -> ColourStats:
        return ColourStats(self.pixels + other.pixels, self.total + other.total, self.squares + other.squares)

    @property
    def mean(self) -> NDArray[np.float64]:
        """(K, 3) mean colour per class; NaN for a class with no pixel."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.total / self.pixels[:, None]

    @property
    def std(self) -> NDArray[np.float64]:
        """(K, 3) standard deviation per class and channel; NaN for a class with no pixel."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.maximum(self.squares / self.pixels[:, None] - self.mean**2, 0.0))

    def to_dict(self) -> dict[str, list]:
        """Plain lists, for JSON."""
        return {
            "pixels": self.pixels.tolist(),
            "total": self.total.tolist(),
            "squares": self.squares.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> ColourStats:
        """The inverse of :meth:`to_dict`."""
        return cls(*(np.asarray(data[k], dtype=np.float64) for k in ("pixels", "total", "squares")))


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
    windows = _windows(labels, block, plain.shape)
    # One pass over all windows packed side by side, rather than a pass per window: a
    # photo has hundreds of small windows and numpy's per-call cost would dominate.
    canvas_plain, canvas_dotted, origin = _pack(plain, dotted, windows)
    coords, classes, specks, footprint, stats = _dots_in_window(
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
        own |= (cells == 0) & _grow(own)
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
    # Windows start at even photo coordinates (cell corners) and are placed at even canvas
    # ones, so the canvas's 2x2 blocks are the photo's: JPEG's chroma blocks.
    for i in sorted(range(len(windows)), key=lambda i: -sizes[i][0]):
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
        top, left, keep = windows[i]
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


@dataclass(frozen=True)
class Components:
    """Same-colour components of classified pixels, with the moments that describe their shape.

    Attributes
    ----------
    klass : (N,) int64 array
        Class of each component.
    area : (N,) float64 array
        Summed coverage: the painted area in pixels.
    centre : (N, 2) float64 array
        Coverage-weighted centre ``(row, col)``.
    spread : (N, 2) float64 array
        Eigenvalues (largest first) of the coverage-weighted covariance of pixel positions:
        a disc of radius ``r`` has ``(r**2 / 4, r**2 / 4)``, two touching discs
        ``(5 r**2 / 4, r**2 / 4)``.
    """

    klass: NDArray[np.int64]
    area: NDArray[np.float64]
    centre: NDArray[np.float64]
    spread: NDArray[np.float64]


def measure_components(
    cover: np.ndarray, klass: np.ndarray, strong: np.ndarray | None = None
) -> tuple[Components, np.ndarray]:
    """The same-colour components of a classification, and their label image.

    Pixels are joined a pixel wider than they touch: JPEG's 2x2 chroma blocks break small
    dots into rings and pieces a pixel apart, which are one dot. ``cover`` is rescaled in
    place to each component's peak coverage. With ``strong``, hysteresis: the pixels of a
    component without a strong pixel are unclassified in place (``klass`` -1, ``cover`` 0)
    and the component keeps an area of 0. JPEG smears a small or faint dot, pulling edge and
    even centre pixels off the line from plain to dot colour: such pixels count where they
    join a pixel that fits well, as weak edges do in Canny's detector, and are noise elsewhere.

    Returns
    -------
    Components
        One entry per component.
    (H, W) int64 array
        Component ``i`` (0-based) is labelled ``i + 1``; 0 elsewhere.
    """
    painted = klass >= 0
    # One labelling for all classes, then split by class: a component is a (blob, class) pair.
    blobs, _ = ndi.label(_grow(painted), structure=_EIGHT)
    rows, cols = np.nonzero(painted)
    n_classes = int(klass.max()) + 1 if len(rows) else 1
    keys, comp = np.unique(blobs[rows, cols] * n_classes + klass[rows, cols], return_inverse=True)
    comp = comp.ravel()
    n = len(keys)
    labels = np.zeros(klass.shape, dtype=np.int64)
    labels[rows, cols] = comp + 1
    if strong is not None and n:
        seeded = np.zeros(n, dtype=bool)
        seeded[comp[strong[rows, cols]]] = True
        lost = ~seeded[comp]
        klass[rows[lost], cols[lost]], cover[rows[lost], cols[lost]], labels[rows[lost], cols[lost]] = (
            -1,
            0.0,
            0,
        )
        rows, cols, comp = rows[~lost], cols[~lost], comp[~lost]
    r, c = rows.astype(np.float64), cols.astype(np.float64)
    w = cover[rows, cols].astype(np.float64)
    # Coverage relative to the component's own peak: a dot whose colour drifted towards
    # the animal under it sits part-way to the scheme's colour even where fully painted.
    peak = np.zeros(n)
    np.maximum.at(peak, comp, w)
    w = w / np.maximum(peak[comp], 1e-9)
    cover[rows, cols] = w
    sums = [np.bincount(comp, v, n) for v in (w, w * r, w * c, w * r * r, w * c * c, w * r * c)]
    total = np.maximum(sums[0], 1e-9)
    mr, mc = sums[1] / total, sums[2] / total
    vr, vc, vrc = sums[3] / total - mr**2, sums[4] / total - mc**2, sums[5] / total - mr * mc
    half, gap = (vr + vc) / 2, np.sqrt(((vr - vc) / 2) ** 2 + vrc**2)
    spread = np.maximum(np.column_stack([half + gap, half - gap]), 0.0)
    return Components((keys % n_classes).astype(np.int64), sums[0], np.column_stack([mr, mc]), spread), labels


def dot_footprint(components: Components, *, min_components: int = 3) -> float | None:
    """The painted area of one dot: the median area of the components that are not specks.

    Most dots stand alone, so the median is a lone dot's area whatever radius the
    annotators' tool drew, as long as fewer than half the components are merged dots or
    fragments. Specks of JPEG noise, often the majority, cover a pixel or two once
    normalised to their peak; a dot of the smallest radius worth finding (1.5 px) paints
    7. None when fewer than ``min_components`` components remain.
    """
    area = components.area[components.area >= _SPECK_AREA]
    return float(np.median(area)) if len(area) >= min_components else None


#: Components of less painted area are specks, never dots, whatever the annotation style.
_SPECK_AREA = 4.0


def count_dots(components: Components, footprint: float | None) -> NDArray[np.int64]:
    """How many dots each component holds: the number of footprints in its area.

    Where that is a near tie between one and two (1.35 to 1.65 footprints), or where no
    footprint was measured (a photo with few dots; the radius then comes from the
    component's width), the shape decides: two dots when the centres of its two
    halves, ``2 * sqrt(spread[0] - spread[1])`` apart, are at least 1.5 dot radii apart
    (touching dots: 2 radii; a lone dot smeared by JPEG: well under 1.5).
    """
    if footprint is None:
        # Across its long axis a row of touching discs is as wide as one: spread r**2 / 4.
        radius = 2 * np.sqrt(components.spread[:, 1])
        ties = np.ones(len(components.area), dtype=bool)
        by_area = np.ones(len(components.area), dtype=np.int64)
    else:
        radius = np.full(len(components.area), np.sqrt(footprint / np.pi))
        ratio = components.area / footprint
        ties = (ratio >= 1.35) & (ratio < 1.65)
        by_area = np.maximum(1, np.floor(ratio + 0.5)).astype(np.int64)
    separation = 2 * np.sqrt(np.maximum(components.spread[:, 0] - components.spread[:, 1], 0.0))
    by_shape = np.where(separation >= 1.5 * radius, 2, 1)
    return np.where(ties, by_shape, by_area).astype(np.int64)


#: Pixels that fit a dot colour within this many times the tolerance count where they join a
#: pixel that fits within it: see :func:`measure_components`.
WEAK = 1.6


def _dots_in_window(
    plain: np.ndarray,
    dotted: np.ndarray,
    colours: np.ndarray,
    threshold: int,
    tolerance: float,
    min_coverage: float,
    dot_area: float | None,
    black_level: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | None, ColourStats]:
    """Dots of a window (or a canvas of windows): (N, 2) centres relative to it, (N,) classes,
    the (M, 2) centres of specks (components holding no dot, to be judged by their summed
    change: :func:`_judge_sums`), the footprint used (``dot_area``, or the one measured here) and the dots' colours."""
    cover, klass, strong = _classify(
        plain, dotted, colours, threshold, tolerance, 0.3, WEAK * tolerance, True, black_level
    )
    comps, labels = measure_components(cover, klass, strong)
    # After measure_components, whose coverage is relative to each dot's peak: a dot drawn
    # off the scheme's colour is fully painted at its centre all the same.
    stats = _core_colours(dotted, cover, klass, len(colours))
    footprint = dot_area if dot_area is not None else dot_footprint(comps)
    # Specks below a share of a dot are JPEG noise or the fringe of a dot of another colour.
    floor = max(_SPECK_AREA, min_coverage * footprint) if footprint is not None else _SPECK_AREA
    n_dots = np.where(comps.area >= floor, count_dots(comps, footprint), 0)
    n_dots = _drop_rims(comps, n_dots, footprint)
    if footprint is not None:
        klass = _colour_by_sums(plain, dotted, colours, comps, labels, n_dots, footprint, floor, tolerance)
        comps = Components(klass, comps.area, comps.centre, comps.spread)
    coords = [comps.centre[(n_dots == 1)]]
    classes = [comps.klass[(n_dots == 1)]]
    many = np.flatnonzero(n_dots > 1)
    boxes = ndi.find_objects(labels) if len(many) else []
    for i in many:
        box = boxes[i]
        member = labels[box] == i + 1
        centres = _split_component(np.where(member, cover[box], 0.0), member, int(n_dots[i]))
        if footprint is not None:
            centres = _merge_close(centres, 1.5 * np.sqrt(footprint / np.pi))
        coords.append(np.asarray(centres) + (box[0].start, box[1].start))
        classes.append(np.full(len(centres), comps.klass[i]))
    specks = comps.centre[(n_dots == 0) & (comps.area > 0)]
    return (
        np.concatenate(coords).reshape(-1, 2),
        np.concatenate(classes).astype(np.int64),
        specks,
        footprint,
        stats,
    )


def _colour_by_sums(
    plain: np.ndarray,
    dotted: np.ndarray,
    colours: np.ndarray,
    comps: Components,
    labels: np.ndarray,
    n_dots: np.ndarray,
    footprint: float,
    floor: float,
    tolerance: float,
) -> NDArray[np.int64]:
    """The classes of the components, those holding one dot (``n_dots``) judged again by the
    colour of the change summed around each.

    JPEG keeps a block's mean colour best and its detail worst: at quality 70-80 a dot of
    radius 2 loses most of its colour per pixel (a blue dot decodes as a dark grey spot,
    which fits brown best) while the colour it added to the pixels around it, summed, still
    points from the animal's colour to the dot's. Summed over a square of 1.5 dot radii
    each side of the centre, leaving out the pixels of other dots (a touching dot's colour
    is its own; a rim or speck of this dot's change is kept), the change is
    ``A * (dot - plain)`` with ``A`` the painted area. The class is the colour whose line fits that sum best among those that paint ``floor`` to
    two footprints (a colour close to the animal's explains any change at a large area, and
    no lone dot paints two footprints), where that fit is within ``tolerance`` per pixel.
    """
    klass = comps.klass.copy()
    judge = np.flatnonzero(n_dots == 1)
    if not len(judge):
        return klass
    half = max(2, round(1.5 * float(np.sqrt(footprint / np.pi))))
    centre = np.rint(comps.centre[judge]).astype(np.int64)
    own, q, d = (_squares(image, centre[:, 0], centre[:, 1], half) for image in (labels, plain, dotted))
    elsewhere = np.concatenate([[0], n_dots])[own] > 0
    keep = (~elsewhere | (own == judge[:, None, None] + 1)).astype(np.float64)[..., None]
    q = q.astype(np.float64)
    total = ((d.astype(np.float64) - q) * keep).sum(axis=(1, 2))  # (N, 3)
    qbar = (q * keep).sum(axis=(1, 2)) / np.maximum(keep.sum(axis=(1, 2)), 1.0)
    v = colours[None, :, :].astype(np.float64) - qbar[:, None, :]  # (N, K, 3)
    area = np.minimum(
        (total[:, None, :] * v).sum(axis=2) / np.maximum((v * v).sum(axis=2), 1.0), 2 * footprint
    )
    misfit = np.linalg.norm(total[:, None, :] - area[..., None] * v, axis=2)
    misfit = np.where(area >= floor, misfit, np.inf)
    best = misfit.argmin(axis=1)
    pick = np.arange(len(judge))
    sure = misfit[pick, best] <= tolerance * area[pick, best]
    klass[judge[sure]] = best[sure]
    return klass


def _drop_rims(comps: Components, n_dots: np.ndarray, footprint: float | None) -> np.ndarray:
    """``n_dots`` with the lesser of two one-dot components of different classes whose
    centres lie within 1.5 dot radii set to 0.

    Two dots never share a centre (touching dots of two classes are two radii apart or
    more), but a dot's anti-aliased rim, mixed with a dark animal by JPEG, can fit another
    colour (red or green over a dark body reads as brown) and ring the dot, or one side of
    it, with a component of its own, whose centre lies within the dot's outline (a radius
    and a pixel away at most). Halfway between the two, 1.5 radii, tells them apart at any
    radius.
    """
    lone = np.flatnonzero(n_dots == 1)
    if len(lone) < 2:
        return n_dots
    radius = np.sqrt(footprint / np.pi) if footprint is not None else 2 * np.sqrt(comps.spread[lone, 1]).max()
    n_dots = n_dots.copy()
    for a, b in cKDTree(comps.centre[lone]).query_pairs(1.5 * radius):
        i, j = lone[a], lone[b]
        if comps.klass[i] != comps.klass[j]:
            n_dots[i if comps.area[i] < comps.area[j] else j] = 0
    return n_dots


def _merge_close(centres: list[np.ndarray], distance: float) -> list[np.ndarray]:
    """Centres with any two closer than ``distance`` merged into their mean.

    A split by area can cut one dot in two where JPEG blurred a small dot over more than its
    share of pixels; two dots of one class are at least two radii apart (touching), so
    halves closer than 1.5 radii are one dot.
    """
    centres = [np.asarray(c, dtype=float) for c in centres]
    while len(centres) > 1:
        pairs = [
            (np.hypot(*(a - b)), i, j) for i, a in enumerate(centres) for j, b in enumerate(centres) if i < j
        ]
        gap, i, j = min(pairs)
        if gap >= distance:
            break
        centres[i] = (centres[i] + centres[j]) / 2
        del centres[j]
    return centres


def _split_component(weight: np.ndarray, member: np.ndarray, n: int) -> list[np.ndarray]:
    """Centres of ``n`` dots merged into one same-colour component: k-means over its
    strongly painted pixels, each centre weighted by coverage."""
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


def _core_colours(dotted: np.ndarray, cover: np.ndarray, klass: np.ndarray, n_classes: int) -> ColourStats:
    """Colour sums of the fully painted pixels per class: what the annotators' tool drew,
    after JPEG, free of the background that partly covered edge pixels mix in."""
    rows, cols = np.nonzero(cover >= 0.9)
    k = klass[rows, cols]
    rgb = dotted[rows, cols].astype(np.float64)
    pixels = np.bincount(k, minlength=n_classes).astype(np.float64)
    total = np.stack([np.bincount(k, rgb[:, c], n_classes) for c in range(3)], axis=1)
    squares = np.stack([np.bincount(k, rgb[:, c] ** 2, n_classes) for c in range(3)], axis=1)
    return ColourStats(pixels, total, squares)


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
    coverage, classes, _ = _classify(
        plain, dotted, colours, diff_threshold, colour_tolerance, min_alpha, colour_tolerance
    )
    return coverage, classes


def _classify(
    plain: ArrayLike,
    dotted: ArrayLike,
    colours: ArrayLike,
    diff_threshold: int,
    colour_tolerance: float,
    min_alpha: float,
    weak_tolerance: float,
    chroma_blocks: bool = False,
    black_level: int = 0,
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.bool_]]:
    """:func:`classify_pixels` with hysteresis: pixels that fit a colour only within the
    looser ``weak_tolerance`` are classified too, and the third array marks the strong ones,
    which fit within ``colour_tolerance``. With ``chroma_blocks`` the class is decided on
    the pixel's 2x2 block. Pixels of ``dotted`` darker than ``black_level`` in every channel
    are never classified."""
    plain, dotted = np.asarray(plain), np.asarray(dotted)
    colours = np.asarray(colours, dtype=np.float32)
    coverage = np.zeros(plain.shape[:2], dtype=np.float32)
    classes = np.full(plain.shape[:2], -1, dtype=np.int64)
    strong = np.zeros(plain.shape[:2], dtype=bool)
    if plain.dtype == dotted.dtype == np.uint8:
        diff = np.maximum(plain, dotted)
        diff -= np.minimum(plain, dotted)
    else:
        diff = np.abs(dotted.astype(np.float32) - plain.astype(np.float32))
    # Channel by channel: numpy's max over a last axis of length 3 is several times slower.
    largest = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])
    changed = largest > diff_threshold
    if black_level:
        # Black is the masks' colour, never a dot's: slivers of a mask too thin for its grid
        # of cells, with their JPEG fringe, would otherwise pass for dark brown paint.
        changed &= np.maximum(np.maximum(dotted[..., 0], dotted[..., 1]), dotted[..., 2]) >= black_level
    if not changed.any():
        return coverage, classes, strong
    # Only the few changed pixels in floating point.
    rows, cols = np.nonzero(changed)
    q = plain[rows, cols].astype(np.float32)  # (N, 3)
    delta = dotted[rows, cols].astype(np.float32) - q
    if chroma_blocks:
        # JPEG averages colour over 2x2 blocks: a small dot's colour spreads over its blocks
        # and a pixel alone no longer lies on the line to the dot's colour, but the block's
        # mean does. The class is decided on block means, the coverage per pixel.
        top, left = rows - rows % 2, cols - cols % 2
        down, right = np.minimum(top + 1, plain.shape[0] - 1), np.minimum(left + 1, plain.shape[1] - 1)
        corners = [(top, left), (top, right), (down, left), (down, right)]
        qb = sum(plain[r, c].astype(np.float32) for r, c in corners) / 4
        db = sum(dotted[r, c].astype(np.float32) for r, c in corners) / 4
        best, least, alpha_b = _fit(qb, db - qb, colours)
        v_best = colours[best] - q
        alpha_px = (delta * v_best).sum(axis=1) / np.maximum((v_best * v_best).sum(axis=1), 1.0)
        ok = (least <= weak_tolerance) & (np.maximum(alpha_b, alpha_px) >= min_alpha)
        cover = np.clip(alpha_px, 0.0, 1.0)
    else:
        best, least, alpha_px = _fit(q, delta, colours)
        ok = (least <= weak_tolerance) & (alpha_px >= min_alpha)
        cover = np.clip(alpha_px, 0.0, 1.0)
    coverage[changed] = np.where(ok, cover, 0.0)
    classes[changed] = np.where(ok, best, -1)
    strong[changed] = ok & (least <= colour_tolerance)
    return coverage, classes, strong


def _fit(q: np.ndarray, delta: np.ndarray, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel, the dot colour whose line from ``q`` best explains ``delta``: its index,
    the residual distance and the (unclipped) coverage."""
    v = colours[None, :, :] - q[:, None, :]  # (N, K, 3)
    vv = np.maximum((v * v).sum(axis=2), 1.0)
    alpha = (delta[:, None, :] * v).sum(axis=2) / vv
    residual = np.linalg.norm(delta[:, None, :] - np.clip(alpha, 0.0, 1.0)[..., None] * v, axis=2)
    best = residual.argmin(axis=1)
    idx = np.arange(len(best))
    return best, residual[idx, best], alpha[idx, best]


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
