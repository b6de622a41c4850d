"""Flag duplicates, near-duplicates, unreadable, unsupported, unlabelled, dark and blurred photos.

Run::

    spark-submit jobs/clean.py --manifest OUT --out CLEAN [--near-duplicate-bits 6] [--dark-mads 3.5]
        [--dark-levels 40] [--blur-mads 3.5] [--blur-ratio 4]

OUT is the manifest job's output. CLEAN receives flags.csv (path,flag,detail), keep.csv
(path), balance.csv (label,photos), report.html and run.json. The work needs only the
manifest's rows (hashes and measures), so it runs on the driver: no photo is read, and the
originals are never moved or deleted.
"""

import sys

from herdcount.commands.clean import main

if __name__ == "__main__":
    sys.exit(main())
