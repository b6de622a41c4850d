"""Score a Kaggle-style submission: RMSE per class and averaged over classes; and, beside
it, the points of each animal and the survey totals' intervals.

    herdcount score SUBMISSION TRUTH [--points TRUTH_POINTS] [--radius 20]

TRUTH is a CSV of true counts with the same header (``test_id`` and the class columns),
such as the synthetic survey's ``<data>_truth/test_counts.csv``. The all-zeros baseline is
printed beside the submission's score.

With ``--points``, the count job's ``points.csv`` beside SUBMISSION is matched one to one,
class by class, to the true points within ``--radius`` pixels (Hungarian matching) and
precision, recall and F1 are printed per class. TRUTH_POINTS is the generator's truth
folder (``<data>_truth``, whose ``test/<id>.json`` list the true dots) or a CSV of
``test_id,class,x,y``. Photos of the truth that the count job did not count (not in its
counts.csv: they failed) are listed, and their animals count as missed.

When ``totals.csv`` lies beside SUBMISSION, each class's survey total and interval is put
beside the true total of the photos it covers: whether the truth is inside, and how wide
the interval is against the total.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from herdcount import storage
from herdcount.options import option
from herdcount.points import PointScores, score_points


def _radius(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels or 'auto', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the radius must be positive, got {value:g}")
    return value


@dataclass(frozen=True)
class ScoreSettings:
    """What ``herdcount score`` is asked to score."""

    submission: str = option(flag="submission", help="submission CSV: test_id and the class columns")
    truth: str = option(flag="truth", help="true counts CSV with the same header")
    points: str | None = option(
        None,
        metavar="TRUTH_POINTS",
        help="also match points.csv beside SUBMISSION to the true points: the generator's truth folder "
        "or a CSV of test_id,class,x,y",
    )
    radius: float | str = option(
        20.0,
        type=_radius,
        help="largest distance of a matched pair of points, in pixels, or 'auto': half of each class's body "
        "length as the model's training data measured it (default: %(default)s)",
    )


def read_counts(path: str | Path, *, header: list[str] | None = None) -> tuple[list[str], list[str], NDArray]:
    """``(header, ids, counts)`` of a counts CSV; ``counts`` is ``(len(ids), len(header) - 1)``.

    Raises
    ------
    ValueError
        If the header differs from ``header`` (when given), or a row has a duplicate id, the
        wrong number of fields, or a value that is not a non-negative number; the message
        names the file and line.
    """
    rows = list(csv.reader(io.StringIO(storage.read_text(path), newline="")))
    if not rows:
        raise ValueError(f"{path}: empty file; expected a header line")
    found = [c.strip() for c in rows[0]]
    if header is not None and found != header:
        raise ValueError(f"{path}: header is {','.join(found)!r}; expected {','.join(header)!r}")
    ids, values, seen = [], [], set()
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(found):
            raise ValueError(f"{path}, line {line}: {len(row)} fields; expected {len(found)}")
        key = row[0].strip()
        if key in seen:
            raise ValueError(f"{path}, line {line}: id {key!r} appears twice")
        seen.add(key)
        try:
            numbers = [float(v) for v in row[1:]]
        except ValueError:
            raise ValueError(f"{path}, line {line}: non-numeric value in {row[1:]}") from None
        if any(not math.isfinite(v) or v < 0 for v in numbers):
            raise ValueError(f"{path}, line {line}: counts must be non-negative numbers, got {row[1:]}")
        ids.append(key)
        values.append(numbers)
    return found, ids, np.array(values, dtype=float).reshape(len(ids), len(found) - 1)


def column_rmse(truth: ArrayLike, predicted: ArrayLike) -> NDArray[np.float64]:
    """RMSE of each column over rows: Kaggle's metric per class, before averaging over classes."""
    return np.sqrt(np.mean((np.asarray(predicted, float) - np.asarray(truth, float)) ** 2, axis=0))


