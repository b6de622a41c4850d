"""``herdcount report``: the command line of :mod:`herdcount.report`."""

from __future__ import annotations

import argparse
import sys

from herdcount import report as _library
from herdcount import storage
from herdcount.cli import HelpFormatter
from herdcount.report import build_report, load_inputs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="herdcount report", description=_library.__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("--extract", required=True, help="output folder of the extract job")
    p.add_argument("--run", action="append", default=[], help="a training run (repeatable)")
    p.add_argument("--count", action="append", default=[], help="output folder of the count job (repeatable)")
    p.add_argument("--truth", help="true counts CSV (test_id and the class columns)")
    p.add_argument(
        "--points",
        metavar="TRUTH_POINTS",
        help="true points (the generator's truth folder or a CSV of test_id,class,x,y): score the count "
        "runs' points and draw them beside the truth",
    )
    p.add_argument("--out", required=True, help="the HTML file to write")
    args = p.parse_args(argv)
    try:
        inputs = load_inputs(args.extract, args.run, args.count, args.truth, args.points)
    except (OSError, ValueError) as exc:
        print(f"report: error: {exc}", file=sys.stderr)
        return 2
    storage.write_text_atomic(args.out, build_report(inputs))
    print(f"report written to {args.out}")
    if inputs.unreadable:
        print(
            f"report: {len(inputs.unreadable)} pictures are missing: their photos could not be read (see above)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
