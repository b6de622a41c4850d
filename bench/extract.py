"""Benchmark: CPU-seconds and peak memory per full-size pair, herdcount against the reference.

    python bench/extract.py [--pairs 3] [--data DATA] [--keep DIR] [--out DIR]

Makes full-size 4992x3328 pairs with the synthetic survey generator (or uses DATA), then
extracts each pair on one core in a fresh process per method:

- herdcount: ``herdcount.extract.extract_pair``, the job's whole per-pair work: decoding
  both JPEGs, finding dots, writing thumbnails, background patches and metadata;
- reference: the recipe of public Kaggle kernels: decoding, absolute difference,
  ``skimage.feature.blob_log(min_sigma=3, max_sigma=7, num_sigma=1, threshold=0.05)`` on its
  grey level, and the class of the dot colour nearest to the dotted pixel at each blob.

It prints CPU-seconds (user + system) per pair, their ratio, peak resident memory of each
process, and how many pairs each method counted exactly as train.csv. Goals: <= 1.0 CPU-s
per pair, >= 6x faster than the reference, <= 1.5 GB per task. With ``--sweep`` it also
generates surveys in several annotation styles (dot radius 2-5 px, colour drift, JPEG
quality 70-95, dark animals) and prints the precision and recall per class of the default
settings against the generator's truth.

The outputs go to a new folder in /dev/shm where there is one, else beside the survey (with
``--keep``, there too; with ``--out DIR``, under DIR). Creating the ~500 files of a pair costs the kernel 0.02-0.03 ms per
file on tmpfs or a journalled ext4, but up to 0.5 ms on an ext4 without a journal (such
as this project's development VM) soon after many files were deleted, as after a test run:
perf shows ext4's ``recently_deleted`` scanning freed inodes on every create. That is a
property of the disk, which ``--out`` measures; the default measures the work.
"""

from __future__ import annotations

import os

# One core, as one Spark task has: set before numpy and friends start their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import atexit  # noqa: E402
import importlib  # noqa: E402
import multiprocessing as mp  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def herdcount_method(task, out, config):
    from herdcount.extract import extract_pair

    record = extract_pair(task, str(out), config)
    if record.status != "ok":
        raise RuntimeError(record.message)
    return record.counts


def reference_method(task, out, config):
    import numpy as np
    from skimage.color import rgb2gray
    from skimage.feature import blob_log

    from herdcount.imaging import decode_rgb

    plain = decode_rgb(Path(task.plain).read_bytes())
    dotted = decode_rgb(Path(task.dotted).read_bytes())
    diff = np.abs(plain.astype(np.int16) - dotted.astype(np.int16)).astype(np.uint8)
    blobs = blob_log(rgb2gray(diff), min_sigma=3, max_sigma=7, num_sigma=1, threshold=0.05)
    colours = np.array(config.dot_colours, dtype=float)
    counts = [0] * len(colours)
    for row, col, _ in blobs:
        pixel = dotted[int(row), int(col)].astype(float)
        counts[int(np.linalg.norm(colours - pixel, axis=1).argmin())] += 1
    return counts


def _child(method_name, tasks, out, config, queue):
    method = {"herdcount": herdcount_method, "reference": reference_method}[method_name]
    # Imports are a worker's one-time cost, not a pair's.
    importlib.import_module("herdcount.extract" if method_name == "herdcount" else "skimage.feature")
    seconds, counts = [], []
    for task in tasks:
        start = os.times()
        counts.append(method(task, Path(out) / task.train_id, config))
        end = os.times()
        seconds.append((end.user - start.user, end.system - start.system))
    # VmHWM, not ru_maxrss: the latter survives exec and would report the parent's peak.
    status = Path("/proc/self/status").read_text()
    peak_mb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
    queue.put((seconds, counts, peak_mb))


def run_method(name, tasks, out, config):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, tasks, out, config, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


SWEEP = [  # (radius range, colour drift, JPEG quality range, share of dark animals)
    ((2.0, 2.2), 25, (70, 95), 0.0),
    ((3.0, 3.3), 25, (70, 95), 0.0),
    ((4.0, 4.3), 25, (70, 95), 0.0),
    ((5.0, 5.3), 25, (70, 95), 0.0),
    ((2.7, 3.3), 8, (85, 95), 0.3),
    ((3.0, 3.3), 8, (70, 95), 0.3),
    ((3.0, 3.3), 25, (70, 95), 0.3),
]


