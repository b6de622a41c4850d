"""Benchmark: density models of several sizes and training seeds on realistic scenes.

    python bench/sizes.py [--work DIR] [--widths 8,16,32] [--depth 4] [--seeds 0,1,2] [--seed-width 16]
                          [--test-seeds 12,13] [--test 16] [--train 40]

On one 40-photo (``--train``) survey of realistic scenes (``synth --realism 1``, seed 5; made and
extracted by bench/train.py, which also trains the default model), trains a density model
for each ``--widths`` value (channels at 1/4 resolution; the default is 16) with default
settings otherwise, and ``--seed-width`` again for each training ``--seeds`` value (the
split, the sampling and the weights), then counts fresh realistic test surveys of seeds
never trained on with each model, in process (the count job's runner, no JVM). It prints,
per model: parameters, training wall time, the held-out RMSE over all zeros, each test
survey's RMSE over all zeros, and the CPU-seconds a 16.6 MP photo costs (the count job's
per-photo CPU, scaled by megapixels; one thread). Goals (issue 16): realistic scenes
<= 0.25 x all zeros; the default <= 2 CPU-s per 16.6 MP photo; the default chosen from
this table.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
from pathlib import Path

from common import reference_run, train_density

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.count import CountJob
from herdcount.modelrun import ModelRun
from herdcount.runner import run_in_process
from herdcount.score import score
from herdcount.synth import truth_dir, write_survey

ROOT = Path(__file__).resolve().parents[1]
FULL_MP = 4992 * 3328 / 1e6


def train(work: Path, run: Path, *options: str) -> float:
    """Train a density model on WORK's survey into RUN (reused when finished); wall minutes."""
    if (run / "model.json").is_file():
        return float("nan")
    return train_density(work / "extract", work / "data", run, *options)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", help="folder for the surveys, runs and counts (default: a temporary one)")
    p.add_argument("--widths", default="8,16,32", help="model widths to train")
    p.add_argument("--depth", type=int, default=4, help="convolutions at 1/8 resolution")
    p.add_argument("--seeds", default="0,1,2", help="training seeds of --seed-width")
    p.add_argument("--seed-width", type=int, default=16, help="the width trained with every seed")
    p.add_argument("--test-seeds", default="12,13", help="realistic test surveys (never trained on)")
    p.add_argument("--test", type=int, default=16, help="photos per test survey")
    p.add_argument(
        "--train-args", default="", help="more options for every herdcount train run, space-separated"
    )
    p.add_argument("--tag", default="", help="suffix of the runs' folders (needed with --train-args)")
    p.add_argument("--train", type=int, default=40, help="photos of the realistic training survey (seed 5)")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="herdcount-bench-sizes-"))
    code = reference_run(work, [], "--realism", "1", "--train", str(args.train))
    if code:
        return code
    config = load_config(DEFAULT_SCHEME)
    extra, tag = args.train_args.split(), f"-{args.tag}" if args.tag else ""
    if extra and not tag:
        p.error("--train-args needs a --tag for its runs' folders")
    models: dict[str, tuple[Path, float]] = {}
    if not extra:
        models["width 16, seed 0 (default)"] = (work / "run-density", float("nan"))
    label = f" ({args.train_args})" if extra else ""
    for width in (int(w) for w in args.widths.split(",")):
        if extra or width != 16 or args.depth != 4:
            run = work / f"run-w{width}-d{args.depth}{tag}"
            size = ("--width", str(width), "--depth", str(args.depth))
            models[f"width {width}, seed 0{label}"] = (run, train(work, run, *size, *extra))
    for seed in (int(s) for s in args.seeds.split(",")):
        if seed:
            w = args.seed_width
            run = work / (
                f"run-seed{seed}" if w == 16 and not tag else f"run-w{w}-d{args.depth}-seed{seed}{tag}"
            )
            size = ("--width", str(w), "--depth", str(args.depth))
            models[f"width {w}, seed {seed}{label}"] = (
                run,
                train(work, run, "--seed", str(seed), *size, *extra),
            )
    tests = []
    for seed in (int(s) for s in args.test_seeds.split(",")):
        data = work / f"test-{seed}"
        if not (data / "sample_submission.csv").is_file():
            write_survey(
                data,
                n_train=0,
                n_test=args.test,
                seed=seed,
                config=config,
                realism=1,
                width=1600,
                height=1100,
            )
        tests.append((seed, data))
    print(f"\n{'model':<28}{'params':>9}{'train min':>10}{'held-out':>9}", end="")
    print("".join(f"{'seed ' + str(s):>9}" for s, _ in tests) + f"{'mean':>7}{'CPU-s/16.6MP':>13}")
    for name, (run, minutes) in models.items():
        info = ModelRun.read(run)
        ratios, cpu, mp = [], 0.0, 0.0
        for seed, data in tests:
            out = work / f"count-{run.name}-{seed}"
            if not (out / "run.json").is_file():
                outcome = run_in_process(
                    CountJob(
                        images=str(data / "Test"),
                        sample=str(data / "sample_submission.csv"),
                        out=str(out),
                        model=str(run),
                    )
                )
                if outcome.exit_code:
                    print(outcome.summary)
                    return outcome.exit_code
            result = score(out / "submission.csv", truth_dir(data) / "test_counts.csv")
            ratios.append(result["mean_rmse"] / result["zero_mean_rmse"])
            with open(out / "counts.csv", newline="") as f:
                for row in csv.DictReader(f):
                    cpu += float(row["cpu_s"])
                    mp += int(row["width"]) * int(row["height"]) / 1e6
        import keras

        # Registers RecoverableReLU, which runs saved before model.keras lost it still hold.
        import herdcount.models.builders  # noqa: F401

        params = keras.models.load_model(run / "model.keras", compile=False).count_params()
        print(
            f"{name:<28}{params:>9}{minutes:>10.1f}{info.metrics['rmse_ratio_to_zero_baseline']:>9.3f}"
            + "".join(f"{r:>9.3f}" for r in ratios)
            + f"{statistics.mean(ratios):>7.3f}{cpu / mp * FULL_MP:>13.2f}",
            flush=True,
        )
    print("ratios: RMSE over the all-zeros RMSE (goal on realistic scenes <= 0.25); nan min: trained earlier")
    return 0


if __name__ == "__main__":
    sys.exit(main())
