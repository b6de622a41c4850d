"""Real photos: train on a real survey's annotated tiles, count its held-out split, score it.

    python bench/real.py [--set elephant-seals] [--data ../shared/data] [--work bench/results/real]
                         [--reuse] [-- TRAIN OPTIONS]

Reads ``DATA/SET/train`` and ``DATA/SET/valid`` in place (boxes CSVs as keras-retinanet writes
them, a class list, "other" ignored), grouped by source photo (the tile name's prefix), so
that training's own hold-out never shares a source photo with what it trains on. Then
counts ``valid`` with the count job and prints, beside the all-zeros baseline:

- per-tile RMSE (submission.csv, rounded as a user gets them) per class and its mean;
- per-photo RMSE (the tiles' counts summed per source photo);
- point F1 within 40 px per class (Hungarian matching within the class);
- the survey totals' error (sum of absolute errors over the true total) and whether each
  class's total is inside its 90 % interval.

Everything it makes goes under WORK: extract outputs, the run, the count. ``--reuse`` keeps
finished stages (each resumes anyway). Options after ``--`` go to ``herdcount train`` (none:
the README's recipe for real surveys, :data:`RECIPE`; ``--`` alone: train's defaults).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
from common import herdcount

from herdcount.annotations import group_of, image_id, read_annotations, read_class_list
from herdcount.intervals import group_errors
from herdcount.score import column_rmse, interval_coverage, read_points_csv, score_point_sets

ROOT = Path(__file__).resolve().parents[1]
#: README's recipe for real surveys (docs/results.md, run r18), used when no options follow ``--``.
RECIPE = ["--width", "40", "--epochs", "24", "--steps-per-epoch", "300", "--weight-average", "0.99"]
RECIPE += ["--val-photos-per-epoch", "48", "--centre-weight", "1", "--keep", "last"]
GROUPS = r"^([^-]+)-"
RADIUS = 40.0


def extract(split: Path, classes: Path, out: Path, *, windows: bool, other: str) -> float:
    """The split's annotated tiles extracted into OUT; "other" (animals the annotators could
    not classify) ignored (masked in training) or taken as background (the file without
    them, as the published detector was trained)."""
    if (out / "run.json").exists():
        return 0.0
    file = "annotations_final.csv" if other == "ignore" else "annotations_final_no.csv"
    args = ["extract", "--images", str(split), "--annotations", str(split / file), "--classes", str(classes)]
    args += [*(["--ignore-class", "other"] if other == "ignore" else []), "--group-pattern", GROUPS]
    return herdcount(*args, "--out", str(out), *(["--windows"] if windows else []))


def read_table(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def truth_of(split: Path, names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each tile's true points ``(row, col)`` and classes, from the file without "other"."""
    labels = read_annotations(str(split / "annotations_final_no.csv"), "boxes")
    truth = {}
    for image, animals in labels.animals.items():
        kept = [a for a in animals if a.klass in names]
        points = np.array([(a.row, a.col) for a in kept], float).reshape(-1, 2)
        truth[image_id(image)] = (points, np.array([names.index(a.klass) for a in kept], np.int64))
    return truth


def scores(count: Path, truth: dict, names: list[str]) -> dict[str, object]:
    """Every figure of the module docstring, from the count job's outputs."""
    ids = sorted(truth)
    counted = {row["test_id"]: row for row in read_table(count / "submission.csv")}
    true = np.array([np.bincount(truth[i][1], minlength=len(names)) for i in ids], float)
    pred = np.array([[float(counted[i][n]) if i in counted else 0.0 for n in names] for i in ids])
    tile, zeros = column_rmse(true, pred), column_rmse(true, np.zeros_like(true))
    groups, photo_true, photo_pred = group_errors(ids, [group_of(i, GROUPS) for i in ids], true, pred)
    photo, photo_zeros = (
        column_rmse(photo_true, photo_pred),
        column_rmse(photo_true, np.zeros_like(photo_true)),
    )
    found = read_points_csv(count / "points.csv", names)
    points, _ = score_point_sets(found, truth, set(counted), len(names), radius=RADIUS)
    true_total = true.sum(axis=0)
    coverage = interval_coverage(count / "totals.csv", dict(zip(names, true_total.tolist())))
    est = np.array([row["total"] for row in coverage])
    return {
        "tiles": len(ids),
        "photos": len(groups),
        "tile_rmse": tile,
        "tile_zeros": zeros,
        "photo_rmse": photo,
        "photo_zeros": photo_zeros,
        "f1": points.f1,
        "precision": points.precision,
        "recall": points.recall,
        "true_total": true_total,
        "total": est,
        "low": [row["low"] for row in coverage],
        "high": [row["high"] for row in coverage],
        "inside": [row["inside"] for row in coverage],
        "totals_error": float(np.abs(est - true_total).sum() / true_total.sum()),
    }


