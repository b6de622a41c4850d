"""Annotation files as a source of labels: boxes CSV, points CSV, COCO JSON and YOLO.

Survey teams label in CVAT, Label Studio, VIAME/DIVE, Roboflow or QGIS and export one of
four shapes. Each reader here turns its text into the same records: one :class:`Animal` per
row (its image, class, centre and box size, and the line it came from), the file's own
class list, and an :class:`AnnotationError` per bad row. Nothing is lost for a bad row but
that row. Coordinates stay as the file gives them until the image's size is known
(:func:`place`): YOLO's are fractions of the image, and "outside the image" needs its size.

Inside herdcount points are ``(row, col)``; the formats speak ``(x, y)``, converted here.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
from numpy.typing import NDArray

from herdcount import storage

FORMATS = ("boxes", "points", "coco", "yolo")
#: Image files an annotation may name, and that ``--images DIR`` is listed for.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
#: How far (pixels) a box may reach past the image's edge before it is an error: exports
#: round box corners outwards.
EDGE_SLACK = 2.0


@dataclass(frozen=True)
class Animal:
    """One annotated animal.

    ``row, col`` is its centre and ``height, width`` its box (0 for a point), in pixels,
    or in fractions of the image's side where ``normalised`` (YOLO). ``line`` is the
    1-based line of its row in the file (COCO: the annotation's index).
    """

    image: str
    klass: str
    row: float
    col: float
    height: float = 0.0
    width: float = 0.0
    line: int = 0
    normalised: bool = False


@dataclass(frozen=True)
class AnnotationError:
    """A row that could not be read: the file, its line (0: the file as a whole) and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}" if self.line else f"{self.file}: {self.reason}"


@dataclass
class Annotations:
    """What an annotation file says: each image's animals (an image listed without animals
    has an empty list), the file's own class list (or the classes in order of first
    appearance), its bad rows, and a group per image where the file has a group column."""

    file: str
    format: str
    animals: dict[str, list[Animal]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    errors: list[AnnotationError] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)

    def add(self, animal: Animal) -> None:
        self.animals.setdefault(animal.image, []).append(animal)
        if animal.klass not in self.classes:
            self.classes.append(animal.klass)

    def fail(self, line: int, reason: str) -> None:
        self.errors.append(AnnotationError(self.file, line, reason))


def detect_format(path: str) -> str:
    """The format of an annotation file or folder, from its name and first line.

    Raises
    ------
    ValueError
        If ``path`` does not exist or its format cannot be told.
    """
    if storage.is_dir(path):
        return "yolo"
    if not storage.exists(path):
        raise ValueError(f"annotation file {path!r} does not exist")
    if path.lower().endswith(".json"):
        return "coco"
    first = next((line for line in storage.read_text(path).splitlines() if line.strip()), "")
    cells = [c.strip().lower() for c in next(csv.reader([first]), [])]
    if {"x", "y"} <= set(cells):
        return "points"
    if len(cells) >= 6:
        return "boxes"
    raise ValueError(
        f"{path}: cannot tell the annotation format from its first line {first!r}; expected a boxes CSV "
        "(path,x1,y1,x2,y2,class), a points CSV with a header (image,x,y,class), COCO JSON or a YOLO "
        "folder; or name it with --format"
    )


def read_annotations(path: str, fmt: str = "auto", *, classes: list[str] | None = None) -> Annotations:
    """Read an annotation file (or a YOLO folder) of any of :data:`FORMATS`.

    Parameters
    ----------
    path : str
        The file or folder, local or ``s3://``.
    fmt : str
        One of :data:`FORMATS`, or ``auto`` to detect it (:func:`detect_format`).
    classes : list of str, optional
        Class names by index, for YOLO files when the folder has neither ``classes.txt``
        nor ``data.yaml``.

    Raises
    ------
    ValueError
        For an unknown format, a missing file, or a file that is not of its format at all
        (bad rows are :attr:`Annotations.errors`, not exceptions).
    """
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r} is not one of {', '.join(('auto', *FORMATS))}")
    if fmt == "yolo":
        return read_yolo(path, classes=classes)
    if not storage.exists(path):
        raise ValueError(f"annotation file {path!r} does not exist")
    text = storage.read_text(path)
    return {"boxes": parse_boxes_csv, "points": parse_points_csv, "coco": parse_coco}[fmt](text, path)


