"""The count job's outputs, written on the driver at the end: submission.csv, counts.csv,
points.csv, totals with intervals, errors.csv, run.json and the summary."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from herdcount import storage
from herdcount.config import Config
from herdcount.count_tasks import ERROR, OK, CountPlan, PhotoResult
from herdcount.intervals import (
    DEFAULT_SURVEY_SHIFT,
    SurveyTotals,
    ValidationCounts,
    annotated_errors,
    survey_totals,
)
from herdcount.kaggle import id_key
from herdcount.kinds import rounded
from herdcount.locate import (
    Points,
)
from herdcount.mosaic import (
    pixel_to_map,
)
from herdcount.records import TaskError


def submission_csv(plan: CountPlan, counted: dict[str, list[float]], config: Config) -> str:
    """Kaggle ``submission.csv``: one row per id of the plan's order, counts rounded to
    the nearest non-negative integer, zeros for photos that failed."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["test_id", *config.class_names])
    zeros = [0.0] * len(config.class_names)
    for photo_id in plan.order:
        writer.writerow([photo_id, *rounded(np.asarray(counted.get(photo_id, zeros))).tolist()])
    return buf.getvalue()


def write_outputs(
    plan: CountPlan,
    results: list[PhotoResult],
    config: Config,
    *,
    errors_measured: ValidationCounts | None = None,
    groups: dict[str, str] | None = None,
    level: float = 0.9,
    calibration: dict[str, np.ndarray] | None = None,
    errors_source: str = "held-out",
    survey_shift: float = DEFAULT_SURVEY_SHIFT,
) -> dict[str, Any]:
    """Write submission.csv, counts.csv, points.csv, totals.csv (and totals_by_group.csv
    with ``groups``) and errors.csv into OUT; return the run's totals.

    ``errors_measured`` are the model's held-out photos' counts, from which the totals'
    intervals are made (:func:`herdcount.intervals.survey_totals`); without them the totals
    have no interval. ``calibration`` (true counts of annotated photos of the survey) takes
    their place when at least 2 of its photos were counted: their truth enters the totals
    as it is, and their counts measure the model's errors on this survey. ``survey_shift``
    widens intervals from held-out photos for another survey's bias
    (:func:`herdcount.intervals.survey_totals`'s ``shift``)."""
    records = plan.done + results
    ok = sorted((r for r in records if r.status == OK), key=lambda r: id_key(r.test_id))
    errors = sorted((r for r in plan.rows + results if r.status == ERROR), key=lambda r: id_key(r.test_id))
    counted = {r.test_id: r.counts for r in ok}
    out, names = plan.out, config.class_names
    storage.write_text_atomic(storage.join(out, "submission.csv"), submission_csv(plan, counted, config))
    storage.write_csv_atomic(
        storage.join(out, "counts.csv"),
        ["test_id", *names, "width", "height", "scale", "ground_scale", "cpu_s"],
        [
            [
                r.test_id,
                *r.counts,
                r.width,
                r.height,
                r.scale,
                "" if r.ground_scale is None else r.ground_scale,
                r.cpu_s,
            ]
            for r in ok
        ],
    )
    storage.write_csv_atomic(
        storage.join(out, "points.csv"),
        ["test_id", "class", "x", "y", "score", "map_x", "map_y"],
        ([r.test_id, names[k], *row] for r in ok for k, row in _point_rows(r)),
    )
    storage.write_csv_atomic(
        storage.join(out, "errors.csv"),
        ["test_id", "file", "reason"],
        [[e.item, e.file, e.reason] for e in (r.error for r in errors)],
    )
    matrix = np.array([r.counts for r in ok], np.float64).reshape(len(ok), len(names))
    survey, usable, known = estimate_totals(
        [r.test_id for r in ok], matrix, names, errors_measured, calibration, level=level, shift=survey_shift
    )
    # What the intervals were measured on (or would have been, with enough held-out photos).
    measured = usable if known is not None else errors_measured
    storage.write_csv_atomic(storage.join(out, "totals.csv"), TOTALS_HEADER, totals_rows(survey, names))
    by_group = {}
    if groups is not None:
        members: dict[str, list[int]] = {}
        for i, r in enumerate(ok):
            if r.test_id in groups:
                members.setdefault(groups[r.test_id], []).append(i)
        by_group = {
            g: survey_totals(
                matrix[rows],
                usable,
                known=None if known is None else known[rows],
                level=level,
                shift=survey_shift,
            )
            for g, rows in sorted(members.items())
        }
        storage.write_csv_atomic(
            storage.join(out, "totals_by_group.csv"),
            ["group", *TOTALS_HEADER],
            ([g, *row] for g, t in by_group.items() for row in totals_rows(t, names)),
        )
    in_order = set(plan.order)
    fresh = [r for r in results if r.status == OK and not r.resumed]
    totals = {
        "photos": len({t.photo_id for t in plan.tasks} | set(plan.rasters) | {r.test_id for r in plan.done}),
        "counted": len(ok),
        "resumed": len(ok) - len(fresh),
        "failed": len(errors),
        "submission_rows": len(plan.order),
        "not_in_submission": sorted((i for i in counted if i not in in_order), key=id_key),
        "counts": dict(zip(names, np.sum([r.counts for r in ok], axis=0).round(2).tolist()))
        if ok
        else dict.fromkeys(names, 0.0),
        "cpu_s_per_photo": round(float(np.mean([r.cpu_s for r in fresh])), 3) if fresh else None,
        "cpu_s_per_megapixel": _per_megapixel(fresh),
        "workers": len({r.pid for r in fresh}),
        "model_loads_per_worker": max((r.model_loads for r in fresh), default=0),
        "points": int(sum(len(r.points) for r in ok if r.points is not None)),
        "rasters": {
            r.test_id: {"width": r.width, "height": r.height, "chunks": r.chunks, "crs": r.crs}
            for r in ok
            if r.chunks is not None
        },
        "survey_totals": _totals_record(survey, names),
        "interval_from_photos": None if measured is None else len(measured.ids),
        "interval_from": "annotated" if known is not None else errors_source,
        "annotated_listed": len(calibration) if calibration else 0,
        "interval_level": level,
        "interval_survey_shift": None if known is not None else survey_shift,
        **({"group_totals": {g: _totals_record(t, names) for g, t in by_group.items()}} if by_group else {}),
    }
    return totals


