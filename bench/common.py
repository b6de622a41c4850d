"""What several benchmarks share: the reference density run, and training one more."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def reference_run(work: Path, size: list[str], *more: str) -> int:
    """Make (or reuse) bench/train.py's 40-photo survey of seed 5 in WORK and its density run,
    WORK/run-density; ``more`` are further bench/train.py options. Returns its exit code."""
    cmd = [sys.executable, str(ROOT / "bench" / "train.py"), "--work", str(work), "--seed", "5"]
    return subprocess.run([*cmd, "--reuse", "--kinds", "density", *size, *more], check=False).returncode


def train_density(extract: Path, data: Path, run: Path, *options: str) -> float:
    """Train a density model with herdcount train from EXTRACT and DATA into RUN, with
    ``options``; the wall minutes it took. Exits with training's code (and its output's
    tail) when it fails."""
    args = ["--kind", "density", "--extract", str(extract), "--data", str(data), "--out", str(run)]
    return herdcount("train", *args, "--overwrite", *options, quiet=True)


def herdcount(*args: str, quiet: bool = False) -> float:
    """Run a herdcount verb of this venv; the wall minutes it took. Exits with its code when
    it fails (0 and 3, some photos failed, pass). ``quiet`` keeps its output unless it fails,
    and then prints the output's tail."""
    started = time.monotonic()
    cmd = [str(Path(sys.executable).with_name("herdcount")), *args]
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=quiet, text=True)
    if done.returncode not in (0, 3):
        if quiet:
            print(done.stdout[-2000:], done.stderr[-3000:], sep="\n")
        raise SystemExit(done.returncode)
    return (time.monotonic() - started) / 60
