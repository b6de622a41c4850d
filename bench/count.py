"""Benchmark: CPU-seconds and peak memory per full-size photo for the count job, against the seed's method.

    python bench/count.py [--photos 4] [--density RUN] [--classifier RUN] [--seed-tiles 40]

Makes full-size 4992x3328 test photos with the synthetic survey generator, then counts
them on one core (one TensorFlow thread, as one Spark task with spark.task.cpus=1 has)
in a fresh process per method, through ``herdcount.count.count_photo``, the job's whole
per-photo work (reading, decoding, inference):

- density model at scale 1.0 and 0.5, and with ``--scale auto`` (an untrained scale model
  whose output layer is zeroed, so that it reads scale 1: the estimate's cost beside the
  same count at the fixed scale);
- the classifier on the seed's non-overlapping 64x64 tiles, classified in batches;
- the seed's method as published: one ``model.predict`` call per 64x64 tile, timed on
  ``--seed-tiles`` tiles and extrapolated to every tile of the photo (the output says so).

Without RUN options the models are freshly built with untrained weights: the cost of
inference does not depend on the weights. It prints CPU-s per photo, the ratio to the
seed's method, peak resident memory of each process (an upper bound of one task's), and
the hours the 18,636 photos of the Kaggle test set would take on a 32-vCPU host at the
measured per-core rate. Goals (issue 4): density <= 2 CPU-s per photo at scale 1.0,
>= 100x the seed's per-tile method, <= 2 GB per task.
"""

from __future__ import annotations

import os

# One core, as one Spark task has: set before numpy and TensorFlow start their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import atexit  # noqa: E402
import multiprocessing as mp  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KAGGLE_TEST_PHOTOS = 18_636
HOST_VCPUS = 32


def _peak_mb() -> float:
    # VmHWM of this process; ru_maxrss would include the parent's peak across exec.
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def _count_child(run, kind, scale, photos, out, num_classes, queue):
    from herdcount.count import CountSettings, PhotoTask, count_photo

    reader = None
    if isinstance(scale, Path):  # --scale auto with this scale run
        reader, scale = str(scale), 1.0
    settings = CountSettings(
        out=str(out), model=str(run), kind=kind, num_classes=num_classes, scale=scale, scale_model=reader
    )
    seconds = []
    for path in photos:
        record = count_photo(PhotoTask(Path(path).stem, path, Path(path).name), settings)
        if record.status != "ok":
            raise RuntimeError(str(record.error))
        seconds.append(record.cpu_s)
    queue.put({"cpu_s": seconds, "peak_mb": _peak_mb()})


def _seed_child(run, photos, n_tiles, queue):
    import keras
    import numpy as np

    from herdcount.imaging import decode_rgb
    from herdcount.predictors import set_threads

    set_threads(1)
    model = keras.models.load_model(Path(run) / "model.keras", compile=False)
    image = decode_rgb(Path(photos[0]).read_bytes())
    rows, cols = -(-image.shape[0] // 64), -(-image.shape[1] // 64)
    rng = np.random.default_rng(0)
    picks = rng.choice(rows * cols, size=min(n_tiles, rows * cols), replace=False)
    model.predict(image[None, :64, :64], verbose=0)  # the seed loaded its model once, too
    start = time.process_time()
    for k in picks:
        r, c = divmod(int(k), cols)
        tile = image[r * 64 : r * 64 + 64, c * 64 : c * 64 + 64]
        if tile.shape[:2] == (64, 64):
            model.predict(tile[None], verbose=0)
    per_tile = (time.process_time() - start) / len(picks)
    queue.put(
        {
            "cpu_s": [per_tile * rows * cols],
            "per_tile_s": per_tile,
            "tiles": rows * cols,
            "peak_mb": _peak_mb(),
        }
    )


def run_child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=4, help="full-size test photos to count")
    p.add_argument("--density", help="a density run of models/train.py (default: untrained weights)")
    p.add_argument("--classifier", help="a classifier run of models/train.py (default: untrained weights)")
    p.add_argument("--seed-tiles", type=int, default=40, help="tiles timed for the seed's per-tile method")
    p.add_argument("--keep", help="folder for the photos and runs (default: a temporary one)")
    args = p.parse_args(argv)

    from herdcount.config import DEFAULT_SCHEME, load_config
    from herdcount.synth import write_survey

    config = load_config(DEFAULT_SCHEME)
    work = Path(args.keep or tempfile.mkdtemp(prefix="herdcount-bench-count-"))
    if not args.keep:
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    data = work / "data"
    if not (data / "sample_submission.csv").is_file():
        write_survey(data, n_train=0, n_test=args.photos, seed=7, config=config, width=4992, height=3328)
    photos = [str(data / "Test" / f"{i}.jpg") for i in range(args.photos)]
    from herdcount.models.builders import write_untrained_runs

    runs = write_untrained_runs(work / "runs", config)
    runs.update({k: Path(v) for k, v in (("density", args.density), ("classifier", args.classifier)) if v})
    print(f"{len(photos)} photos of 4992x3328 (16.6 MP) in {data}; one core per method", flush=True)

    methods = [
        ("density, scale 1.0", _count_child, (runs["density"], "density", 1.0)),
        ("density, scale 0.5", _count_child, (runs["density"], "density", 0.5)),
        (
            "density, --scale auto (reading scale 1)",
            _count_child,
            (runs["density"], "density", runs["scale"]),
        ),
        ("classifier, 64x64 tiles in batches", _count_child, (runs["classifier"], "classifier", 1.0)),
    ]
    results = {}
    for name, target, (run, kind, scale) in methods:
        out = work / f"out-{kind}-{scale if not isinstance(scale, Path) else 'auto'}"
        results[name] = run_child(target, run, kind, scale, photos, out, len(config.classes))
        print(f"  {name}: done", flush=True)
    seed = run_child(_seed_child, runs["classifier"], photos, args.seed_tiles)
    seed_name = f"seed: one predict per tile ({args.seed_tiles} of {seed['tiles']} timed, extrapolated)"
    results[seed_name] = seed
    reference = seed["cpu_s"][0]
    print(f"\n{'method':<62} {'CPU-s/photo':>11} {'x seed':>8} {'peak MB':>8} {'h, Kaggle test':>15}")
    for name, r in results.items():
        cpu = sum(r["cpu_s"]) / len(r["cpu_s"])
        hours = KAGGLE_TEST_PHOTOS * cpu / HOST_VCPUS / 3600
        print(f"{name:<62} {cpu:>11.2f} {reference / cpu:>8.1f} {r['peak_mb']:>8.0f} {hours:>15.2f}")
    print(
        f"\nseed per tile: {seed['per_tile_s'] * 1000:.0f} ms; hours: {KAGGLE_TEST_PHOTOS:,} photos on a "
        f"{HOST_VCPUS}-vCPU host at the measured per-core rate"
    )
    density = sum(results["density, scale 1.0"]["cpu_s"]) / args.photos
    auto = sum(results["density, --scale auto (reading scale 1)"]["cpu_s"]) / args.photos
    print(f"--scale auto / scale 1.0: {auto / density:.2f} (goal <= 2: the estimate is the extra)")
    print(
        f"goals: density <= 2 CPU-s per photo (got {density:.2f}), >= 100x the seed "
        f"(got {reference / density:.0f}x), <= 2048 MB per task "
        f"(got {max(r['peak_mb'] for r in results.values()):.0f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
