"""Count each animal once across overlapping frames: sightings linked between registered frames."""

from __future__ import annotations

import argparse
import sys

from herdcount import storage
from herdcount.cli import HelpFormatter
from herdcount.options import add_options, from_args
from herdcount.runner import SparkOptions, run_job
from herdcount.spark import add_spark_conf_argument
from herdcount.unique import UniqueJob


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="herdcount unique", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--count",
        metavar="OUT",
        help="a count job's output: its points.csv are the sightings, its totals.csv the detection's intervals",
    )
    add_options(parser, UniqueJob)
    add_spark_conf_argument(parser)
    args = parser.parse_args(argv)
    if bool(args.count) == bool(args.points):
        parser.error("give either --count OUT (its points.csv) or --points FILE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    points = args.points or storage.join(args.count, "points.csv")
    job = from_args(UniqueJob, args, points=points, count=args.count)
    return run_job(job, SparkOptions(args.master, args.spark_conf))


if __name__ == "__main__":
    sys.exit(main())
