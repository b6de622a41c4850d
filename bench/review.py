"""The review loop end to end: what reviewing N photos of a survey does to its totals and to
the model, on a synthetic survey whose test photos differ from the training ones.

    python bench/review.py [--work bench/results/review] [--n 8,16,32] [--draws 20] [--retrain-epochs 6]
                           [--test-scale 0.6,0.8] [--reuse]

Makes a survey (``herdcount synth``: training pairs, and test photos flown higher, at
``--test-scale`` of the training scale), extracts it, trains a density model with the
defaults and counts the test photos: the survey as a team would have it. Then, for each N
and ``--draws`` seeds of the calibration sample:

1. makes the count's review (:func:`herdcount.review.make_review`, ``--sample N``);
2. a simulated reviewer corrects the N sampled photos in the review database to their truth
   as a person would in the browser: model points matched to true ones (one to one within
   20 px) are moved onto them and relabelled where their class is wrong, the others deleted,
   missed animals added, the photo marked done;
3. ``herdcount review --export`` (:func:`herdcount.review.export_review`) writes the
   calibration CSV, checked against the truth (it must equal it);
4. the totals are made from it as ``count --calibration`` makes them
   (:func:`herdcount.count_outputs.estimate_totals`).

It prints, per N (0: the count job's totals from the model's held-out photos), the totals'
error (sum over classes of |total - truth| over the true total, mean over draws), the share
of class totals inside their 90 % interval and the median interval width over the truth.
Then, for the first draw of each N, the corrections are extracted (``herdcount extract
--annotations``), the model fine-tuned on them (``herdcount train --init``) and the survey
counted again: per-photo RMSE (mean over classes) on the photos nobody reviewed, before and
after.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from common import herdcount

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.count_inputs import read_calibration
from herdcount.count_outputs import estimate_totals
from herdcount.intervals import interval_errors
from herdcount.modelrun import ModelRun
from herdcount.points import match_points
from herdcount.review import export_review, make_review
from herdcount.review_store import ReviewStore
from herdcount.score import column_rmse, read_points_truth
from herdcount.synth import truth_dir

ROOT = Path(__file__).resolve().parents[1]
#: A herdcount verb run with its output kept back unless it fails.
quietly = functools.partial(herdcount, quiet=True)
RADIUS = 20.0


def read_counts(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    rows = csv.DictReader(io.StringIO(path.read_text()))
    return {r["test_id"]: np.array([float(r[n]) for n in names]) for r in rows}


def correct(store: ReviewStore, photo: str, truth: tuple[np.ndarray, np.ndarray], names: list[str]) -> int:
    """Correct one photo to its truth as a reviewer would; the number of edits."""
    state = store.state(photo)
    found = np.array([(p.row, p.col) for p in state.points], float).reshape(-1, 2)
    coords, classes = truth
    pairs = match_points(found, coords, radius=RADIUS)
    matched_found, matched_true = set(pairs[:, 0].tolist()), set(pairs[:, 1].tolist())
    edits = 0
    for i_found, i_true in pairs:
        p = state.points[i_found]
        seen = {"class": p.cls, "row": p.row, "col": p.col}
        row, col = (float(v) for v in coords[i_true])
        row, col = min(row, state.height - 0.1), min(col, state.width - 0.1)
        if (round(row, 1), round(col, 1)) != (round(p.row, 1), round(p.col, 1)):
            store.edit(photo, "bench", "move", point=p.id, seen=seen, row=row, col=col)
            seen, edits = {**seen, "row": row, "col": col}, edits + 1
        if names[classes[i_true]] != p.cls:
            store.edit(photo, "bench", "relabel", point=p.id, seen=seen, cls=names[classes[i_true]])
            edits += 1
    for i, p in enumerate(state.points):
        if i not in matched_found:
            store.edit(
                photo, "bench", "delete", point=p.id, seen={"class": p.cls, "row": p.row, "col": p.col}
            )
            edits += 1
    for j in range(len(coords)):
        if j not in matched_true:
            row, col = min(coords[j][0], state.height - 0.1), min(coords[j][1], state.width - 0.1)
            store.edit(photo, "bench", "add", cls=names[classes[j]], row=row, col=col)
            edits += 1
    store.edit(photo, "bench", "done")
    return edits + 1


def judge(total: np.ndarray, low: np.ndarray, high: np.ndarray, true: np.ndarray) -> tuple[float, list, list]:
    error = float(np.abs(total - true).sum() / true.sum())
    return error, ((low <= true) & (true <= high)).tolist(), ((high - low) / np.maximum(true, 1)).tolist()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "review")
    p.add_argument("--n", default="8,16,32", help="photos reviewed, comma-separated")
    p.add_argument("--draws", type=int, default=20, help="calibration samples drawn per N")
    p.add_argument("--train", type=int, default=12, help="training pairs")
    p.add_argument("--test", type=int, default=96, help="test photos: the survey")
    p.add_argument("--test-scale", default="0.6,0.8", help="the test photos' scale against the training ones")
    p.add_argument("--retrain-epochs", type=int, default=6, help="epochs of the fine-tuning (0: none)")
    p.add_argument("--reuse", action="store_true", help="keep the survey, run and count made before in WORK")
    args = p.parse_args(argv)
    sizes = [int(n) for n in args.n.split(",")]
    names = load_config(DEFAULT_SCHEME).class_names
    work = args.work
    survey, extract, run, count = work / "survey", work / "extract", work / "run", work / "count"
    if not (args.reuse and (count / "run.json").exists()):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        size = ["--width", "1000", "--height", "750", "--seed", "11"]
        quietly(
            "synth",
            str(survey),
            "--train",
            str(args.train),
            "--test",
            str(args.test),
            *size,
            "--test-scale",
            args.test_scale,
        )
        quietly("extract", "--data", str(survey), "--out", str(extract))
        quietly(
            "train", "--kind", "density", "--extract", str(extract), "--data", str(survey), "--out", str(run)
        )
        quietly("count", "--model", str(run), "--images", str(survey / "Test"), "--out", str(count))
    true_counts = read_counts(truth_dir(survey) / "test_counts.csv", names)
    counted = read_counts(count / "counts.csv", names)
    ids = sorted(counted)
    matrix = np.array([counted[i] for i in ids])
    true = np.array([true_counts[i] for i in ids])
    truth_points = read_points_truth(str(truth_dir(survey)), names, ids=set(ids))
    model = ModelRun.read(run)
    held_out, _ = interval_errors(model.validation_counts(), model.epoch_chosen_on)

    rows = []
    totals, _, _ = estimate_totals(ids, matrix, names, held_out, None)
    rows.append((0, *judge(totals.total, totals.low, totals.high, true.sum(axis=0)), 0.0))
    first_review: dict[int, Path] = {}
    for n in sizes:
        for draw in range(args.draws):
            folder = work / f"review-{n}-{draw}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            for name in ("run.json", "counts.csv", "points.csv"):
                (folder / name).symlink_to(count / name)
            store = make_review(str(folder), sample=n, seed=draw)
            started = time.monotonic()
            sampled = [ph["id"] for ph in store.photos() if ph["sampled"]]
            edits = sum(correct(store, photo, truth_points[photo], names) for photo in sampled)
            seconds = time.monotonic() - started
            done = export_review(store)
            calibration = read_calibration(done.calibration, set(ids), names)
            for photo in sampled:
                assert np.array_equal(calibration[photo], true_counts[photo]), (photo, calibration[photo])
            totals, _, _ = estimate_totals(ids, matrix, names, None, calibration)
            rows.append(
                (n, *judge(totals.total, totals.low, totals.high, true.sum(axis=0)), seconds / max(edits, 1))
            )
            if draw == 0:
                first_review[n] = folder
                print(
                    f"N={n}: {edits} edits through the review database, {1000 * seconds / edits:.1f} ms each"
                )
    print(
        f"\n{len(ids)} test photos flown at {args.test_scale} of the training scale; "
        f"{args.draws} calibration samples per N; 90 % intervals"
    )
    print(f"{'reviewed':>9} {'totals error':>13} {'inside':>8} {'median width':>13}")
    for n in [0, *sizes]:
        mine = [r for r in rows if r[0] == n]
        error = np.mean([r[1] for r in mine])
        inside = np.mean([v for r in mine for v in r[2]])
        width = np.median([v for r in mine for v in r[3]])
        print(f"{n:>9} {100 * error:>12.1f}% {inside:>8.2f} {width:>13.2f}")

    if args.retrain_epochs:
        print(f"\nfine-tuned on the first sample's corrections ({args.retrain_epochs} epochs, train --init):")
        print(
            f"{'reviewed':>9} {'RMSE before':>12} {'after':>8} {'all zeros':>10}  (photos not reviewed; mean over classes)"
        )
        for n, folder in first_review.items():
            sampled = set(ReviewStore(folder / "review" / "review.sqlite").photo_ids()[:n])
            ex, tuned, again = work / f"extract-{n}", work / f"run-{n}", work / f"count-{n}"
            corrections = str(folder / "review" / "corrections.csv")
            classes = str(folder / "review" / "classes.csv")
            for old in (ex, tuned, again):
                shutil.rmtree(old, ignore_errors=True)
            quietly(
                "extract",
                "--images",
                str(survey / "Test"),
                "--annotations",
                corrections,
                "--classes",
                classes,
                "--out",
                str(ex),
            )
            quietly(
                "train",
                "--kind",
                "density",
                "--init",
                str(run),
                "--extract",
                str(ex),
                "--data",
                str(survey / "Test"),
                "--out",
                str(tuned),
                "--epochs",
                str(args.retrain_epochs),
                "--overwrite",
            )
            quietly("count", "--model", str(tuned), "--images", str(survey / "Test"), "--out", str(again))
            after = read_counts(again / "counts.csv", names)
            rest = [i for i in ids if i not in sampled]
            t = np.array([true_counts[i] for i in rest])
            before_rmse = column_rmse(t, np.array([counted[i] for i in rest])).mean()
            after_rmse = column_rmse(t, np.array([after[i] for i in rest])).mean()
            zeros = column_rmse(t, np.zeros_like(t)).mean()
            kept = ModelRun.read(tuned).metrics.get("init_start_kept")
            note = (
                "  the run kept its starting weights: fine-tuning did worse on its held-out photos"
                if kept
                else ""
            )
            print(f"{n:>9} {before_rmse:>12.3f} {after_rmse:>8.3f} {zeros:>10.3f}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
