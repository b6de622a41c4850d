"""Review: people check and correct a count's animals, and the survey learns from it.

A review is made once from a count job's output (:func:`make_review`): every counted photo,
its points and counts, in an order chosen for the survey. First a seeded random sample of
photos, whose corrected counts are an unbiased sample of the survey and so calibrate its
totals (``count --calibration``); then the others, most in need of a look first. The web
application (:mod:`herdcount.review_app`) edits the review's database
(:mod:`herdcount.review_store`); :func:`export_review` writes what reviewers finished as an
annotation file (points CSV, for ``herdcount extract --annotations``) and the sample's true
counts as a calibration CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from herdcount import storage
from herdcount.annotations import IMAGE_SUFFIXES, image_id
from herdcount.config import PALETTE, config_from_dict
from herdcount.modelrun import ModelRun
from herdcount.options import option
from herdcount.review_store import PhotoEntry, Point, ReviewStore
from herdcount.runinfo import read_run
from herdcount.score import iter_points_csv

#: A point the model scored below this is counted as unsure when photos are ordered.
UNSURE_SCORE = 0.5


@dataclass(frozen=True)
class ReviewSettings:
    """How a review is made and served: the options of ``herdcount review``."""

    images: str | None = option(None, help="the photos (default: the folder the count read)", metavar="DIR")
    host: str = option("127.0.0.1", help="address to serve on; any but loopback needs a token")
    port: int = option(8765, help="port to serve on")
    sample: int = option(20, help="photos in the calibration sample, drawn at random when the review is made")
    seed: int = option(0, help="seed of the sample's draw")


@dataclass(frozen=True)
class CountOutput:
    """What review needs of a count job's output folder."""

    out: str
    images: str
    class_names: list[str]
    colours: list[tuple[int, int, int]]
    counts: dict[str, list[float]]
    points: dict[str, list[Point]]
    scales: dict[str, float | None]
    training_range: tuple[float, float] | None


def review_dir(count: str | Path) -> Path:
    """Where a count's review lives: ``OUT/review`` (a local folder: SQLite needs one)."""
    if storage.is_s3(count):
        raise ValueError(
            f"review keeps its database beside the count and needs a local folder, got {count!r}"
        )
    return Path(count) / "review"