def estimate_totals(
    ids: list[str],
    matrix: np.ndarray,
    names: list[str],
    errors_measured: ValidationCounts | None,
    calibration: dict[str, np.ndarray] | None,
    *,
    level: float = 0.9,
    shift: float = DEFAULT_SURVEY_SHIFT,
) -> tuple[SurveyTotals, ValidationCounts | None, np.ndarray | None]:
    """The survey's totals from the photos' counts (``matrix``, a row per id of ``ids``):
    with the true counts of at least 2 annotated photos (``calibration``), their truth and
    their errors; else with the model's held-out ``errors_measured`` widened by ``shift``.
    Returns the totals, the errors their intervals rest on and the known counts (NaN where
    not annotated; None without a calibration)."""
    # One held-out photo measures no spread: such a model's totals go without an interval.
    usable = errors_measured if errors_measured is not None and len(errors_measured.ids) >= 2 else None
    known = None
    annotated = [i for i, photo in enumerate(ids) if calibration and photo in calibration]
    if len(annotated) >= 2:
        known = np.full(matrix.shape, np.nan)
        for i in annotated:
            known[i] = calibration[ids[i]]
        usable = annotated_errors([ids[i] for i in annotated], known[annotated], matrix[annotated], names)
    return survey_totals(matrix, usable, known=known, level=level, shift=shift), usable, known


#: Columns of totals.csv.
TOTALS_HEADER = ["class", "total", "low", "high", "counted", "photos"]


def totals_rows(totals: SurveyTotals, names: list[str]) -> list[list[Any]]:
    """Rows of totals.csv: per class the estimate, the interval's ends (empty without the
    model's measured errors), the counted sum and the photos summed."""

    def cell(v: float) -> Any:
        return "" if np.isnan(v) else round(float(v), 1)

    return [
        [
            name,
            cell(totals.total[k]),
            cell(totals.low[k]),
            cell(totals.high[k]),
            round(float(totals.counted[k]), 2),
            totals.photos,
        ]
        for k, name in enumerate(names)
    ]


def _totals_record(totals: SurveyTotals, names: list[str]) -> dict[str, dict[str, float | None]]:
    return {
        name: {
            key: None if np.isnan(v[k]) else round(float(v[k]), 1)
            for key, v in (("total", totals.total), ("low", totals.low), ("high", totals.high))
        }
        for k, name in enumerate(names)
    }


def _point_rows(record: PhotoResult) -> list[tuple[int, list[Any]]]:
    """``(class, [x, y, score, map_x, map_y])`` of a photo's points; map coordinates only
    for a georeferenced raster."""
    x, y, k, score = _point_columns(record.points)
    if record.transform is None or not x:
        return [(c, [a, b, s, "", ""]) for a, b, c, s in zip(x, y, k, score)]
    mx, my = pixel_to_map(tuple(record.transform), y, x)
    return [
        (c, [a, b, s, round(float(u), 3), round(float(v), 3)])
        for a, b, c, s, u, v in zip(x, y, k, score, mx, my)
    ]


