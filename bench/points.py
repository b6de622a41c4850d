"""Benchmark: points per animal and survey totals' intervals on repeated fresh test surveys.

    python bench/points.py [--work DIR] [--surveys 10] [--test 16] [--first-seed 100]
                           [--width 1600] [--height 1100] [--radius 20]

Trains a density model with its default settings on bench/train.py's 40-photo survey (seed
5; reused when WORK already holds ``run-density``), then makes ``--surveys`` test surveys of
``--test`` photos, each with its own seed the model never saw, and counts each with the
count job (the runner's in-process mode: the same outputs as ``spark-submit jobs/count.py``,
without a JVM start per survey). For each survey it prints the count RMSE, the points'
F1 per class (one-to-one matches within ``--radius`` px, as ``herdcount score --points``),
and whether each class's true total lies inside its 90 % interval. At the end: the points'
precision, recall and F1 per class pooled over all surveys (goals of issue 17: mean F1 >=
0.85, every class >= 0.7), the share of class totals inside their intervals (goal: about
0.9) and the median interval width over the total (goal: <= 0.4).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import reference_run

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.count import CountJob
from herdcount.points import PointScores
from herdcount.runner import run_in_process
from herdcount.score import (
    counted_ids,
    interval_coverage,
    read_counts,
    read_points_csv,
    read_points_truth,
    score,
    score_point_sets,
)
from herdcount.synth import truth_dir, write_survey


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", help="folder for surveys, the run and counts (default: a temporary one)")
    p.add_argument("--surveys", type=int, default=10, help="fresh test surveys")
    p.add_argument("--test", type=int, default=16, help="test photos per survey")
    p.add_argument("--first-seed", type=int, default=100, help="seed of the first test survey")
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=1100)
    p.add_argument("--radius", type=float, default=20.0, help="largest distance of a matched pair, px")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="herdcount-bench-points-"))
    size = ["--width", str(args.width), "--height", str(args.height)]
    code = reference_run(work, size)
    if code:
        return code
    run = work / "run-density"
    config = load_config(DEFAULT_SCHEME)
    names = config.class_names
    pooled = PointScores(*(np.zeros(len(names), np.int64) for _ in range(3)))
    judged: list[dict] = []
    print(f"\n{'seed':>5} {'RMSE':>7} {'zeros':>7} {'mean F1':>8}  F1 per class{'':<22} totals inside (of 5)")
    for seed in range(args.first_seed, args.first_seed + args.surveys):
        data = work / f"test-{seed}"
        if not (data / "sample_submission.csv").is_file():
            write_survey(
                data,
                n_train=0,
                n_test=args.test,
                seed=seed,
                config=config,
                width=args.width,
                height=args.height,
            )
        out = work / f"count-{seed}"
        started = time.monotonic()
        job = CountJob(
            images=str(data / "Test"),
            sample=str(data / "sample_submission.csv"),
            out=str(out),
            model=str(run),
        )
        outcome = run_in_process(job)
        if outcome.exit_code:
            print(outcome.summary)
            return outcome.exit_code
        truth_csv = truth_dir(data) / "test_counts.csv"
        result = score(out / "submission.csv", truth_csv)
        _, ids, true = read_counts(truth_csv)
        counted = counted_ids(out / "submission.csv")
        truth_points = read_points_truth(truth_dir(data), names, ids=set(ids))
        found = read_points_csv(out / "points.csv", names)
        scores, _ = score_point_sets(found, truth_points, counted, len(names), radius=args.radius)
        pooled = pooled + scores
        keep = [n for n, key in enumerate(ids) if key in counted]
        rows = interval_coverage(out / "totals.csv", dict(zip(names, true[keep].sum(axis=0).tolist())))
        judged += rows
        f1 = " ".join(f"{v:.2f}" for v in scores.f1)
        inside = sum(r["inside"] for r in rows)
        print(
            f"{seed:>5} {result['mean_rmse']:>7.3f} {result['zero_mean_rmse']:>7.3f} {scores.f1.mean():>8.3f}  "
            f"{f1:<34} {inside} ({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    print(f"\npoints pooled over {args.surveys} surveys, matched within {args.radius:g} px:")
    print(f"{'class':<16}{'precision':>10}{'recall':>10}{'F1':>8}{'found':>8}{'true':>8}")
    for k, name in enumerate(names):
        print(
            f"{name:<16}{pooled.precision[k]:>10.3f}{pooled.recall[k]:>10.3f}{pooled.f1[k]:>8.3f}"
            f"{pooled.found[k]:>8}{pooled.truth[k]:>8}"
        )
    print(
        f"{'mean':<16}{pooled.precision.mean():>10.3f}{pooled.recall.mean():>10.3f}{pooled.f1.mean():>8.3f}"
    )
    print("goals: mean F1 >= 0.85, every class >= 0.7")
    print(f"\nsurvey totals, 90 % intervals, over {args.surveys} surveys of {args.test} photos:")
    print(f"{'class':<16}{'inside':>8}{'median width/total':>20}")
    for name in names:
        mine = [r for r in judged if r["class"] == name]
        print(
            f"{name:<16}{sum(r['inside'] for r in mine):>5} of {len(mine):<3}"
            f"{statistics.median(r['width'] for r in mine):>17.2f}"
        )
    inside = sum(r["inside"] for r in judged)
    widths = [r["width"] for r in judged if not np.isnan(r["width"])]
    print(
        f"all: {inside} of {len(judged)} class totals inside ({inside / len(judged):.2f}; goal about 0.9), "
        f"median width {statistics.median(widths):.2f} of the total (goal <= 0.4)"
    )
    print(f"outputs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