def score(submission: str | Path, truth: str | Path) -> dict[str, object]:
    """RMSE per class, its mean over classes, and the same for predicting zero everywhere.

    Raises
    ------
    ValueError
        If the submission's header differs from the truth's, or its ids are not exactly
        the truth's ids (missing, duplicate or extra ids are named).
    """
    header, truth_ids, true = read_counts(truth)
    _, ids, predicted = read_counts(submission, header=header)
    missing = sorted(set(truth_ids) - set(ids))
    extra = sorted(set(ids) - set(truth_ids))
    if missing or extra:
        raise ValueError(f"{submission}: ids differ from {truth}: missing {missing[:10]}, extra {extra[:10]}")
    order = {key: n for n, key in enumerate(ids)}
    predicted = predicted[[order[key] for key in truth_ids]]
    rmse, zero = column_rmse(true, predicted), column_rmse(true, np.zeros_like(true))
    mae = np.mean(np.abs(predicted - true), axis=0)
    classes = header[1:]
    return {
        "photos": len(truth_ids),
        "rmse": dict(zip(classes, rmse.tolist())),
        "mae": dict(zip(classes, mae.tolist())),
        "mean_rmse": float(rmse.mean()),
        "zero_rmse": dict(zip(classes, zero.tolist())),
        "zero_mean_rmse": float(zero.mean()),
    }


def format_score(result: dict[str, object]) -> str:
    """The printed table: one line per class, then the mean, for the submission and all zeros."""
    mae = result.get("mae", {})
    lines = [f"{'class':<16}{'RMSE':>10}{'MAE':>10}{'all zeros':>12}"]
    for name, value in result["rmse"].items():
        lines.append(
            f"{name:<16}{value:>10.4f}{mae.get(name, math.nan):>10.4f}{result['zero_rmse'][name]:>12.4f}"
        )
    mean_mae = float(np.mean(list(mae.values()))) if mae else math.nan
    lines.append(
        f"{'mean':<16}{result['mean_rmse']:>10.4f}{mean_mae:>10.4f}{result['zero_mean_rmse']:>12.4f}"
    )
    lines.append(f"{result['photos']} photos")
    return "\n".join(lines)


# --- points -------------------------------------------------------------------------------

#: Points per photo: ``(row, col)`` coordinates and class indices.
PhotoPoints = dict[str, tuple[NDArray[np.float64], NDArray[np.int64]]]


def read_points_csv(path: str | Path, class_names: list[str], *, ids: set[str] | None = None) -> PhotoPoints:
    """The points of a CSV with ``test_id,class,x,y`` columns (others, such as ``score``,
    are ignored), per photo.

    Raises
    ------
    ValueError
        As :func:`iter_points_csv`.
    """
    lists: dict[str, tuple[list, list]] = {}
    for photo, row, col, k, _ in iter_points_csv(path, class_names, ids=ids):
        coords, classes = lists.setdefault(photo, ([], []))
        coords.append((row, col))
        classes.append(k)
    return {
        photo: (np.array(c, np.float64).reshape(-1, 2), np.array(k, np.int64))
        for photo, (c, k) in lists.items()
    }


def iter_points_csv(
    path: str | Path, class_names: list[str], *, ids: set[str] | None = None
) -> Iterator[tuple[str, float, float, int, float | None]]:
    """``(photo, row, col, class index, score or None)`` of each row of a CSV with
    ``test_id,class,x,y`` columns and an optional ``score``.

    Raises
    ------
    ValueError
        If a column is missing, or a row names a class not in ``class_names``, an id not in
        ``ids`` (when given) or a coordinate or score that is not a number; the message names
        the file and line.
    """
    rows = list(csv.reader(io.StringIO(storage.read_text(path), newline="")))
    header = [c.strip() for c in rows[0]] if rows else []
    if not {"test_id", "class", "x", "y"} <= set(header):
        raise ValueError(f"{path}: columns {header}; expected test_id, class, x, y")
    at = {name: header.index(name) for name in ("test_id", "class", "x", "y")}
    score_at = header.index("score") if "score" in header else None
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}, line {line}: {len(row)} fields; expected {len(header)}")
        photo, klass = row[at["test_id"]].strip(), row[at["class"]].strip()
        if ids is not None and photo not in ids:
            raise ValueError(f"{path}, line {line}: id {photo!r} is not a photo of the truth's counts")
        if klass not in class_names:
            raise ValueError(f"{path}, line {line}: unknown class {klass!r}; expected one of {class_names}")
        try:
            x, y = float(row[at["x"]]), float(row[at["y"]])
            score = float(row[score_at]) if score_at is not None and row[score_at].strip() else None
        except ValueError:
            raise ValueError(
                f"{path}, line {line}: x, y and score must be numbers, got {row[at['x']]!r}, {row[at['y']]!r}"
                + (f", {row[score_at]!r}" if score_at is not None else "")
            ) from None
        yield photo, y, x, class_names.index(klass), score


