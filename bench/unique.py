"""How well the unique stage links sightings, and what a pair costs.

    python bench/unique.py [--flights 3] [--lines 2 --frames 5] [--movement 0.2] [--exposure 0.1] [--perspective 0.04] [--full]

Flies the generator's flights (``herdcount synth --flight``: frames of 1600 x 1100, forward
overlap 0.6, side 0.3, rotations up to 5 degrees, exposure +-10 % (``--exposure``), animals stepping up to
``--movement`` body lengths between shots) and links their true
sightings (the linking alone is judged, as the owners' held-out flights give points) with
``--neighbours`` reaching the next line. Prints per flight the sightings, the animals, the
unique totals against the truth per class, the precision and recall of "these two sightings
are one animal", and the CPU-seconds per registered pair. ``--full`` also times one pair of
full-size 4992 x 3328 frames.
"""

from __future__ import annotations

import argparse
import collections
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.register import register_frames
from herdcount.runner import run_in_process
from herdcount.synth_flight import FlightPlan, write_flight
from herdcount.synth_scenes import make_test_scene
from herdcount.unique import UniqueJob


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def pairs_of(ids: list[str]) -> set[tuple[int, int]]:
    members = collections.defaultdict(list)
    for n, animal in enumerate(ids):
        members[animal].append(n)
    return {(i, j) for group in members.values() for i in group for j in group if i < j}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flights", type=int, default=3)
    p.add_argument("--lines", type=int, default=2)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--density", type=float, default=30.0)
    p.add_argument("--movement", type=float, default=0.0, help="largest step of an animal between shots")
    p.add_argument(
        "--exposure",
        type=float,
        default=0.1,
        help="largest change of a frame's brightness (0.1: 0.9-1.1 times)",
    )
    p.add_argument(
        "--perspective", type=float, default=0.0, help="largest shift of a frame's corner (a tilted camera)"
    )
    p.add_argument("--full", action="store_true", help="also time one pair of full-size frames")
    args = p.parse_args(argv)
    config = load_config(DEFAULT_SCHEME)
    work = Path(tempfile.mkdtemp(prefix="herdcount-bench-unique-"))
    print(
        "flight  sightings  animals  found  worst class error  pair precision  recall  registered  CPU-s per pair"
    )
    for seed in range(1, args.flights + 1):
        root = work / f"flight-{seed}"
        plan = FlightPlan(
            args.lines,
            args.frames,
            height=1100,
            width=1600,
            movement=args.movement,
            exposure=args.exposure,
            perspective=args.perspective,
        )
        write_flight(root / "data", root / "truth", plan, config, seed=seed, density=args.density)
        job = UniqueJob(
            images=str(root / "data" / "Flight"),
            out=str(root / "unique"),
            points=str(root / "truth" / "flight.csv"),
            order=str(root / "data" / "flight_order.csv"),
            neighbours=2 * args.frames - 1,
            scheme=DEFAULT_SCHEME,
        )
        run_in_process(job)
        truth, linked = rows(root / "truth" / "flight.csv"), rows(root / "unique" / "unique_points.csv")
        true_pairs, found_pairs = (
            pairs_of([r["animal_id"] for r in truth]),
            pairs_of([r["animal_id"] for r in linked]),
        )
        hits = len(true_pairs & found_pairs)
        animals = {r["animal_id"]: r["class"] for r in truth}
        true_totals = collections.Counter(animals.values())
        totals = {r["class"]: int(r["total"]) for r in rows(root / "unique" / "unique_totals.csv")}
        worst = max(abs(totals.get(k, 0) - n) / n for k, n in true_totals.items())
        tried = rows(root / "unique" / "pairs.csv")
        registered = [float(r["cpu_s"]) for r in tried if r["status"] == "registered"]
        print(
            f"{seed:>6}  {len(truth):>9}  {len(animals):>7}  {sum(totals.values()):>5}  {100 * worst:>16.1f} %"
            f"  {hits / max(len(found_pairs), 1):>14.4f}  {hits / max(len(true_pairs), 1):>6.4f}"
            f"  {len(registered):>4} of {len(tried):<3}  {np.mean(registered):>14.2f}"
        )
    if args.full:
        scene, _ = make_test_scene(np.random.default_rng(0), 3328, 7000, config, density=10)
        a, b = scene[:, :4992], scene[:, 2000:6992]
        register_frames(a[:800, :800], b[:800, :800])  # imports and first-call set-up, not timed
        started = time.process_time()
        found = register_frames(a, b)
        print(
            f"full-size pair (4992 x 3328, 60 % overlap): {found.status}, {found.inliers} inliers, "
            f"{time.process_time() - started:.2f} CPU-s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
