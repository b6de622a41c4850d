"""Flag duplicates, near-duplicates, unreadable, unsupported, unlabelled, dark and blurred photos.

Run::

    spark-submit jobs/clean.py --manifest OUT --out CLEAN [--near-duplicate-bits 6] [--dark-mads 3.5]
        [--dark-levels 40] [--blur-mads 3.5] [--blur-ratio 4]

OUT is the manifest job's output. CLEAN receives flags.csv (path,flag,detail), keep.csv
(path), balance.csv (label,photos), report.html and run.json. The work needs only the
manifest's rows (hashes and measures), so it runs on the driver: no photo is read, and the
originals are never moved or deleted.
"""

from __future__ import annotations

import argparse
import json
import sys

from herdcount import storage
from herdcount.clean import CleanSettings, balance, flag_rows, keep_paths, report_html
from herdcount.cli import HelpFormatter
from herdcount.manifest import read_manifest
from herdcount.runinfo import RunClock, write_run_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = CleanSettings()
    parser = argparse.ArgumentParser(
        prog="herdcount clean", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--manifest", required=True, help="output folder of jobs/manifest.py")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--near-duplicate-bits",
        type=int,
        default=defaults.near_duplicate_bits,
        help="perceptual hashes at most this many bits apart are one picture (default: %(default)s)",
    )
    parser.add_argument(
        "--dark-mads",
        type=float,
        default=defaults.dark_mads,
        help="robust deviations below the median brightness that make a photo dark (default: %(default)s)",
    )
    parser.add_argument(
        "--blur-mads",
        type=float,
        default=defaults.blur_mads,
        help="robust deviations below the median log sharpness that make it blurred (default: %(default)s)",
    )
    parser.add_argument(
        "--dark-levels",
        type=float,
        default=defaults.dark_levels,
        help="and at least this many grey levels below it (default: %(default)s)",
    )
    parser.add_argument(
        "--blur-ratio",
        type=float,
        default=defaults.blur_ratio,
        help="and at least this many times less sharp than the median (default: %(default)s)",
    )
    parser.add_argument("--label-field", default=defaults.label_field, help="layout field of the label")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock = RunClock()
    manifest_file = storage.join(args.manifest, "manifest.parquet")
    try:
        settings = CleanSettings(
            near_duplicate_bits=args.near_duplicate_bits,
            dark_mads=args.dark_mads,
            blur_mads=args.blur_mads,
            dark_levels=args.dark_levels,
            blur_ratio=args.blur_ratio,
            label_field=args.label_field,
        )
        if not storage.exists(manifest_file):
            raise ValueError(
                f"{args.manifest} has no manifest.parquet; expected the output of jobs/manifest.py"
            )
    except ValueError as exc:
        print(f"clean: error: {exc}", file=sys.stderr)
        return 2
    rows = read_manifest(manifest_file)
    flags = flag_rows(rows, settings)
    keep = keep_paths(rows, flags)
    counts = balance(rows, keep, settings.label_field)
    storage.write_csv_atomic(storage.join(args.out, "flags.csv"), ["path", "flag", "detail"], flags)
    storage.write_csv_atomic(storage.join(args.out, "keep.csv"), ["path"], [[p] for p in keep])
    storage.write_csv_atomic(storage.join(args.out, "balance.csv"), ["label", "photos"], counts.items())
    storage.write_text_atomic(storage.join(args.out, "report.html"), report_html(rows, flags, counts))
    by_flag = {f: sum(1 for _, g, _ in flags if g == f) for f in dict.fromkeys(g for _, g, _ in flags)}
    manifest_run = json.loads(storage.read_text(storage.join(args.manifest, "run.json")))
    inputs = {
        "manifest": storage.absolute(args.manifest),
        "fingerprint": manifest_run["inputs"]["fingerprint"],
    }
    write_run_json(
        args.out,
        job="clean",
        config=vars(args),
        inputs=inputs,
        clock=clock,
        totals={"files": len(rows), "kept": len(keep), "flags": by_flag},
    )
    print(
        f"files: {len(rows)}, kept: {len(keep)}; flags: " + ", ".join(f"{k} {v}" for k, v in by_flag.items())
    )
    print(f"outputs: {storage.join(args.out, 'flags.csv')}, keep.csv, balance.csv, report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