def read_class_list(path: str) -> list[str]:
    """Class names in column order from a keras-retinanet classes CSV (``name,id`` rows,
    ordered by id) or a plain list of names, one a line.

    Raises
    ------
    ValueError
        If the file is missing, empty, or its ids are not integers.
    """
    if not storage.exists(path):
        raise ValueError(f"classes file {path!r} does not exist")
    rows = [r for r in csv.reader(io.StringIO(storage.read_text(path))) if r and r[0].strip()]
    if not rows:
        raise ValueError(f"{path}: names no classes")
    if all(len(r) == 1 for r in rows):
        return [r[0].strip() for r in rows]
    try:
        ranked = sorted((int(r[1]), r[0].strip()) for r in rows)
    except (ValueError, IndexError):
        raise ValueError(f"{path}: expected name,id rows with integer ids, got {rows[0]!r}") from None
    return [name for _, name in ranked]


def parse_boxes_csv(text: str, file: str) -> Annotations:
    """A keras-retinanet boxes CSV: ``path,x1,y1,x2,y2,class`` with no header, extra
    columns ignored, ``path,,,,,`` for an image without animals."""
    out = Annotations(file, "boxes")
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 6:
            out.fail(n, f"has {len(row)} columns; expected path,x1,y1,x2,y2,class")
            continue
        image, *corners, klass = (c.strip() for c in row[:6])
        if not image:
            out.fail(n, "names no image")
            continue
        if not any(corners) and not klass:
            out.animals.setdefault(image, [])
            continue
        values = _numbers(corners)
        if values is None or not klass:
            out.fail(n, f"expected numbers x1,y1,x2,y2 and a class, got {','.join(row[1:6])!r}")
            continue
        x1, y1, x2, y2 = values
        if x2 <= x1 or y2 <= y1:
            out.fail(n, f"box ({x1:g},{y1:g})-({x2:g},{y2:g}) is empty or inverted")
            continue
        out.add(Animal(image, klass, (y1 + y2) / 2, (x1 + x2) / 2, y2 - y1, x2 - x1, n))
    return out


def parse_points_csv(text: str, file: str) -> Annotations:
    """A points CSV with a header naming at least ``image``, ``x``, ``y`` and ``class``
    (``file``/``filename``/``test_id``/``train_id`` for the image and ``label`` for the
    class are understood too); a ``group`` column gives each image's group, and an image
    whose ``class`` is empty has no animals."""
    out = Annotations(file, "points")
    rows = csv.reader(io.StringIO(text))
    header = [c.strip().lower() for c in next(rows, [])]
    names = {
        "image": _first(header, ("image", "file", "filename", "file_name", "test_id", "train_id")),
        "x": _first(header, ("x",)),
        "y": _first(header, ("y",)),
        "class": _first(header, ("class", "label", "category")),
    }
    absent = [k for k, v in names.items() if v is None]
    if absent:
        raise ValueError(f"{file}:1: the header {header} has no {', '.join(absent)} column")
    group = _first(header, ("group",))
    for n, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < len(header):
            out.fail(n, f"has {len(row)} columns; the header has {len(header)}")
            continue
        image, klass = row[names["image"]].strip(), row[names["class"]].strip()
        if group is not None and row[group].strip():
            out.groups[image] = row[group].strip()
        if not klass and not row[names["x"]].strip():
            out.animals.setdefault(image, [])
            continue
        values = _numbers([row[names["x"]], row[names["y"]]])
        if not image or values is None or not klass:
            out.fail(n, f"expected an image, numbers x,y and a class, got {','.join(row)!r}")
            continue
        out.add(Animal(image, klass, values[1], values[0], line=n))
    return out


