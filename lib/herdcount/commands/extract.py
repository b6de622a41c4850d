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
from herdcount.annotations import FORMATS
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
    parser.add_argument("--data", help="dataset root in the Kaggle layout (dotted pairs)")
    labels = parser.add_argument_group("annotation files (instead of --data)")
    labels.add_argument("--images", metavar="DIR", help="folder of the annotated images")
    labels.add_argument("--annotations", metavar="FILE", help="annotation file (or YOLO folder)")
    labels.add_argument(
        "--format", default="auto", choices=("auto", *FORMATS), help="the annotation file's format"
    )
    labels.add_argument(
        "--classes",
        metavar="FILE",
        help="class order: a keras-retinanet classes CSV (name,id) or one name a line (default: the "
        "scheme's, else the file's own list, else first appearance)",
    )
    labels.add_argument(
        "--ignore-class",
        action="append",
        default=[],
        metavar="NAME",
        help="a class that is neither background nor counted (masked in training); repeatable",
    )
    labels.add_argument(
        "--group-pattern",
        metavar="REGEX",
        help="each image's group (e.g. its source photo) is the regex's first capture group in its "
        "file name; training holds out whole groups",
    )
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
    source = None
    if args.annotations:
        source = LabelSource(
            args.images,
            args.annotations,
            format=args.format,
            classes=args.classes,
            ignore=tuple(args.ignore_class),
            group_pattern=args.group_pattern,
        )
    data = args.images or args.data
    code = run_job(ExtractJob(data, args.out, scheme=args.scheme, windows=windows, source=source), spark)
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
