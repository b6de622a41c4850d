"""``herdcount report``: the command line of :mod:`herdcount.report`."""

from __future__ import annotations

import argparse
import sys

from herdcount import report as _library
from herdcount import storage
from herdcount.cli import HelpFormatter
from herdcount.options import add_options, from_args
from herdcount.report import ReportSettings, build_report, load_inputs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="herdcount report", description=_library.__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    add_options(p, ReportSettings)
    args = from_args(ReportSettings, p.parse_args(argv))
    try:
        inputs = load_inputs(args.extract, list(args.run), list(args.count), args.truth, args.points)
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
