"""An extract job's output read back: each training photo's dots (or animals), masks and
group, the split into training and held-out photos, and a photo loaded with them. No
TensorFlow: the windows stage and the trainers share it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from herdcount import storage
from herdcount.annotated import load_labelled
from herdcount.config import Config
from herdcount.dot_cells import black_blocks
from herdcount.imaging import decode_rgb
from herdcount.kaggle import id_key, read_mismatched


@dataclass(frozen=True)
class PhotoDots:
    """The dots of one extracted photo: centres ``(row, col)`` and class indices."""

    train_id: str
    height: int
    width: int
    points: NDArray[np.float64]
    classes: NDArray[np.int64]
    #: Annotated photos: the image's path under the images folder (None: ``Train/<id>.jpg``
    #: of a dotted pair), the boxes ``(top, left, bottom, right)`` masked in training, and
    #: the group held out whole.
    image: str | None = None
    ignored: tuple[tuple[float, float, float, float], ...] = ()
    group: str | None = None

    def counts(self, num_classes: int) -> NDArray[np.int64]:
        return np.bincount(self.classes, minlength=num_classes)

    @classmethod
    def from_annotation(
        cls, train_id: str, height: int, width: int, dots: dict[str, list], class_names: list[str]
    ) -> PhotoDots:
        """The dots of a metadata record's ``{class: [[x, y], ...]}``, in class order."""
        points = [(y, x) for klass in class_names for x, y in dots.get(klass, [])]
        classes = [k for k, klass in enumerate(class_names) for _ in dots.get(klass, [])]
        return cls(
            train_id, height, width, np.array(points, float).reshape(-1, 2), np.array(classes, np.int64)
        )

    @classmethod
    def from_metadata(cls, train_id: str, meta: dict, config: Config) -> PhotoDots:
        """The dots of a metadata/<id>.json record, with an annotated image's path, ignored
        boxes and group."""
        dots = cls.from_annotation(
            train_id, int(meta["height"]), int(meta["width"]), meta[config.annotation_key], config.class_names
        )
        ignored = tuple(tuple(float(v) for v in box) for box in meta.get("ignored") or [])
        return dataclasses.replace(dots, image=meta.get("image"), ignored=ignored, group=meta.get("group"))


def read_extract(out: str | Path, config: Config, data: str | Path | None = None) -> list[PhotoDots]:
    """The dots of every photo in an extract job's ``OUT/metadata``, in id order.

    Photos listed in DATA's MismatchedTrainImages.txt are left out even if present.

    Raises
    ------
    ValueError
        If OUT has no metadata, a file is not valid metadata, or it holds a class the
        scheme does not know.
    """
    folder = storage.join(out, "metadata")
    names = [n for n in storage.list_files(folder) if n.endswith(".json")] if storage.is_dir(folder) else []
    if not names:
        raise ValueError(f"{folder} holds no metadata/<id>.json; expected the output of herdcount extract")
    mismatched = read_mismatched(storage.join(data, "MismatchedTrainImages.txt")) if data else set()
    photos = []
    for name in names:
        train_id = name[: -len(".json")]
        if train_id in mismatched:
            continue
        try:
            meta = json.loads(storage.read_text(storage.join(folder, name)))
            dots = meta[config.annotation_key]
            photo = PhotoDots.from_metadata(train_id, meta, config)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{storage.join(folder, name)}: not extract metadata ({type(exc).__name__}: {exc})"
            ) from None
        unknown = sorted(set(dots) - set(config.class_names))
        if unknown:
            raise ValueError(
                f"{storage.join(folder, name)}: classes {unknown} are not in the scheme; "
                f"expected some of {config.class_names}"
            )
        photos.append(photo)
    return sorted(photos, key=lambda p: id_key(p.train_id))


def split_photos(
    ids: list[str],
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    groups: dict[str, str | None] | None = None,
) -> tuple[list[str], list[str]]:
    """Split photo ids into training and validation ids, repeatably for a seed.

    With ``groups`` (id -> group, e.g. the source photo a tile was cut from), whole groups
    are held out, so that validation never sees a photo of a group training saw; a photo
    without a group is a group of its own. The held-out groups are drawn in a seeded order
    until they hold ``val_fraction`` of the photos.

    Raises
    ------
    ValueError
        If there are fewer than 3 photos (or groups), or the fraction is not in (0, 1).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if groups and any(groups.get(i) is not None for i in ids):
        return _split_groups(ids, groups, val_fraction, seed)
    if len(ids) < 3:
        raise ValueError(f"{len(ids)} photos are too few for a validation split by photo; need at least 3")
    order = np.random.default_rng(seed).permutation(sorted(ids))
    n_val = min(max(1, round(val_fraction * len(ids))), len(ids) - 2)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def _split_groups(
    ids: list[str], groups: dict[str, str | None], val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    members: dict[str, list[str]] = {}
    for i in sorted(ids):
        g = groups.get(i)
        members.setdefault(f"group:{g}" if g is not None else f"photo:{i}", []).append(i)
    if len(members) < 3:
        raise ValueError(
            f"{len(members)} groups are too few for a validation split by group; need at least 3"
        )
    order = np.random.default_rng(seed).permutation(sorted(members))
    want = max(1, round(val_fraction * len(ids)))
    val: list[str] = []
    for n, key in enumerate(order):
        if len(val) >= want or n >= len(order) - 2:
            break
        val += members[key]
    held = set(val)
    return sorted(i for i in ids if i not in held), sorted(val)


@dataclass(frozen=True)
class TrainingPhoto:
    """A decoded Train photo with its dots and the masked cells of its dotted copy."""

    dots: PhotoDots
    image: NDArray[np.uint8]
    masked: NDArray[np.bool_]


def load_photo(data: str | Path, dots: PhotoDots, config: Config) -> TrainingPhoto:
    """Decode ``Train/<id>.jpg`` and the masked cells of ``TrainDotted/<id>.jpg``; or, for an
    annotated photo, the image under DATA (the images folder) and its ignored boxes' cells."""
    if dots.image is not None:
        image, masked = load_labelled(str(data), dots.image, dots.ignored, block=config.dots.block)
        return TrainingPhoto(dots, image, masked)
    data = Path(data)
    image = decode_rgb(
        storage.read_bytes(data / "Train" / f"{dots.train_id}.jpg"), f"Train/{dots.train_id}.jpg"
    )
    dotted = decode_rgb(
        storage.read_bytes(data / "TrainDotted" / f"{dots.train_id}.jpg"), f"TrainDotted/{dots.train_id}.jpg"
    )
    masked = black_blocks(dotted, plain=image, black_level=config.dots.black_level, block=config.dots.block)
    return TrainingPhoto(dots, image, masked)
