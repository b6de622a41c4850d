"""``herdcount split``: the command line of :mod:`herdcount.split`."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import sys

from herdcount import split as _library
from herdcount import storage
from herdcount.cli import HelpFormatter
from herdcount.manifest import OK, read_manifest
from herdcount.options import add_options, from_args
from herdcount.runinfo import RunClock, read_run, write_run_json
from herdcount.split import SplitSettings, proportions, split_rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="herdcount split", description=_library.__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    add_options(p, SplitSettings)
    args = from_args(SplitSettings, p.parse_args(argv))
    clock = RunClock()
    try:
        fractions = tuple(float(f) for f in args.fractions.split(","))
        rows = [
            r for r in read_manifest(storage.join(args.manifest, "manifest.parquet")) if r["status"] == OK
        ]
        if not rows:
            raise ValueError(f"{args.manifest} has no readable photos in manifest.parquet")
        group = [g for g in args.group.split(",") if g]
        missing = [f for f in [args.by, *group] if f not in rows[0]]
        if missing:
            raise ValueError(f"the manifest has no field {missing[0]!r}; give the job a --layout naming it")
        if args.keep:
            kept = {line["path"] for line in csv.DictReader(io.StringIO(storage.read_text(args.keep)))}
            rows = [r for r in rows if r["path"] in kept]
        result = split_rows(
            rows, by=args.by, group=group, fractions=fractions, seed=args.seed, min_photos=args.min_photos
        )
    except (ValueError, OSError) as exc:
        print(f"split: error: {exc}", file=sys.stderr)
        return 2
    for name, items in result.items():
        storage.write_csv_atomic(storage.join(args.out, f"{name}.csv"), ["path", args.by, "group"], items)
    manifest_run = read_run(args.manifest)
    write_run_json(
        args.out,
        job="split",
        config=dataclasses.asdict(args),
        inputs={
            "manifest": storage.absolute(args.manifest),
            "fingerprint": manifest_run.inputs["fingerprint"] if manifest_run else None,
            "keep": args.keep,
        },
        clock=clock,
        totals={k: len(v) for k, v in result.items()},
    )
    print(proportions(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