def parse_coco(text: str, file: str) -> Annotations:
    """COCO JSON: ``images``, ``categories`` (their order, by id, is the class list) and
    ``annotations`` with a ``bbox`` ``[x, y, w, h]`` or ``keypoints`` (the first visible
    one is the animal's position)."""
    try:
        coco = json.loads(text)
        images = {int(i["id"]): str(i["file_name"]) for i in coco.get("images", [])}
        categories = {int(c["id"]): str(c["name"]) for c in coco.get("categories", [])}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{file}: not COCO JSON ({type(exc).__name__}: {exc})") from None
    out = Annotations(file, "coco", classes=[categories[k] for k in sorted(categories)])
    for name in images.values():
        out.animals.setdefault(name, [])
    for n, ann in enumerate(coco.get("annotations", []), start=1):
        animal = _coco_animal(ann, images, categories, n)
        if isinstance(animal, str):
            out.fail(n, f"annotation {ann.get('id', n)}: {animal}")
        else:
            out.add(animal)
    return out


def _coco_animal(ann, images: dict[int, str], categories: dict[int, str], n: int) -> Animal | str:
    if not isinstance(ann, dict):
        return "is not an object"
    image, klass = images.get(ann.get("image_id")), categories.get(ann.get("category_id"))
    if image is None:
        return f"image_id {ann.get('image_id')!r} is not in images"
    if klass is None:
        return f"category_id {ann.get('category_id')!r} is not in categories"
    box = ann.get("bbox")
    if box:
        values = _numbers(box) if len(box) == 4 else None
        if values is None or values[2] <= 0 or values[3] <= 0:
            return f"bbox {box!r} is not [x, y, width, height] with a positive size"
        x, y, w, h = values
        return Animal(image, klass, y + h / 2, x + w / 2, h, w, n)
    points = ann.get("keypoints") or []
    visible = [(points[i], points[i + 1]) for i in range(0, len(points) - 2, 3) if points[i + 2]]
    if not visible:
        return "has neither a bbox nor a visible keypoint"
    x, y = visible[0]
    return Animal(image, klass, float(y), float(x), line=n)


def read_yolo(folder: str, *, classes: list[str] | None = None) -> Annotations:
    """A YOLO folder: one ``<image stem>.txt`` per image (``labels/`` inside it if there is
    one) with ``class cx cy w h`` boxes or ``class x1 y1 ... x4 y4`` oriented boxes in
    fractions of the image, and the class names in ``classes.txt`` or ``data.yaml``."""
    if not storage.is_dir(folder):
        raise ValueError(f"YOLO folder {folder!r} does not exist")
    names = classes or _yolo_names(folder)
    if not names:
        raise ValueError(
            f"{folder}: no classes.txt or data.yaml names the classes; give them with --classes FILE"
        )
    labels = storage.join(folder, "labels") if storage.is_dir(storage.join(folder, "labels")) else folder
    out = Annotations(labels, "yolo", classes=list(names))
    for name in sorted(storage.list_files(labels)):
        if not name.endswith(".txt") or name == "classes.txt":
            continue
        stem = name[: -len(".txt")]
        part = parse_yolo_labels(
            storage.read_text(storage.join(labels, name)), stem, names, f"{labels}/{name}"
        )
        out.animals[stem] = part.animals.get(stem, [])
        out.errors += part.errors
    return out