def read_count(count: str, images: str | None = None) -> CountOutput:
    """The photos, counts, points and classes of the count job's output ``count``.

    Raises
    ------
    ValueError
        Naming the file and line of a missing or malformed run.json, counts.csv or points.csv.
    """
    run_json = storage.join(count, "run.json")
    run = read_run(count)
    if run is None:
        raise ValueError(f"{run_json} does not exist: --count names the output folder of herdcount count")
    try:
        settings = run.config["settings"]
        class_names = list(settings["class_names"])
        folder = images or run.inputs["images"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{run_json}: not a count job's record ({exc!r})") from None
    if not folder:
        raise ValueError(
            f"{run_json} names no image folder (a count of a sample submission?): give --images DIR"
        )
    scheme = run.config.get("scheme")
    colours = (
        config_from_dict(scheme).colours
        if scheme
        else [PALETTE[k % len(PALETTE)] for k in range(len(class_names))]
    )
    counts, scales = _read_counts(storage.join(count, "counts.csv"), class_names)
    points: dict[str, list[Point]] = defaultdict(list)
    for photo, row, col, k, score in iter_points_csv(
        storage.join(count, "points.csv"), class_names, ids=set(counts)
    ):
        points[photo].append(Point(len(points[photo]), class_names[k], row, col, score))
    training_range = None
    model = settings.get("model")
    if model and storage.exists(storage.join(model, "model.json")):
        training_range = ModelRun.read(model).training_scale_range
    return CountOutput(
        count, folder, class_names, [tuple(c) for c in colours], counts, dict(points), scales, training_range
    )


def _read_counts(path: str, class_names: list[str]) -> tuple[dict[str, list[float]], dict[str, float | None]]:
    rows = list(csv.reader(io.StringIO(storage.read_text(path), newline="")))
    header = [c.strip() for c in rows[0]] if rows else []
    missing = [c for c in ["test_id", *class_names] if c not in header]
    if missing:
        raise ValueError(f"{path}: columns {header}; missing {missing}")
    at = [header.index(c) for c in class_names]
    scale_at = header.index("scale") if "scale" in header else None
    counts, scales = {}, {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            counts[row[0]] = [float(row[i]) for i in at]
            scales[row[0]] = float(row[scale_at]) if scale_at is not None and row[scale_at] else None
        except (ValueError, IndexError):
            raise ValueError(f"{path}, line {line}: counts must be numbers, got {row}") from None
    return counts, scales


def order_photos(
    photos: list[str],
    count: CountOutput,
    *,
    sample: int = 20,
    seed: int = 0,
) -> list[tuple[str, bool, str]]:
    """``(photo, sampled, reason)`` in review order.

    First ``sample`` photos drawn at random with ``seed`` from all of them (the calibration
    sample: only a random draw keeps the corrected counts unbiased). Then the others: photos
    counted at a scale outside the model's training range, then by how many animals a
    reviewer is likely to correct: the counted total plus the unsure points (score below
    :data:`UNSURE_SCORE`) again.
    """
    if sample < 0:
        raise ValueError(f"the calibration sample must be >= 0 photos, got {sample}")
    ordered = sorted(photos)
    drawn = list(np.random.default_rng(seed).permutation(len(ordered))[: min(sample, len(ordered))])
    out = [
        (ordered[i], True, f"calibration sample, draw {n + 1} of {len(drawn)}") for n, i in enumerate(drawn)
    ]
    taken = set(drawn)
    rest = [p for k, p in enumerate(ordered) if k not in taken]

    def need(photo: str) -> tuple[int, float, str]:
        total = float(sum(count.counts.get(photo, [])))
        unsure = sum(1 for p in count.points.get(photo, []) if p.score is not None and p.score < UNSURE_SCORE)
        scale, lo_hi = count.scales.get(photo), count.training_range
        outside = scale is not None and lo_hi is not None and not lo_hi[0] <= scale <= lo_hi[1]
        reason = f"{total:.0f} counted, {unsure} unsure" + (
            f"; scale {scale:g} outside training {lo_hi[0]:g}-{lo_hi[1]:g}" if outside else ""
        )
        return (0 if outside else 1, -(total + unsure), reason)

    keyed = sorted(((need(p), p) for p in rest), key=lambda kv: (kv[0][0], kv[0][1], kv[1]))
    return out + [(p, False, key[2]) for key, p in keyed]


def make_review(count: str, images: str | None = None, *, sample: int = 20, seed: int = 0) -> ReviewStore:
    """The review of the count job's output ``count``: made in ``count/review/review.sqlite``
    the first time, opened as it is afterwards (its sample and order are fixed when made)."""
    path = review_dir(count) / "review.sqlite"
    if path.exists():
        return ReviewStore(path)
    found = read_count(count, images)
    files = {
        image_id(name): name
        for name, _ in storage.file_stats(found.images)
        if name.lower().endswith(IMAGE_SUFFIXES)
    }
    missing = sorted(set(found.counts) - set(files))
    if missing:
        raise ValueError(f"{found.images}: counted photos missing from the folder: {missing[:5]}")
    entries = []
    for rank, (photo, sampled, reason) in enumerate(
        order_photos(sorted(found.counts), found, sample=sample, seed=seed)
    ):
        with storage.open_ranged(storage.join(found.images, files[photo])) as f, Image.open(f) as im:
            width, height = im.size
        entries.append(
            PhotoEntry(
                photo,
                files[photo],
                width,
                height,
                found.points.get(photo, []),
                dict(zip(found.class_names, found.counts[photo])),
                rank,
                sampled,
                reason,
            )
        )
    meta = {
        "count": storage.absolute(count),
        "images": storage.absolute(found.images),
        "sample": str(sample),
        "seed": str(seed),
        "colours": json.dumps(found.colours),
    }
    return ReviewStore.create(path, entries, found.class_names, meta)


@dataclass(frozen=True)
class Exported:
    """What :func:`export_review` wrote."""

    points: str
    calibration: str | None
    photos: int
    animals: int
    sampled_done: int
    sampled: int


def export_review(store: ReviewStore, out: str | Path | None = None) -> Exported:
    """Write the photos reviewers marked done as a points CSV (``corrections.csv``:
    ``image,x,y,class``; a photo without animals as one row with an empty class), the count's
    classes in their order (``classes.csv``, for ``extract --classes``) and the done photos of
    the calibration sample as true counts (``calibration.csv``: ``test_id`` and a column per
    class, for ``count --calibration``; written where at least 2 are done).
    """
    out = Path(out) if out is not None else store.path.parent
    rows: list[list] = []
    calibration: list[list] = []
    photos = animals = sampled = 0
    for photo in store.photos():
        sampled += photo["sampled"]
        if not photo["done_by"]:
            continue
        state = store.state(photo["id"])
        photos += 1
        animals += len(state.points)
        rows += [[state.file, f"{p.col:.1f}", f"{p.row:.1f}", p.cls] for p in state.points] or [
            [state.file, "", "", ""]
        ]
        if state.sampled:
            calibration.append([state.id, *state.counts(store.classes).values()])
    points_path = out / "corrections.csv"
    storage.write_csv_atomic(points_path, ["image", "x", "y", "class"], rows)
    # The count's class order: an annotation file alone orders classes by first appearance.
    storage.write_text_atomic(out / "classes.csv", "".join(f"{c},{k}\n" for k, c in enumerate(store.classes)))
    calibration_path = None
    if len(calibration) >= 2:
        calibration_path = out / "calibration.csv"
        storage.write_csv_atomic(calibration_path, ["test_id", *store.classes], calibration)
    return Exported(
        str(points_path),
        calibration_path and str(calibration_path),
        photos,
        animals,
        len(calibration),
        sampled,
    )
