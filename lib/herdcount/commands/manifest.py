"""Describe every file of a photo collection: one manifest row per file, with hashes and quality.

Run::

    spark-submit jobs/manifest.py --data DIR --out OUT [--layout "{location}/{contributor}_{date}/{label}/{file}"]

DIR (local or s3://) is only read. OUT receives manifest.parquet, manifest.csv and run.json
with the dataset fingerprint. A rerun into the same OUT reads only new or changed files.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections import Counter

from herdcount import storage
from herdcount.cli import HelpFormatter
from herdcount.manifest import (
    describe_file,
    fingerprint,
    layout_pattern,
    manifest_rows,
    plan_manifest,
    write_manifest,
)
from herdcount.runinfo import RunClock, write_run_json
from herdcount.spark import add_spark_conf_argument, build_session, recorded_settings, run_tasks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="herdcount manifest", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--data", required=True, help="the collection's root folder (local or s3://)")
    parser.add_argument("--out", required=True, help="output folder; a rerun reads only new or changed files")
    parser.add_argument(
        "--layout",
        default=None,
        help='folder layout whose {fields} become columns, e.g. "{location}/{contributor}_{date}/{label}/{file}"',
    )
    parser.add_argument(
        "--files-per-task", type=int, default=8, help="files per Spark task (default: %(default)s)"
    )
    add_spark_conf_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock = RunClock()
    try:
        for path in (args.data, args.out):
            storage.check_bucket(path)
        if args.layout:
            layout_pattern(args.layout)
        if args.files_per_task < 1:
            raise ValueError(f"--files-per-task must be positive, got {args.files_per_task}")
        plan = plan_manifest(args.data, args.out)
    except ValueError as exc:
        print(f"manifest: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"manifest: {len(plan.tasks)} files to read, {len(plan.reused)} unchanged since the last run",
        file=sys.stderr,
    )
    results, spark_settings = [], {}
    if plan.tasks:
        spark = build_session("herdcount-manifest", args.spark_conf, args.master)
        try:
            work = functools.partial(describe_file, root=args.data)
            results = run_tasks(spark, work, plan.tasks, label="manifest", items_per_task=args.files_per_task)
            spark_settings = recorded_settings(spark)
        finally:
            spark.stop()
    columns, rows = manifest_rows(plan.reused + results, args.layout)
    write_manifest(args.out, columns, rows)
    statuses = Counter(r["status"] for r in rows)
    totals = {
        "files": len(rows),
        "read": len(results),
        "reused": len(plan.reused),
        "status": dict(statuses),
        "cpu_s_per_file": round(sum(r["cpu_s"] for r in results) / len(results), 4) if results else None,
    }
    inputs = {"data": storage.absolute(args.data), "layout": args.layout, "fingerprint": fingerprint(rows)}
    write_run_json(
        args.out,
        job="manifest",
        config={"layout": args.layout, "files_per_task": args.files_per_task},
        inputs=inputs,
        clock=clock,
        totals=totals,
        spark=spark_settings,
    )
    print(
        f"files: {len(rows)} ({len(results)} read, {len(plan.reused)} reused); "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    )
    print(f"fingerprint: {inputs['fingerprint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
