"""Benchmark: how often the survey totals' intervals hold the truth, and how wide they are,
with the model's held-out photos and with annotated photos of the survey itself.

    python bench/intervals.py --work DIR [--photos 48] [--annotated 8,16,32] [--repeats 300]
    python bench/intervals.py --fit-shift --work DIR --work DIR ...

Reads what ``python bench/points.py --work DIR`` left there: the density run
(``run-density/validation_counts.csv``, its held-out photos' counts) and its fresh test
surveys, counted (``count-<seed>/counts.csv``) with their truth
(``test-<seed>_truth/test_counts.csv``). The photos of all those surveys are one pool of
photos the model never saw. Each repeat draws a survey of ``--photos`` photos from the pool
and makes its totals' 90 % intervals (:func:`herdcount.intervals.survey_totals`) two ways:

- **held-out**: from the training run's held-out photos, as the count job does by default
  (those that did not choose the training epoch, when there are at least 8), with the count
  job's allowance for another survey's bias (``--survey-shift``, default that of the job).
  All repeats share those few photos, so one model gives one draw of their error; the
  coverage of several models (``--work`` given several times) says more than one's;
- **annotated**: ``m`` of the survey's photos are annotated (their truth known, ``count
  --calibration``): they enter the totals as they are and measure the errors of the rest.
  Every repeat annotates other photos, so this coverage is the method's own.
- **fresh as held-out**: as many photos as the model's held-out ones, drawn from the pool
  (not from the survey), take their place, without the survey shift: the method's coverage
  where the photos its errors are measured on are exchangeable with the survey's. Against the
  held-out way it separates what the method gets wrong from how the training survey's
  held-out photos differ from fresh ones.

Before the drawn surveys, each work folder's counted surveys themselves (``count-<seed>``,
16 photos each with bench/points.py's default) get their totals as the count job makes them
now (held-out photos, survey shift): the share inside and the median width.

It prints, per way and class, the share of repeats whose true total lies inside its interval
(goal of issue 17: about 0.9) and the median width over the true total (goal: <= 0.4).

``--fit-shift`` measures the survey shift itself (the count job's ``--survey-shift``): per
work folder and class, the gap ``d`` between the log ratio of true to counted animals on the
held-out photos and on all the fresh photos, less what chance explains: the spread of the
ratio of as many fresh photos as there are held-out ones (drawn 3,000 times) and of the fresh
pool's own ratio (bootstrap). The shift is the square root of the mean of ``d^2`` minus
those variances over every class and folder (method of moments). Then each folder's counted
surveys get intervals with the shift fitted on the other folders (leave one out): the
coverage a new model can expect from a shift measured on others.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.intervals import (
    DEFAULT_SURVEY_SHIFT,
    SurveyTotals,
    ValidationCounts,
    annotated_errors,
    calibration_ratio,
    interval_errors,
    survey_totals,
)
from herdcount.modelrun import ModelRun


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def surveys(work: Path, names: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """True and counted animals per photo and class of each counted survey in ``work``."""
    found = []
    for out in sorted(work.glob("count-*")):
        seed = out.name.removeprefix("count-")
        truth_csv = work / f"test-{seed}_truth" / "test_counts.csv"
        if not seed.isdigit() or not truth_csv.is_file() or not (out / "counts.csv").is_file():
            continue
        counts = {r["test_id"]: [float(r[n]) for n in names] for r in _rows(out / "counts.csv")}
        rows = [r for r in _rows(truth_csv) if r["test_id"] in counts]
        true = [[float(r[n]) for n in names] for r in rows]
        found.append((np.array(true), np.array([counts[r["test_id"]] for r in rows])))
    return found


def pool(each: list[tuple[np.ndarray, np.ndarray]], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """True and counted animals per photo and class over the surveys ``each`` (:func:`surveys`)."""
    if not each:
        return np.zeros((0, n_classes)), np.zeros((0, n_classes))
    return np.concatenate([t for t, _ in each]), np.concatenate([c for _, c in each])


def _log_ratio(true: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """The intervals' calibration ratio (its log) of photos along the second-to-last axis."""
    return np.log(calibration_ratio(np.swapaxes(true, -1, -2), np.swapaxes(counted, -1, -2)))