def read_points_truth(path: str | Path, class_names: list[str], *, ids: set[str]) -> PhotoPoints:
    """True points per photo: from a CSV (:func:`read_points_csv`), or from the generator's
    truth folder (``test/<id>.json``, or a folder of ``<id>.json`` itself) whose record holds
    ``{class: [[x, y], ...]}`` under the scheme's annotation key.

    Raises
    ------
    ValueError
        If the path is neither, a record names a class not in ``class_names``, or a photo of
        ``ids`` has no record (or a record is not of ``ids``).
    """
    path = str(path)
    if not storage.is_dir(path):
        if not storage.exists(path):
            raise ValueError(f"--points {path!r} does not exist; expected a truth folder or a CSV")
        return read_points_csv(path, class_names, ids=ids)
    folder = storage.join(path, "test") if storage.is_dir(storage.join(path, "test")) else path
    records = {n[: -len(".json")]: n for n in storage.list_files(folder) if n.endswith(".json")}
    missing, extra = sorted(ids - set(records)), sorted(set(records) - ids)
    if missing or extra:
        raise ValueError(
            f"{folder}: the point records do not match the truth's counts: no record for {missing[:10]}, "
            f"records of unknown ids {extra[:10]}"
        )
    points: PhotoPoints = {}
    for photo in sorted(ids):
        name = storage.join(folder, records[photo])
        data = json.loads(storage.read_text(name))
        dots = next((v for k, v in data.items() if isinstance(v, dict) and k != "hidden"), {})
        unknown = sorted(set(dots) - set(class_names))
        if unknown:
            raise ValueError(f"{name}: unknown classes {unknown}; expected {class_names}")
        coords = [(y, x) for klass in class_names for x, y in dots.get(klass, [])]
        classes = [k for k, klass in enumerate(class_names) for _ in dots.get(klass, [])]
        points[photo] = (np.array(coords, np.float64).reshape(-1, 2), np.array(classes, np.int64))
    return points


def score_point_sets(
    found: PhotoPoints,
    truth: PhotoPoints,
    counted: set[str],
    n_classes: int,
    *,
    radius: float | list[float] = 20.0,
) -> tuple[PointScores, list[str]]:
    """Per-class matches of found against true points over the truth's photos, and the
    photos that were not counted (their true points count as missed)."""
    total = PointScores(*(np.zeros(n_classes, np.int64) for _ in range(3)))
    empty = (np.zeros((0, 2)), np.zeros(0, np.int64))
    for photo, (coords, classes) in truth.items():
        mine = found.get(photo, empty) if photo in counted else empty
        total = total + score_points(mine[0], mine[1], coords, classes, n_classes, radius=radius)
    return total, sorted(set(truth) - counted, key=lambda i: (len(i), i))


def format_points(
    scores: PointScores, class_names: list[str], radius: float | list[float], not_counted: list[str]
) -> str:
    """Per-class precision, recall and F1 of a point matching, then their means."""
    within = (
        f"{radius:g} px"
        if np.ndim(radius) == 0
        else "half a body length (" + ", ".join(f"{n} {r:g} px" for n, r in zip(class_names, radius)) + ")"
    )
    lines = [f"points matched one to one within {within}:"]
    lines.append(f"{'class':<16}{'precision':>10}{'recall':>10}{'F1':>8}{'found':>8}{'true':>8}")
    for k, name in enumerate(class_names):
        lines.append(
            f"{name:<16}{scores.precision[k]:>10.3f}{scores.recall[k]:>10.3f}{scores.f1[k]:>8.3f}"
            f"{scores.found[k]:>8}{scores.truth[k]:>8}"
        )
    lines.append(
        f"{'mean':<16}{scores.precision.mean():>10.3f}{scores.recall.mean():>10.3f}{scores.f1.mean():>8.3f}"
    )
    if not_counted:
        lines.append(
            f"{len(not_counted)} photos of the truth were not counted (no points; their animals count as "
            f"missed): {', '.join(not_counted[:20])}"
        )
    return "\n".join(lines)


