"""The Kaggle NOAA sea lion layout, in one place: train ids, ``train.csv``, the mismatched
list, thumbnail names and the order of ids.

Layout: ``Train/<id>.jpg``, ``TrainDotted/<id>.jpg``, ``Train/train.csv``
(``train_id`` and one column per class), ``MismatchedTrainImages.txt`` (header ``train_id``),
``Test/<id>.jpg`` and ``sample_submission.csv``.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from herdcount import storage
from herdcount.config import Config


def read_train_csv(path: str | Path, config: Config) -> dict[str, list[int]] | None:
    """Counts per class by train id from train.csv, or None when there is no train.csv."""
    if not storage.exists(path):
        return None
    with io.StringIO(storage.read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        absent = [c for c in ["train_id", *config.class_names] if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(f"{path}: missing columns {absent}; expected train_id and the scheme's classes")
        try:
            return {row["train_id"]: [int(row[c]) for c in config.class_names] for row in reader}
        except ValueError as exc:
            raise ValueError(f"{path}, line {reader.line_num}: {exc}") from None


def read_mismatched(path: str | Path) -> set[str]:
    """Train ids listed in MismatchedTrainImages.txt (header ``train_id``); empty when absent."""
    if not storage.exists(path):
        return set()
    lines = [line.strip() for line in storage.read_text(path).splitlines() if line.strip()]
    return {line for line in lines if line != "train_id"}


def thumbnail_name(train_id: str, klass: str, n: int, offset: int) -> str:
    """File name of thumbnail ``n`` of a class in a photo, at a diagonal offset:
    ``img_<id>-<class>-<n>-<offset>.jpg`` (class names hold no '-')."""
    return f"img_{train_id}-{klass}-{n}-{offset}.jpg"


_THUMBNAIL = re.compile(r"img_(?P<id>.+)-(?P<klass>[^-]+)-(?P<n>\d+)-(?P<offset>-?\d+)\.jpg")


def parse_thumbnail_name(name: str) -> tuple[str, str, int, int]:
    """``(train_id, class, n, offset)`` of a name made by :func:`thumbnail_name`.

    Raises
    ------
    ValueError
        If ``name`` is not such a name.
    """
    match = _THUMBNAIL.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not a thumbnail name; expected img_<id>-<class>-<n>-<offset>.jpg")
    return match["id"], match["klass"], int(match["n"]), int(match["offset"])


def id_key(train_id: str) -> tuple[int, int | str]:
    """Sort key: numeric ids in numeric order, then other names alphabetically."""
    return (0, int(train_id)) if train_id.isdigit() else (1, train_id)


def read_data_scheme(data: str | Path) -> dict | None:
    """The scheme recorded in ``DATA/scheme.yaml`` (written by synth), or None when absent."""
    import yaml

    path = storage.join(data, "scheme.yaml")
    if not storage.exists(path):
        return None
    recorded = yaml.safe_load(storage.read_text(path))
    if not isinstance(recorded, dict):
        raise ValueError(f"{path}: expected a scheme (a mapping), got {type(recorded).__name__}")
    return recorded
