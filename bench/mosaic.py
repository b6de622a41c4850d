"""Benchmark: a trained density model on an orthomosaic against the same scenes as photos.

    python bench/mosaic.py [--work DIR] [--seed 400] [--test 16] [--chunk 2048] [--radius 20]

Trains a density model with its default settings on bench/train.py's 40-photo survey (seed
5; reused when WORK already holds ``run-density``, as bench/points.py leaves it), makes a
test survey of an unseen seed with ``synth --mosaic`` (by default its test photos cut from one
continuous stretch of ground, as a drone photographs a colony; ``--mosaic laid``: independent
scenes laid edge to edge; either way one georeferenced GeoTIFF, UTM 10N, 3 cm pixels), and
counts it twice with the count job:
the photos one by one, and the mosaic in chunks of ``--chunk`` pixels. It prints

- per class, the mosaic's total against the photos' (goal of issue 18: within 3 %; any
  difference comes from context across the photos' borders, which the mosaic has and the
  photos do not) and the truth;
- the mosaic's points matched to the true ones in map coordinates, within ``--radius``
  pixels of ground distance (``radius`` times the pixel size), beside the photos' points
  matched in pixels: precision, recall, F1 and the matched pairs' median distance.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import reference_run

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.count import CountJob
from herdcount.points import match_points, score_points
from herdcount.runner import run_in_process
from herdcount.score import counted_ids, read_counts, read_points_csv, read_points_truth, score_point_sets
from herdcount.synth import truth_dir, write_survey


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", help="folder for the surveys, the run and counts (default: a temporary one)")
    p.add_argument("--seed", type=int, default=400, help="seed of the test survey (the model saw seed 5)")
    p.add_argument("--test", type=int, default=16, help="test photos laid into the mosaic")
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=1100)
    p.add_argument("--chunk", type=int, default=2048, help="chunk of the mosaic's count, px")
    p.add_argument(
        "--mosaic",
        choices=("ground", "laid"),
        default="ground",
        help="photos cut from one continuous ground (default), or independent scenes laid edge to edge",
    )
    p.add_argument("--radius", type=float, default=20.0, help="largest distance of a matched pair, px")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="herdcount-bench-mosaic-"))
    size = ["--width", str(args.width), "--height", str(args.height)]
    code = reference_run(work, size)
    if code:
        return code
    run = work / "run-density"
    config = load_config(DEFAULT_SCHEME)
    names = config.class_names
    data = work / f"mosaic-{args.mosaic}-{args.seed}"
    if not (data / "Mosaic" / "survey.tif").is_file():
        write_survey(
            data,
            n_train=0,
            n_test=args.test,
            seed=args.seed,
            config=config,
            width=args.width,
            height=args.height,
            mosaic=args.mosaic,
        )
    truth = truth_dir(data)
    outs = {what: work / f"count-{what}-{args.mosaic}-{args.seed}" for what in ("photos", "mosaic")}
    for what, job in (
        ("photos", CountJob(images=str(data / "Test"), out=str(outs["photos"]), model=str(run))),
        (
            "mosaic",
            CountJob(images=str(data / "Mosaic"), out=str(outs["mosaic"]), model=str(run), chunk=args.chunk),
        ),
    ):
        outcome = run_in_process(job)
        if outcome.exit_code:
            print(outcome.summary)
            return outcome.exit_code
        print(f"{what}: counted into {outs[what]}", flush=True)

    photos = {
        r["test_id"]: np.array([float(r[n]) for n in names]) for r in _rows(outs["photos"] / "counts.csv")
    }
    (mosaic_row,) = _rows(outs["mosaic"] / "counts.csv")
    mosaic = np.array([float(mosaic_row[n]) for n in names])
    by_photo = sum(photos.values())
    _, ids, true = read_counts(truth / "test_counts.csv")
    summary = json.loads((truth / "mosaic.json").read_text())
    record = json.loads((outs["mosaic"] / "photos" / "survey.json").read_text())
    print(
        f"\nmosaic {record['width']}x{record['height']} in {record['chunks']} chunks of {args.chunk} px, "
        f"{len(photos)} photos of {args.width}x{args.height} ({args.mosaic}); seed {args.seed}"
    )
    print(f"{'class':<16}{'photos':>9}{'mosaic':>9}{'diff':>8}{'truth':>7}")
    for k, name in enumerate(names):
        diff = (mosaic[k] - by_photo[k]) / max(by_photo[k], 1e-9)
        print(f"{name:<16}{by_photo[k]:>9.1f}{mosaic[k]:>9.1f}{diff:>+8.1%}{true[:, k].sum():>7.0f}")
    total_diff = np.abs(mosaic - by_photo).sum() / by_photo.sum()
    print(
        f"{'all':<16}{by_photo.sum():>9.1f}{mosaic.sum():>9.1f}{(mosaic.sum() - by_photo.sum()) / by_photo.sum():>+8.1%}"
        f"{true.sum():>7.0f}\nsum over classes of |mosaic - photos| / photos: {total_diff:.2%} (goal: <= 3 %)"
    )

    # Points: the mosaic's in map coordinates against the truth's, in ground pixels.
    pixel = abs(summary["transform"][0])
    index = {n: k for k, n in enumerate(names)}
    found = [r for r in _rows(outs["mosaic"] / "points.csv") if r["test_id"] == "survey"]
    want = _rows(truth / "mosaic_points.csv")

    def in_ground_pixels(rows):
        coords = np.array([[-float(r["map_y"]), float(r["map_x"])] for r in rows]).reshape(-1, 2) / pixel
        return coords, np.array([index[r["class"]] for r in rows], np.int64)

    (fc, fk), (tc, tk) = in_ground_pixels(found), in_ground_pixels(want)
    mosaic_scores = score_points(fc, fk, tc, tk, len(names), radius=args.radius)
    distances = []
    for k in range(len(names)):
        a, b = fc[fk == k], tc[tk == k]
        pairs = match_points(a, b, radius=args.radius)
        distances += [float(np.hypot(*(a[i] - b[j]))) for i, j in pairs]
    counted = counted_ids(outs["photos"] / "submission.csv")
    photo_scores, _ = score_point_sets(
        read_points_csv(outs["photos"] / "points.csv", names),
        read_points_truth(truth, names, ids=set(ids)),
        counted,
        len(names),
        radius=args.radius,
    )
    print(
        f"\npoints within {args.radius:g} px ({args.radius * pixel:.2f} m on the ground), matched per class:"
    )
    print(f"{'class':<16}{'mosaic P':>9}{'R':>7}{'F1':>7}{'photos P':>10}{'R':>7}{'F1':>7}")
    for k, name in enumerate(names):
        m, ph = mosaic_scores, photo_scores
        print(
            f"{name:<16}{m.precision[k]:>9.3f}{m.recall[k]:>7.3f}{m.f1[k]:>7.3f}"
            f"{ph.precision[k]:>10.3f}{ph.recall[k]:>7.3f}{ph.f1[k]:>7.3f}"
        )
    print(f"{'mean':<16}{' ' * 16}{mosaic_scores.f1.mean():>7.3f}{' ' * 17}{photo_scores.f1.mean():>7.3f}")
    print(
        f"mosaic: {int(mosaic_scores.matched.sum())} of {int(mosaic_scores.found.sum())} points matched to "
        f"{int(mosaic_scores.truth.sum())} animals, median distance {np.median(distances):.1f} px "
        f"({np.median(distances) * pixel * 100:.0f} cm)"
    )
    print(f"outputs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
