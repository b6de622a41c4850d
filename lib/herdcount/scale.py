"""Estimate the ground scale of a photo: how large its animals look against the training photos'.

Pure numpy and Pillow: a scale model (``herdcount train --kind scale``) is a callable from a
batch of tiles to, per tile, the log of the ground scale and the logit of "an animal is in
this tile"; :func:`estimate_scale` cuts tiles, asks it and pools the answers. Ground scale 1
is the training altitude, 0.5 a photo flown twice as high (animals half as long).

Why a model of the tiles, pooled over the tiles that hold animals: an animal's length is the
one cue to scale that a survey keeps (rock, sand and surf come in every size), and a tile
without an animal says little. So the model also tells which tiles hold one, and only those
vote; their median resists a tile that misjudged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from herdcount.imaging import decode_rgb, encode_jpeg

#: Batch of (N, size, size, 3) uint8 tiles to an (N, 2) array: log ground scale, animal logit.
ScalePredict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ScaleEstimate:
    """A photo's estimated ground scale and how it was reached.

    Attributes
    ----------
    scale : float
        Ground scale against the training photos (1: same altitude; 0.5: flown twice as high).
    spread : float
        Median absolute deviation of the voting tiles' log scale (0.1: tiles disagree by
        about 10 %).
    tiles : int
        Tiles looked at.
    votes : int
        Tiles judged to hold an animal, whose scales were pooled (all tiles, weighted by
        that judgement, when none was).
    """

    scale: float
    spread: float
    tiles: int
    votes: int


def scale_tiles(
    image: np.ndarray, *, size: int = 256, count: int = 24, side: int | None = None
) -> tuple[NDArray[np.uint8], NDArray]:
    """About ``count`` tiles of ``size`` pixels spread evenly over ``image``: squares of
    ``side`` pixels (default ``size``) resized to ``size``.

    Returns
    -------
    tiles : (N, size, size, 3) uint8 array
    origins : (N, 2) int array
        Top-left ``(row, col)`` of each tile.

    Raises
    ------
    ValueError
        If the image is not RGB or smaller than one tile, or ``count`` < 1.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an (H, W, 3) RGB array, got shape {image.shape}")
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    side = size if side is None else side
    height, width = image.shape[:2]
    if height < side or width < side:
        raise ValueError(f"image of {height}x{width} px is smaller than one {side} px tile")
    # A grid with the photo's aspect ratio, as close to ``count`` tiles as it gets.
    rows = max(1, round(np.sqrt(count * height / width)))
    cols = max(1, round(count / rows))
    tops = np.linspace(0, height - side, rows).round().astype(int)
    lefts = np.linspace(0, width - side, cols).round().astype(int)
    origins = np.array([(t, left) for t in tops for left in lefts])
    squares = [image[t : t + side, left : left + side] for t, left in origins]
    if side != size:
        squares = [
            np.asarray(Image.fromarray(q).resize((size, size), Image.Resampling.BILINEAR)) for q in squares
        ]
    return np.stack(squares), origins


#: Zooms of the tiles a photo is read at: every tile resampled, as every training square is.
READ_ZOOMS = (0.8, 1.25)


