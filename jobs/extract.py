"""``spark-submit jobs/extract.py ...`` runs ``herdcount extract`` (see ``herdcount extract --help`` and docs/cli.md)."""

import sys

from herdcount.commands.extract import main

if __name__ == "__main__":
    sys.exit(main())
