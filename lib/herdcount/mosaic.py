"""Orthomosaics: rasters of any size read and counted chunk by chunk, with map coordinates.

A drone survey stitched into one GeoTIFF of 40,000 x 40,000 pixels is 4.8 GB decoded: no
task reads it whole. The raster is cut into chunks of ``chunk`` pixels on the model's
output grid (:func:`plan_chunks`, the same :func:`herdcount.patches.tile_grid` rule the
tiled inference follows), and each chunk is read with the model's margin around it
(:func:`read_chunk`, a rasterio windowed read: only the blocks it covers are decoded). The
density of a chunk's kept part is then exactly the whole raster's there, so counts summed
over chunks equal the count of the whole raster, whatever the chunk size.

Nodata -- an alpha band, an internal mask or the nodata value, as GDAL's dataset mask gives
them -- is excluded like the dotted photos' black masks: its cells count nothing.

Map coordinates: a raster's affine transform takes pixel ``(row, col)`` (centres at
``+ 0.5``) to ``(x, y)`` in its CRS (:func:`pixel_to_map`). Pure where it can be: rasterio is
imported by the functions that open files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from herdcount import storage
from herdcount.patches import tile_grid
from herdcount.tiling import Predict, density_map

#: File name endings read as rasters (the rest of a folder is photos or other files).
RASTER_EXTENSIONS = ("tif", "tiff")


class RasterError(ValueError):
    """A raster that cannot be counted; the message names the file and what is wrong."""


@dataclass(frozen=True)
class RasterInfo:
    """What the driver reads of a raster's header to plan its chunks.

    Attributes
    ----------
    height, width : int
        Pixels.
    bands : int
        3 (RGB) or 4 (RGB and alpha).
    transform : tuple of 6 floats
        The affine transform ``(a, b, c, d, e, f)``: ``x = a * col + b * row + c`` and
        ``y = d * col + e * row + f`` at pixel corners.
    crs : str or None
        The CRS as WKT (or an authority string), None without georeferencing.
    """

    height: int
    width: int
    bands: int
    transform: tuple[float, float, float, float, float, float]
    crs: str | None

    @property
    def georeferenced(self) -> bool:
        """Whether the raster has a CRS and a transform other than the identity."""
        return self.crs is not None and self.transform != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _open(path: str | Path):
    """A rasterio dataset of a local file, or of an S3 object through ranged GETs
    (:func:`herdcount.storage.open_ranged`): only the header and the blocks read are fetched."""
    import rasterio

    if storage.is_s3(path):
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
            return rasterio.open(str(path), opener=storage.open_ranged)
    return rasterio.open(path)


def raster_info(path: str | Path, name: str | None = None) -> RasterInfo:
    """The header of a raster, checked for what counting needs.

    Raises
    ------
    RasterError
        If the file cannot be opened as a raster (corrupt, truncated, not a raster), or its
        band layout is not 3 or 4 bands of 8 bits; the message names ``name`` (or the path).
    """
    from rasterio.errors import RasterioError

    name = name or str(path)
    try:
        with _open(path) as ds:
            bands, dtypes = ds.count, set(ds.dtypes)
            info = RasterInfo(
                height=ds.height,
                width=ds.width,
                bands=bands,
                transform=tuple(float(v) for v in tuple(ds.transform)[:6]),
                crs=None if ds.crs is None else ds.crs.to_string(),
            )
    except RasterioError as exc:
        raise RasterError(f"{name}: not a readable raster ({exc})") from None
    if bands not in (3, 4) or dtypes != {"uint8"}:
        raise RasterError(
            f"{name}: {bands} bands of {sorted(dtypes)}; expected 3 (RGB) or 4 (RGB and alpha) bands of uint8"
        )
    return info


@dataclass(frozen=True)
class RasterChunk:
    """One chunk of a raster: the part it counts and the part it reads.

    Attributes
    ----------
    index : int
        Its place in the raster's plan (row-major).
    keep : tuple of 4 ints
        ``(top, left, bottom, right)`` of the pixels it counts; the chunks' kept parts
        partition the raster (padded to the model's stride).
    read : tuple of 4 ints
        ``(top, left, bottom, right)`` it reads: ``keep`` with the margin of context, shifted
        inside the raster at its borders.
    """

    index: int
    keep: tuple[int, int, int, int]
    read: tuple[int, int, int, int]


def plan_chunks(height: int, width: int, *, chunk: int, margin: int, stride: int) -> list[RasterChunk]:
    """Chunks of ``chunk`` pixels (with ``margin`` of context) covering a raster.

    Parameters
    ----------
    height, width : int
        The raster's size in pixels.
    chunk : int
        Side of the kept part of each chunk; a multiple of ``stride``.
    margin : int
        Context read around it: the model's margin (half its receptive field).
    stride : int
        The model's output stride; the raster counts as padded to its multiples, as a photo is.

    Returns
    -------
    list of RasterChunk

    Raises
    ------
    ValueError
        If ``chunk`` or ``margin`` is not a multiple of ``stride``.
    """
    if height < 1 or width < 1:
        raise ValueError(f"a raster must have pixels, got {height}x{width}")
    padded = (height + -height % stride, width + -width % stride)
    tiles = tile_grid(padded, chunk, margin, stride=stride)
    return [RasterChunk(i, tuple(t.keep), tuple(t.read)) for i, t in enumerate(tiles)]


def read_chunk(path: str | Path, chunk: RasterChunk, info: RasterInfo) -> tuple[np.ndarray, np.ndarray]:
    """The pixels a chunk reads, and where they hold data.

    Only the blocks under ``chunk.read`` are decoded (a rasterio windowed read). Rows and
    columns past the raster's end (its padding to the model's stride) repeat its last ones,
    as :func:`herdcount.tiling.pad_to_stride` pads a photo.

    Returns
    -------
    rgb : (h, w, 3) uint8 array
        Nodata pixels are black.
    valid : (h, w) bool array
        False where the raster has no data (alpha 0, masked, or the nodata value).

    Raises
    ------
    RasterError
        If the chunk cannot be read (a truncated or corrupt file).
    """
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    top, left, bottom, right = chunk.read
    rows, cols = min(bottom, info.height) - top, min(right, info.width) - left
    try:
        with _open(path) as ds:
            region = Window(left, top, cols, rows)
            rgb = ds.read((1, 2, 3), window=region)
            valid = ds.dataset_mask(window=region) > 0
    except RasterioError as exc:
        raise RasterError(f"{path}: chunk {chunk.read} could not be read ({exc})") from None
    # In place, then one copy to (rows, cols, 3): a chunk of 8192 is 200 MB per copy.
    rgb *= valid
    rgb = np.ascontiguousarray(rgb.transpose(1, 2, 0))
    pad = ((0, bottom - top - rows), (0, right - left - cols))
    if any(p[1] for p in pad):
        rgb = np.pad(rgb, (*pad, (0, 0)), mode="edge")
        valid = np.pad(valid, pad, mode="edge")
    return np.ascontiguousarray(rgb), valid


def valid_cells(valid: NDArray[np.bool_], stride: int) -> NDArray[np.bool_]:
    """Per output cell of ``stride`` pixels: whether the pixel under its centre has data."""
    centre = stride // 2
    return valid[centre::stride, centre::stride]


def chunk_density(
    rgb: np.ndarray,
    valid: NDArray[np.bool_],
    chunk: RasterChunk,
    predict: Predict,
    *,
    stride: int,
    margin: int,
    tile: int = 1024,
    batch_size: int = 4,
    context: int = 0,
) -> tuple[NDArray[np.float32], tuple[int, int, int, int], tuple[int, int]]:
    """The density of a chunk's kept part and ``context`` cells around it, from the pixels
    it read (:func:`read_chunk`).

    The read region is inferred in tiles like a photo (:func:`herdcount.tiling.density_map`)
    and cropped to the kept cells and their context (within the read region), which have
    their full context when the chunk was planned with ``context * stride`` pixels more
    margin than the model's; cells over nodata are 0.

    Returns
    -------
    density : (rows, cols, C) float32 array
        The kept cells and their context.
    keep : (top, left, bottom, right) of ints
        The kept cells within ``density``.
    origin : (int, int)
        The raster pixel ``(row, col)`` of ``density``'s first cell's corner.
    """
    density = density_map(rgb, predict, stride=stride, tile=tile, margin=margin, batch_size=batch_size)
    density *= valid_cells(valid, stride)[..., None]
    kt, kl, kb, kr = chunk.keep
    rt, rl = chunk.read[:2]
    top, left = (kt - rt) // stride, (kl - rl) // stride
    bottom, right = (kb - rt) // stride, (kr - rl) // stride
    first_row, first_col = max(top - context, 0), max(left - context, 0)
    end_row = min(bottom + context, density.shape[0])
    end_col = min(right + context, density.shape[1])
    box = (top - first_row, left - first_col, bottom - first_row, right - first_col)
    origin = (rt + first_row * stride, rl + first_col * stride)
    return density[first_row:end_row, first_col:end_col], box, origin


def pixel_to_map(
    transform: tuple[float, float, float, float, float, float], rows: ArrayLike, cols: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Map ``(x, y)`` of pixel positions ``(row, col)`` (pixel centres at integers, as
    points are), through a raster's affine transform."""
    a, b, c, d, e, f = transform
    r, k = np.asarray(rows, np.float64) + 0.5, np.asarray(cols, np.float64) + 0.5
    return a * k + b * r + c, d * k + e * r + f


