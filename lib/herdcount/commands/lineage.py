"""``herdcount lineage``: the command line of :mod:`herdcount.lineage`."""

from __future__ import annotations

import argparse
import sys

from herdcount import lineage as _library
from herdcount.cli import HelpFormatter
from herdcount.lineage import LineageSettings, chain, describe
from herdcount.options import add_options, from_args


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="herdcount lineage", description=_library.__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    add_options(p, LineageSettings)
    args = from_args(LineageSettings, p.parse_args(argv))
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
