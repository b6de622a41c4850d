"""Two overlapping survey frames registered: the homography that maps one onto the other.

Pure numpy and scikit-image. Frames are matched by ORB features and a similarity (or, where
it explains clearly more matches, a projective transform) fitted with RANSAC
(:func:`register_frames`); the result says how many matches agree, how
much of the first frame the second covers, and whether the pair can be trusted. A pair that
cannot be registered (open water, too few inliers, no overlap) says so and carries no
transform: the linking never guesses.

Transforms map ``(x, y)`` pixel positions (column, row: scikit-image's convention) of the
first frame, at full size, to the second's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Registration outcomes.
REGISTERED, TOO_FEW, NO_OVERLAP = "registered", "too few inliers", "no overlap"


@dataclass(frozen=True)
class Registration:
    """How frame ``a`` maps onto frame ``b``.

    Attributes
    ----------
    status : str
        :data:`REGISTERED`, or why not (:data:`TOO_FEW`, :data:`NO_OVERLAP`).
    matrix : (3, 3) float64 array or None
        The homography from ``a``'s full-size ``(x, y)`` to ``b``'s; None unless registered.
    inliers : int
        Feature matches that agree with it.
    matches : int
        Feature matches tried.
    overlap : float
        Share of ``a``'s area that lies inside ``b`` under the transform (0 when unregistered).
    """

    status: str
    matrix: NDArray[np.float64] | None
    inliers: int
    matches: int
    overlap: float

    @property
    def ok(self) -> bool:
        """Whether the pair is registered."""
        return self.status == REGISTERED


def grey_at(image: NDArray[np.uint8], longest: int) -> tuple[NDArray[np.float64], float]:
    """The image as grey levels in [0, 1], shrunk so its longest side is at most ``longest``;
    and the factor it was shrunk by (1: not shrunk)."""
    from skimage.color import rgb2gray
    from skimage.transform import rescale

    grey = rgb2gray(image) if image.ndim == 3 else image.astype(np.float64) / 255
    factor = min(1.0, longest / max(grey.shape[:2]))
    if factor < 1:
        grey = rescale(grey, factor, anti_aliasing=True)
    return grey, factor


def off_animals(points: ArrayLike, xy: ArrayLike, radius: ArrayLike) -> NDArray[np.bool_]:
    """Which of ``points`` (``(row, col)``) lie farther from every animal at ``xy``
    (``(x, y)``) than that animal's ``radius``."""
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    off = np.ones(len(points), bool)
    if not len(xy) or not len(points):
        return off
    reach = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(xy),))
    # One query per animal, each with its own radius, over a tree of the points.
    for hits in cKDTree(points).query_ball_point(xy[:, ::-1], r=reach):
        off[hits] = False
    return off