def parse_yolo_labels(text: str, image: str, names: list[str], file: str) -> Annotations:
    """One YOLO label file; ``image`` is the stem it belongs to."""
    out = Annotations(file, "yolo", classes=list(names))
    out.animals[image] = []
    for n, line in enumerate(text.splitlines(), start=1):
        cells = line.split()
        if not cells:
            continue
        values = _numbers(cells[1:])
        if len(cells) not in (5, 9) or values is None or not cells[0].isdigit():
            out.fail(n, f"expected 'class cx cy w h' or 'class x1 y1 ... x4 y4', got {line.strip()!r}")
            continue
        k = int(cells[0])
        if k >= len(names):
            out.fail(n, f"class index {k} is not among the {len(names)} classes {names}")
            continue
        if len(values) == 4:
            cx, cy, w, h = values
        else:
            xs, ys = values[0::2], values[1::2]
            cx, cy, w, h = np.mean(xs), np.mean(ys), np.ptp(xs), np.ptp(ys)
        out.add(Animal(image, names[k], float(cy), float(cx), float(h), float(w), n, normalised=True))
    return out


def _yolo_names(folder: str) -> list[str]:
    listed = storage.join(folder, "classes.txt")
    if storage.exists(listed):
        return [line.strip() for line in storage.read_text(listed).splitlines() if line.strip()]
    spec = storage.join(folder, "data.yaml")
    if not storage.exists(spec):
        return []
    import yaml

    names = (yaml.safe_load(storage.read_text(spec)) or {}).get("names") or []
    if isinstance(names, dict):  # {index: name}
        return [str(names[k]) for k in sorted(names)]
    return [str(n) for n in names]


def _first(header: list[str], choices: tuple[str, ...]) -> int | None:
    return next((header.index(c) for c in choices if c in header), None)


def _numbers(cells) -> list[float] | None:
    try:
        values = [float(c) for c in cells]
    except (TypeError, ValueError):
        return None
    return values if all(np.isfinite(values)) else None


def image_id(name: str) -> str:
    """The id of an image named in an annotation file: its file stem, whatever its form
    (``4MSL0119-100_png.rf.a15…``), without folders."""
    base = PurePosixPath(name.replace("\\", "/")).name
    for suffix in IMAGE_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def group_of(name: str, pattern: str | None) -> str | None:
    """The group of an image from ``--group-pattern``: the regex's first capture group (or
    its whole match) in the file name, None where it does not match.

    Raises
    ------
    ValueError
        If the pattern is not a valid regular expression.
    """
    if pattern is None:
        return None
    try:
        found = re.search(pattern, name)
    except re.error as exc:
        raise ValueError(f"--group-pattern {pattern!r} is not a regular expression: {exc}") from None
    if found is None:
        return None
    return found.group(1) if found.groups() else found.group(0)


@dataclass(frozen=True)
class Placed:
    """One image's animals in its pixels: centres ``(row, col)``, class indices, box
    ``(height, width)`` (0 for points) and the ignored animals' boxes
    ``(top, left, bottom, right)``."""

    points: NDArray[np.float64]
    classes: NDArray[np.int64]
    sizes: NDArray[np.float64]
    ignored: NDArray[np.float64]


