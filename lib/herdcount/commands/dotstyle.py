"""``herdcount dotstyle``: the command line of :mod:`herdcount.dotstyle`."""

from __future__ import annotations

import argparse
import sys

from herdcount import dotstyle as _library
from herdcount.cli import HelpFormatter
from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.dotstyle import format_style, measure_pairs


def main(argv: list[str] | None = None) -> int:
    """Command line: ``herdcount dotstyle DATA [--pairs 4] [--scheme S]``."""
    parser = argparse.ArgumentParser(
        prog="herdcount dotstyle",
        description=_library.__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("data", help="dataset root in the Kaggle layout (Train/, TrainDotted/)")
    parser.add_argument("--pairs", type=int, default=4, help="pairs to measure (default 4)")
    parser.add_argument(
        "--scheme",
        default=DEFAULT_SCHEME,
        help="class scheme: a YAML file or a packaged scheme (default: %(default)s)",
    )
    args = parser.parse_args(argv)
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