def map_points(matrix: NDArray[np.float64], xy: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(x, y)`` points mapped through a homography."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    ones = np.ones((len(xy), 1))
    mapped = np.hstack([xy, ones]) @ np.asarray(matrix, dtype=np.float64).T
    return mapped[:, :2] / mapped[:, 2:3]


def overlap_share(
    matrix: NDArray[np.float64], shape_a: tuple[int, int], shape_b: tuple[int, int], *, grid: int = 24
) -> float:
    """Share of frame ``a`` (``(rows, cols)``) that lands inside frame ``b`` under ``matrix``,
    measured on a ``grid`` x ``grid`` lattice of ``a``'s pixels."""
    ys, xs = np.meshgrid(
        np.linspace(0, shape_a[0] - 1, grid), np.linspace(0, shape_a[1] - 1, grid), indexing="ij"
    )
    mapped = map_points(matrix, np.column_stack([xs.ravel(), ys.ravel()]))
    inside = (mapped[:, 0] >= 0) & (mapped[:, 0] <= shape_b[1] - 1) & (mapped[:, 1] >= 0)
    inside &= mapped[:, 1] <= shape_b[0] - 1
    return float(inside.mean())


def register_frames(
    a: NDArray[np.uint8],
    b: NDArray[np.uint8],
    *,
    longest: int = 800,
    keypoints: int = 1000,
    min_inliers: int = 25,
    residual: float = 2.0,
    seed: int = 0,
    animals_a: tuple[ArrayLike, ArrayLike] | None = None,
    animals_b: tuple[ArrayLike, ArrayLike] | None = None,
) -> Registration:
    """Register frame ``a`` onto frame ``b`` (both RGB or grey, any sizes).

    Animals move between shots and the ground does not: where the frames' animals are known
    (``animals_a``, ``animals_b``), features on them are left out and the frames are matched
    by the ground around them (by every feature where the ground has fewer than
    ``min_inliers``, as over a packed colony of animals that keep still).

    Parameters
    ----------
    a, b : array
        The frames at full size.
    longest : int, optional
        Longest side the features are found at (the frames are shrunk to it): enough for
        ground texture, and it bounds the cost per pair.
    keypoints : int, optional
        ORB keypoints per frame.
    min_inliers : int, optional
        Fewest matches that must agree for the pair to count as registered.
    residual : float, optional
        RANSAC's inlier distance, in pixels of the shrunk frames.
    seed : int, optional
        RANSAC's random state: the same frames give the same transform.
    animals_a, animals_b : (xy, radius), optional
        Each frame's animals: ``(N, 2)`` positions ``(x, y)`` in its full-size pixels, and
        how far each reaches, in pixels (one number or one per animal).

    Returns
    -------
    Registration
    """
    from skimage.feature import ORB, match_descriptors
    from skimage.measure import ransac
    from skimage.transform import ProjectiveTransform, SimilarityTransform

    grey_a, fa = grey_at(a, longest)
    grey_b, fb = grey_at(b, longest)
    found = []
    for grey, factor, animals in ((grey_a, fa, animals_a), (grey_b, fb, animals_b)):
        # Three times the features where some may lie on animals, the best of the rest kept.
        orb = ORB(n_keypoints=keypoints if animals is None else 3 * keypoints, fast_threshold=0.05)
        try:
            orb.detect_and_extract(grey)
        except RuntimeError:  # no keypoints at all: flat water or sky
            return Registration(TOO_FEW, None, 0, 0, 0.0)
        points, descriptors = orb.keypoints, orb.descriptors
        if animals is not None:
            ground = off_animals(points / factor, *animals)
            best = np.argsort(-orb.responses, kind="stable")
            pick = best[ground[best]] if ground.sum() >= min_inliers else best
            pick = np.sort(pick[:keypoints])
            points, descriptors = points[pick], descriptors[pick]
        found.append((points, descriptors))
    (ka, da), (kb, db) = found
    if len(ka) < min_inliers or len(kb) < min_inliers:
        return Registration(TOO_FEW, None, 0, 0, 0.0)
    pairs = match_descriptors(da, db, cross_check=True, max_ratio=0.8)
    if len(pairs) < min_inliers:
        return Registration(TOO_FEW, None, 0, len(pairs), 0.0)
    # Keypoints are (row, col); transforms take (x, y) = (col, row).
    src, dst = ka[pairs[:, 0]][:, ::-1], kb[pairs[:, 1]][:, ::-1]
    # A frame taken from about the same height is a similarity of its neighbour (4 degrees
    # of freedom), which a small overlap pins down where a homography's 8 do not; the
    # homography takes over only where it agrees with clearly more matches, or alone with
    # enough (a tilted camera's perspective, which no similarity fits within the residual).
    rng = np.random.default_rng(seed)
    model, inliers = ransac(
        (src, dst), SimilarityTransform, min_samples=3, residual_threshold=residual, max_trials=2000, rng=rng
    )
    count = int(inliers.sum()) if inliers is not None else 0
    wider, more = ransac(
        (src, dst), ProjectiveTransform, min_samples=4, residual_threshold=residual, max_trials=2000, rng=rng
    )
    if wider is not None and more is not None and more.sum() >= max(min_inliers, 1.2 * count):
        model, count = wider, int(more.sum())
    if model is None or count < min_inliers:
        return Registration(TOO_FEW, None, count, len(pairs), 0.0)
    # Back to full-size pixels: scale a's points down, map, scale b's up.
    matrix = np.diag([1 / fb, 1 / fb, 1.0]) @ model.params @ np.diag([fa, fa, 1.0])
    share = overlap_share(matrix, a.shape[:2], b.shape[:2])
    if share <= 0:
        return Registration(NO_OVERLAP, None, count, len(pairs), 0.0)
    return Registration(REGISTERED, matrix / matrix[2, 2], count, len(pairs), share)


def shortest_chain(
    edges: dict[str, list[tuple[str, np.ndarray]]], a: str, b: str, hops: int
) -> tuple[list[str], np.ndarray] | None:
    """The shortest chain of registrations from frame ``a`` to ``b`` (breadth first) and its
    transform, a's pixels to b's; None beyond ``hops`` or where none joins them."""
    reached = {a: ([a], np.eye(3))}
    frontier = [a]
    for _ in range(hops):
        following = []
        for frame in frontier:
            path, matrix = reached[frame]
            for nxt, step in edges.get(frame, []):
                if nxt in reached:
                    continue
                reached[nxt] = ([*path, nxt], step @ matrix)
                if nxt == b:
                    m = reached[b][1]
                    return reached[b][0], m / m[2, 2]
                following.append(nxt)
        frontier = following
    return None


def frame_places(
    frames: list[str], links: dict[tuple[str, str], NDArray[np.float64]]
) -> dict[str, NDArray | None]:
    """Each frame's transform into the first frame's pixels, by chaining each frame's
    registration (``links[(a, b)]``: a's pixels to b's) to an earlier placed frame; None for
    a frame no chain reaches."""
    place: dict[str, NDArray | None] = {}
    for f in frames:
        if f in place:
            continue
        place[f] = np.eye(3) if not place else None  # the first frame is the origin
        for (a, b), m in links.items():
            if b == f and place.get(a) is not None:
                # b's points go to a's by the inverse, then on to the chain's origin.
                place[f] = place[a] @ np.linalg.inv(m)
                break
    return place