def place(
    animals: list[Animal],
    shape: tuple[int, int],
    class_names: list[str],
    *,
    ignore: tuple[str, ...] = (),
    file: str = "",
    point_size: dict[str, float] | None = None,
    mask_unknown: bool = False,
) -> tuple[Placed, list[AnnotationError]]:
    """Put an image's animals into its pixels, rejecting those that do not fit.

    Parameters
    ----------
    animals : list of Animal
        One image's rows.
    shape : (height, width)
        The image's size in pixels.
    class_names : list of str
        The scheme's classes, in column order; an animal of another class is an error
        unless it is in ``ignore``.
    ignore : tuple of str
        Classes that are neither background nor a class (animals the annotators could not
        place): their boxes are returned in ``ignored`` for training to mask.
    file : str
        The annotation file, for errors.
    point_size : dict, optional
        Side in pixels of the square masked around an ignored point (no box), per class.
    mask_unknown : bool, optional
        Also put the boxes of animals of unknown classes in ``ignored`` (after the ignored
        classes' ones), while still reporting them: an animal nobody can name is not ground.

    Returns
    -------
    Placed, list of AnnotationError
    """
    height, width = shape
    index = {name: k for k, name in enumerate(class_names)}
    points, classes, sizes, ignored, unknown, errors = [], [], [], [], [], []
    for a in animals:
        row, col, h, w = a.row, a.col, a.height, a.width
        if a.normalised:
            row, col, h, w = row * height, col * width, h * height, w * width
        top, left, bottom, right = row - h / 2, col - w / 2, row + h / 2, col + w / 2
        outside = (
            top < -EDGE_SLACK
            or left < -EDGE_SLACK
            or bottom > height + EDGE_SLACK
            or right > width + EDGE_SLACK
        )
        if outside or not (0 <= row < height and 0 <= col < width):
            what = f"box ({left:g},{top:g})-({right:g},{bottom:g})" if h or w else f"point ({col:g},{row:g})"
            errors.append(AnnotationError(file, a.line, f"{what} lies outside {a.image} ({width}x{height})"))
            continue
        if not (h or w):
            side = (point_size or {}).get(a.klass, 32.0)
            top, left, bottom, right = row - side / 2, col - side / 2, row + side / 2, col + side / 2
        if a.klass in ignore:
            ignored.append((top, left, bottom, right))
        elif a.klass not in index:
            errors.append(
                AnnotationError(file, a.line, f"class {a.klass!r} is not in the scheme's {class_names}")
            )
            if mask_unknown:
                unknown.append((top, left, bottom, right))
        else:
            points.append((row, col))
            classes.append(index[a.klass])
            sizes.append((h, w))
    placed = Placed(
        np.array(points, float).reshape(-1, 2),
        np.array(classes, np.int64),
        np.array(sizes, float).reshape(-1, 2),
        np.array(ignored + unknown, float).reshape(-1, 4),
    )
    return placed, errors


def box_cells(boxes: NDArray[np.float64], shape: tuple[int, int], *, block: int = 8) -> NDArray[np.bool_]:
    """The ``block`` grid cells (``ceil(H / block), ceil(W / block)``) that boxes
    ``(top, left, bottom, right)`` touch: the masked cells of ignored animals."""
    rows, cols = -(-shape[0] // block), -(-shape[1] // block)
    masked = np.zeros((rows, cols), bool)
    for top, left, bottom, right in np.asarray(boxes, float).reshape(-1, 4):
        r0, c0 = max(0, int(top // block)), max(0, int(left // block))
        r1, c1 = min(rows, int(np.ceil(bottom / block))), min(cols, int(np.ceil(right / block)))
        masked[r0:r1, c0:c1] = True
    return masked


def resize_cells(masked: NDArray[np.bool_], shape: tuple[int, int], *, block: int = 8) -> NDArray[np.bool_]:
    """A grid of masked ``block`` cells for the photo resized to ``shape`` (its new
    ``(height, width)``): each new cell takes the cell under its centre."""
    masked = np.asarray(masked, bool)
    rows, cols = -(-shape[0] // block), -(-shape[1] // block)
    if masked.size == 0:
        return np.zeros((rows, cols), bool)
    # The old cell under each new cell's centre, the grids' sizes standing for the photos'.
    r = np.minimum(((np.arange(rows) + 0.5) * masked.shape[0] / rows).astype(int), masked.shape[0] - 1)
    c = np.minimum(((np.arange(cols) + 0.5) * masked.shape[1] / cols).astype(int), masked.shape[1] - 1)
    return masked[np.ix_(r, c)]


def class_lengths(sizes: dict[str, list[float]]) -> dict[str, float | None]:
    """Each class's typical body length in pixels: the median long side of its boxes
    (robust to the few boxes cut by an image's edge), None for a class seen only as points."""
    return {k: (round(float(np.median(v)), 1) if len(v) else None) for k, v in sizes.items()}