def estimate_scale(
    image: np.ndarray,
    predict: ScalePredict,
    *,
    size: int = 256,
    count: int = 24,
    zooms: tuple[float, ...] = READ_ZOOMS,
    batch_size: int = 8,
) -> ScaleEstimate:
    """The ground scale of ``image``: the median of the scales the model reads in the tiles it
    judges to hold an animal.

    Parameters
    ----------
    image : (H, W, 3) uint8 array
        The photo, at its own resolution.
    predict : callable
        The scale model, see :data:`ScalePredict`.
    size : int, optional
        Tile side the model was trained on.
    count : int, optional
        About how many tiles to look at per zoom, spread evenly.
    zooms : tuple of float, optional
        Each tile is a square of ``size / zoom`` pixels resized to ``size`` and its reading
        divided by ``zoom``. The model learned from resampled squares only; a photo's own
        pixels are sharper than any of them, and read about 8 % low at zoom 1 alone (on
        bench/accuracy.py's test survey; 2 % low at 0.8 and 1.25 together). Zooms whose
        squares do not fit the photo are skipped.
    batch_size : int, optional
        Tiles per call of ``predict``.

    Returns
    -------
    ScaleEstimate
    """
    height, width = np.asarray(image).shape[:2]
    fitting = [z for z in zooms if round(size / z) <= min(height, width)]
    if not fitting:
        raise ValueError(f"image of {height}x{width} px is too small for tiles of {size} px at zooms {zooms}")
    readings = []
    for zoom in fitting:
        tiles, _ = scale_tiles(image, size=size, count=count, side=round(size / zoom))
        out = np.concatenate(
            [np.asarray(predict(tiles[i : i + batch_size])) for i in range(0, len(tiles), batch_size)]
        )
        if out.ndim != 2 or out.shape[1] != 2:
            raise ValueError(f"the scale model must give 2 numbers per tile, got shape {out.shape}")
        readings.append(np.column_stack([out[:, 0] - np.log(zoom), out[:, 1]]))
    out = np.concatenate(readings).astype(np.float64)
    log_scale, animal = out[:, 0], 1.0 / (1.0 + np.exp(-out[:, 1]))
    votes = animal >= 0.5
    weight = votes.astype(np.float64) if votes.any() else animal + 1e-9
    centre = weighted_median(log_scale, weight)
    spread = weighted_median(np.abs(log_scale - centre), weight)
    return ScaleEstimate(float(np.exp(centre)), float(spread), len(out), int(votes.sum()))


