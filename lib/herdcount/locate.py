"""Where the animals are: one point per counted animal, from density maps or classified patches.

Pure numpy/scipy. Points are ``(row, col)`` inside arrays; the count job writes them as
``x, y`` (column, row) where its file formats ask.

From a density map, per class (:func:`density_points`):

1. The animals sit at the map's local maxima (3x3 cells): each dot was learned as a
   Gaussian of about one cell, so an animal is a peak, and two animals of one class lie
   further apart than that.
2. Every cell with density belongs to its nearest peak within ``reach`` cells; a peak's
   mass is the density it gathers: about 1 for one animal, 2 for two animals too close
   for two peaks, 0.3 for a faint response.
3. The class's number of points is its rounded count (the photo's row of submission.csv),
   shared out over the peaks by their masses: each peak gets the whole animals its mass
   holds, and the remaining points go to the largest remainders (Hamilton's method). So
   points and counts always agree, and a faint peak becomes a point only where the count
   says an animal is missing.
4. A point lies at the density-weighted centre of its peak's 3x3 cells (a peak of two
   points: the two centres of a weighted 2-means over its cells), and scores its peak's mass
   per point, at most 1.

From classified patches (:func:`patch_points`): each patch whose highest score is an
animal class is a point at the patch's centre, scored by that score; patches that overlap
(a stride below the patch size) keep, per class, the best-scored patches at least half a
patch apart, as many as the rounded count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage as ndi
from scipy.spatial import cKDTree


@dataclass(frozen=True, eq=False)
class Points:
    """Animals found in one photo.

    Attributes
    ----------
    coords : (N, 2) float64 array
        Positions ``(row, col)`` in pixels.
    classes : (N,) int64 array
        Class indices.
    scores : (N,) float64 array
        How surely each point is an animal, in [0, 1].
    """

    coords: NDArray[np.float64]
    classes: NDArray[np.int64]
    scores: NDArray[np.float64]

    @classmethod
    def empty(cls) -> Points:
        """No points."""
        return cls(np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0))

    def __len__(self) -> int:
        return len(self.classes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Points):
            return NotImplemented
        return all(
            np.array_equal(a, b)
            for a, b in zip(
                (self.coords, self.classes, self.scores), (other.coords, other.classes, other.scores)
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def counts(self, n_classes: int) -> NDArray[np.int64]:
        """Points per class."""
        return np.bincount(self.classes, minlength=n_classes)[:n_classes].astype(np.int64)

    def resized(self, factor_row: float, factor_col: float) -> Points:
        """The points of a photo resized by these factors, in the original photo's pixels
        (pixel centres map to pixel centres: ``(u + 0.5) / f - 0.5``)."""
        factor = np.array([factor_row, factor_col])
        return Points((self.coords + 0.5) / factor - 0.5, self.classes, self.scores)

    def to_dict(self) -> dict[str, list]:
        """Columns for JSON: ``x`` (column) and ``y`` (row) to a tenth of a pixel, ``class``
        and ``score`` to three decimals."""
        return {
            "x": np.round(self.coords[:, 1], 1).tolist(),
            "y": np.round(self.coords[:, 0], 1).tolist(),
            "class": self.classes.tolist(),
            "score": np.round(self.scores, 3).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> Points:
        """The inverse of :meth:`to_dict`."""
        coords = np.column_stack([data["y"], data["x"]]).astype(np.float64).reshape(-1, 2)
        return cls(coords, np.asarray(data["class"], np.int64), np.asarray(data["score"], np.float64))


#: Cells of density a chunk's peaks need around it: ``2 * reach + 1`` for the default reach
#: of 3 (see :func:`density_peaks`).
PEAK_CONTEXT = 7

#: Peaks gathering less density than this never become points (a point needs a share of an
#: animal); leaving them out keeps a raster's chunks' records small.
MIN_PEAK_MASS = 0.02


@dataclass(frozen=True, eq=False)
class Peaks:
    """A density map's peaks, before the points are shared out over them.

    What a raster's chunk records, so that the raster's points can be shared out over all
    its chunks' peaks at once (:func:`peak_points`), exactly as over one map of the whole.

    Attributes
    ----------
    classes : (N,) int64 array
        Class of each peak.
    mass : (N,) float64 array
        Density it gathers.
    places : list of dict
        Per peak, its points' positions ``(row, col)`` in pixels for the shares it can get:
        ``{1: [[r, c]], 2: [[r, c], [r, c]], ...}`` for 1, ``floor(mass)`` and
        ``floor(mass) + 1`` points.
    """

    classes: NDArray[np.int64]
    mass: NDArray[np.float64]
    places: list[dict[int, NDArray[np.float64]]]

    @classmethod
    def concat(cls, parts: list[Peaks]) -> Peaks:
        """The peaks of several maps (a raster's chunks) as one set."""
        return cls(
            np.concatenate([np.zeros(0, np.int64), *(p.classes for p in parts)]),
            np.concatenate([np.zeros(0), *(p.mass for p in parts)]),
            [place for p in parts for place in p.places],
        )

    def shifted(self, by: ArrayLike) -> Peaks:
        """The same peaks with positions moved by ``(rows, cols)`` pixels."""
        by = np.asarray(by, np.float64)
        return Peaks(self.classes, self.mass, [{k: v + by for k, v in p.items()} for p in self.places])

    def to_dict(self) -> dict[str, list]:
        """Columns for JSON: positions to a tenth of a pixel, masses to four decimals."""
        return {
            "class": self.classes.tolist(),
            "mass": np.round(self.mass, 4).tolist(),
            "places": [{str(k): np.round(v, 1).tolist() for k, v in p.items()} for p in self.places],
        }

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> Peaks:
        """The inverse of :meth:`to_dict`."""
        return cls(
            np.asarray(data["class"], np.int64),
            np.asarray(data["mass"], np.float64),
            [
                {int(k): np.asarray(v, np.float64).reshape(-1, 2) for k, v in p.items()}
                for p in data["places"]
            ],
        )


def density_points(
    density: ArrayLike,
    *,
    stride: int,
    counts: ArrayLike | None = None,
    reach: float = 3.0,
) -> Points:
    """One point per animal of a per-class density map (see the module's docstring).

    Parameters
    ----------
    density : (H, W, K) array_like
        Density per output cell and class; cell ``(i, j)`` covers pixels ``stride * i`` to
        ``stride * i + stride - 1``, and a dot at pixel ``p`` peaks in the cell whose centre
        ``stride * (i + 0.5)`` is nearest.
    stride : int
        Pixels per cell side.
    counts : (K,) array_like, optional
        Points per class; default: the map's sums, rounded to non-negative integers.
    reach : float, optional
        Cells farther than this from every peak give no peak their mass.

    Returns
    -------
    Points
        In pixels of the map's photo.
    """
    density = np.asarray(density, dtype=np.float64)
    if density.ndim != 3:
        raise ValueError(f"density must be an (H, W, K) array, got shape {density.shape}")
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    n_classes = density.shape[2]
    wanted = np.rint(np.maximum(density.sum(axis=(0, 1)) if counts is None else counts, 0)).astype(int)
    if wanted.shape != (n_classes,):
        raise ValueError(f"counts must hold one number per class ({n_classes}), got shape {wanted.shape}")
    return peak_points(density_peaks(density, stride=stride, reach=reach, counts=wanted), wanted)


def density_peaks(
    density: ArrayLike,
    *,
    stride: int,
    reach: float = 3.0,
    keep: tuple[int, int, int, int] | None = None,
    counts: ArrayLike | None = None,
) -> Peaks:
    """The peaks of a per-class density map and the density each gathers (steps 1 and 2 of
    the module's docstring), with the positions of 1, ``floor(mass)`` and ``floor(mass) + 1``
    points at each.

    Parameters
    ----------
    density : (H, W, K) array_like
        As :func:`density_points`.
    stride : int
        Pixels per cell side.
    reach : float, optional
        Cells farther than this from every peak give no peak their mass.
    keep : (top, left, bottom, right) of ints, optional
        Only the peaks in these cells. A chunk of a raster passes its own cells and a map
        ``2 * reach + 1`` cells larger on every side: its peaks then gather exactly what they
        gather in the map of the whole raster (every cell within ``reach`` of them, and every
        peak that could be nearer to such a cell, with its neighbours).
    counts : (K,) array_like of ints, optional
        When the points per class are known already (one photo's map), only the positions
        of the share each peak gets (:func:`peak_points` with the same counts) are worked out.

    Returns
    -------
    Peaks
        Positions in pixels of the map; peaks of less than :data:`MIN_PEAK_MASS` left out.
    """
    density = np.asarray(density, dtype=np.float64)
    classes, masses, places = [], [], []
    wanted = None if counts is None else np.asarray(counts, dtype=int)
    for k in range(density.shape[2]):
        mass, place = _class_peaks(density[..., k], reach, keep, None if wanted is None else int(wanted[k]))
        classes.append(np.full(len(mass), k, np.int64))
        masses.append(mass)
        places += [{n: stride * (at + 0.5) for n, at in p.items()} for p in place]
    return Peaks(np.concatenate(classes), np.concatenate(masses), places)


def peak_points(peaks: Peaks, counts: ArrayLike) -> Points:
    """``counts[k]`` points of each class ``k`` shared out over its peaks by mass (step 3 of
    the module's docstring), each at its peak's position for its share (step 4).

    Returns
    -------
    Points
    """
    wanted = np.asarray(counts, dtype=int)
    coords, classes, scores = [], [], []
    for k in range(len(wanted)):
        mine = np.flatnonzero(peaks.classes == k)
        if wanted[k] == 0 or not len(mine):
            continue
        mass = peaks.mass[mine]
        share = _apportion(mass, int(wanted[k]))
        for i in np.flatnonzero(share):
            n = int(share[i])
            place = peaks.places[mine[i]]
            # Hamilton gives a peak floor(mass) or floor(mass) + 1 points; only when more
            # points are asked for than the peaks hold do shares go beyond, and then the
            # nearest share's positions are repeated.
            at = place[n] if n in place else _repeat(place[max(place)], n)
            coords.append(at)
            classes.append(np.full(n, k, np.int64))
            scores.append(np.full(n, min(1.0, mass[i] / n)))
    if not coords:
        return Points.empty()
    return Points(np.concatenate(coords), np.concatenate(classes), np.concatenate(scores))


def _repeat(at: np.ndarray, n: int) -> np.ndarray:
    return at[np.arange(n) % len(at)]


def _class_peaks(
    m: np.ndarray, reach: float, keep: tuple[int, int, int, int] | None, n: int | None = None
) -> tuple[np.ndarray, list[dict[int, np.ndarray]]]:
    """Masses of one class map's peaks and their points' positions in cells, per share (only
    for the share :func:`_apportion` gives each when ``n`` points are known to be wanted)."""
    positive = m > 0
    if not positive.any():
        return np.zeros(0), []
    peak = positive & (m >= ndi.maximum_filter(m, size=3, mode="constant", cval=0.0))
    # A plateau of equal values (a saturated or constant map) is one peak, not one per cell.
    peak &= ~_left_or_above_equal(m, peak)
    peaks = np.argwhere(peak)
    # Each cell's nearest peak, from one exact Euclidean distance transform (linear in the
    # map's cells, where a tree query per cell is not).
    dist, (near_row, near_col) = ndi.distance_transform_edt(~peak, return_indices=True)
    index = np.full(m.shape, -1, dtype=np.int64)
    index[peak] = np.arange(len(peaks))
    gather = positive & (dist <= reach)
    owner = index[near_row[gather], near_col[gather]]
    mass = np.bincount(owner, weights=m[gather], minlength=len(peaks))
    chosen = mass >= MIN_PEAK_MASS
    if keep is not None:
        top, left, bottom, right = keep
        r, c = peaks[:, 0], peaks[:, 1]
        chosen &= (r >= top) & (r < bottom) & (c >= left) & (c < right)
    centres = _peak_centres(m, peaks)
    # Each peak's cells as one slice of the cells sorted by owner (not a pass over all
    # cells per peak).
    order = np.argsort(owner, kind="stable")
    cells = np.argwhere(gather).astype(np.float64)[order]
    weights = m[gather][order]
    bounds = np.searchsorted(owner[order], np.arange(len(peaks) + 1))
    chosen = np.flatnonzero(chosen)
    if n is None:
        shares = [{1, int(mass[i]), int(mass[i]) + 1} - {0} for i in chosen]
    else:
        shares = [{int(s)} - {0} for s in _apportion(mass[chosen], n)] if len(chosen) else []
    places = []
    for i, wanted in zip(chosen, shares):
        mine = slice(bounds[i], bounds[i + 1])
        places.append(
            {
                s: centres[i][None] if s == 1 else _weighted_means(cells[mine], weights[mine], s)
                for s in wanted
            }
        )
    return mass[chosen], places


def _left_or_above_equal(m: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Peaks with an equal peak to their left or above (so a plateau keeps one cell)."""
    tie = np.zeros_like(peak)
    tie[1:] |= peak[1:] & peak[:-1] & (m[1:] == m[:-1])
    tie[:, 1:] |= peak[:, 1:] & peak[:, :-1] & (m[:, 1:] == m[:, :-1])
    return tie


def _apportion(mass: np.ndarray, n: int) -> np.ndarray:
    """``n`` points shared over peaks by mass (Hamilton's method): whole animals first, then
    one each to the largest remainders (ties to the larger mass), then round the largest
    masses again while points are left."""
    whole = np.floor(mass).astype(int)
    if whole.sum() > n:
        # Fewer points asked for than the peaks hold whole animals: one each, largest first.
        whole = np.zeros(len(mass), int)
        whole[np.argsort(-mass, kind="stable")[:n]] = 1
        return whole
    left = n - whole.sum()
    order = np.lexsort((-mass, -(mass - whole)))
    while left > 0:
        take = order[:left]
        whole[take] += 1
        left -= len(take)
        order = np.argsort(-mass, kind="stable")
    return whole


def _peak_centres(m: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Density-weighted centres of each peak's 3x3 cells, in cells."""
    padded = np.pad(m, 1)
    offsets = np.array([(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)], dtype=np.float64)
    rows = peaks[:, :1] + 1 + offsets[None, :, 0].astype(int)
    cols = peaks[:, 1:] + 1 + offsets[None, :, 1].astype(int)
    w = padded[rows, cols]
    return peaks + (w @ offsets) / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)


def _weighted_means(points: np.ndarray, weight: np.ndarray, k: int, iterations: int = 10) -> np.ndarray:
    """``k`` centres of weighted points (Lloyd's k-means, started along the main axis)."""
    mean = np.average(points, axis=0, weights=weight)
    if len(points) < k:
        return np.repeat(mean[None], k, axis=0)
    cov = np.cov(points.T, aweights=weight) if len(points) > 1 else np.eye(2)
    values, vectors = np.linalg.eigh(np.atleast_2d(cov))
    axis = vectors[:, -1] * np.sqrt(max(values[-1], 1e-6))
    centres = mean + np.linspace(-1, 1, k)[:, None] * axis
    for _ in range(iterations):
        assign = np.argmin(((points[:, None] - centres[None]) ** 2).sum(axis=2), axis=1)
        for j in range(k):
            if (assign == j).any():
                centres[j] = np.average(points[assign == j], axis=0, weights=weight[assign == j])
    return centres


def patch_points(
    scores: ArrayLike,
    num_classes: int,
    *,
    patch: int,
    stride: int,
    counts: ArrayLike | None = None,
    shape: tuple[int, int] | None = None,
) -> Points:
    """One point per patch classified as an animal (see the module's docstring).

    Parameters
    ----------
    scores : (R, C, K + 1) array_like
        Class scores of the patches at ``stride`` offsets (the background class last).
    num_classes : int
        The animal classes, the first ``num_classes`` scores.
    patch, stride : int
        Patch side and offset in pixels.
    counts : (K,) array_like, optional
        With overlapping patches, points per class (the rounded counts); by default every
        patch won by the class, at most one per half patch.
    shape : (int, int), optional
        The photo's ``(height, width)``: centres of patches that hang over its edge are
        kept inside it.

    Returns
    -------
    Points
    """
    scores = np.asarray(scores, dtype=np.float64)
    winners = np.argmax(scores, axis=-1)
    best = np.max(scores, axis=-1)
    rows, cols = np.nonzero(winners < num_classes)
    centres = np.column_stack([rows * stride, cols * stride]) + (patch - 1) / 2
    if shape is not None:
        centres = np.minimum(centres, np.array(shape, np.float64) - 1)
    klass, score = winners[rows, cols].astype(np.int64), best[rows, cols]
    if stride >= patch:
        return Points(centres.astype(np.float64), klass, score)
    wanted = None if counts is None else np.rint(np.maximum(np.asarray(counts), 0)).astype(int)
    keep: list[int] = []
    for k in range(num_classes):
        mine = np.flatnonzero(klass == k)
        if not len(mine):
            continue
        mine = mine[np.argsort(-score[mine], kind="stable")]
        tree = cKDTree(centres[mine])
        # Greedy non-maximum suppression: the best patch of a class stands for the ones
        # within half a patch of it.
        free = np.ones(len(mine), dtype=bool)
        chosen = 0
        for i in range(len(mine)):
            if not free[i]:
                continue
            if wanted is not None and chosen >= wanted[k]:
                break
            keep.append(int(mine[i]))
            chosen += 1
            free[tree.query_ball_point(centres[mine[i]], patch / 2 - 1e-9)] = False
    keep = np.array(sorted(keep), dtype=np.int64)
    return Points(centres[keep].astype(np.float64).reshape(-1, 2), klass[keep], score[keep])


def points_geojson(
    points: Points,
    class_names: list[str],
    *,
    name: str,
    crs: str | None = None,
    transform: list[float] | tuple[float, ...] | None = None,
) -> str:
    """A GeoJSON FeatureCollection of the points of the photo or raster ``name``.

    RFC 7946 coordinates are WGS84 longitude and latitude: a georeferenced raster's points
    (``crs`` and ``transform`` given) are reprojected there, and each keeps its map ``x, y``
    in the raster's CRS and its pixel among its properties. A photo without georeferencing
    has only pixels, so the collection says so in a member of its own (``coordinates``), and
    each point is ``[x, y]`` = ``[column, row]`` from the photo's top-left pixel centre.
    """
    x, y = points.coords[:, 1], points.coords[:, 0]
    props = [
        {"class": class_names[int(k)], "score": round(float(s), 3)}
        for k, s in zip(points.classes, points.scores)
    ]
    collection: dict = {"type": "FeatureCollection", "name": name}
    if crs is not None and transform is not None:
        from rasterio.warp import transform as reproject

        from herdcount.mosaic import pixel_to_map

        mx, my = pixel_to_map(tuple(transform), y, x)
        lon, lat = reproject(crs, "EPSG:4326", mx.tolist(), my.tolist()) if len(mx) else ([], [])
        coords = [[round(a, 8), round(b, 8)] for a, b in zip(lon, lat)]
        for p, u, v, a, b in zip(props, mx, my, x, y):
            p.update(
                map_x=round(float(u), 3), map_y=round(float(v), 3), x=round(float(a), 1), y=round(float(b), 1)
            )
        collection["crs_of_map_xy"] = crs
    else:
        coords = [[round(float(a), 1), round(float(b), 1)] for a, b in zip(x, y)]
        collection["coordinates"] = "pixels: [x, y] = [column, row] of the photo, from its top-left pixel"
    collection["features"] = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": c}, "properties": p}
        for c, p in zip(coords, props)
    ]
    return json.dumps(collection)
