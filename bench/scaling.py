"""Benchmark: photos per second of the count job on 1, 2, ... cores, and parallel efficiency.

    python bench/scaling.py [--photos 96] [--width 1600] [--height 1100] [--cores 1,2] [--model RUN]
                            [--photos-per-task 1,4]

Makes a test survey, then runs ``spark-submit --master local[N] jobs/count.py`` on the same
photos for each N into a fresh OUT, the whole job pinned to N CPUs, and reads from its
run.json the time of the counting stage (Spark's tasks, the start of each worker and its
model load included; session start-up excluded, as it is paid once per job, not per photo).
Prints photos per second and the parallel efficiency ``rate(N) / (N * rate(1))``, for the
whole stage and for the warm part: the photos finished after every worker had loaded its
model, timed from the photos' own records; ``s/photo/core`` is the warm part's seconds of a
core per photo (the marginal cost of a photo). ``--photos-per-task`` times several task
sizes at each core count. Without --model, an untrained density model of
the default architecture is used: the cost of inference does not depend on the weights.
Goal (issue 6): efficiency >= 0.85 on 2 cores with at least 16 photos of 1600x1100.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def count_rate(data: Path, run: Path, out: Path, cores: int, per_task: int = 4) -> tuple[float, float, float]:
    """Photos per second of the counting stage with local[cores] and ``per_task`` photos per
    Spark task, that stage's seconds, and the photos per second after start-up (see
    :func:`steady_rate`)."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYSPARK_PYTHON": sys.executable,
    }
    cmd = [
        str(BIN / "spark-submit"),
        "--master",
        f"local[{cores}]",
        str(ROOT / "jobs" / "count.py"),
        "--data",
        str(data),
        "--model",
        str(run),
        "--out",
        str(out),
        "--photos-per-task",
        str(per_task),
    ]
    # The whole job (its JVM included) on `cores` CPUs: unpinned, local[1] would run the
    # JVM's compiler and collector threads on an idle second core for free and flatter
    # the 1-core baseline.
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    if done.returncode:
        raise RuntimeError(f"count job failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    totals = json.loads((out / "run.json").read_text())["totals"]
    return totals["counted"] / totals["count_s"], totals["count_s"], steady_rate(out)


def steady_rate(out: Path) -> float:
    """Photos per second once every worker has loaded its model: the photos finished after
    the last worker's first photo, over the time from then to the last photo."""
    records = [json.loads(p.read_text()) for p in (out / "photos").glob("*.json")]
    first = {}
    for r in sorted(records, key=lambda r: r["finished_at"]):
        first.setdefault(r["pid"], r["finished_at"])
    warm = max(first.values())
    later = [r["finished_at"] for r in records if r["finished_at"] > warm]
    return len(later) / (max(later) - warm) if later else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=96)
    p.add_argument("--width", type=int, default=1600)
    p.add_argument("--height", type=int, default=1100)
    p.add_argument(
        "--cores",
        default=None,
        help="comma-separated core counts (default: 1, 2, 4, ... up to this machine's)",
    )
    p.add_argument("--model", help="a training run (default: an untrained density model)")
    p.add_argument(
        "--photos-per-task",
        default="4",
        help="comma-separated photos per Spark task, each timed at every core count (default: the job's 4)",
    )
    p.add_argument("--work", help="folder for the survey and outputs (default: a temporary one)")
    args = p.parse_args(argv)
    available = len(os.sched_getaffinity(0))
    cores = (
        [int(c) for c in args.cores.split(",")]
        if args.cores
        else [c for c in (1, 2, 4, 8, 16, 32, 64) if c <= available]
    )
    work = Path(args.work or tempfile.mkdtemp(prefix="herdcount-bench-scaling-"))
    if not args.work:
        atexit.register(shutil.rmtree, work, ignore_errors=True)

    from herdcount.config import DEFAULT_SCHEME, load_config
    from herdcount.synth import write_survey

    config = load_config(DEFAULT_SCHEME)
    data = work / "data"
    if not (data / "sample_submission.csv").is_file():
        write_survey(
            data, n_train=0, n_test=args.photos, seed=8, config=config, width=args.width, height=args.height
        )
    run = Path(args.model) if args.model else work / "run"
    if not args.model and not (run / "model.json").is_file():
        from herdcount.models.builders import write_untrained_runs

        run = write_untrained_runs(work / "runs", config)["density"]
    print(f"{args.photos} photos of {args.width}x{args.height}; model {run}; {available} cores here")
    print(
        f"{'cores':>5} {'photos/task':>11} {'stage s':>8} {'photos/s':>9} {'efficiency':>10} {'warm photos/s':>14} "
        f"{'warm efficiency':>16} {'s/photo/core':>13}"
    )
    base: dict[int, tuple[float, float]] = {}
    for n in cores:
        for per_task in (int(v) for v in args.photos_per_task.split(",")):
            out = work / f"out-{n}-{per_task}"
            shutil.rmtree(out, ignore_errors=True)  # a finished OUT would be resumed, not counted
            rate, seconds, warm = count_rate(data, run, out, n, per_task)
            one, warm_one = base.setdefault(per_task, (rate / n, warm / n))
            print(
                f"{n:>5} {per_task:>11} {seconds:>8.2f} {rate:>9.2f} {rate / (n * one):>10.2f} {warm:>14.2f} "
                f"{warm / (n * warm_one):>16.2f} {n / warm:>13.3f}",
                flush=True,
            )
    print(
        "stage: every photo, each worker's start and model load included; warm: the photos "
        "after every worker had counted its first"
    )
    print("goal: efficiency >= 0.85 on 2 cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