def resize_for(
    ground_scale: float,
    *,
    trained: tuple[float, float] = (1.0, 1.0),
    limits: tuple[float, float] = (0.25, 4.0),
) -> float:
    """The factor to resize a photo of ``ground_scale`` by before counting it.

    A density model trained on tiles resized within ``trained`` has seen animals of every
    size in that range: a photo whose reading lies inside it is counted as it is, since
    resizing it on a reading a few percent off (the scale model's typical error) moves its
    animals no closer to what the model knows and blurs it. Outside, the photo is brought
    back to the training altitude (``1 / ground_scale``), kept within ``limits``.

    Parameters
    ----------
    ground_scale : float
        The photo's ground scale as read (:func:`estimate_scale`).
    trained : (low, high), optional
        The density model's training resize range (``training_scale_range`` of its
        model.json); ``(1, 1)``: resize on every reading.
    limits : (low, high), optional
        Resize factors allowed.

    Returns
    -------
    float
    """
    low, high = trained
    if not ground_scale > 0 or not 0 < low <= 1 <= high:
        raise ValueError(
            f"ground_scale must be positive and the trained range must hold 1, got {ground_scale}, {trained}"
        )
    if low <= ground_scale <= high:
        return 1.0
    return float(np.clip(1.0 / ground_scale, *limits))


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The value below which half the total weight lies (the midpoint where it is exactly half)."""
    values, weights = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    if values.shape != weights.shape or values.ndim != 1 or not len(values):
        raise ValueError(
            f"values and weights must be equal-length 1-D arrays, got {values.shape}, {weights.shape}"
        )
    order = np.argsort(values)
    values, cumulative = values[order], np.cumsum(weights[order])
    half = cumulative[-1] / 2
    i = int(np.searchsorted(cumulative, half))
    if np.isclose(cumulative[i], half) and i + 1 < len(values):
        return float((values[i] + values[i + 1]) / 2)
    return float(values[i])


def zoom_crop(
    image: np.ndarray,
    points: np.ndarray,
    zoom: float,
    rng: np.random.Generator,
    *,
    size: int = 256,
    centre: tuple[float, float] | None = None,
) -> tuple[NDArray[np.uint8], int]:
    """A ``size`` tile of ``image`` as it would look flown at ground scale ``zoom``: a square
    of ``size / zoom`` pixels resized to ``size``, and the number of ``points`` in it.

    Parameters
    ----------
    image : (H, W, 3) uint8 array
        A window of a training photo (ground scale 1), at least ``size / zoom`` a side.
    points : (N, 2) array
        Animals' ``(row, col)`` in ``image``.
    zoom : float
        Ground scale to show: < 1 looks flown higher (animals smaller).
    rng : numpy.random.Generator
        Places the square.
    size : int, optional
        Tile side.
    centre : (float, float) or None, optional
        A point the square must hold (a dot the window was cut around), when it can.

    Returns
    -------
    tile : (size, size, 3) uint8 array
    animals : int
        Points inside the square, at least a tenth of its side from its edge.

    Raises
    ------
    ValueError
        If the image is smaller than the square.
    """
    side = round(size / float(zoom))
    height, width = image.shape[:2]
    if side > height or side > width or side < 1:
        raise ValueError(f"a {side} px square (tile {size} at zoom {zoom:.3f}) does not fit {height}x{width}")
    low = np.zeros(2, dtype=int)
    high = np.array([height - side, width - side])
    if centre is not None:
        # Keep the point at least a tenth of the side inside, as the count below asks.
        inset = side // 10
        c = np.asarray(centre, dtype=np.float64)
        low = np.clip(np.ceil(c + inset - side).astype(int), 0, high)
        high = np.clip(np.floor(c - inset).astype(int), low, high)
    top, left = (int(rng.integers(lo, hi + 1)) for lo, hi in zip(low, high))
    square = image[top : top + side, left : left + side]
    tile = np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BILINEAR))
    inset = side / 10
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2) - (top, left)
    inside = ((p >= inset) & (p < side - inset)).all(axis=1)
    return tile, int(inside.sum())


def vary_camera(
    tile: np.ndarray,
    rng: np.random.Generator,
    *,
    blur: float = 1.5,
    noise: float = 6.0,
    quality: tuple[int, int] = (60, 95),
) -> NDArray[np.uint8]:
    """``tile`` as another camera might have taken it: a Gaussian blur of radius up to
    ``blur`` px, sensor noise of up to ``noise`` grey levels and a JPEG of a quality in
    ``quality``, each drawn from ``rng``.

    Sharpness and grain change with the resampling that makes a zoomed training square
    (finer when shrunk, blurred when enlarged), and with the lens, focus, motion and JPEG of
    a survey: varied at random, they stop telling the scale model anything, and the animals'
    size is what is left to read.
    """
    image = Image.fromarray(np.asarray(tile, dtype=np.uint8))
    radius = float(rng.uniform(0, blur))
    if radius > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    pixels = np.asarray(image, dtype=np.float32)
    sigma = float(rng.uniform(0, noise))
    if sigma > 0.5:
        pixels = pixels + rng.normal(0, sigma, size=pixels.shape[:2] + (1,)).astype(np.float32)
    low, high = quality
    return decode_rgb(encode_jpeg(pixels, int(rng.integers(low, high + 1))))


def working_scale(lengths: list[float | None], receptive_field: int) -> float:
    """The resize factor a density model counts a survey's photos at, from its animals' sizes.

    A model tells classes apart by what it sees of each animal: an animal longer than half
    its receptive field leaves the cells near its centre no room for the ground around it,
    and one longer than the field is never seen whole. The photos are shrunk until the
    longest class (median box long side) spans half the field; a survey whose animals fit
    already, or whose sizes were not measured (dotted pairs), is counted as it is.

    Parameters
    ----------
    lengths : list of float or None
        Each class's measured body length in pixels; None where unknown.
    receptive_field : int
        The density model's receptive field in pixels.

    Returns
    -------
    float
        In (0, 1], rounded to 2 decimals.

    Raises
    ------
    ValueError
        If ``receptive_field`` is not positive or a length is not positive.
    """
    if receptive_field < 1:
        raise ValueError(f"receptive_field must be positive, got {receptive_field}")
    known = [float(v) for v in lengths if v is not None]
    if any(v <= 0 for v in known):
        raise ValueError(f"animal lengths must be positive, got {known}")
    if not known:
        return 1.0
    return round(min(1.0, receptive_field / 2 / max(known)), 2)
