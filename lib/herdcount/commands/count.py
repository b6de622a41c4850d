"""Count the animals in every test photo with a trained model into a Kaggle submission.

Run::

    spark-submit jobs/count.py --data DATA --model RUN --out OUT [--scale S] [--images DIR]

DATA is a dataset root in the Kaggle layout (photos in Test/, row order from
sample_submission.csv); --images counts another folder. RUN is a finished run of
models/train.py, density model or classifier. One Spark task per photo; rerunning with
the same OUT resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time

from herdcount import storage
from herdcount.cli import HelpFormatter
from herdcount.config import DEFAULT_SCHEME, resolve_scheme
from herdcount.count import (
    CountSettings,
    check_model,
    check_stride,
    claim_out,
    count_photo,
    format_summary,
    plan_count,
    write_outputs,
)
from herdcount.runinfo import RunClock, fingerprint_files, read_run, write_run_json
from herdcount.spark import add_spark_conf_argument, build_session, recorded_settings, run_tasks

#: Exit code of a run that counted every photo it could but where some failed (see errors.csv);
#: 2 is a configuration error found before Spark started.
SOME_FAILED = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="herdcount count", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--data", help="dataset root in the Kaggle layout (Test/, sample_submission.csv)")
    parser.add_argument("--images", help="folder of photos to count instead of DATA/Test")
    parser.add_argument("--model", required=True, help="a finished run of models/train.py")
    parser.add_argument("--out", required=True, help="output folder (created; reruns resume)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="resize photos by this factor before counting, e.g. 0.5 for a survey flown "
        "twice as low as the training one (default: %(default)s)",
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
        "--scheme",
        help="class scheme: a YAML file or a packaged scheme (default: the one the model was trained with, "
        f"else {DEFAULT_SCHEME})",
    )
    add_spark_conf_argument(parser)
    args = parser.parse_args(argv)
    if args.data is None and args.images is None:
        parser.error("give --data (photos in DATA/Test) or --images")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock = RunClock()
    images = args.images or storage.join(args.data, "Test")
    sample = storage.join(args.data, "sample_submission.csv") if args.data else None
    try:
        for path in (images, args.model, args.out, args.scheme):
            if path:
                storage.check_bucket(path)
        if not 0 < args.scale <= 4:
            raise ValueError(f"--scale must be in (0, 4], got {args.scale}")
        if args.tile < 8 or args.batch_size < 1 or args.photos_per_task < 1:
            raise ValueError(
                f"--tile must be >= 8 and --batch-size, --photos-per-task >= 1, got "
                f"{args.tile}, {args.batch_size}, {args.photos_per_task}"
            )
        trained = (read_run(args.model) or {}).get("config", {}).get("scheme")
        config = resolve_scheme(args.scheme, trained, f"the model {args.model!r}")
        info = check_model(args.model, config)
        stride = check_stride(info, args.stride)
        plan = plan_count(images, args.out, sample=sample)
        settings = CountSettings(
            out=args.out,
            model=args.model,
            kind=info["kind"],
            scale=args.scale,
            num_classes=len(config.classes),
            stride=stride,
            tile=args.tile,
            batch_size=args.batch_size,
        )
        claim_out(settings)
    except ValueError as exc:
        print(f"count: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"count: {len(plan.tasks)} photos to count with the {info['kind']} model, {len(plan.done)} done "
        f"by an earlier run",
        file=sys.stderr,
    )
    spark = build_session("herdcount-count", args.spark_conf, args.master)
    try:
        # TensorFlow gets the cores Spark gives each task, no more: N tasks never start N x N threads.
        settings = dataclasses.replace(
            settings, threads=int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))
        )
        work = functools.partial(count_photo, settings=settings)
        started = time.monotonic()
        results = run_tasks(spark, work, plan.tasks, label="count", items_per_task=args.photos_per_task)
        count_s = time.monotonic() - started
        spark_settings = recorded_settings(spark)
    finally:
        spark.stop()
    totals = {**write_outputs(plan, results, config), "count_s": round(count_s, 3)}
    inputs = {
        "images": storage.absolute(images),
        "sample_submission": plan.sample,
        "photos": totals["photos"],
        "fingerprint": fingerprint_files(
            storage.parent(images),
            [storage.basename(images)],
            listings={storage.basename(images): plan.listing},
        ),
    }
    model = {
        "run": storage.absolute(args.model),
        "kind": info["kind"],
        "class_names": info["class_names"],
        "training_data": info.get("training_data"),
        "metrics": info.get("metrics"),
        "train_run": (read_run(args.model) or {}).get("times", {}).get("started_at"),
    }
    write_run_json(
        args.out,
        job="count",
        config={"settings": dataclasses.asdict(settings), "scheme": config.to_dict()},
        inputs=inputs,
        clock=clock,
        totals=totals,
        model=model,
        spark=spark_settings,
    )
    errors = [r for r in plan.rows + results if r["status"] == "error"]
    print(format_summary(totals, errors))
    print(f"outputs: {storage.join(args.out, 'submission.csv')}, counts.csv, errors.csv, run.json")
    if totals["failed"]:
        # Everything countable was counted, but a pipeline must not mistake this for success.
        seen = totals["counted"] + totals["failed"]
        print(f"count: {totals['failed']} of {seen} photos failed (see errors.csv); exit code {SOME_FAILED}")
        return SOME_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
