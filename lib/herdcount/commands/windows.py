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
from herdcount.options import add_options, from_args
from herdcount.runner import SparkOptions, run_job
from herdcount.spark import add_spark_conf_argument
from herdcount.windows import WindowSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="herdcount windows", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    # The job's own module imports TensorFlow; its options are read without it.
    from herdcount.shards import WindowsJob

    add_options(parser, WindowsJob)
    add_options(parser, WindowSettings)
    add_spark_conf_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from herdcount.shards import WindowsJob

    out = args.out or storage.join(args.extract, "windows")
    job = from_args(WindowsJob, args, out=out, settings=from_args(WindowSettings, args))
    return run_job(job, SparkOptions(args.master, args.spark_conf))


if __name__ == "__main__":
    sys.exit(main())
