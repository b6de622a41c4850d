"""int8 counting checked against float: the same photos counted by both exports.

A model's full-integer (int8) export counts several times faster on CPUs with integer dot
products, and loses a little precision. Training records how much on its held-out photos
(:func:`compare_precisions`); the count job uses int8 only where that check passed.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from herdcount.locate import density_points
from herdcount.points import match_points
from herdcount.tiling import Predict, density_map

#: The check: every class's int8 count within this share of float's, summed over the photos,
#: and this share of float's points with an int8 point of their class within POINT_PX.
COUNT_SHARE, POINT_PX, POINTS_KEPT = 0.01, 2.0, 0.99


#: Least float count of a class over the tiles that sets its scale (else 1): rarer, and the
#: ratio is noise.
MIN_SCALED_COUNT = 5.0
#: A class's scale is applied only where it lies this many standard errors from 1: a ratio
#: of few animals, or of animals int8 counts as erratically as steadily, stays 1.
SCALE_SIGNIFICANCE = 2.0


def count_scales(tiles: Iterable[np.ndarray], exact: Predict, quantized: Predict) -> np.ndarray:
    """Per class, float's count over int8's over ``tiles``: the factor that takes the int8
    export's maps back to float's counts.

    Quantization shifts a density map's small values by a fraction of a step, and a count
    sums tens of thousands of them, so each class's int8 count lands a steady share off
    float's (about 1 % for the real-seal models). That share is measured on training tiles
    (as post-training quantization's bias correction is on its calibration data) and undone
    at counting; the held-out photos then check it. The ratio's standard error comes from
    the tiles' spread (a ratio estimator's); a ratio within :data:`SCALE_SIGNIFICANCE` of
    them from 1 is not told from noise, and the class keeps 1.

    Parameters
    ----------
    tiles : iterable of (N, H, W, 3) arrays
        Batches of training tiles at the model's scale.
    exact, quantized : callable
        The float and the int8 predictor.

    Returns
    -------
    (K,) float64 array
        1 where float counts fewer than :data:`MIN_SCALED_COUNT` animals of the class, int8
        none, or the ratio is not significant.
    """
    per_tile = [
        np.stack([np.asarray(p(batch)).sum(axis=(1, 2), dtype=np.float64) for p in (exact, quantized)])
        for batch in tiles
    ]
    if not per_tile:
        raise ValueError("count_scales needs at least one batch of tiles")
    f, q = np.concatenate(per_tile, axis=1)  # (tiles, classes) each
    total_f, total_q = f.sum(axis=0), q.sum(axis=0)
    usable = (total_f >= MIN_SCALED_COUNT) & (total_q > 0)
    divisor = np.where(usable, total_q, 1.0)
    ratio = total_f / divisor
    n = len(f)
    spread = ((f - ratio * q) ** 2).sum(axis=0) * n / max(n - 1, 1)
    error = np.sqrt(spread) / divisor
    significant = np.abs(ratio - 1) > SCALE_SIGNIFICANCE * error
    return np.where(usable & significant, ratio, 1.0)


def scaled(predict: Predict, scales: np.ndarray | list[float]) -> Predict:
    """``predict`` with each class's map multiplied by its scale (:func:`count_scales`)."""
    factor = np.asarray(scales, dtype=np.float32)

    def rescaled(batch: np.ndarray) -> np.ndarray:
        return np.asarray(predict(batch)) * factor

    return rescaled


def compare_precisions(
    images: Iterable[np.ndarray],
    exact: Predict,
    quantized: Predict,
    class_names: list[str],
    *,
    stride: int,
    margin: int,
    tile: int = 1024,
) -> dict:
    """Count ``images`` with both predictors; how far int8 (``quantized``) lies from float
    (``exact``).

    Returns
    -------
    dict
        ``passed``, ``photos``, ``count_share`` (per class: |int8 - float| / float, summed
        over the photos), ``points_within_px`` (share of float's points with an int8 point of
        their class within :data:`POINT_PX`) and the thresholds.
    """
    totals = np.zeros((2, len(class_names)))
    kept = seen = 0
    photos = 0
    for image in images:
        photos += 1
        maps = [density_map(image, p, stride=stride, tile=tile, margin=margin) for p in (exact, quantized)]
        counts = [m.sum(axis=(0, 1), dtype=np.float64) for m in maps]
        totals += np.array(counts)
        wanted = np.rint(np.maximum(counts[0], 0)).astype(np.int64)
        found = [density_points(m, stride=stride, counts=wanted) for m in maps]
        for k in range(len(class_names)):
            a = found[0].coords[found[0].classes == k]
            b = found[1].coords[found[1].classes == k]
            seen += len(a)
            kept += len(match_points(a, b, radius=POINT_PX))
    share = np.abs(totals[1] - totals[0]) / np.maximum(totals[0], 1.0)
    within = kept / seen if seen else 1.0
    return {
        "passed": bool((share <= COUNT_SHARE).all() and within >= POINTS_KEPT),
        "photos": photos,
        "count_share": {n: round(float(v), 5) for n, v in zip(class_names, share)},
        "points_within_px": round(float(within), 4),
        "thresholds": {"count_share": COUNT_SHARE, "point_px": POINT_PX, "points_kept": POINTS_KEPT},
    }
