"""Describe every file of a photo collection: one manifest row per file, with hashes and quality.

Run::

    spark-submit jobs/manifest.py --data DIR --out OUT [--layout "{location}/{contributor}_{date}/{label}/{file}"]

DIR (local or s3://) is only read. OUT receives manifest.parquet, manifest.csv and run.json
with the dataset fingerprint. A rerun into the same OUT reads only new or changed files.
"""

import sys

from herdcount.commands.manifest import main

if __name__ == "__main__":
    sys.exit(main())
