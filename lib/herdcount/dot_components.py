"""Dot finding's counting step (:mod:`herdcount.dots`, step 5): each class's pixels as
components, the photo's dot footprint, and the dots in each component.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from scipy.cluster.vq import kmeans2
from scipy.spatial import cKDTree

from herdcount.dot_cells import _EIGHT, _grow, _squares
from herdcount.dot_colours import ColourStats, _classify, _core_colours


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


def _dots_in_crop(
    plain: np.ndarray,
    dotted: np.ndarray,
    colours: np.ndarray,
    threshold: int,
    tolerance: float,
    min_coverage: float,
    dot_area: float | None,
    black_level: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | None, ColourStats]:
    """Dots of a crop (or a canvas of crops): (N, 2) centres relative to it, (N,) classes,
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
