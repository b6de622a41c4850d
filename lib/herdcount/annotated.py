"""The extract job's other source of labels: an annotation file over a folder of images.

``herdcount extract --images DIR --annotations FILE --out OUT`` writes what dotted pairs
give (``metadata/<id>.json``, thumbnails, training windows, the report), so training and
counting never know which source it was. Each metadata record adds:

- ``image``: the image's path under DIR, which training decodes;
- ``sizes``: each animal's box ``[height, width]`` in pixels (``[0, 0]`` for a point),
  listed as its class's points are;
- ``ignored``: boxes ``[top, left, bottom, right]`` of animals of ``--ignore-class``,
  masked in training as a dotted copy's black areas are;
- ``group``: the image's group (``--group-pattern`` or the file's group column), which
  training holds out whole.

Rows the file gets wrong go to ``annotation_errors.csv`` (file, line, image, reason) and
cost nothing but themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from herdcount import storage
from herdcount.annotations import (
    FORMATS,
    IMAGE_SUFFIXES,
    Animal,
    AnnotationError,
    Annotations,
    box_cells,
    class_lengths,
    group_of,
    image_id,
    place,
    read_annotations,
    read_class_list,
)
from herdcount.config import ClassSpec, Config
from herdcount.imaging import PhotoError, decode_rgb
from herdcount.options import option
from herdcount.runinfo import read_run

#: Where a scheme is made from an annotation file's classes: its annotation key.
ANNOTATION_KEY = "animals"


@dataclass(frozen=True)
class ImageTask:
    """One annotated image to extract: its id, path, the file's rows for it and its group."""

    train_id: str
    path: str
    #: The image's path under ``--images`` (what metadata's ``image`` records).
    name: str
    animals: tuple[Animal, ...]
    group: str | None = None


@dataclass(frozen=True)
class LabelSource:
    """An annotation file over a folder of images, as the extract job reads it."""

    images: str = option(required=False, metavar="DIR", help="folder of the annotated images")
    annotations: str = option(required=False, metavar="FILE", help="annotation file (or YOLO folder)")
    format: str = option("auto", choices=["auto", *FORMATS], help="the annotation file's format")
    classes: str | None = option(
        None,
        metavar="FILE",
        help="class order: a keras-retinanet classes CSV (name,id) or one name a line (default: the "
        "scheme's, else the file's own list, else first appearance)",
    )
    ignore: tuple[str, ...] = option(
        (),
        repeat=True,
        flag="--ignore-class",
        metavar="NAME",
        help="a class that is neither background nor counted (masked in training); repeatable",
    )
    group_pattern: str | None = option(
        None,
        metavar="REGEX",
        help="each image's group (e.g. its source photo) is the regex's first capture group in its "
        "file name; training holds out whole groups",
    )


@dataclass
class AnnotatedPlan:
    """What the driver read from the annotation file before any Spark work starts."""

    tasks: list[ImageTask]
    #: Bad rows found while reading the file.
    errors: list[AnnotationError] = field(default_factory=list)
    #: Image names the file gives that DIR lacks, and images of DIR the file never names.
    missing: list[str] = field(default_factory=list)
    unlabelled: int = 0
    format: str = ""
    #: ``(name, size)`` of the files in DIR, for the run's fingerprint.
    listing: list[tuple[str, int]] = field(default_factory=list)
    #: Each class's length from a given scheme (``length_px``'s middle), for classes that
    #: come as points only; None when the scheme was made from the file.
    scheme_lengths: dict[str, float] | None = None


def annotation_scheme(annotations: Annotations, source: LabelSource, given: Config | None) -> Config:
    """The scheme of an annotated survey: ``given`` (``--scheme``, its order) when there is
    one; else ``--classes``; else the file's own list or order of first appearance, less
    the ignored classes. Such a scheme has no dot colours.

    Raises
    ------
    ValueError
        If every class is ignored.
    """
    if given is not None:
        return given
    names = read_class_list(source.classes) if source.classes else annotations.classes
    names = [n for n in names if n not in source.ignore]
    if not names:
        raise ValueError(
            f"{source.annotations}: no classes left to count (classes {annotations.classes}, "
            f"ignored {list(source.ignore)})"
        )
    return Config(classes=tuple(ClassSpec(n) for n in names), annotation_key=ANNOTATION_KEY)


