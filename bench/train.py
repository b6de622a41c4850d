"""Training benchmarks: both model kinds on a synthetic survey, timed, with their scores; the
streamed input against the in-memory sampler; and peak memory against the survey's size.

    python bench/train.py [--work DIR] [--train 40] [--width 1600] [--height 1100] [--seed 5] [--reuse]
    python bench/train.py --throughput [--steps 40]     # shards vs photos in memory, same run
    python bench/train.py --memory 12,48                # peak RSS of training, full-size photos

``--throughput`` times, on the same survey and in the same process, the input pipeline alone
(batches per second) and training steps per second with today's in-memory sampler
(every photo decoded first, ``tile_stream``) and with the windows streamed from shards
(``window_dataset``), and prints the ratios. ``--memory`` makes surveys of N full-size
(4992x3328) pairs, extracts them and cuts their windows, then trains a density model on
each under ``/usr/bin/time -v`` and prints the peak resident memory.

Makes the survey, extracts it with the extract library (one process; the Spark job does the
same per pair), then runs ``herdcount train`` with its default settings for each kind and
prints wall time, the density model's validation RMSE against the all-zeros baseline and the
classifier's validation accuracy, next to the goals of issue 3 (density: at most 10 minutes
on 2 cores and a ratio of at most 0.25; classifier: at least 90 % accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.extract import ExtractJob
from herdcount.modelrun import ModelRun
from herdcount.runner import run_in_process
from herdcount.synth import write_survey

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", help="folder for the survey and runs (default: a temporary one)")
    p.add_argument("--train", type=int, default=40, help="training photos")
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=1100)
    p.add_argument("--seed", type=int, default=5, help="survey seed")
    p.add_argument("--kinds", default="density,classifier", help="comma-separated kinds to train (and scale)")
    p.add_argument("--realism", type=int, default=0, help="synth --realism of the survey (0 or 1)")
    p.add_argument("--train-args", default="", help="more options for herdcount train, space-separated")
    p.add_argument(
        "--reuse", action="store_true", help="keep finished runs in WORK instead of training again"
    )
    p.add_argument("--throughput", action="store_true", help="time the input pipelines and training steps")
    p.add_argument("--steps", type=int, default=40, help="batches timed by --throughput")
    p.add_argument("--memory", help="comma-separated survey sizes (training pairs) to measure peak memory on")
    p.add_argument("--rates", choices=("memory", "shards"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="herdcount-bench-train-"))
    config = load_config(DEFAULT_SCHEME)
    if args.memory:
        return memory(work, config, [int(n) for n in args.memory.split(",")], args.seed)
    data, out = work / "data", work / "extract"
    if not (data / "Train" / "train.csv").is_file():
        write_survey(
            data,
            n_train=args.train,
            n_test=0,
            seed=args.seed,
            config=config,
            width=args.width,
            height=args.height,
            realism=args.realism,
        )
    if not (out / "run.json").is_file():
        run_in_process(ExtractJob(data, out, config=config))
    cores = len(os.sched_getaffinity(0))
    print(f"survey: {args.train} photos of {args.width}x{args.height} in {data}; {cores} cores")
    if args.rates:
        print(json.dumps(rates(args.rates, data, out, config, args.steps)))
        return 0
    if args.throughput:
        return throughput(data, out, config, args.steps)
    for kind in args.kinds.split(","):
        run = work / f"run-{kind}"
        if args.reuse and (run / "model.json").is_file():
            print(f"{kind}: reusing {run}")
            continue
        started = time.monotonic()
        cmd = [
            str(Path(sys.executable).with_name("herdcount")),
            "train",
            "--kind",
            kind,
            "--extract",
            str(out),
            "--data",
            str(data),
            "--out",
            str(run),
            "--overwrite",
            *args.train_args.split(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - started
        if done.returncode:
            print(done.stdout[-2000:], done.stderr[-4000:], sep="\n")
            return done.returncode
        metrics = ModelRun.read(run).metrics
        if kind == "scale":
            print(
                f"scale: {wall / 60:.1f} min wall; held-out tiles read within {100 * metrics['val_scale_error']:.1f} %, "
                f"held-out photos resized to {metrics['check_zooms']}: median error "
                f"{100 * metrics['photo_scale_error_median']:.1f} %, largest {100 * metrics['photo_scale_error_max']:.1f} %"
            )
        elif kind == "density":
            ratio = metrics["rmse_ratio_to_zero_baseline"]
            print(
                f"density: {wall / 60:.1f} min wall (goal <= 10 on 2 cores); validation RMSE {metrics['val_rmse']:.3f}, "
                f"all-zeros {metrics['zero_baseline_rmse']:.3f}, ratio {ratio:.3f} (goal <= 0.25)"
            )
            print("  per class:", metrics["val_rmse_per_class"])
        else:
            print(
                f"classifier: {wall / 60:.1f} min wall; validation accuracy {metrics['val_accuracy']:.3f} "
                "(goal >= 0.90)"
            )
            print(
                "  per class:",
                {k: round(v, 3) for k, v in metrics["val_accuracy_per_class"].items() if v is not None},
            )
        print(f"  outputs: {run}")
    return 0


def throughput(data: Path, out: Path, config, steps: int, batch: int = 16) -> int:
    """Input batches and training steps per second: photos in memory against shards, each
    measured in a fresh process (one process's second model trains at another speed)."""
    from herdcount.shards import WindowsJob

    windows = out / "windows"
    if not (windows / "index.json").is_file():
        started = time.monotonic()
        run_in_process(WindowsJob(str(out), str(data), str(windows), config=config))
        print(f"windows cut in {time.monotonic() - started:.1f} s (one process)")
    rates = {}
    for method in ("memory", "shards"):
        cmd = [sys.executable, __file__, "--rates", method, "--work", str(data.parent), "--steps", str(steps)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(done.stdout[-2000:], done.stderr[-4000:], sep="\n")
            return done.returncode
        rates[method] = json.loads(done.stdout.strip().splitlines()[-1])
        inp, step = rates[method]["input"], rates[method]["train"]
        print(
            f"{method:>7}: input alone {inp:.2f} batches/s ({inp * batch:.0f} tiles/s); "
            f"training {step:.2f} steps/s ({step * batch:.0f} tiles/s), {rates[method]['cpu_per_step']:.2f} CPU-s per step"
        )
    mem, sh = rates["memory"], rates["shards"]
    print(
        f"shards / in memory: input {sh['input'] / mem['input']:.2f}x, training steps "
        f"{sh['train'] / mem['train']:.2f}x (goal >= 1, no slower)"
    )
    return 0


def rates(method: str, data: Path, out: Path, config, steps: int, batch: int = 16) -> dict[str, float]:
    """One method's input rate alone and training rate, in this process."""
    import keras
    import numpy as np
    import tensorflow as tf

    from herdcount.extracted import load_photo, read_extract, split_photos
    from herdcount.models.builders import DensityLoss, make_density_model
    from herdcount.models.shard_reader import read_index, window_dataset
    from herdcount.models.training_data import density_dataset, tile_stream

    photos = read_extract(out, config, data)
    train_ids, _ = split_photos([p.train_id for p in photos], seed=0)
    sampling = {"size": 256, "stride": 8, "sigma": 1.0, "empty_share": 0.5, "scale_range": (0.5, 1.5)}
    if method == "memory":  # today's sampler: every training photo decoded first
        kept = [load_photo(data, p, config) for p in photos if p.train_id in set(train_ids)]

        def make():
            stream = tile_stream(kept, 5, np.random.default_rng(0), scale_sigma=0.25, block=8, **sampling)
            return density_dataset(stream, 5, size=256, stride=8, batch_size=batch)
    else:
        shards = read_index(str(out / "windows"), config)

        def make():
            ds = window_dataset(shards, train_ids, 5, scale_sigma=0.25, seed=0, **sampling)
            return ds.batch(batch).prefetch(tf.data.AUTOTUNE)

    it = iter(make())
    for _ in range(3):
        next(it)
    started = time.monotonic()
    for _ in range(steps):
        next(it)
    input_rate = steps / (time.monotonic() - started)
    keras.utils.set_random_seed(0)
    model = make_density_model(5)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DensityLoss())
    ds = make()
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    started, cpu = time.monotonic(), time.process_time()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    train_rate = steps / (time.monotonic() - started)
    return {"input": input_rate, "train": train_rate, "cpu_per_step": (time.process_time() - cpu) / steps}


def memory(work: Path, config, sizes: list[int], seed: int) -> int:
    """Peak memory of density training on surveys of full-size photos."""
    from herdcount.shards import WindowsJob

    peaks = {}
    for n in sizes:
        data, out, run = (
            work / f"full-{n}" / "data",
            work / f"full-{n}" / "extract",
            work / f"full-{n}" / "run",
        )
        if not (data / "Train" / "train.csv").is_file():
            started = time.monotonic()
            write_survey(data, n_train=n, n_test=0, seed=seed, config=config, width=4992, height=3328)
            print(f"{n} full-size pairs written in {time.monotonic() - started:.0f} s")
        if not (out / "run.json").is_file():
            run_in_process(ExtractJob(data, out, config=config))
        if not (out / "windows" / "index.json").is_file():
            started = time.monotonic()
            outcome = run_in_process(WindowsJob(str(out), str(data), str(out / "windows"), config=config))
            print(
                f"windows of {n} pairs cut in {time.monotonic() - started:.0f} s: {outcome.totals['bytes'] / 1e9:.2f} GB"
            )
        cmd = [
            "/usr/bin/time",
            "-v",
            sys.executable,
            "-m",
            "herdcount.models.train",
            "--kind",
            "density",
            "--extract",
            str(out),
            "--data",
            str(data),
            "--out",
            str(run),
            "--overwrite",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "20",
            "--val-photos-per-epoch",
            "2",
        ]
        started = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(done.stdout[-2000:], done.stderr[-4000:], sep="\n")
            return done.returncode
        line = next(x for x in done.stderr.splitlines() if "Maximum resident set size" in x)
        peaks[n] = int(line.split(":")[1]) / 1e6
        print(f"{n} pairs: peak {peaks[n]:.2f} GB, {time.monotonic() - started:.0f} s (2 epochs of 20 steps)")
    if len(peaks) > 1:
        low, high = min(peaks), max(peaks)
        print(
            f"peak at {high} pairs - peak at {low} pairs: {peaks[high] - peaks[low]:+.2f} GB "
            f"(goal: within 0.5 GB; at most 4 GB at 48)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
