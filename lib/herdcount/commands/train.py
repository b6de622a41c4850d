"""``herdcount train``: the command line of :mod:`herdcount.models.train`."""

from __future__ import annotations

import importlib.util
import sys

from herdcount.models.settings import parse_args
from herdcount.runinfo import RunClock


def main(argv: list[str] | None = None) -> int:
    """Command line: ``herdcount train --kind KIND --extract OUT --out RUN [options]``."""
    clock = RunClock()
    # The options answer (--help, a bad value) before TensorFlow is imported, which takes seconds.
    given = parse_args(argv)
    # Looked up, not imported: the trainer sets TensorFlow's log level before importing it.
    if importlib.util.find_spec("tensorflow") is None:
        print("herdcount train: TensorFlow is not installed: pip install 'herdcount[train]'", file=sys.stderr)
        return 2
    from herdcount.predictors import tensorflow_notices_filtered

    with tensorflow_notices_filtered():
        from herdcount.models.train import run_training

    return run_training(given, clock)


if __name__ == "__main__":
    sys.exit(main())
