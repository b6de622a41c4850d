"""Benchmark: the count job's accuracy on photos of a survey seed not used for training.

    python bench/accuracy.py [--work DIR] [--test 40] [--test-seed 6] [--width 1600] [--height 1100]
                             [--altitude 0.6,1.6] [--transfer] [--sizes ARGS]

Trains both model kinds with their default settings on a 40-photo survey (through
``bench/train.py``, which this reuses when WORK already holds finished runs), makes a test
survey with another seed, counts its Test/ photos with ``spark-submit jobs/count.py`` for
each model (the classifier with the seed's non-overlapping 64x64 tiles), scores both
submissions against the true counts and prints the averaged RMSE of each, the all-zeros
baseline and the ratios. Goals (issue 4): density <= 0.25 x all zeros and <= 0.5 x the
seed's classifier method.

Altitude (issue 16): it also trains a scale model (``--kind scale``), makes a second test
survey (seed ``--test-seed + 1``) whose photos are flown at ground scales drawn log-uniform
in ``--altitude`` (1 = the training altitude), and counts both test surveys with the density
model at the fixed scale 1 and with ``--scale auto``. It prints each count's RMSE against
all zeros, auto against fixed (goals: altitude-shifted auto <= 0.35 x all zeros and <= 0.7 x
fixed; same altitude auto <= 1.1 x fixed), and how far the scales read are from the truth.

Model sizes (issue 16; ``--sizes ARGS``, run alone): bench/sizes.py's table of model widths
and training seeds on realistic scenes, with ARGS as its options, for example
``--sizes "--train 120 --widths 16,32"``.

Transfer (issue 16; ``--transfer``, run alone): a density model pre-trained with default
settings on a 40-photo survey of realistic scenes (``synth --realism 1``, seed 5), and a new
realistic survey (seed ``--transfer-seed``) of which only 4 photos are annotated: the first 4
holding at least 5 animals each, as a team annotates photos with animals on them. On those 4
photos it trains a model from scratch and one started from the pre-trained weights
(``train --init``), both with default settings, and counts the new survey's test photos with
each and with the pre-trained model as it is, side by side. Goal: fine-tuning beats training
from scratch.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import train_density

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.score import format_score, score
from herdcount.synth import truth_dir, write_survey

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def count(data: Path, run: Path, out: Path, *extra: str) -> float:
    """Run the count job (with ``extra`` options); return its wall time."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYSPARK_PYTHON": sys.executable,
    }
    started = time.monotonic()
    cmd = [
        str(BIN / "spark-submit"),
        str(ROOT / "jobs" / "count.py"),
        "--data",
        str(data),
        "--model",
        str(run),
        "--out",
        str(out),
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"count job failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", help="folder for surveys, runs and counts (default: a temporary one)")
    p.add_argument("--test", type=int, default=40, help="test photos")
    p.add_argument("--test-seed", type=int, default=6, help="seed of the test survey (training uses 5)")
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=1100)
    p.add_argument(
        "--altitude", default="0.6,1.6", help="ground scales of the altitude-shifted test survey (LO,HI)"
    )
    p.add_argument("--transfer", action="store_true", help="only the transfer comparison (below)")
    p.add_argument("--transfer-seed", type=int, default=11, help="seed of the small realistic survey")
    p.add_argument("--transfer-photos", type=int, default=4, help="annotated photos of the small survey")
    p.add_argument(
        "--sizes",
        metavar="ARGS",
        help="only the model-size and training-seed table on realistic scenes: bench/sizes.py with "
        "these options (one quoted string, split as a shell would; '' for its defaults) and --work",
    )
    args = p.parse_args(argv)
    if args.sizes is not None:
        import sizes

        return sizes.main([*shlex.split(args.sizes), *(["--work", args.work] if args.work else [])])
    altitude = tuple(float(v) for v in args.altitude.split(","))
    work = Path(args.work or tempfile.mkdtemp(prefix="herdcount-bench-accuracy-"))
    size = ["--width", str(args.width), "--height", str(args.height)]
    if args.transfer:
        return transfer(work, args, size)
    # bench/train.py trains both kinds on the training survey (or reuses its runs).
    train = [
        sys.executable,
        str(Path(__file__).with_name("train.py")),
        "--work",
        str(work),
        "--seed",
        "5",
        "--reuse",
        "--kinds",
        "density,classifier,scale",
    ]
    code = subprocess.run([*train, *size], check=False).returncode
    if code:
        return code
    data = work / "test-data"
    if not (data / "sample_submission.csv").is_file():
        write_survey(
            data,
            n_train=0,
            n_test=args.test,
            seed=args.test_seed,
            config=load_config(DEFAULT_SCHEME),
            width=args.width,
            height=args.height,
        )
    truth = truth_dir(data) / "test_counts.csv"
    results = {}
    for kind in ("density", "classifier"):
        seconds = count(data, work / f"run-{kind}", work / f"count-{kind}")
        results[kind] = score(work / f"count-{kind}" / "submission.csv", truth)
        print(
            f"\n{kind} model on {args.test} test photos of seed {args.test_seed} (count job: {seconds:.0f} s wall)"
        )
        print(format_score(results[kind]))
    density, classifier = results["density"]["mean_rmse"], results["classifier"]["mean_rmse"]
    zeros = results["density"]["zero_mean_rmse"]
    print(f"\naveraged RMSE: density {density:.3f}, classifier tiles {classifier:.3f}, all zeros {zeros:.3f}")
    print(
        f"density / all zeros = {density / zeros:.3f} (goal <= 0.25); "
        f"density / classifier = {density / classifier:.3f} (goal <= 0.5)"
    )
    shifted = work / "altitude-data"
    if not (shifted / "sample_submission.csv").is_file():
        write_survey(
            shifted,
            n_train=0,
            n_test=args.test,
            seed=args.test_seed + 1,
            config=load_config(DEFAULT_SCHEME),
            width=args.width,
            height=args.height,
            test_scale=altitude,
        )
    auto = ["--scale", "auto", "--scale-model", str(work / "run-scale")]
    print(f"\naltitude: density model at scale 1 and --scale auto; test photos at ground scales {altitude}")
    print(f"{'test survey':<34} {'fixed':>7} {'auto':>7} {'zeros':>7} {'auto/zeros':>10} {'auto/fixed':>10}")
    for name, survey, seed in (
        ("same altitude", data, args.test_seed),
        ("flown at " + args.altitude, shifted, args.test_seed + 1),
    ):
        scores = {}
        for mode, extra in (("fixed", []), ("auto", auto)):
            out = work / f"count-{survey.name}-{mode}"
            count(survey, work / "run-density", out, *extra)
            scores[mode] = score(out / "submission.csv", truth_dir(survey) / "test_counts.csv")
        fixed, automatic, zeros = (
            scores["fixed"]["mean_rmse"],
            scores["auto"]["mean_rmse"],
            scores["fixed"]["zero_mean_rmse"],
        )
        label = f"{name} (seed {seed})"
        print(
            f"{label:<34} {fixed:>7.3f} {automatic:>7.3f} {zeros:>7.3f} {automatic / zeros:>10.3f} {automatic / fixed:>10.3f}"
        )
        for mode in ("fixed", "auto"):
            per = ", ".join(f"{k} {v:.3f}" for k, v in scores[mode]["rmse"].items())
            print(f"  {mode}: {per}")
        read = {}
        with open(work / f"count-{survey.name}-auto" / "counts.csv", newline="") as f:
            read = {row["test_id"]: float(row["ground_scale"]) for row in csv.DictReader(f)}
        truth_scales = dict.fromkeys(read, 1.0)
        scales_csv = truth_dir(survey) / "test_scales.csv"
        if scales_csv.is_file():
            with open(scales_csv, newline="") as f:
                truth_scales = {row["test_id"]: float(row["scale"]) for row in csv.DictReader(f)}
        errors = [abs(read[i] / truth_scales[i] - 1) for i in read]
        print(
            f"  scale read: median error {100 * statistics.median(errors):.1f} %, largest {100 * max(errors):.1f} % "
            f"over {len(errors)} photos"
        )
    print(f"outputs: {work}")
    return 0


