"""What the extract job says about a survey: extract_report.csv's rows, the diagnosis of a
photo whose dots disagree with train.csv, the survey's measured dots and the summary."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

import numpy as np

from herdcount.config import Config
from herdcount.dot_colours import ColourStats
from herdcount.kaggle import id_key
from herdcount.records import Status

if TYPE_CHECKING:
    from herdcount.extract import PairResult

OK, SKIPPED, ERROR = Status.OK, Status.SKIPPED, Status.ERROR


def report_csv(
    rows: list[PairResult], config: Config, expected: dict[str, list[int]] | None, whys: dict[str, str]
) -> str:
    """``extract_report.csv``: one row per train id with status, found and expected counts."""
    names = config.class_names
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = ["train_id", "status", "message", *(f"found_{n}" for n in names)]
    writer.writerow([*header, *(f"expected_{n}" for n in names), "agrees", "footprint", "diagnosis"])
    for row in sorted(rows, key=lambda r: id_key(r.train_id)):
        found = row.counts or [""] * len(names)
        exp = (expected or {}).get(row.train_id)
        agrees = "" if exp is None or row.status != OK else str(list(found) == exp).lower()
        footprint = (row.annotation or {}).get("dot_footprint")
        cells = [*found, *(exp or [""] * len(names)), agrees, "" if footprint is None else footprint]
        writer.writerow([row.train_id, row.status, row.message, *cells, whys.get(row.train_id, "")])
    return buf.getvalue()


def diagnoses(
    rows: list[PairResult], config: Config, expected: dict[str, list[int]] | None
) -> dict[str, str]:
    """:func:`diagnose` for every extracted photo whose counts disagree with train.csv."""
    survey = survey_footprint(rows)
    whys = {}
    for row in rows:
        exp = (expected or {}).get(row.train_id)
        if row.status == OK and exp is not None and list(row.counts) != exp:
            footprint = row.annotation.get("dot_footprint")
            whys[row.train_id] = diagnose(row.counts, exp, config.class_names, footprint, survey)
    return whys


def survey_footprint(rows: list[PairResult]) -> float | None:
    """The median over photos of each photo's measured dot footprint (painted px per dot)."""
    values = [r.annotation.get("dot_footprint") for r in rows if r.annotation]
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def diagnose(
    found: list[int], expected: list[int], names: list[str], footprint: float | None, survey: float | None
) -> str:
    """Why a photo's dots disagree with train.csv, in words, from the pattern of the counts.

    The patterns: about twice (or half) the expected dots in all, no class below (above)
    its expected count, so one dot became two (or two one); one class short while another has as many extra, so a colour was taken
    for another's; one class short alone, so its dots went unseen; and a footprint far
    from the survey's.
    """
    found_a, exp_a = np.asarray(found, dtype=float), np.asarray(expected, dtype=float)
    diff = found_a - exp_a
    some = exp_a > 0
    ratio = found_a[some].sum() / exp_a[some].sum() if some.any() else np.inf
    size = ""
    if footprint is not None and survey:
        size = f" (dot area here {footprint:.0f} px, survey median {survey:.0f} px)"
    if some.sum() >= 2 and 1.6 <= ratio <= 2.4 and (found_a >= exp_a).all():
        return (
            f"about twice the expected dots of every class: one dot split in two{size}; set dots.dot_radius?"
        )
    if some.sum() >= 2 and 0.4 <= ratio <= 0.65 and (found_a <= exp_a).all():
        return (
            f"about half the expected dots of every class: two dots taken as one{size}; set dots.dot_radius?"
        )
    short = [i for i in np.flatnonzero(diff < 0)]
    extra = [i for i in np.flatnonzero(diff > 0)]
    parts = []
    for i in short:
        swap = [j for j in extra if diff[j] == -diff[i]]
        if swap:
            parts.append(
                f"{int(-diff[i])} {names[i]} counted as {names[swap[0]]}: their dot colours are close"
            )
        else:
            parts.append(
                f"{int(-diff[i])} {names[i]} not found: dot colour off the scheme's dot_rgb or faint"
            )
    for j in extra:
        if not any(diff[i] == -diff[j] for i in short):
            parts.append(f"{int(diff[j])} {names[j]} too many: dots split or JPEG specks")
    return "; ".join(parts) + size


