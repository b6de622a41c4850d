"""Cut training windows of an extract job's photos into TFRecord shards.

Run::

    spark-submit jobs/windows.py --extract OUT --data DATA [--out OUT/windows]
"""

import sys

from herdcount.commands.windows import main

if __name__ == "__main__":
    sys.exit(main())
