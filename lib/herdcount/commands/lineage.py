"""``herdcount lineage``: the command line of :mod:`herdcount.lineage`."""

from __future__ import annotations

import argparse
import sys

from herdcount import lineage as _library
from herdcount.cli import HelpFormatter
from herdcount.lineage import chain, describe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="herdcount lineage", description=_library.__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("path", help="an output folder, or a file in one")
    args = p.parse_args(argv)
    try:
        stages = chain(args.path)
    except ValueError as exc:
        print(f"lineage: error: {exc}", file=sys.stderr)
        return 2
    print(f"lineage of {args.path}, newest first:")
    for folder, run in stages:
        print(describe(folder, run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