def map_to_pixel(
    transform: tuple[float, float, float, float, float, float], xs: ArrayLike, ys: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The inverse of :func:`pixel_to_map`: ``(row, col)`` of map positions."""
    a, b, c, d, e, f = transform
    det = a * e - b * d
    x, y = np.asarray(xs, np.float64) - c, np.asarray(ys, np.float64) - f
    col = (e * x - b * y) / det
    row = (-d * x + a * y) / det
    return row - 0.5, col - 0.5


def write_geotiff(
    path: str | Path,
    rgb: np.ndarray,
    valid: np.ndarray | None,
    *,
    transform: tuple[float, float, float, float, float, float],
    crs: str | None,
    block: int = 512,
) -> None:
    """Write an RGB (and alpha, where ``valid`` is given) tiled, deflate-compressed GeoTIFF
    atomically (a temporary name, then a rename)."""
    import rasterio
    from affine import Affine

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = rgb.shape[:2]
    bands = 3 if valid is None else 4
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": bands,
        "dtype": "uint8",
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
        "photometric": "RGB",
        "transform": Affine(*transform),
        "crs": crs,
    }
    if valid is not None:
        profile["alpha"] = "YES"
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with rasterio.open(temp, "w", **profile) as ds:
        ds.write(np.moveaxis(rgb, -1, 0)[:3], (1, 2, 3))
        if valid is not None:
            ds.write(np.where(valid, 255, 0).astype(np.uint8), 4)
    os.replace(temp, path)