def annotate(data: Path, photos: int, *, least: int = 5) -> None:
    """Keep the first ``photos`` training pairs that hold at least ``least`` animals, as a
    survey team annotates photos with animals on them, and drop the others (most photos of a
    colony survey are empty ground)."""
    with open(data / "Train" / "train.csv", newline="") as f:
        rows = list(csv.reader(f))
    keep = [r for r in rows[1:] if sum(int(v) for v in r[1:]) >= least][:photos]
    if len(keep) < photos:
        raise RuntimeError(f"only {len(keep)} training photos of {data} hold {least} animals or more")
    chosen = {r[0] for r in keep}
    for r in rows[1:]:
        if r[0] not in chosen:
            for folder in ("Train", "TrainDotted"):
                (data / folder / f"{r[0]}.jpg").unlink()
    with open(data / "Train" / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows([rows[0], *keep])


def transfer(work: Path, args: argparse.Namespace, size: list[str]) -> int:
    """Fine-tuning a pre-trained model on a few photos against training from scratch on them."""
    from herdcount.extract import ExtractJob
    from herdcount.runner import run_in_process

    pretrain = work / "pretrain-realistic"
    train = [
        sys.executable,
        str(Path(__file__).with_name("train.py")),
        "--work",
        str(pretrain),
        "--seed",
        "5",
    ]
    code = subprocess.run(
        [*train, "--reuse", "--kinds", "density", "--realism", "1", *size], check=False
    ).returncode
    if code:
        return code
    config = load_config(DEFAULT_SCHEME)
    small = work / f"small-{args.transfer_seed}"
    data, extract = small / "data", small / "extract"
    if not (data / "sample_submission.csv").is_file():
        write_survey(
            data,
            n_train=4 * args.transfer_photos,
            n_test=args.test,
            seed=args.transfer_seed,
            config=config,
            width=args.width,
            height=args.height,
            n_mismatched=0,
            realism=1,
        )
        annotate(data, args.transfer_photos)
    if not (extract / "run.json").is_file():
        run_in_process(ExtractJob(data, extract, config=config))
    truth = truth_dir(data) / "test_counts.csv"
    runs = {"pre-trained, not tuned": pretrain / "run-density"}
    for name, extra in (
        ("from scratch", []),
        ("fine-tuned (--init)", ["--init", str(pretrain / "run-density")]),
    ):
        run = small / ("run-" + ("init" if extra else "scratch"))
        runs[name] = run
        if (run / "model.json").is_file():
            continue
        print(f"{name}: trained in {train_density(extract, data, run, *extra):.1f} min")
    print(
        f"\ntransfer: {args.transfer_photos} annotated photos of a realistic survey (seed {args.transfer_seed}); "
        f"{args.test} of its test photos counted"
    )
    print(f"{'model':<24} {'mean RMSE':>10} {'/ zeros':>8}  per class")
    for name, run in runs.items():
        out = small / f"count-{run.name}"
        if not (out / "run.json").is_file():
            count(data, run, out)
        result = score(out / "submission.csv", truth)
        per = ", ".join(f"{v:.2f}" for v in result["rmse"].values())
        print(
            f"{name:<24} {result['mean_rmse']:>10.3f} {result['mean_rmse'] / result['zero_mean_rmse']:>8.3f}  {per}"
        )
    print(f"all zeros: {result['zero_mean_rmse']:.3f}; outputs: {small}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
