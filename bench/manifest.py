"""Benchmark: photos described per CPU-second by the manifest job's per-file work, on 16 MP JPEGs.

    python bench/manifest.py [--photos 8] [--keep DIR]

Makes full-size 4992x3328 synthetic photos, then runs ``herdcount.manifest.describe_file`` —
reading, MD5, EXIF, decoding at reduced size through libjpeg's DCT scaling, quality measures,
perceptual hash, thumbnail — on each, on one core, and prints photos per CPU-second. For
reference it also times the same work with a full-size decode (what a naive manifest does).
Goal (issue 7): >= 5 photos per CPU-second.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import atexit  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def full_decode(data: bytes, name: str) -> dict:
    """The same measures from a full-size decode, resized afterwards."""
    import io

    import numpy as np
    from PIL import Image

    from herdcount.manifest import MEASURE_SIDE, phash, quality

    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    rgb.thumbnail((MEASURE_SIDE, MEASURE_SIDE))
    grey = np.asarray(rgb.convert("L"))
    return {**quality(grey), "phash": phash(grey)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=8)
    p.add_argument("--keep", help="folder for the photos (default: a temporary one)")
    args = p.parse_args(argv)

    from herdcount.config import DEFAULT_SCHEME, load_config
    from herdcount.manifest import FileTask, describe_file
    from herdcount.synth import write_survey

    work = Path(args.keep or tempfile.mkdtemp(prefix="herdcount-bench-manifest-"))
    if not args.keep:
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    data = work / "data"
    if not (data / "sample_submission.csv").is_file():
        write_survey(
            data,
            n_train=0,
            n_test=args.photos,
            seed=13,
            config=load_config(DEFAULT_SCHEME),
            width=4992,
            height=3328,
        )
    names = [f"{i}.jpg" for i in range(args.photos)]
    describe_file(FileTask(names[0], 0, ""), str(data / "Test"))  # warm imports
    start = time.process_time()
    for name in names:
        record = describe_file(FileTask(name, 0, ""), str(data / "Test"))
        assert record.status == "ok", record.error
    ours = (time.process_time() - start) / len(names)
    start = time.process_time()
    for name in names:
        full_decode((data / "Test" / name).read_bytes(), name)
    naive = (time.process_time() - start) / len(names)
    mb = sum((data / "Test" / n).stat().st_size for n in names) / len(names) / 1e6
    print(f"{len(names)} photos of 4992x3328 (16.6 MP, {mb:.1f} MB each), one core")
    print(
        f"describe_file (reduced-size decode): {ours:.3f} CPU-s per photo = {1 / ours:.1f} photos per CPU-second"
    )
    print(
        f"full-size decode, same measures:     {naive:.3f} CPU-s per photo = {1 / naive:.1f} photos per CPU-second "
        f"({naive / ours:.1f}x slower)"
    )
    print("goal: >= 5 photos per CPU-second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
