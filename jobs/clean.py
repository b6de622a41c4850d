"""``spark-submit jobs/clean.py ...`` runs ``herdcount clean`` (see ``herdcount clean --help`` and docs/cli.md)."""

import sys

from herdcount.commands.clean import main

if __name__ == "__main__":
    sys.exit(main())
