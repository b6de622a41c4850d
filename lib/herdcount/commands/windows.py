"""Cut training windows out of an extract job's photos into TFRecord shards that training streams.

Run::

    spark-submit jobs/windows.py --extract OUT --data DATA [--out OUT/windows] [--size 512] [--step 384]

OUT is an extract job's output and DATA the survey it came from. One Spark task per shard
(``--photos-per-shard`` photos); rerunning with the same output resumes. Needs the
training extra (``pip install herdcount[train]``): shards are written with TensorFlow.
"""

from __future__ import annotations

import argparse
import sys

from herdcount import storage
from herdcount.cli import HelpFormatter
from herdcount.runner import SparkOptions, run_job
from herdcount.spark import add_spark_conf_argument
from herdcount.windows import WindowSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = WindowSettings()
    parser = argparse.ArgumentParser(
        prog="herdcount windows", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--extract", required=True, metavar="OUT", help="output folder of herdcount extract")
    parser.add_argument("--data", required=True, help="the survey OUT was extracted from")
    parser.add_argument("--out", help="output folder (default: OUT/windows, where training looks)")
    parser.add_argument("--size", type=int, default=defaults.size, help="window side in pixels")
    parser.add_argument("--step", type=int, default=defaults.step, help="offset between grid windows")
    parser.add_argument(
        "--dots-per-class",
        type=int,
        default=defaults.dots_per_class,
        help="about how many dot-centred windows each class gets (all its dots when fewer)",
    )
    parser.add_argument(
        "--photos-per-shard", type=int, default=defaults.photos_per_shard, help="photos per shard and task"
    )
    parser.add_argument("--quality", type=int, default=defaults.quality, help="JPEG quality of the windows")
    parser.add_argument("--seed", type=int, default=0, help="seed of the choice of dot windows")
    add_spark_conf_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # TensorFlow is imported here, not for --help.
    from herdcount.shards import WindowsJob

    settings = WindowSettings(
        size=args.size,
        step=args.step,
        dots_per_class=args.dots_per_class,
        quality=args.quality,
        photos_per_shard=args.photos_per_shard,
    )
    out = args.out or storage.join(args.extract, "windows")
    job = WindowsJob(args.extract, args.data, out, settings=settings, seed=args.seed)
    return run_job(job, SparkOptions(args.master, args.spark_conf))


if __name__ == "__main__":
    sys.exit(main())