def summarise(
    rows: list[PairResult], config: Config, expected: dict[str, list[int]] | None, whys: dict[str, str]
) -> dict[str, Any]:
    """Totals of an extract run: photos by status, dots per class, disagreeing photos."""
    ok = [r for r in rows if r.status == OK]
    dots = np.sum([r.counts for r in ok], axis=0).tolist() if ok else [0] * len(config.classes)
    disagree = sorted(
        (
            r.train_id
            for r in ok
            if expected and r.train_id in expected and list(r.counts) != expected[r.train_id]
        ),
        key=id_key,
    )
    return {
        "photos": len(rows),
        "done": len(ok),
        "resumed": sum(bool(r.resumed) for r in ok),
        "skipped": sum(r.status == SKIPPED for r in rows),
        "failed": sum(r.status == ERROR for r in rows),
        "dots": dict(zip(config.class_names, dots)),
        "disagree_with_train_csv": disagree if expected is not None else None,
        "task_cpu_s": round(sum(r.cpu_s for r in rows), 3),
        "measured_dots": measured_dots(ok, config),
        "likely_cause": likely_cause(whys) if disagree else None,
    }


def _measured_colour(stats: ColourStats, k: int, config: Config) -> dict[str, Any] | None:
    if stats.pixels[k] == 0:
        return None
    return {
        "rgb": np.round(stats.mean[k]).astype(int).tolist(),
        "std": np.round(stats.std[k], 1).tolist(),
        "pixels": int(stats.pixels[k]),
        "scheme_rgb": list(config.classes[k].dot_rgb),
    }


def measured_dots(ok: list[PairResult], config: Config) -> dict[str, Any]:
    """What the survey's dots looked like: footprint, radius and each class's colour.

    The footprint is the median over photos of each photo's measured painted area per
    dot; colours pool the fully painted pixels of every photo.
    """
    footprint = survey_footprint(ok)
    stats = ColourStats.empty(len(config.classes))
    for r in ok:
        colours = r.annotation.get("dot_colours")
        if colours is not None:
            stats = stats + ColourStats.from_dict(colours)
    colours = {name: _measured_colour(stats, k, config) for k, name in enumerate(config.class_names)}
    return {
        "footprint_px": None if footprint is None else round(footprint, 2),
        "radius_px": None if footprint is None else round(float(np.sqrt(footprint / np.pi)), 2),
        "colours": colours,
    }


def format_summary(totals: dict[str, Any], rows: list[PairResult]) -> str:
    """The lines the job prints at the end."""
    lines = [
        f"photos: {totals['done']} done ({totals['resumed']} resumed), {totals['skipped']} skipped, "
        f"{totals['failed']} failed",
        ("animals: " if totals.get("annotation_format") else "dots: ")
        + ", ".join(f"{k} {v}" for k, v in totals["dots"].items()),
    ]
    disagree = totals["disagree_with_train_csv"]
    if totals.get("annotation_format"):
        pass  # the animals are the annotation file's: nothing to compare them with
    elif disagree is None:
        lines.append("no train.csv: counts not compared")
    else:
        lines.append(
            f"counts disagreeing with train.csv: {len(disagree)}"
            + (f" ({', '.join(disagree)})" if disagree else "")
        )
    measured = totals.get("measured_dots") or {}
    if measured.get("radius_px") is not None:
        lines.append(f"dots measured: radius {measured['radius_px']} px (area {measured['footprint_px']} px)")
    if totals.get("likely_cause"):
        lines.append(totals["likely_cause"])
    for r in sorted(rows, key=lambda r: id_key(r.train_id)):
        if r.status == ERROR:
            lines.append(f"  failed {r.train_id}: {r.message}")
    return "\n".join(lines)


def likely_cause(whys: dict[str, str]) -> str:
    """One line naming the commonest diagnosis among disagreeing photos and what changes it."""
    kinds = {
        "twice": "dots split in two; measure them (herdcount dotstyle) and set dots.dot_radius",
        "half": "touching dots merged; measure them (herdcount dotstyle) and set dots.dot_radius",
        "counted as": "dot colours confused; compare the measured colours in run.json with the scheme's dot_rgb",
        "not found": "dots missed; compare the measured colours in run.json with the scheme's dot_rgb",
        "too many": "extra dots; check the photos' JPEG quality and dots.min_coverage",
    }
    tally = {k: sum(k in w for w in whys.values()) for k in kinds}
    top = max(tally, key=tally.get)
    if not tally[top]:
        return "likely cause: unknown; see extract_report.csv"
    return f"likely cause ({tally[top]} of {len(whys)} photos): {kinds[top]}; see extract_report.csv"