def _point_columns(points: Points | None) -> tuple[list, list, list, list]:
    """``x, y, class, score`` columns of a photo's points (x = column, y = row)."""
    if points is None or not len(points):
        return [], [], [], []
    data = points.to_dict()
    return data["x"], data["y"], data["class"], data["score"]


def _per_megapixel(fresh: list[PhotoResult]) -> float | None:
    """CPU-s per megapixel of the photos as stored (before ``--scale``)."""
    pixels = sum(r.width * r.height / max(r.scale, 1e-6) ** 2 for r in fresh if r.width and r.chunks is None)
    seconds = sum(r.cpu_s for r in fresh if r.width and r.chunks is None)
    return round(seconds / (pixels / 1e6), 4) if pixels else None


def precision_line(precision: dict[str, Any]) -> str:
    """The summary's line on the export that counted and the int8 check behind the choice."""
    check = precision.get("check")
    used = precision["used"]
    if not check:
        return f"precision: {used} (the run has no int8 export)"
    shares = ", ".join(f"{k} {100 * v:.2f} %" for k, v in check["count_share"].items())
    verdict = "passed" if check["passed"] else "failed"
    limit = 100 * check["thresholds"]["count_share"]
    return (
        f"precision: {used}; int8 check {verdict} on {check['photos']} held-out photos (counts off float: "
        f"{shares}, limit {limit:g} %; points within {check['thresholds']['point_px']:g} px: "
        f"{100 * check['points_within_px']:.1f} %)"
    )


def format_summary(totals: dict[str, Any], errors: list[TaskError]) -> str:
    """The lines the job prints at the end."""
    lines = [
        f"photos: {totals['counted']} counted ({totals['resumed']} resumed), {totals['failed']} failed; "
        f"submission.csv has {totals['submission_rows']} rows",
        "counts: " + ", ".join(f"{k} {v:g}" for k, v in totals["counts"].items()),
    ]
    if totals["cpu_s_per_photo"] is not None:
        per_mp = totals.get("cpu_s_per_megapixel")
        lines.append(
            f"{totals['cpu_s_per_photo']:.2f} CPU-s per photo"
            + (f", {per_mp:.3f} per megapixel of photo" if per_mp else "")
            + f" (decoding and inference) in {totals['workers']} worker processes"
        )
    if totals.get("precision"):
        lines.append(precision_line(totals["precision"]))
    if totals["not_in_submission"]:
        lines.append(
            f"{len(totals['not_in_submission'])} counted photos are not in sample_submission.csv and were left "
            "out of submission.csv (they are in counts.csv)"
        )
    survey = totals.get("survey_totals")
    if survey:
        listed, used = totals.get("annotated_listed", 0), totals.get("interval_from_photos") or 0
        if listed and totals.get("interval_from") != "annotated":
            lines.append(
                f"--calibration lists {listed} photos, fewer than 2 of them counted: intervals from the "
                "model's held-out photos instead"
            )
        if totals.get("interval_from") == "annotated":
            lines.append(
                f"survey totals, {round(100 * totals.get('interval_level', 0.9))} % intervals from {used} annotated "
                "photos of this survey (--calibration; their truth counted as it is) (totals.csv): "
                + ", ".join(f"{k} {v['total']:g} ({v['low']:g}-{v['high']:g})" for k, v in survey.items())
            )
        elif (totals.get("interval_from_photos") or 0) >= 2:
            which = (
                " that did not choose its epoch" if totals.get("interval_from") == "held-out-unchosen" else ""
            )
            lines.append(
                f"survey totals, {round(100 * totals.get('interval_level', 0.9))} % intervals from the model's "
                f"{totals['interval_from_photos']} held-out photos{which}, allowing "
                f"{totals.get('interval_survey_shift') or 0:g} for another survey's bias (totals.csv): "
                + ", ".join(f"{k} {v['total']:g} ({v['low']:g}-{v['high']:g})" for k, v in survey.items())
            )
        elif totals.get("interval_from_photos") is not None:
            lines.append(
                f"survey totals without intervals: the model's run measured its errors on "
                f"{totals['interval_from_photos']} held-out photo (validation_counts.csv); an interval needs "
                "at least 2 (train with a larger --val-fraction or more photos)"
            )
        else:
            lines.append(
                "survey totals without intervals: the model's run has no validation_counts.csv (trained before "
                "herdcount wrote it, or a classifier trained without --data)"
            )
    for r in errors:
        lines.append(f"  failed {r.file}: {r.reason}")
    return "\n".join(lines)
