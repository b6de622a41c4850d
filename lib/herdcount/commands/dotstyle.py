"""``herdcount dotstyle``: the command line of :mod:`herdcount.dotstyle`."""

from __future__ import annotations

import argparse
import sys

from herdcount import dotstyle as _library
from herdcount.cli import HelpFormatter
from herdcount.config import load_config
from herdcount.dotstyle import DotstyleSettings, format_style, measure_pairs
from herdcount.options import add_options, from_args


def main(argv: list[str] | None = None) -> int:
    """Command line: ``herdcount dotstyle DATA [--pairs 4] [--scheme S]``."""
    parser = argparse.ArgumentParser(
        prog="herdcount dotstyle",
        description=_library.__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    add_options(parser, DotstyleSettings)
    args = from_args(DotstyleSettings, parser.parse_args(argv))
    try:
        config = load_config(args.scheme)
        style = measure_pairs(args.data, config, pairs=args.pairs)
    except ValueError as exc:
        print(f"dotstyle: error: {exc}", file=sys.stderr)
        return 2
    print(format_style(style, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
