"""Extract the animals, thumbnails and windows of a survey's training photos (Spark).

Run::

    spark-submit jobs/extract.py --data DATA --out OUT [--scheme conf/sealions.yaml]
    spark-submit jobs/extract.py --images DIR --annotations FILE --out OUT [--ignore-class other]

The same job as ``herdcount extract``; ``--help`` lists every option.
"""

import sys

from herdcount.commands.extract import main

if __name__ == "__main__":
    sys.exit(main())
