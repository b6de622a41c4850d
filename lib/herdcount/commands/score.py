"""``herdcount score``: the command line of :mod:`herdcount.score`."""

from __future__ import annotations

import argparse
import sys

from herdcount import score as _library
from herdcount import storage
from herdcount.score import (
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


def _radius(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels or 'auto', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the radius must be positive, got {value:g}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="herdcount score",
        description=_library.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("submission", help="submission CSV: test_id and the class columns")
    parser.add_argument("truth", help="true counts CSV with the same header")
    parser.add_argument(
        "--points",
        metavar="TRUTH_POINTS",
        help="also match points.csv beside SUBMISSION to the true points: the generator's truth folder "
        "or a CSV of test_id,class,x,y",
    )
    parser.add_argument(
        "--radius",
        type=_radius,
        default=20.0,
        help="largest distance of a matched pair of points, in pixels, or 'auto': half of each class's body "
        "length as the model's training data measured it (default: %(default)s)",
    )
    args = parser.parse_args(argv)
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
