"""Extract dots, thumbnails and background patches from a survey's training pairs.

Run::

    spark-submit jobs/extract.py --data DATA --out OUT [--scheme conf/sealions.yaml]

DATA is a dataset root in the Kaggle layout (Train/, TrainDotted/, Train/train.csv,
MismatchedTrainImages.txt). One Spark task per pair; rerunning with the same OUT resumes.
"""

from __future__ import annotations

import argparse
import functools
import sys

from herdcount import storage
from herdcount.cli import HelpFormatter
from herdcount.config import DEFAULT_SCHEME, resolve_scheme
from herdcount.extract import extract_pair, format_summary, plan_extract, write_outputs
from herdcount.kaggle import read_data_scheme
from herdcount.runinfo import RunClock, fingerprint_files, write_run_json
from herdcount.spark import add_spark_conf_argument, build_session, recorded_settings, run_tasks


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
    add_spark_conf_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock = RunClock()
    try:
        for path in (args.data, args.out, args.scheme):
            if path:
                storage.check_bucket(path)
        recorded = read_data_scheme(args.data) if storage.is_dir(args.data) else None
        config = resolve_scheme(args.scheme, recorded, f"DATA {args.data!r} (its scheme.yaml)")
        if args.scheme is None and recorded is None:
            print(
                f"extract: no --scheme and no DATA/scheme.yaml: using the {DEFAULT_SCHEME} scheme",
                file=sys.stderr,
            )
        plan = plan_extract(args.data, args.out, config)
    except ValueError as exc:
        print(f"extract: error: {exc}", file=sys.stderr)
        return 2
    inputs = {
        "data": storage.absolute(args.data),
        "scheme": args.scheme,
        "pairs": len(plan.tasks),
        "fingerprint": fingerprint_files(
            args.data, ["Train", "TrainDotted"], ["MismatchedTrainImages.txt"], listings=plan.listings
        ),
    }
    print(
        f"extract: {len(plan.tasks)} pairs to process, {len(plan.rows)} handled without Spark",
        file=sys.stderr,
    )
    spark = build_session("herdcount-extract", args.spark_conf, args.master)
    try:
        work = functools.partial(extract_pair, out=args.out, config=config)
        results = run_tasks(spark, work, plan.tasks, label="extract")
        spark_settings = recorded_settings(spark)
    finally:
        spark.stop()
    totals = write_outputs(plan, results, config)
    write_run_json(
        args.out,
        job="extract",
        config=config.to_dict(),
        inputs=inputs,
        clock=clock,
        totals=totals,
        spark=spark_settings,
    )
    print(format_summary(totals, plan.rows + results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
