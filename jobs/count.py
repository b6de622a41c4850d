"""Count the animals in every test photo with a trained model into a Kaggle submission.

Run::

    spark-submit jobs/count.py --data DATA --model RUN --out OUT [--scale S] [--images DIR]

DATA is a dataset root in the Kaggle layout (photos in Test/, row order from
sample_submission.csv); --images counts another folder. RUN is a finished run of
herdcount train, density model or classifier. One Spark task per photo; rerunning with
the same OUT resumes.
"""

import sys

from herdcount.commands.count import main

if __name__ == "__main__":
    sys.exit(main())
