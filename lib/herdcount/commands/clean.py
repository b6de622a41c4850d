"""Flag duplicates, near-duplicates, unreadable, unsupported, unlabelled, dark and blurred photos.

Run::

    spark-submit jobs/clean.py --manifest OUT --out CLEAN [--near-duplicate-bits 6] [--dark-mads 3.5]
        [--dark-levels 40] [--blur-mads 3.5] [--blur-ratio 4]

OUT is the manifest job's output. CLEAN receives flags.csv (path,flag,detail), keep.csv
(path), balance.csv (label,photos), report.html and run.json. The work needs only the
manifest's rows (hashes and measures), so it runs on the driver: no photo is read, and the
originals are never moved or deleted.
"""

from __future__ import annotations

import argparse
import sys

from herdcount.clean import CleanJob, CleanSettings
from herdcount.cli import HelpFormatter
from herdcount.runner import run_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = CleanSettings()
    parser = argparse.ArgumentParser(
        prog="herdcount clean", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--manifest", required=True, help="output folder of herdcount manifest")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--near-duplicate-bits",
        type=int,
        default=defaults.near_duplicate_bits,
        help="perceptual hashes at most this many bits apart are one picture (default: %(default)s)",
    )
    parser.add_argument(
        "--dark-mads",
        type=float,
        default=defaults.dark_mads,
        help="robust deviations below the median brightness that make a photo dark (default: %(default)s)",
    )
    parser.add_argument(
        "--blur-mads",
        type=float,
        default=defaults.blur_mads,
        help="robust deviations below the median log sharpness that make it blurred (default: %(default)s)",
    )
    parser.add_argument(
        "--dark-levels",
        type=float,
        default=defaults.dark_levels,
        help="and at least this many grey levels below it (default: %(default)s)",
    )
    parser.add_argument(
        "--blur-ratio",
        type=float,
        default=defaults.blur_ratio,
        help="and at least this many times less sharp than the median (default: %(default)s)",
    )
    parser.add_argument("--label-field", default=defaults.label_field, help="layout field of the label")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ("manifest", "out")}
    # No item needs an executor: the runner plans and finishes on the driver, without Spark.
    return run_job(CleanJob(args.manifest, args.out, options), spark=None)


if __name__ == "__main__":
    sys.exit(main())
