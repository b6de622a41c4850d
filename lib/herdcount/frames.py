"""A flight's frames as the unique stage reads them: their sightings, their order, their
pixels and georeferencing (a GeoTIFF's transform or a world file beside the frame)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

import numpy as np

from herdcount import storage
from herdcount.imaging import decode_rgb
from herdcount.kaggle import id_key
from herdcount.linking import Sightings

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def read_sightings(path: str) -> dict[str, Sightings]:
    """Sightings per frame from a points file (``test_id,class,x,y[,...]``, as the count job's
    points.csv).

    Raises
    ------
    ValueError
        Naming the file and line of a row without those columns or with a position that is
        not a number.
    """
    text = storage.read_text(path)
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ValueError(f"{path}: empty; expected a header test_id,class,x,y")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in ("test_id", "class", "x", "y") if c not in header]
    if missing:
        raise ValueError(f"{path}:1: missing columns {missing}; expected test_id,class,x,y")
    at = {c: header.index(c) for c in ("test_id", "class", "x", "y")}
    per: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            per[row[at["test_id"]]].append((float(row[at["x"]]), float(row[at["y"]]), row[at["class"]]))
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{n}: expected numbers for x and y, got {row}") from None
    return {
        frame: Sightings(frame, np.array([p[:2] for p in pts], np.float64), np.array([p[2] for p in pts]))
        for frame, pts in per.items()
    }


def flight_order(images: str, order: str) -> list[tuple[str, str]]:
    """The frames of ``images`` as ``(id, file name)`` in flight order: ``name`` (file names in
    natural order), ``exif`` (capture time, then name) or a CSV of ``test_id,order``.

    Raises
    ------
    ValueError
        If the folder holds no frames, or the order CSV is malformed or misses a frame.
    """
    names = sorted(n for n, _ in storage.file_stats(images) if n.lower().endswith(FRAME_EXTENSIONS))
    if not names:
        raise ValueError(f"frame folder {images!r} holds no frames ({', '.join(FRAME_EXTENSIONS)})")
    frames = {n.rsplit(".", 1)[0]: n for n in names}
    if order == "name":
        return [(i, frames[i]) for i in sorted(frames, key=id_key)]
    if order == "exif":
        return sorted(
            frames.items(), key=lambda kv: (_capture_time(storage.join(images, kv[1])), id_key(kv[0]))
        )
    rows = list(csv.DictReader(io.StringIO(storage.read_text(order))))
    if not rows or not {"test_id", "order"} <= set(rows[0]):
        raise ValueError(f"{order}:1: expected a header test_id,order")
    ranks = {}
    for n, row in enumerate(rows, start=2):
        try:
            ranks[row["test_id"]] = float(row["order"])
        except ValueError:
            raise ValueError(f"{order}:{n}: order {row['order']!r} is not a number") from None
    absent = sorted(set(frames) - set(ranks), key=id_key)
    if absent:
        raise ValueError(f"{order}: no order for frames {absent[:5]}")
    return [(i, frames[i]) for i in sorted(frames, key=lambda i: (ranks[i], id_key(i)))]


def _capture_time(path: str) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(storage.read_bytes(path))) as image:
            exif = image.getexif()
            return str(exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132) or "")
    except OSError:
        return ""


def read_frame(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A frame's pixels, and its pixel-to-map transform where it is a georeferenced raster or
    has a world file beside it."""
    if path.lower().endswith((".tif", ".tiff")):
        from herdcount.mosaic import raster_info

        try:
            info = raster_info(path, storage.basename(path))
        except Exception:
            info = None
        if info is not None and info.georeferenced:
            a, b, c, d, e, f = list(info.transform)[:6]
            return decode_rgb(storage.read_bytes(path), path), np.array([[a, b, c], [d, e, f], [0, 0, 1.0]])
    return decode_rgb(storage.read_bytes(path), path), world_transform(path)


#: World files beside a frame, by the frame's extension (ESRI's names, then the generic one).
WORLD_SUFFIXES = {".jpg": ".jgw", ".jpeg": ".jgw", ".png": ".pgw", ".tif": ".tfw", ".tiff": ".tfw"}


def world_transform(path: str) -> np.ndarray | None:
    """The pixel-to-map transform of a frame's world file (``frame.jgw``, ``.pgw``, ``.tfw``,
    ``frame.jpgw`` or ``frame.wld``) as a 3x3 matrix on pixel corners; None without one.

    Raises
    ------
    ValueError
        Naming the world file and line that is not a number, or a file of fewer than 6 lines.
    """
    stem, _, ext = path.rpartition(".")
    ext = "." + ext.lower()
    candidates = [stem + WORLD_SUFFIXES[ext]] if ext in WORLD_SUFFIXES else []
    candidates += [path + "w", stem + ".wld"]
    found = next((c for c in candidates if storage.exists(c)), None)
    if found is None:
        return None
    lines = [line.strip() for line in storage.read_text(found).splitlines() if line.strip()]
    if len(lines) < 6:
        raise ValueError(f"{found}: a world file has 6 lines (A, D, B, E, C, F); this one has {len(lines)}")
    values = []
    for n, line in enumerate(lines[:6], start=1):
        try:
            values.append(float(line))
        except ValueError:
            raise ValueError(f"{found}, line {n}: expected a number, got {line!r}") from None
    a, d, b, e, c, f = values
    # A world file places the centre of the top-left pixel; the transform here, its corner.
    return np.array([[a, b, c - (a + b) / 2], [d, e, f - (d + e) / 2], [0, 0, 1.0]])
