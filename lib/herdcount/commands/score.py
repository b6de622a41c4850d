"""``herdcount score``: the command line of :mod:`herdcount.score`."""

from __future__ import annotations

import argparse
import sys

from herdcount import score as _library
from herdcount import storage
from herdcount.options import add_options, from_args
from herdcount.score import (
    ScoreSettings,
    class_radii,
    counted_ids,
    format_coverage,
    format_points,
    format_score,
    interval_coverage,
    read_counts,
    read_points_csv,
    read_points_truth,
    score,
    score_point_sets,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="herdcount score",
        description=_library.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser, ScoreSettings)
    args = from_args(ScoreSettings, parser.parse_args(argv))
    try:
        print(format_score(score(args.submission, args.truth)))
        header, ids, true = read_counts(args.truth)
        names = header[1:]
        counted = counted_ids(args.submission)
        if args.points is not None:
            found_csv = storage.join(storage.parent(args.submission), "points.csv")
            if counted is None or not storage.exists(found_csv):
                raise ValueError(
                    f"--points needs the count job's points.csv and counts.csv beside {args.submission}"
                )
            truth_points = read_points_truth(args.points, names, ids=set(ids))
            found = read_points_csv(found_csv, names)
            radius = args.radius if args.radius != "auto" else class_radii(args.submission, names)
            scores, missing = score_point_sets(found, truth_points, counted, len(names), radius=radius)
            print()
            print(format_points(scores, names, radius, missing))
        totals = storage.join(storage.parent(args.submission), "totals.csv")
        if counted is not None and storage.exists(totals):
            keep = [n for n, key in enumerate(ids) if key in counted]
            print()
            print(
                format_coverage(interval_coverage(totals, dict(zip(names, true[keep].sum(axis=0).tolist()))))
            )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
