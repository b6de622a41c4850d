"""Training windows: where to cut them out of a photo, and what each holds. Pure numpy.

A window is a square of a training photo, larger than a training tile so that a tile of
any training scale fits inside it (``size >= tile / min_scale``), with the dots inside it
and near it (in the photo's ``(row, col)`` pixels) and the masked cells of its dotted copy.
Two kinds are cut:

- **grid** windows tile the photo with overlap; a tile placed at random in a random grid
  window is a tile placed at random in the survey;
- **dot** windows are centred on single dots, so that training can draw tiles around dots
  of each class equally often however rare the class (adult males are a few percent of
  the dots). How many of a class's dots get one is decided for the whole survey
  (:func:`keep_shares`): every dot of a rare class, a sample of a common one.

The Spark stage that writes them to shards is :mod:`herdcount.shards`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from herdcount.options import option

GRID = "grid"


@dataclass(frozen=True)
class WindowSettings:
    """How windows are cut.

    Parameters
    ----------
    size : int
        Side in pixels; a multiple of ``block``.
    step : int
        Offset between grid windows (``size - step`` is the overlap).
    dots_per_class : int
        About how many dot windows each class gets over the whole survey: all of a class's
        dots when it has fewer.
    margin : int
        Dots this far outside a window are kept with it: their Gaussians reach into it.
    quality : int
        JPEG quality of the window's pixels.
    photos_per_shard : int
        Photos whose windows go into one shard file of each kind; full-size photos give
        about 10-15 MB of grid windows each.
    """

    size: int = option(512, help="window side in pixels")
    step: int = option(384, help="offset between grid windows")
    dots_per_class: int = option(
        4000, help="about how many dot-centred windows each class gets (all its dots when fewer)"
    )
    margin: int = 32
    quality: int = option(95, help="JPEG quality of the windows")
    photos_per_shard: int = option(10, help="photos per shard and task")

    def check(self, block: int) -> None:
        """Reject settings that cannot work.

        Raises
        ------
        ValueError
            Naming the setting and its value.
        """
        if self.size < 64 or self.size % block:
            raise ValueError(f"window size must be a multiple of {block} of at least 64, got {self.size}")
        if not 0 < self.step <= self.size or self.step % block:
            raise ValueError(
                f"window step must be a multiple of {block} in (0, {self.size}], got {self.step}"
            )
        if self.dots_per_class < 0 or self.photos_per_shard < 1:
            raise ValueError(
                f"dots_per_class must be >= 0 and photos_per_shard >= 1, got {self.dots_per_class}, "
                f"{self.photos_per_shard}"
            )
        if not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {self.quality}")


@dataclass(frozen=True)
class Window:
    """One window of a photo.

    ``origin`` is its top-left corner in the photo, ``photo_shape`` the photo's
    ``(height, width)``; ``points`` (photo pixels) and ``classes`` the dots inside or within
    the margin; ``masked`` its grid of masked ``block`` cells; ``centre`` the dot a dot
    window is centred on (photo pixels), None for a grid window; ``kind`` is ``grid`` or
    the centre dot's class index.
    """

    train_id: str
    image: NDArray[np.uint8]
    origin: tuple[int, int]
    photo_shape: tuple[int, int]
    points: NDArray[np.float64]
    classes: NDArray[np.int64]
    masked: NDArray[np.bool_]
    centre: tuple[float, float] | None
    kind: str | int


def grid_origins(shape: tuple[int, int], size: int, step: int) -> list[tuple[int, int]]:
    """Top-left corners of windows of ``size`` every ``step`` pixels covering the photo; the
    last row and column are moved back to end at the photo's edge (aligned to ``step``'s
    block when cut). A photo smaller than ``size`` is one window."""
    starts = []
    for extent in shape[:2]:
        span = min(size, extent)
        last = extent - span
        values = list(range(0, last + 1, step))
        if values[-1] != last:
            values.append(last)
        starts.append(values)
    return [(r, c) for r in starts[0] for c in starts[1]]


def centred_origin(centre: NDArray[np.float64], shape: tuple[int, int], size: int) -> tuple[int, int]:
    """The top-left corner of a window of ``size`` centred on a point, inside the photo."""
    out = []
    for value, extent in zip(centre, shape[:2]):
        span = min(size, extent)
        out.append(int(np.clip(round(value - span / 2), 0, extent - span)))
    return out[0], out[1]


def keep_shares(totals: NDArray[np.int64], dots_per_class: int) -> NDArray[np.float64]:
    """The share of each class's dots that get a dot window, so that each class has about
    ``dots_per_class`` of them over the survey (all its dots when it has fewer)."""
    totals = np.asarray(totals, dtype=float)
    return np.where(totals > 0, np.minimum(1.0, dots_per_class / np.maximum(totals, 1)), 0.0)


def cut_windows(
    train_id: str,
    image: NDArray[np.uint8],
    masked: NDArray[np.bool_],
    points: NDArray[np.float64],
    classes: NDArray[np.int64],
    settings: WindowSettings,
    shares: NDArray[np.float64],
    rng: np.random.Generator,
    *,
    block: int = 8,
) -> list[Window]:
    """Grid windows of a photo, then dot windows around the dots ``rng`` keeps (each with
    its class's share, see :func:`keep_shares`).

    Parameters
    ----------
    image : (H, W, 3) uint8 array
        The plain photo.
    masked : (ceil(H / block), ceil(W / block)) bool array
        Its masked cells (black areas of the dotted copy).
    points, classes : arrays
        Its dots, ``(row, col)`` photo pixels, and their class indices.
    """
    shape = image.shape[:2]
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    windows = [
        _window(train_id, image, masked, points, classes, origin, settings, block, None, GRID)
        for origin in grid_origins(shape, _aligned(settings.size, block), settings.step)
    ]
    kept = rng.random(len(classes)) < np.asarray(shares)[classes] if len(classes) else []
    for point, klass in zip(points[kept], classes[kept]):
        origin = centred_origin(point, shape, settings.size)
        centre = (float(point[0]), float(point[1]))
        windows.append(
            _window(train_id, image, masked, points, classes, origin, settings, block, centre, int(klass))
        )
    return windows


def _aligned(size: int, block: int) -> int:
    return size // block * block


def _window(train_id, image, masked, points, classes, origin, settings, block, centre, kind) -> Window:
    # Masked cells are whole blocks of the photo: a window starting off the block grid
    # would need its cells resampled, so its corner moves back onto the grid.
    top, left = (origin[0] // block) * block, (origin[1] // block) * block
    height, width = image.shape[:2]
    span_r, span_c = min(settings.size, height - top), min(settings.size, width - left)
    margin = settings.margin
    near = (
        (points[:, 0] >= top - margin)
        & (points[:, 0] < top + span_r + margin)
        & (points[:, 1] >= left - margin)
        & (points[:, 1] < left + span_c + margin)
    )
    cells = masked[top // block : -(-(top + span_r) // block), left // block : -(-(left + span_c) // block)]
    return Window(
        train_id=train_id,
        image=image[top : top + span_r, left : left + span_c],
        origin=(top, left),
        photo_shape=(height, width),
        points=points[near],
        classes=classes[near],
        masked=np.ascontiguousarray(cells),
        centre=centre,
        kind=kind,
    )


def window_patch(
    image: NDArray[np.uint8],
    origin: tuple[int, int],
    points: NDArray[np.float64],
    classes: NDArray[np.int64],
    masked: NDArray[np.bool_],
    centre: tuple[float, float] | None,
    rng: np.random.Generator,
    *,
    size: int = 64,
    offsets: tuple[int, ...] = (0,),
    min_distance: float = 40.0,
    block: int = 8,
) -> tuple[NDArray[np.uint8], int] | None:
    """A classifier's training patch out of a window: what a thumbnail or a background
    patch of the extract job is, cut from the window instead of the photo.

    Parameters
    ----------
    image : (h, w, 3) uint8 array
        The window's pixels; ``origin`` its top-left corner in the photo.
    points, classes : arrays
        The dots inside or near the window (photo pixels) and their class indices.
    masked : bool array
        The window's masked cells of ``block`` pixels.
    centre : (row, col) or None
        For a dot window, its dot: the patch is centred on it, shifted diagonally by one
        of ``offsets`` drawn with ``rng`` (the thumbnails' ``(d, d)`` jitter) and inside
        the window at its borders. None for a grid window: a background patch at a random
        place at least ``min_distance`` from every dot and clear of masked cells.

    Returns
    -------
    (patch, label) or None
        ``label`` is the centre dot's class index, or -1 for background. None when a grid
        window has no room for a background patch.
    """
    from herdcount.patches import crop_centred, sample_background

    local = np.asarray(points, dtype=float).reshape(-1, 2) - np.asarray(origin, dtype=float)
    if centre is not None:
        at = np.asarray(centre, dtype=float) - np.asarray(origin, dtype=float)
        label = int(classes[np.argmin(np.hypot(*(local - at).T))]) if len(classes) else -1
        if label < 0:
            raise ValueError(f"a dot window centred on {centre} holds no dot")
        shift = float(offsets[int(rng.integers(len(offsets)))])
        return np.ascontiguousarray(crop_centred(image, at + shift, size)), label
    corners = sample_background(
        image.shape, local, 1, size=size, min_distance=min_distance, masked=masked, block=block, rng=rng
    )
    if not len(corners):
        return None
    top, left = corners[0]
    return np.ascontiguousarray(image[top : top + size, left : left + size]), -1