# --- survey totals --------------------------------------------------------------------------


def interval_coverage(totals: str | Path, true_totals: dict[str, float]) -> list[dict[str, object]]:
    """Per class of a count job's totals.csv: its total and interval beside the true total,
    whether the truth is inside, and the interval's width over the total.

    Raises
    ------
    ValueError
        If totals.csv lacks a class of ``true_totals`` or its columns.
    """
    rows = list(csv.DictReader(io.StringIO(storage.read_text(totals), newline="")))
    by_class = {row.get("class"): row for row in rows}
    result = []
    for name, truth in true_totals.items():
        row = by_class.get(name)
        if row is None or not {"total", "low", "high"} <= set(row):
            raise ValueError(f"{totals}: no row of class {name!r} with total, low and high")
        total = float(row["total"])
        low, high = (float(row[k]) if row[k] != "" else math.nan for k in ("low", "high"))
        result.append(
            {
                "class": name,
                "total": total,
                "low": low,
                "high": high,
                "truth": truth,
                "inside": bool(low <= truth <= high),
                "width": (high - low) / total if total > 0 else math.nan,
            }
        )
    return result


def format_coverage(rows: list[dict[str, object]]) -> str:
    """The survey totals beside the truth, and how many intervals hold it."""
    lines = ["survey totals (totals.csv) against the truth of the photos they cover:"]
    lines.append(f"{'class':<16}{'total':>10}{'low':>10}{'high':>10}{'truth':>10}  inside  width/total")
    for r in rows:
        lines.append(
            f"{r['class']:<16}{r['total']:>10.1f}{r['low']:>10.1f}{r['high']:>10.1f}{r['truth']:>10.0f}  "
            f"{'yes' if r['inside'] else 'NO':<6}  {r['width']:.2f}"
        )
    judged = [r for r in rows if not math.isnan(r["low"])]
    if judged:
        widths = [r["width"] for r in judged if not math.isnan(r["width"])]
        lines.append(
            f"{sum(r['inside'] for r in judged)} of {len(judged)} class totals inside their intervals; "
            f"median width {float(np.median(widths)) if widths else math.nan:.2f} of the total"
        )
    else:
        lines.append("totals.csv has no intervals (the model's run had no validation_counts.csv)")
    return "\n".join(lines)


def class_radii(submission: str | Path, class_names: list[str]) -> list[float]:
    """Half of each class's body length, as the model that made the counts beside
    ``submission`` recorded it (``class_lengths_px`` of its model.json, from the boxes its
    training data measured); 20 px for a class of unknown size.

    Raises
    ------
    ValueError
        If no count run.json beside the submission names its model.
    """
    run = storage.join(storage.parent(submission), "run.json")
    model = json.loads(storage.read_text(run)).get("model") if storage.exists(run) else None
    path = (model or {}).get("run")
    if not path:
        raise ValueError(
            f"--radius auto needs the count job's run.json beside {submission}, naming its model"
        )
    from herdcount.modelrun import ModelRun

    lengths = ModelRun.read(path).class_lengths_px or {}
    return [lengths[n] / 2 if lengths.get(n) else 20.0 for n in class_names]


def counted_ids(submission: str | Path) -> set[str] | None:
    """Ids of the photos the count job counted: counts.csv beside the submission; None
    where there is none (a submission from elsewhere)."""
    path = storage.join(storage.parent(submission), "counts.csv")
    if not storage.exists(path):
        return None
    rows = list(csv.reader(io.StringIO(storage.read_text(path), newline="")))
    return {row[0] for row in rows[1:] if row}
