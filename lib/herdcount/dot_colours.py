"""Dot finding's colour step (:mod:`herdcount.dots`, step 4): each changed pixel explained as
the plain colour partly covered by one dot colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


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
        A (small) crop of the photo and of its dotted copy.
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
