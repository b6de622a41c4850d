"""Annotation files written: the animals of labelled images as a keras-retinanet boxes CSV, a
points CSV, COCO JSON or a YOLO folder (what ``herdcount synth --export`` writes, and what
:mod:`herdcount.annotations` reads back)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from herdcount import storage
from herdcount.annotations import FORMATS, Animal, image_id


@dataclass(frozen=True)
class LabelledImage:
    """An image's animals to write (pixel coordinates): its name, size and rows."""

    name: str
    height: int
    width: int
    animals: tuple[Animal, ...]


def boxes_csv_text(images: list[LabelledImage]) -> str:
    """keras-retinanet's boxes CSV; ``name,,,,,`` for an image without animals."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    for image in images:
        if not image.animals:
            out.writerow([image.name, "", "", "", "", ""])
        for a in image.animals:
            x1, y1 = a.col - a.width / 2, a.row - a.height / 2
            out.writerow([image.name, *(_num(v) for v in (x1, y1, x1 + a.width, y1 + a.height)), a.klass])
    return buf.getvalue()


def points_csv_text(images: list[LabelledImage]) -> str:
    """A points CSV with a header, ``image,x,y,class``; an image without animals has one row
    with an empty class."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["image", "x", "y", "class"])
    for image in images:
        if not image.animals:
            out.writerow([image.name, "", "", ""])
        for a in image.animals:
            out.writerow([image.name, _num(a.col), _num(a.row), a.klass])
    return buf.getvalue()


def coco_text(images: list[LabelledImage], classes: list[str]) -> str:
    """COCO JSON with ``bbox`` annotations; category ids 1.. in ``classes`` order."""
    ids = {name: k + 1 for k, name in enumerate(classes)}
    annotations = [
        {
            "id": 0,
            "image_id": n + 1,
            "category_id": ids[a.klass],
            "bbox": [_num(a.col - a.width / 2), _num(a.row - a.height / 2), _num(a.width), _num(a.height)],
            "area": _num(a.width * a.height),
            "iscrowd": 0,
        }
        for n, image in enumerate(images)
        for a in image.animals
    ]
    for k, ann in enumerate(annotations, start=1):
        ann["id"] = k
    coco = {
        "images": [
            {"id": n + 1, "file_name": i.name, "width": i.width, "height": i.height}
            for n, i in enumerate(images)
        ],
        "categories": [{"id": ids[name], "name": name} for name in classes],
        "annotations": annotations,
    }
    return json.dumps(coco, indent=1)


def yolo_texts(images: list[LabelledImage], classes: list[str]) -> dict[str, str]:
    """YOLO label files, ``<stem>.txt`` each (``class cx cy w h`` in fractions of the
    image), and ``classes.txt``."""
    files = {"classes.txt": "".join(f"{name}\n" for name in classes)}
    for image in images:
        lines = [
            f"{classes.index(a.klass)} {a.col / image.width:.6f} {a.row / image.height:.6f} "
            f"{a.width / image.width:.6f} {a.height / image.height:.6f}\n"
            for a in image.animals
        ]
        files[f"{image_id(image.name)}.txt"] = "".join(lines)
    return files


def write_annotations(images: list[LabelledImage], classes: list[str], fmt: str, dest: str) -> None:
    """Write ``images``' animals as an annotation file of ``fmt`` at ``dest`` (a folder for
    YOLO), atomically.

    Raises
    ------
    ValueError
        For an unknown format.
    """
    if fmt == "yolo":
        storage.write_files_atomic(dest, [(n, t.encode()) for n, t in yolo_texts(images, classes).items()])
        return
    texts = {"boxes": boxes_csv_text, "points": points_csv_text}
    if fmt == "coco":
        storage.write_text_atomic(dest, coco_text(images, classes))
    elif fmt in texts:
        storage.write_text_atomic(dest, texts[fmt](images))
    else:
        raise ValueError(f"annotation format {fmt!r} is not one of {', '.join(FORMATS)}")


def _num(value: float) -> float | int:
    rounded = round(float(value), 2)
    return int(rounded) if rounded == int(rounded) else rounded