def plan_annotated(source: LabelSource, annotations: Annotations) -> AnnotatedPlan:
    """Match the file's images with DIR's files: one task per image the file names.

    Raises
    ------
    ValueError
        If DIR does not exist or holds no images, or ``--group-pattern`` is not a regex.
    """
    if not storage.is_dir(source.images):
        raise ValueError(f"--images {source.images!r} is not a folder")
    listing = storage.walk_files(source.images)
    by_name = {rel: rel for rel, _, _ in listing if rel.lower().endswith(IMAGE_SUFFIXES)}
    if not by_name:
        raise ValueError(f"--images {source.images!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    by_stem: dict[str, str] = {}
    for rel in sorted(by_name):
        by_stem.setdefault(image_id(rel), rel)
    plan = AnnotatedPlan([], list(annotations.errors), format=annotations.format)
    plan.listing = [(rel, size) for rel, size, _ in listing]
    named = set()
    for image, animals in annotations.animals.items():
        # A file may name an image by its path under DIR, its bare name, or (YOLO) its stem.
        rel = by_name.get(image.replace("\\", "/")) or by_stem.get(image_id(image))
        if rel is None:
            plan.missing.append(image)
            continue
        named.add(rel)
        group = annotations.groups.get(image) or group_of(storage.basename(rel), source.group_pattern)
        path = storage.join(source.images, *rel.split("/"))
        plan.tasks.append(ImageTask(image_id(rel), path, rel, tuple(animals), group))
    plan.unlabelled = len(set(by_name) - named)
    ids = [t.train_id for t in plan.tasks]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{source.annotations}: images in different folders share the ids {twice[:5]}")
    return plan


@dataclass(frozen=True)
class LabelledPhoto:
    """A decoded annotated image and what its labels say, in its pixels."""

    image: np.ndarray
    points: np.ndarray
    classes: np.ndarray
    sizes: np.ndarray
    #: Boxes ``(top, left, bottom, right)`` of ignored animals and of rows of unknown classes.
    ignored: np.ndarray
    masked: np.ndarray
    rejected: list[AnnotationError]


def label_image(
    task: ImageTask, config: Config, source: LabelSource, data: bytes, *, block: int = 8
) -> LabelledPhoto:
    """Decode one annotated image and place its rows; rows of an unknown class are masked
    (neither background nor an animal of a class) and reported.

    Raises
    ------
    PhotoError
        If the image cannot be decoded.
    """
    image = decode_rgb(data, task.name)
    shape = image.shape[:2]
    placed, rejected = place(
        list(task.animals),
        shape,
        config.class_names,
        ignore=source.ignore,
        file=source.annotations,
        mask_unknown=True,
    )
    masked = box_cells(placed.ignored, shape, block=block)
    return LabelledPhoto(image, placed.points, placed.classes, placed.sizes, placed.ignored, masked, rejected)


def labelled_record(task: ImageTask, photo: LabelledPhoto, config: Config) -> dict[str, Any]:
    """The parts of metadata/<id>.json that only an annotated image has."""
    names = config.class_names
    sizes: dict[str, list[list[float]]] = {n: [] for n in names}
    for k, (h, w) in zip(photo.classes, photo.sizes):
        sizes[names[k]].append([round(float(h), 1), round(float(w), 1)])
    ignored = [[round(float(v), 1) for v in box] for box in photo.ignored]
    return {"image": task.name, "group": task.group, "sizes": sizes, "ignored": ignored}


def load_labelled(
    images: str, name: str, ignored: list | np.ndarray, *, block: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """An annotated training image and its masked cells, as training reads them back.

    Raises
    ------
    PhotoError
        If the image is missing or cannot be decoded.
    """
    path = storage.join(images, *name.split("/"))
    try:
        data = storage.read_bytes(path)
    except FileNotFoundError:
        raise PhotoError(name, f"missing from the images folder {images!r}") from None
    image = decode_rgb(data, name)
    return image, box_cells(np.asarray(ignored, float), image.shape[:2], block=block)


def measured_sizes(
    metadata: list[dict[str, Any]], config: Config, scheme_lengths: dict[str, float] | None = None
) -> dict[str, Any]:
    """Each class's body length: measured from its boxes (median long side), else the
    given scheme's ``length_px`` (a class annotated with points), else unknown; with how
    many boxes it rests on and where it came from."""
    longs: dict[str, list[float]] = {n: [] for n in config.class_names}
    for meta in metadata:
        for name, boxes in (meta.get("sizes") or {}).items():
            longs.setdefault(name, []).extend(max(h, w) for h, w in boxes if h or w)
    lengths = class_lengths(longs)
    sizes = {}
    for n in config.class_names:
        if lengths[n] is not None:
            sizes[n] = {"length_px": lengths[n], "boxes": len(longs[n]), "from": "boxes"}
        elif scheme_lengths and n in scheme_lengths:
            sizes[n] = {"length_px": scheme_lengths[n], "boxes": 0, "from": "scheme"}
        else:
            sizes[n] = {"length_px": None, "boxes": 0, "from": None}
    return sizes


def read_labels(source: LabelSource) -> Annotations:
    """The annotation file as :func:`~herdcount.annotations.read_annotations` reads it, with
    YOLO's class names from ``--classes`` when given."""
    names = read_class_list(source.classes) if source.classes else None
    return read_annotations(source.annotations, source.format, classes=names)


def labelled_run(extract: str) -> str | None:
    """The images folder of an extract run whose labels came from an annotation file, or
    None for a run of dotted pairs (or no run at all)."""
    run = read_run(extract)
    return None if run is None else run.inputs.get("images")
