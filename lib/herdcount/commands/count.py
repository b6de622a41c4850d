"""Count the animals in every test photo with a trained model into a Kaggle submission.

Run::

    spark-submit jobs/count.py --data DATA --model RUN --out OUT [--scale S] [--images DIR]

DATA is a dataset root in the Kaggle layout (photos in Test/, row order from
sample_submission.csv); --images counts another folder. RUN is a finished run of
herdcount train, density model or classifier. One Spark task per photo; rerunning with
the same OUT resumes.
"""

from __future__ import annotations

import argparse
import sys

from herdcount import storage
from herdcount.cli import HelpFormatter
from herdcount.count import CountJob
from herdcount.options import add_options, from_args
from herdcount.runner import SOME_FAILED, SparkOptions, run_job
from herdcount.spark import add_spark_conf_argument
from herdcount.unique import UniqueJob

__all__ = ["SOME_FAILED", "main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="herdcount count", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--data", help="dataset root in the Kaggle layout (Test/, sample_submission.csv)")
    parser.add_argument("--images", help="folder of photos to count instead of DATA/Test")
    parser.add_argument(
        "--scale",
        type=_scale,
        default=1.0,
        help="resize photos by this factor before counting, e.g. 0.5 for a survey flown "
        "twice as low as the training one; auto: each photo at the scale read in it by "
        "--scale-model (default: %(default)s)",
    )
    add_options(parser, CountJob)
    chain = parser.add_argument_group("overlapping frames (herdcount unique, chained)")
    chain.add_argument(
        "--unique",
        action="store_true",
        help="then link the sightings across overlapping frames into OUT/unique (unique_totals.csv)",
    )
    chain.add_argument(
        "--order",
        default="name",
        metavar="name|exif|CSV",
        help="with --unique: the frames' flight order (default: %(default)s)",
    )
    chain.add_argument(
        "--neighbours",
        type=int,
        default=3,
        metavar="K",
        help="with --unique: register each frame with the next K (default: %(default)s)",
    )
    add_spark_conf_argument(parser)
    args = parser.parse_args(argv)
    if args.data is None and args.images is None:
        parser.error("give --data (photos in DATA/Test) or --images")
    if (args.scale == "auto") != (args.scale_model is not None):
        parser.error("--scale auto and --scale-model RUN go together")
    return args


def _scale(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = args.images or storage.join(args.data, "Test")
    job = from_args(
        CountJob,
        args,
        images=images,
        sample=storage.join(args.data, "sample_submission.csv") if args.data else None,
        scale=1.0 if args.scale == "auto" else args.scale,
    )
    spark = SparkOptions(args.master, args.spark_conf)
    code = run_job(job, spark)
    if not args.unique or code not in (0, SOME_FAILED):
        return code
    linked = UniqueJob(
        images=images,
        out=storage.join(args.out, "unique"),
        points=storage.join(args.out, "points.csv"),
        order=args.order,
        neighbours=args.neighbours,
        count=args.out,
        scheme=args.scheme,
    )
    again = run_job(linked, spark)
    return code if again == 0 else again


if __name__ == "__main__":
    sys.exit(main())
