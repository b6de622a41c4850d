"""Extract the animals, thumbnails and background patches of a survey's training photos.

Run::

    herdcount extract --data DATA --out OUT [--scheme conf/sealions.yaml]
    herdcount extract --images DIR --annotations FILE --out OUT [--ignore-class other]

DATA is a dataset root in the Kaggle layout (Train/, TrainDotted/, Train/train.csv,
MismatchedTrainImages.txt); or the labels come from an annotation file (a boxes CSV as
keras-retinanet writes it, a points CSV, COCO JSON or a YOLO folder) over the images in
DIR. One Spark task per photo; rerunning with the same OUT resumes.
"""

from __future__ import annotations

import argparse
import sys

from herdcount import storage
from herdcount.annotated import LabelSource
from herdcount.cli import HelpFormatter
from herdcount.extract import ExtractJob
from herdcount.options import add_options, from_args
from herdcount.runner import SOME_FAILED, SparkOptions, run_job
from herdcount.spark import add_spark_conf_argument
from herdcount.windows import WindowSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="herdcount extract", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    add_options(parser, ExtractJob, only=["data"])
    add_options(parser.add_argument_group("annotation files (instead of --data)"), LabelSource)
    add_options(parser, ExtractJob, only=["out", "scheme"])
    parser.add_argument(
        "--windows",
        action="store_true",
        help="then cut the training windows into OUT/windows, as herdcount windows does with its "
        "defaults (needs the train extra)",
    )
    add_spark_conf_argument(parser)
    args = parser.parse_args(argv)
    if bool(args.data) == bool(args.images or args.annotations):
        parser.error("give either --data DATA (dotted pairs) or --images DIR with --annotations FILE")
    if bool(args.images) != bool(args.annotations):
        parser.error("--images and --annotations go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spark = SparkOptions(args.master, args.spark_conf)
    windows = WindowSettings() if args.windows else None
    source = from_args(LabelSource, args) if args.annotations else None
    data = args.images or args.data
    code = run_job(from_args(ExtractJob, args, data=data, windows=windows, source=source), spark)
    if not args.windows or code not in (0, SOME_FAILED):
        return code
    # The stage of its own (resumable, its own run.json) shards the windows each pair task
    # cut into OUT/windows/parts; it decodes only pairs that have none (no train.csv, or
    # extracted by an earlier run without --windows).
    from herdcount.shards import WindowsJob

    shards = run_job(WindowsJob(args.out, data, storage.join(args.out, "windows")), spark)
    return code if shards == 0 else shards


if __name__ == "__main__":
    sys.exit(main())
