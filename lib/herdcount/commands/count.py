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
from herdcount.config import DEFAULT_SCHEME
from herdcount.count import CountJob
from herdcount.intervals import DEFAULT_SURVEY_SHIFT
from herdcount.runner import SOME_FAILED, SparkOptions, run_job
from herdcount.spark import add_spark_conf_argument

__all__ = ["SOME_FAILED", "main", "parse_args"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="herdcount count", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--data", help="dataset root in the Kaggle layout (Test/, sample_submission.csv)")
    parser.add_argument("--images", help="folder of photos to count instead of DATA/Test")
    parser.add_argument("--model", required=True, help="a finished run of herdcount train")
    parser.add_argument("--out", required=True, help="output folder (created; reruns resume)")
    parser.add_argument(
        "--scale",
        type=_scale,
        default=1.0,
        help="resize photos by this factor before counting, e.g. 0.5 for a survey flown "
        "twice as low as the training one; auto: each photo at the scale read in it by "
        "--scale-model (default: %(default)s)",
    )
    parser.add_argument(
        "--scale-model",
        help="with --scale auto: a run of herdcount train --kind scale, which reads each photo's ground scale",
    )
    parser.add_argument(
        "--stride",
        type=int,
        default=None,
        help="classifier only: offset between windows; default the patch size (the seed's "
        "non-overlapping tiles); a multiple of 8 below it slides the window",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=1024,
        help="side in pixels of the photo regions inferred at once; bounds memory, "
        "does not change counts (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=4, help="tiles per model call (default: %(default)s)"
    )
    parser.add_argument(
        "--photos-per-task", type=int, default=1, help="photos per Spark task (default: %(default)s)"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=8192,
        metavar="N",
        help="rasters (GeoTIFF) larger than N pixels a side are counted in windows of N, each a Spark task "
        "reading only its window and the model's margin (default: %(default)s)",
    )
    parser.add_argument(
        "--map-coordinates",
        action="store_true",
        help="rasters must be georeferenced: one without a CRS is an error row rather than counted with "
        "pixel coordinates only (JPEG photos keep pixel coordinates)",
    )
    parser.add_argument(
        "--calibration",
        metavar="CSV",
        help="true counts of some of the survey's own photos (test_id and a column per class, as train.csv): "
        "the totals' intervals are measured on them instead of the model's held-out photos, and their "
        "truth enters the totals as it is",
    )
    parser.add_argument(
        "--groups",
        metavar="CSV",
        help="survey totals per group too (totals_by_group.csv): a CSV of test_id (or path, as in "
        "manifest.csv) and a group column",
    )
    parser.add_argument(
        "--group-by",
        default="group",
        metavar="COLUMN",
        help="with --groups: the column naming each photo's group, e.g. a manifest layout field such as "
        "site (default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.9,
        help="share of the truth's distribution the survey totals' intervals hold (default: %(default)s)",
    )
    parser.add_argument(
        "--survey-shift",
        type=float,
        default=DEFAULT_SURVEY_SHIFT,
        metavar="SD",
        help="with intervals from the model's held-out photos: how far the model's bias may move from "
        "the survey it was trained on to this one, as a standard deviation of the log ratio of true to "
        "counted animals (default: %(default)s, measured on fresh synthetic surveys; 0 takes this survey's "
        "photos to be like the held-out ones; not used with --calibration, which measures it)",
    )
    parser.add_argument(
        "--scheme",
        help="class scheme: a YAML file or a packaged scheme (default: the one the model was trained with, "
        f"else {DEFAULT_SCHEME})",
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
    job = CountJob(
        images=images,
        out=args.out,
        model=args.model,
        sample=storage.join(args.data, "sample_submission.csv") if args.data else None,
        scheme=args.scheme,
        scale=1.0 if args.scale == "auto" else args.scale,
        scale_model=args.scale_model,
        stride=args.stride,
        tile=args.tile,
        batch_size=args.batch_size,
        photos_per_task=args.photos_per_task,
        groups=args.groups,
        group_by=args.group_by,
        interval=args.interval,
        window=args.window,
        map_coordinates=args.map_coordinates,
        calibration=args.calibration,
        survey_shift=args.survey_shift,
    )
    return run_job(job, SparkOptions(args.master, args.spark_conf))


if __name__ == "__main__":
    sys.exit(main())
