"""Training benchmark: both model kinds on a 40-photo synthetic survey, timed, with their scores.

    python bench/train.py [--work DIR] [--train 40] [--width 1600] [--height 1100] [--seed 5] [--reuse]

Makes the survey, extracts it with the extract library (one process; the Spark job does the
same per pair), then runs ``models/train.py`` with its default settings for each kind and
prints wall time, the density model's validation RMSE against the all-zeros baseline and the
classifier's validation accuracy, next to the goals of issue 3 (density: at most 10 minutes
on 2 cores and a ratio of at most 0.25; classifier: at least 90 % accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.extract import ExtractJob
from herdcount.runner import run_in_process
from herdcount.synth import write_survey

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", help="folder for the survey and runs (default: a temporary one)")
    p.add_argument("--train", type=int, default=40, help="training photos")
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=1100)
    p.add_argument("--seed", type=int, default=5, help="survey seed")
    p.add_argument("--kinds", default="density,classifier", help="comma-separated kinds to train")
    p.add_argument(
        "--reuse", action="store_true", help="keep finished runs in WORK instead of training again"
    )
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="herdcount-bench-train-"))
    config = load_config(DEFAULT_SCHEME)
    data, out = work / "data", work / "extract"
    if not (data / "Train" / "train.csv").is_file():
        write_survey(
            data,
            n_train=args.train,
            n_test=0,
            seed=args.seed,
            config=config,
            width=args.width,
            height=args.height,
        )
    if not (out / "run.json").is_file():
        run_in_process(ExtractJob(data, out, config=config))
    cores = len(os.sched_getaffinity(0))
    print(f"survey: {args.train} photos of {args.width}x{args.height} in {data}; {cores} cores")
    for kind in args.kinds.split(","):
        run = work / f"run-{kind}"
        if args.reuse and (run / "model.json").is_file():
            print(f"{kind}: reusing {run}")
            continue
        started = time.monotonic()
        cmd = [
            sys.executable,
            str(ROOT / "models" / "train.py"),
            "--kind",
            kind,
            "--extract",
            str(out),
            "--data",
            str(data),
            "--out",
            str(run),
            "--overwrite",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - started
        if done.returncode:
            print(done.stdout[-2000:], done.stderr[-4000:], sep="\n")
            return done.returncode
        metrics = json.loads((run / "model.json").read_text())["metrics"]
        if kind == "density":
            ratio = metrics["rmse_ratio_to_zero_baseline"]
            print(
                f"density: {wall / 60:.1f} min wall (goal <= 10 on 2 cores); validation RMSE {metrics['val_rmse']:.3f}, "
                f"all-zeros {metrics['zero_baseline_rmse']:.3f}, ratio {ratio:.3f} (goal <= 0.25)"
            )
            print("  per class:", metrics["val_rmse_per_class"])
        else:
            print(
                f"classifier: {wall / 60:.1f} min wall; validation accuracy {metrics['val_accuracy']:.3f} "
                "(goal >= 0.90)"
            )
            print(
                "  per class:",
                {k: round(v, 3) for k, v in metrics["val_accuracy_per_class"].items() if v is not None},
            )
        print(f"  outputs: {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
