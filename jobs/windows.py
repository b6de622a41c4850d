"""``spark-submit jobs/windows.py ...`` runs ``herdcount windows`` (see ``herdcount windows --help`` and docs/cli.md)."""

import sys

from herdcount.commands.windows import main

if __name__ == "__main__":
    sys.exit(main())