def report(s: dict, names: list[str]) -> str:
    def row(label: str, values, mean: float | None = None, fmt: str = "{:.3f}") -> str:
        cells = "".join(f"{fmt.format(v):>10}" for v in values)
        tail = "" if mean is None else f"{fmt.format(mean):>10}"
        return f"{label:<34}{cells}{tail}"

    lines = [
        f"{s['tiles']} held-out tiles of {s['photos']} source photos",
        f"{'':<34}" + "".join(f"{n:>10}" for n in names) + f"{'mean':>10}",
    ]
    lines.append(row("per-tile RMSE", s["tile_rmse"], s["tile_rmse"].mean()))
    lines.append(row("per-tile RMSE, all zeros", s["tile_zeros"], s["tile_zeros"].mean()))
    lines.append(
        f"{'per-tile RMSE / all zeros':<34}{'':>{10 * len(names)}}{s['tile_rmse'].mean() / s['tile_zeros'].mean():>10.3f}"
    )
    lines.append(row("per-photo RMSE", s["photo_rmse"], s["photo_rmse"].mean(), "{:.1f}"))
    lines.append(row("per-photo RMSE, all zeros", s["photo_zeros"], s["photo_zeros"].mean(), "{:.1f}"))
    lines.append(row(f"point F1 within {RADIUS:g} px", s["f1"], s["f1"].mean()))
    lines.append(row("  precision", s["precision"], s["precision"].mean()))
    lines.append(row("  recall", s["recall"], s["recall"].mean()))
    lines.append(row("survey total, counted", s["total"], None, "{:.0f}"))
    lines.append(row("survey total, true", s["true_total"], None, "{:.0f}"))
    spans = [f"{lo:.0f}-{hi:.0f}" if not np.isnan(lo) else "-" for lo, hi in zip(s["low"], s["high"])]
    lines.append(f"{'90 % interval':<34}" + "".join(f"{v:>10}" for v in spans))
    lines.append(f"{'truth inside':<34}" + "".join(f"{'yes' if v else 'NO':>10}" for v in s["inside"]))
    lines.append(f"totals error (sum |counted - true| / true): {s['totals_error']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else RECIPE
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", default="elephant-seals", help="a folder of DATA: elephant-seals or harbor-seals")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "real")
    p.add_argument("--reuse", action="store_true", help="keep a finished run and count in WORK")
    p.add_argument(
        "--name", default="run", help="the run's folder in WORK/SET (several settings side by side)"
    )
    p.add_argument(
        "--other",
        choices=("background", "ignore"),
        default="background",
        help='animals labelled "other": background, as the file without them has it and the published '
        "detector was trained and scored; or ignored (masked in training)",
    )
    args = p.parse_args(argv)
    root, work = args.data / args.set, args.work / args.set
    classes = root / "classes-no-other.csv"
    names = read_class_list(str(classes))
    suffix = "" if args.other == "ignore" else "-other-background"
    train_out = work / f"extract-train{suffix}"
    minutes = {"extract train": extract(root / "train", classes, train_out, windows=True, other=args.other)}
    run, count = work / args.name, work / f"count-{args.name}"
    if not (args.reuse and (run / "model.json").exists()):
        minutes["train"] = herdcount(
            "train",
            "--kind",
            "density",
            "--extract",
            str(train_out),
            "--out",
            str(run),
            "--overwrite",
            *extra,
        )
    if not (args.reuse and (count / "run.json").exists()):
        minutes["count"] = herdcount(
            "count", "--model", str(run), "--images", str(root / "valid"), "--out", str(count)
        )
    print()
    print(f"{args.set}, valid split; model {run}")
    print(report(scores(count, truth_of(root / "valid", names), names), names))
    print("minutes: " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items() if v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