def judge_counted(
    held_out: ValidationCounts, each: list[tuple[np.ndarray, np.ndarray]], level: float, shift: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each counted survey's totals as the count job makes them, judged (:func:`judge`)."""
    return [
        judge(survey_totals(c, held_out, level=level, draws=1000, seed=k, shift=shift), t.sum(axis=0))
        for k, (t, c) in enumerate(each)
    ]


def summary(rows: list[tuple[np.ndarray, np.ndarray]]) -> str:
    """Class totals inside of all, per class, and the median width, of judged surveys."""
    inside = np.array([r[0] for r in rows])
    return (
        f"{int(inside.sum())}/{inside.size} inside, per class "
        + " ".join(f"{v}/{len(rows)}" for v in inside.sum(axis=0))
        + f", median width {np.median([r[1] for r in rows]):.2f}"
    )


def excess_gaps(held_out, true: np.ndarray, counted: np.ndarray, rng) -> np.ndarray:
    """Per class: the squared gap between the held-out photos' and the fresh photos' log
    ratios, less the variance chance gives it (see ``--fit-shift``)."""
    m, n = len(held_out.ids), len(true)
    pick = np.array([rng.choice(n, m, replace=False) for _ in range(3000)])
    # Drawn without replacement from a finite pool: corrected to an unlimited one.
    held_var = _log_ratio(true[pick], counted[pick]).var(axis=0) * n / (n - m)
    boot = rng.integers(0, n, size=(2000, n))
    fresh_var = _log_ratio(true[boot], counted[boot]).var(axis=0)
    gap = _log_ratio(true, counted) - _log_ratio(held_out.true, held_out.predicted)
    return gap**2 - held_var - fresh_var


def fit_shift(works: list[Path], names: list[str], level: float) -> int:
    """``--fit-shift``: the survey shift by method of moments, and its leave-one-out coverage."""
    rng = np.random.default_rng(0)
    gaps, loaded = {}, {}
    for work in works:
        run = ModelRun.read(work / "run-density")
        held_out, _ = interval_errors(run.validation_counts(), run.epoch_chosen_on)
        each = surveys(work, names)
        if held_out is None or not each:
            print(
                f"{work}: no validation_counts.csv or no counted surveys; run bench/points.py --work {work}"
            )
            return 2
        true, counted = pool(each, len(names))
        gaps[work] = excess_gaps(held_out, true, counted, rng)
        loaded[work] = (held_out, each)
        print(
            f"{work}: excess squared gap per class "
            + " ".join(f"{g:+.4f}" for g in gaps[work])
            + f"; on its own, shift {np.sqrt(max(gaps[work].mean(), 0.0)):.3f}"
        )
    every = np.concatenate(list(gaps.values()))
    print(
        f"\nsurvey shift over {len(works)} folders, {every.size} class ratios: {np.sqrt(max(every.mean(), 0.0)):.3f}"
    )
    if len(works) < 2:
        return 0
    print("leave one out: each folder's counted surveys with the shift fitted on the others")
    judged = []
    for work in works:
        others = np.concatenate([g for w, g in gaps.items() if w != work])
        shift = float(np.sqrt(max(others.mean(), 0.0)))
        rows = judge_counted(*loaded[work], level, shift)
        judged += rows
        print(f"  {work}: shift {shift:.3f}, {summary(rows)}")
    inside = np.array([r[0] for r in judged])
    print(
        f"all: {inside.mean():.3f} inside (per class "
        + " ".join(f"{v:.2f}" for v in inside.mean(axis=0))
        + f"), median width {np.median([r[1] for r in judged]):.2f}"
    )
    return 0


def judge(totals: SurveyTotals, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class: whether the true total lies inside the interval, and its width over it."""
    return (totals.low <= true) & (true <= totals.high), (totals.high - totals.low) / np.maximum(true, 1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--work", action="append", required=True, help="a bench/points.py work folder (repeatable)"
    )
    p.add_argument("--photos", type=int, default=48, help="photos per drawn survey")
    p.add_argument("--annotated", default="8,16,32", help="annotated photos per survey, comma-separated")
    p.add_argument("--repeats", type=int, default=300, help="surveys drawn per work folder")
    p.add_argument("--level", type=float, default=0.9)
    p.add_argument(
        "--survey-shift",
        type=float,
        default=DEFAULT_SURVEY_SHIFT,
        help="the held-out way's allowance for another survey's bias (default: %(default)s, the count job's)",
    )
    p.add_argument(
        "--fit-shift",
        action="store_true",
        help="measure the survey shift on the work folders instead (above)",
    )
    args = p.parse_args(argv)
    names = load_config(DEFAULT_SCHEME).class_names
    if args.fit_shift:
        return fit_shift(list(map(Path, args.work)), names, args.level)
    sizes = [int(m) for m in args.annotated.split(",")]
    results: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for work in map(Path, args.work):
        each = surveys(work, names)
        true, counted = pool(each, len(names))
        model = ModelRun.read(work / "run-density")
        every = model.validation_counts()
        held_out, source = interval_errors(every, model.epoch_chosen_on)
        if len(true) < args.photos or held_out is None:
            print(
                f"{work}: {len(true)} counted photos of fresh surveys (need {args.photos}) and "
                f"{'no' if held_out is None else 'a'} validation_counts.csv; run bench/points.py --work {work}"
            )
            return 2
        print(
            f"{work}: {len(true)} photos of fresh surveys, {len(every.ids)} held-out photos"
            + (
                f", {len(held_out.ids)} of which did not choose the epoch"
                if source == "held-out-unchosen"
                else ""
            )
        )
        own = judge_counted(held_out, each, args.level, args.survey_shift)
        results.setdefault("counted surveys", []).extend(own)
        print(f"  its {len(own)} counted surveys, held-out way: {summary(own)}")
        rng = np.random.default_rng(0)
        m_held = len(held_out.ids)
        for rep in range(args.repeats):
            order = rng.permutation(len(true))
            pick, stand_in = order[: args.photos], order[args.photos : args.photos + m_held]
            t, c = true[pick], counted[pick]
            ways = {
                "held-out": survey_totals(
                    c, held_out, level=args.level, draws=1000, seed=rep, shift=args.survey_shift
                )
            }
            if len(stand_in) == m_held:
                alike = annotated_errors([str(i) for i in stand_in], true[stand_in], counted[stand_in], names)
                ways["fresh as held-out"] = survey_totals(c, alike, level=args.level, draws=1000, seed=rep)
            for m in sizes:
                known = np.full(t.shape, np.nan)
                known[:m] = t[:m]
                errors = annotated_errors([str(i) for i in range(m)], t[:m], c[:m], names)
                ways[f"{m} annotated"] = survey_totals(
                    c, errors, known=known, level=args.level, draws=1000, seed=rep
                )
            for way, totals in ways.items():
                results.setdefault(way, []).append(judge(totals, t.sum(axis=0)))

    print(
        f"\nsurveys of {args.photos} photos, {args.repeats} drawn per work folder; "
        f"{round(100 * args.level)} % intervals: share holding the true total / median width over it"
    )
    print(f"{'intervals from':<18}" + "".join(f"{n[:14]:>16}" for n in names) + f"{'all':>14}")
    for way, rows in results.items():
        inside = np.array([r[0] for r in rows])
        width = np.array([r[1] for r in rows])
        cells = "".join(
            f"{inside[:, k].mean():>9.2f} {np.median(width[:, k]):>5.2f}" + " " for k in range(len(names))
        )
        print(f"{way:<18}{cells}{inside.mean():>7.2f} {np.median(width):>5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
