"""Describe every file of a photo collection: one manifest row per file, with hashes and quality.

Run::

    spark-submit jobs/manifest.py --data DIR --out OUT [--layout "{location}/{contributor}_{date}/{label}/{file}"]

DIR (local or s3://) is only read. OUT receives manifest.parquet, manifest.csv and run.json
with the dataset fingerprint. A rerun into the same OUT reads only new or changed files.
"""

from __future__ import annotations

import argparse
import sys

from herdcount.cli import HelpFormatter
from herdcount.manifest import ManifestJob
from herdcount.options import add_options, from_args
from herdcount.runner import SparkOptions, run_job
from herdcount.spark import add_spark_conf_argument


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="herdcount manifest", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    add_options(parser, ManifestJob)
    add_spark_conf_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    job = from_args(ManifestJob, args)
    return run_job(job, SparkOptions(args.master, args.spark_conf))


if __name__ == "__main__":
    sys.exit(main())