def sweep(work: Path, config) -> None:
    """Precision and recall per class of the default settings on surveys of each style."""
    import numpy as np

    from herdcount.dotstyle import score_against_truth
    from herdcount.synth import truth_dir, write_survey
    from herdcount.synth_scenes import AnnotationStyle

    print("dots per class (" + ", ".join(config.class_names) + ") against the generator's truth:")
    for n, (radius, drift, quality, dark) in enumerate(SWEEP):
        data = work / f"sweep-{n}" / "data"
        style = AnnotationStyle(radius, drift, quality, dark)
        size = {"width": 1600, "height": 1100, "density": 30.0}
        write_survey(data, n_train=8, n_test=0, seed=2, config=config, n_mismatched=0, style=style, **size)
        s = score_against_truth(str(data), str(truth_dir(data)), config)
        name = (
            f"radius {radius[0]}-{radius[1]}, drift {drift}, JPEG {quality[0]}-{quality[1]}, dark {dark:.0%}"
        )
        scores = f"precision {np.round(s.precision, 3).tolist()}, recall {np.round(s.recall, 3).tolist()}"
        print(f"  {name}: {scores}, {s.truth.sum()} dots")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3, help="full-size pairs to generate (default 3)")
    parser.add_argument("--data", help="use this Kaggle-layout dataset instead of generating one")
    parser.add_argument("--keep", help="write the generated survey and outputs here instead of a temp dir")
    parser.add_argument(
        "--out", help="write the methods' outputs in a new folder here (default: /dev/shm, see above)"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="also score the dots of surveys in several annotation styles"
    )
    args = parser.parse_args()

    from herdcount.config import DEFAULT_SCHEME, load_config
    from herdcount.extract import plan_extract
    from herdcount.synth import write_survey

    config = load_config(DEFAULT_SCHEME)
    work = Path(args.keep or tempfile.mkdtemp(prefix="herdcount-bench-"))
    if not args.keep:
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    data = Path(args.data) if args.data else work / "data"
    if not args.data:
        started = time.monotonic()
        write_survey(
            data,
            n_train=args.pairs,
            n_test=0,
            seed=2017,
            config=config,
            width=4992,
            height=3328,
            n_mismatched=0,
        )
        print(f"generated {args.pairs} pairs of 4992x3328 in {time.monotonic() - started:.1f} s")
    plan = plan_extract(data, work / "out", config)
    tasks = plan.tasks[: args.pairs]
    expected = plan.expected or {}

    results = {}
    shm = Path("/dev/shm")
    tmpfs = shm.is_dir() and os.access(shm, os.W_OK) and not args.keep
    root = args.out or (str(shm) if tmpfs else None)
    out = Path(tempfile.mkdtemp(prefix="herdcount-bench-out-", dir=root)) if root else work
    if root and not args.keep:
        atexit.register(shutil.rmtree, out, ignore_errors=True)
    print(f"outputs in {out}")
    for name in ("herdcount", "reference"):
        seconds, counts, peak = run_method(name, tasks, out / f"out-{name}", config)
        exact = sum(list(c) == expected.get(t.train_id) for t, c in zip(tasks, counts))
        user, system = (sum(s[i] for s in seconds) / len(seconds) for i in (0, 1))
        results[name] = (user + system, peak, exact)
        print(
            f"{name:>10}: {user + system:6.3f} CPU-s per pair (user {user:.3f} + system {system:.3f}), "
            f"peak RSS {peak:5.0f} MB, {exact}/{len(tasks)} pairs counted exactly as train.csv"
        )
    if args.sweep:
        sweep(work, config)
    ours, ref = results["herdcount"][0], results["reference"][0]
    print(
        f"speed-up: {ref / ours:.1f}x (goal >= 6x); herdcount {ours:.3f} CPU-s per pair (goal <= 1.0); "
        f"peak {results['herdcount'][1] / 1024:.2f} GB per task (goal <= 1.5)"
    )


if __name__ == "__main__":
    main()
