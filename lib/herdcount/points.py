"""One-to-one matching of found points against true points, and the metrics built on it.

Pure numpy/scipy. Points are ``(row, col)``; classes are integer indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


def match_points(found: ArrayLike, truth: ArrayLike, *, radius: float = 20.0) -> NDArray[np.int64]:
    """Pairs ``(i_found, i_truth)`` of a one-to-one matching within ``radius`` pixels.

    The matching is the largest one within the radius with the least total distance
    (Hungarian, :func:`scipy.optimize.linear_sum_assignment`), so a point never counts
    for two.

    Parameters
    ----------
    found, truth : (N, 2) and (M, 2) array_like
        Points as ``(row, col)``.
    radius : float, optional
        Largest distance of a matched pair.

    Returns
    -------
    (P, 2) int64 array
        Index pairs, sorted by ``i_found``.
    """
    found = np.asarray(found, dtype=np.float64).reshape(-1, 2)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    if not len(found) or not len(truth):
        return np.zeros((0, 2), dtype=np.int64)
    # Only pairs within the radius matter: a sparse distance matrix, with a cost beyond
    # any real one for the rest, keeps thousands of points per photo cheap.
    near = cKDTree(found).sparse_distance_matrix(cKDTree(truth), radius, output_type="coo_matrix")
    if near.nnz == 0:
        return np.zeros((0, 2), dtype=np.int64)
    rows, cols = np.unique(near.row), np.unique(near.col)
    far = 2 * radius * (len(rows) + len(cols)) + 1.0
    cost = np.full((len(rows), len(cols)), far)
    cost[np.searchsorted(rows, near.row), np.searchsorted(cols, near.col)] = near.data
    i, j = linear_sum_assignment(cost)
    keep = cost[i, j] < far
    pairs = np.column_stack([rows[i[keep]], cols[j[keep]]]).astype(np.int64)
    return pairs[np.argsort(pairs[:, 0], kind="stable")]


@dataclass(frozen=True)
class PointScores:
    """Per-class counts of a matching: true positives, found points and true points."""

    matched: NDArray[np.int64]
    found: NDArray[np.int64]
    truth: NDArray[np.int64]

    @property
    def precision(self) -> NDArray[np.float64]:
        """Matched share of found points per class (1 where none was found)."""
        return np.where(self.found > 0, self.matched / np.maximum(self.found, 1), 1.0)

    @property
    def recall(self) -> NDArray[np.float64]:
        """Matched share of true points per class (1 where there were none)."""
        return np.where(self.truth > 0, self.matched / np.maximum(self.truth, 1), 1.0)

    @property
    def f1(self) -> NDArray[np.float64]:
        """Harmonic mean of precision and recall per class (1 where there was nothing to
        find and nothing was found)."""
        total = self.found + self.truth
        return np.where(total > 0, 2 * self.matched / np.maximum(total, 1), 1.0)

    def __add__(self, other: PointScores) -> PointScores:
        return PointScores(self.matched + other.matched, self.found + other.found, self.truth + other.truth)


def score_points(
    found: ArrayLike,
    found_classes: ArrayLike,
    truth: ArrayLike,
    truth_classes: ArrayLike,
    n_classes: int,
    *,
    radius: float | ArrayLike = 20.0,
) -> PointScores:
    """Match points class by class within ``radius`` (one for all classes, or one per
    class: animals of different sizes) and count the matches per class.

    Returns
    -------
    PointScores
        Matches, found and true points per class.
    """
    found = np.asarray(found, dtype=np.float64).reshape(-1, 2)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
    found_classes = np.asarray(found_classes, dtype=np.int64)
    truth_classes = np.asarray(truth_classes, dtype=np.int64)
    matched = np.zeros(n_classes, dtype=np.int64)
    radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (n_classes,))
    for k in range(n_classes):
        pairs = match_points(found[found_classes == k], truth[truth_classes == k], radius=float(radii[k]))
        matched[k] = len(pairs)
    return PointScores(
        matched,
        np.bincount(found_classes, minlength=n_classes)[:n_classes],
        np.bincount(truth_classes, minlength=n_classes)[:n_classes],
    )
