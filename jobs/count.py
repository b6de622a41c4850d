"""``spark-submit jobs/count.py ...`` runs ``herdcount count`` (see ``herdcount count --help`` and docs/cli.md)."""

import sys

from herdcount.commands.count import main

if __name__ == "__main__":
    sys.exit(main())
