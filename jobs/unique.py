"""``spark-submit jobs/unique.py ...`` runs ``herdcount unique`` (see ``herdcount unique --help`` and docs/cli.md)."""

import sys

from herdcount.commands.unique import main

if __name__ == "__main__":
    sys.exit(main())
