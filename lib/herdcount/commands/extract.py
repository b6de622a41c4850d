"""Extract dots, thumbnails and background patches from a survey's training pairs.

Run::

    spark-submit jobs/extract.py --data DATA --out OUT [--scheme conf/sealions.yaml]

DATA is a dataset root in the Kaggle layout (Train/, TrainDotted/, Train/train.csv,
MismatchedTrainImages.txt). One Spark task per pair; rerunning with the same OUT resumes.
"""

from __future__ import annotations

import argparse
import sys

from herdcount import storage
from herdcount.cli import HelpFormatter
from herdcount.config import DEFAULT_SCHEME
from herdcount.extract import ExtractJob
from herdcount.runner import SOME_FAILED, SparkOptions, run_job
from herdcount.spark import add_spark_conf_argument
from herdcount.windows import WindowSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="herdcount extract", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--data", required=True, help="dataset root in the Kaggle layout")
    parser.add_argument("--out", required=True, help="output folder (created; reruns resume)")
    parser.add_argument(
        "--scheme",
        help="class scheme: a YAML file or a packaged scheme (default: DATA/scheme.yaml when the survey "
        f"records one, else {DEFAULT_SCHEME})",
    )
    parser.add_argument(
        "--windows",
        action="store_true",
        help="then cut the training windows into OUT/windows, as herdcount windows does with its "
        "defaults (needs the train extra)",
    )
    add_spark_conf_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spark = SparkOptions(args.master, args.spark_conf)
    windows = WindowSettings() if args.windows else None
    code = run_job(ExtractJob(args.data, args.out, scheme=args.scheme, windows=windows), spark)
    if not args.windows or code not in (0, SOME_FAILED):
        return code
    # The stage of its own (resumable, its own run.json) shards the windows each pair task
    # cut into OUT/windows/parts; it decodes only pairs that have none (no train.csv, or
    # extracted by an earlier run without --windows).
    from herdcount.models.windows import WindowsJob

    shards = run_job(WindowsJob(args.out, args.data, storage.join(args.out, "windows")), spark)
    return code if shards == 0 else shards


if __name__ == "__main__":
    sys.exit(main())
