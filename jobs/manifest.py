"""``spark-submit jobs/manifest.py ...`` runs ``herdcount manifest`` (see ``herdcount manifest --help`` and docs/cli.md)."""

import sys

from herdcount.commands.manifest import main

if __name__ == "__main__":
    sys.exit(main())
