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
from herdcount.options import add_options, from_args
from herdcount.runner import run_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="herdcount clean", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--manifest", required=True, help="output folder of herdcount manifest")
    parser.add_argument("--out", required=True, help="output folder")
    add_options(parser, CleanSettings)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = from_args(CleanSettings, args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # No item needs an executor: the runner plans and finishes on the driver, without Spark.
    return run_job(CleanJob(args.manifest, args.out, settings), spark=None)


if __name__ == "__main__":
    sys.exit(main())
