"""Extract dots, thumbnails and background patches from a survey's training pairs.

Run::

    spark-submit jobs/extract.py --data DATA --out OUT [--scheme conf/sealions.yaml]

DATA is a dataset root in the Kaggle layout (Train/, TrainDotted/, Train/train.csv,
MismatchedTrainImages.txt). One Spark task per pair; rerunning with the same OUT resumes.
"""

import sys

from herdcount.commands.extract import main

if __name__ == "__main__":
    sys.exit(main())
