"""The unique stage: animals seen in several overlapping frames counted once.

Plan (driver): read the sightings (a count job's points.csv, or any points file of
``test_id,class,x,y[,score]``), the frames and their flight order; pair each frame with the
next ``neighbours`` frames. Work (executors, one task per pair): register the two frames
(:func:`herdcount.register.register_frames`; their map transforms where both are
georeferenced rasters), map the first frame's sightings into the second and match them
(:func:`herdcount.linking.match_pair`). Finish (driver): join the matches into animals
(:func:`herdcount.linking.join_animals`) and write under OUT:

- ``unique_points.csv``: every sighting with its ``animal_id``;
- ``animals.csv``: one row per animal: its class (the majority of its sightings), how many
  frames saw it, the frame that shows it most centrally and its position there;
- ``unique_totals.csv``: ``class,total,low,high,sightings``;
- ``pairs.csv``: every pair, its status (registered, or why not), inliers, overlap,
  sightings matched, the CPU-seconds it took and the transform;
- ``flight.png``: the frames' footprints as the registrations place them;
- ``run.json``.

What it assumes: the ground is near-planar (one homography per pair) and animals move less
than the matching radius (half an animal's length) between the frames of a pair. A pair
that cannot be registered directly but is joined by a chain of registered pairs (moving
animals leave a small overlap too few agreeing features) is placed through that chain
(:func:`chain_pairs`, at most ``neighbours`` steps). A pair that neither places (open water,
too few features, no overlap) is reported, and its frames are treated as not overlapping: their animals may then be counted twice, never
guessed away. Frames further apart in the order than ``neighbours`` are never compared: a
line flown again much later, or a side overlap with a line more than ``neighbours`` frames
away, is not caught.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from herdcount import storage
from herdcount.config import config_from_dict, load_config
from herdcount.frames import flight_order, read_frame, read_sightings
from herdcount.imaging import PhotoError
from herdcount.kaggle import id_key
from herdcount.linking import (
    DEFAULT_RADIUS,
    Sightings,
    animal_classes,
    join_animals,
    match_pair,
    sighting_radii,
)
from herdcount.modelrun import ModelRun
from herdcount.options import option
from herdcount.records import Status, TaskError
from herdcount.register import (
    REGISTERED,
    Registration,
    frame_places,
    map_points,
    overlap_share,
    register_frames,
    shortest_chain,
)
from herdcount.runinfo import read_run
from herdcount.runner import SOME_FAILED, Job, Outcome

OK, ERROR = Status.OK, Status.ERROR
#: Matching radius as a share of an animal's length (linking.DEFAULT_RADIUS where it is unknown).
RADIUS_SHARE = 0.5


@dataclass(frozen=True)
class PairTask:
    """Two frames to register and link, with their sightings."""

    a: str
    b: str
    path_a: str
    path_b: str
    sightings_a: Sightings
    sightings_b: Sightings


@dataclass
class PairResult:
    """A registered (or not) pair and the sightings it matched."""

    a: str
    b: str
    status: Status
    registration: str = ""
    inliers: int = 0
    overlap: float = 0.0
    matrix: list[float] | None = None
    matches: list[tuple[int, int, float]] = field(default_factory=list)
    shapes: tuple[tuple[int, int], tuple[int, int]] | None = None
    cpu_s: float = 0.0
    error: TaskError | None = None


@dataclass(frozen=True)
class UniquePlan:
    """The pairs to register, every frame's sightings, and the radii."""

    frames: list[tuple[str, str]]
    sightings: dict[str, Sightings]
    pairs: list[PairTask]
    radii: dict[str, float]


@dataclass
class UniqueJob(Job[UniquePlan, PairTask, PairResult]):
    """The unique stage (see the module's description)."""

    name: ClassVar[str] = "unique"
    images: str = option(help="folder of the frames the points were found in")
    out: str = option(help="output folder")
    points: str | None = option(
        None, help="the sightings: a count job's points.csv or a CSV of test_id,class,x,y[,score]"
    )
    order: str = option(
        "name",
        metavar="name|exif|CSV",
        help="flight order of the frames: file names in natural order, EXIF capture time, or a CSV of "
        "test_id,order (default: %(default)s)",
    )
    neighbours: int = option(
        3, metavar="K", help="register each frame with the next K frames in the order (default: %(default)s)"
    )
    radius: float = option(
        0.0,
        metavar="PX",
        help="matching distance in pixels; 0: half of each class's length, from the count's model "
        "(class_lengths_px) or the scheme's length_px, else 20 px (default: %(default)s)",
    )
    longest: int = option(
        800, help="frames are registered shrunk to this longest side (default: %(default)s)"
    )
    scheme: str | None = option(
        None,
        help="class scheme whose length_px sets the radii where the count's model measured no lengths "
        "(default: the scheme the count recorded)",
    )
    count: str | None = None

    def paths(self) -> list[str | None]:
        return [self.images, self.points, self.out]

    def plan(self) -> UniquePlan:
        if not self.points:
            raise ValueError("no sightings: give --points FILE or --count OUT")
        if self.neighbours < 1:
            raise ValueError(f"--neighbours must be at least 1, got {self.neighbours}")
        if not storage.is_dir(self.images):
            raise ValueError(f"frame folder {self.images!r} does not exist")
        if not storage.exists(self.points):
            raise ValueError(f"points file {self.points!r} does not exist")
        frames = flight_order(self.images, self.order)
        sightings = read_sightings(self.points)
        unknown = sorted(set(sightings) - {f for f, _ in frames}, key=id_key)
        if unknown:
            raise ValueError(f"{self.points}: sightings of frames not in {self.images}: {unknown[:5]}")
        empty = np.zeros((0, 2)), np.array([], dtype=str)
        sightings = {f: sightings.get(f, Sightings(f, *empty)) for f, _ in frames}
        pairs = [
            PairTask(
                a,
                b,
                storage.join(self.images, na),
                storage.join(self.images, nb),
                sightings[a],
                sightings[b],
            )
            for k, (a, na) in enumerate(frames)
            for b, nb in frames[k + 1 : k + 1 + self.neighbours]
        ]
        return UniquePlan(frames, sightings, pairs, self._radii(sightings))

    def _radii(self, sightings: dict[str, Sightings]) -> dict[str, float]:
        """Each class's matching radius: ``--radius``; else half the class's length, as the
        count's model measured it from boxes, else as the scheme gives it (``--scheme``, else
        the one the count recorded); else :data:`DEFAULT_RADIUS`."""
        names = sorted({c for s in sightings.values() for c in s.classes.tolist()})
        if self.radius > 0:
            return dict.fromkeys(names, self.radius)
        lengths: dict[str, Any] = {}
        recorded = None
        run = read_run(self.count or storage.parent(self.points))
        if run is not None:
            recorded = run.config.get("scheme")
            model = (run.model or {}).get("run")
            if model:
                try:
                    lengths = dict(ModelRun.read(model).class_lengths_px or {})
                except ValueError:
                    lengths = {}
        scheme = None
        if self.scheme:
            scheme = load_config(self.scheme)
        elif recorded:
            scheme = config_from_dict(recorded)
        if scheme is not None:
            for spec in scheme.classes:
                lengths.setdefault(spec.name, float(np.mean(spec.length_px)) if spec.length_px else None)
        return {n: RADIUS_SHARE * lengths[n] if lengths.get(n) else DEFAULT_RADIUS for n in names}

    def items(self, plan: UniquePlan) -> list[PairTask]:
        return plan.pairs

    def announce(self, plan: UniquePlan) -> str:
        seen = sum(len(s) for s in plan.sightings.values())
        return f"{len(plan.pairs)} pairs of {len(plan.frames)} frames to register; {seen} sightings"

    def worker(self, plan: UniquePlan, task_cpus: int):
        radii, longest = plan.radii, self.longest

        def work(task: PairTask) -> PairResult:
            return link_pair(task, radii, longest=longest)

        return work

    def finish(self, plan: UniquePlan, results: list[PairResult], work_s: float) -> Outcome:
        return finish_unique(self, plan, results)


def _reach(sightings: Sightings, radii: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Where a frame's animals are and how far each reaches: a body length (twice the
    matching radius, half a length) from its point, so its features are not taken for ground."""
    return sightings.xy, 2 * sighting_radii(sightings, radii)


def link_pair(task: PairTask, radii: dict[str, float], *, longest: int = 800) -> PairResult:
    """Register one pair and match its sightings; never raises for a bad frame."""
    cpu = time.process_time()
    try:
        image_a, geo_a = read_frame(task.path_a)
        image_b, geo_b = read_frame(task.path_b)
    except PhotoError as exc:
        return PairResult(task.a, task.b, ERROR, error=TaskError(f"{task.a}+{task.b}", exc.file, exc.reason))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return PairResult(task.a, task.b, ERROR, error=TaskError(f"{task.a}+{task.b}", task.path_a, reason))
    shapes = (image_a.shape[:2], image_b.shape[:2])
    if geo_a is not None and geo_b is not None:
        from herdcount.register import overlap_share

        matrix = np.linalg.inv(geo_b) @ geo_a
        share = overlap_share(matrix, shapes[0], shapes[1])
        found = Registration(
            REGISTERED if share > 0 else "no overlap", matrix if share > 0 else None, 0, 0, share
        )
    else:
        found = register_frames(
            image_a,
            image_b,
            longest=longest,
            animals_a=_reach(task.sightings_a, radii),
            animals_b=_reach(task.sightings_b, radii),
        )
    matches = []
    if found.ok:
        matches = match_pair(task.sightings_a, task.sightings_b, found.matrix, radii, shape_b=shapes[1])
    return PairResult(
        task.a,
        task.b,
        OK,
        registration=found.status,
        inliers=found.inliers,
        overlap=round(found.overlap, 4),
        matrix=None if found.matrix is None else [float(v) for v in found.matrix.ravel()],
        matches=matches,
        shapes=shapes,
        cpu_s=round(time.process_time() - cpu, 3),
    )


CHAINED = "chained"


def frame_shapes(results: list[PairResult]) -> dict[str, tuple[int, int]]:
    """Each frame's ``(rows, cols)``, as the pairs that decoded it found it."""
    shapes: dict[str, tuple[int, int]] = {}
    for r in results:
        if r.shapes:
            shapes[r.a], shapes[r.b] = r.shapes
    return shapes


def _placed(r: PairResult) -> bool:
    return r.registration == REGISTERED or r.registration.startswith(CHAINED)


def chain_pairs(plan: UniquePlan, results: list[PairResult], *, hops: int) -> list[PairResult]:
    """Pairs that could not be registered directly, placed through a chain of pairs that were.

    Where animals move between shots, features on them disagree, and a pair overlapping by
    a small share may keep too few inliers while each step of the flight between its frames
    registers well. Such a pair gets the product of the shortest chain (at most ``hops``
    registrations, each used forward or inverted) between its frames, and its sightings are
    matched through it; its status names the chain. A pair that no chain of registrations
    reaches (open water, another line without overlap) stays as it was: never guessed.
    """
    edges: dict[str, list[tuple[str, np.ndarray]]] = {}
    shapes = frame_shapes(results)
    for r in results:
        if r.status == OK and r.registration == REGISTERED and r.matrix is not None:
            m = np.array(r.matrix, np.float64).reshape(3, 3)
            edges.setdefault(r.a, []).append((r.b, m))
            edges.setdefault(r.b, []).append((r.a, np.linalg.inv(m)))
    out = []
    tasks = {(t.a, t.b): t for t in plan.pairs}
    for r in results:
        if r.status != OK or r.registration == REGISTERED or r.a not in shapes or r.b not in shapes:
            out.append(r)
            continue
        found = shortest_chain(edges, r.a, r.b, hops)
        if found is None:
            out.append(r)
            continue
        path, matrix = found
        share = overlap_share(matrix, shapes[r.a], shapes[r.b])
        if share <= 0:
            out.append(r)
            continue
        task = tasks[(r.a, r.b)]
        matches = match_pair(task.sightings_a, task.sightings_b, matrix, plan.radii, shape_b=shapes[r.b])
        out.append(
            dataclasses.replace(
                r,
                registration=f"{CHAINED} via {' '.join(path[1:-1])}",
                overlap=round(share, 4),
                matrix=[float(v) for v in matrix.ravel()],
                matches=matches,
            )
        )
    return out


def _table(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def finish_unique(job: UniqueJob, plan: UniquePlan, results: list[PairResult]) -> Outcome:
    """Join the pairs' matches into animals and write the outputs (see the module)."""
    results = chain_pairs(plan, results, hops=job.neighbours)
    frames = [plan.sightings[f] for f, _ in plan.frames]
    index = {f: k for k, (f, _) in enumerate(plan.frames)}
    by_pair = {(r.a, r.b): r for r in results}
    matches = [(index[r.a], i, index[r.b], j, d) for r in results if r.status == OK for i, j, d in r.matches]
    ids, refused = join_animals(frames, matches)
    classes = np.concatenate([f.classes for f in frames]) if frames else np.array([], dtype=str)
    xy = np.concatenate([f.xy for f in frames]) if frames else np.zeros((0, 2))
    frame_of = [f for f, _ in plan.frames for _ in range(len(plan.sightings[f]))]
    kinds = animal_classes(ids, classes)
    shapes = frame_shapes(results)
    # The sighting nearest its frame's centre shows the animal best.
    best: dict[int, tuple[float, int]] = {}
    for n, animal in enumerate(ids.tolist()):
        h, w = shapes.get(frame_of[n], (0, 0))
        off = math.hypot(xy[n, 0] - w / 2, xy[n, 1] - h / 2) / max(math.hypot(w, h), 1) if h else 1.0
        if animal not in best or off < best[animal][0]:
            best[animal] = (off, n)
    seen = np.bincount(ids, minlength=len(kinds)) if len(ids) else np.zeros(0, int)
    storage.write_text_atomic(
        storage.join(job.out, "unique_points.csv"),
        _table(
            ["test_id", "class", "x", "y", "animal_id"],
            [
                [frame_of[n], classes[n], round(xy[n, 0], 1), round(xy[n, 1], 1), int(ids[n])]
                for n in range(len(ids))
            ],
        ),
    )
    storage.write_text_atomic(
        storage.join(job.out, "animals.csv"),
        _table(
            ["animal_id", "class", "sightings", "test_id", "x", "y"],
            [
                [
                    a,
                    kinds[a],
                    int(seen[a]),
                    frame_of[best[a][1]],
                    round(xy[best[a][1], 0], 1),
                    round(xy[best[a][1], 1], 1),
                ]
                for a in range(len(kinds))
            ],
        ),
    )
    totals = unique_totals(kinds, results, plan, job)
    storage.write_text_atomic(
        storage.join(job.out, "unique_totals.csv"),
        _table(["class", "total", "low", "high", "sightings"], [[k, *v] for k, v in totals.items()]),
    )
    pair_rows = []
    for task in plan.pairs:
        r = by_pair[(task.a, task.b)]
        status = (
            r.registration
            if r.status == OK
            else f"error: {r.error.file}: {r.error.reason}"
            if r.error
            else "error"
        )
        pair_rows.append(
            [r.a, r.b, status, r.inliers, r.overlap, len(r.matches), r.cpu_s, *(r.matrix or [""] * 9)]
        )
    storage.write_text_atomic(
        storage.join(job.out, "pairs.csv"),
        _table(
            [
                "a",
                "b",
                "status",
                "inliers",
                "overlap",
                "matched",
                "cpu_s",
                *[f"h{i}{j}" for i in range(3) for j in range(3)],
            ],
            pair_rows,
        ),
    )
    draw_flight(storage.join(job.out, "flight.png"), plan, results)
    failed = [r for r in results if r.status == ERROR]
    unregistered = [r for r in results if r.status == OK and not _placed(r)]
    chained = sum(1 for r in results if r.status == OK and r.registration.startswith(CHAINED))
    registered = len(results) - len(failed) - len(unregistered) - chained
    lines = [
        f"unique: {len(kinds)} animals from {len(ids)} sightings in {len(frames)} frames "
        f"({len(ids) / max(len(kinds), 1):.2f} sightings per animal)",
        f"  pairs: {registered} registered, {chained} through a chain of registered ones, {len(unregistered)} not ({', '.join(sorted({r.registration for r in unregistered})) or 'none'}), "
        f"{len(failed)} failed; {refused} matches refused (two sightings of one frame)",
        *(f"  {k}: {v[0]} ({v[1]}-{v[2]}) from {v[3]} sightings" for k, v in totals.items()),
        *(f"  failed {r.error.file}: {r.error.reason}" for r in failed if r.error),
        f"  outputs in {job.out}",
    ]
    return Outcome(
        config={
            "order": job.order,
            "neighbours": job.neighbours,
            "radii": plan.radii,
            "longest": job.longest,
        },
        inputs={"images": storage.absolute(job.images), "points": storage.absolute(job.points)},
        totals={
            "animals": len(kinds),
            "sightings": len(ids),
            "pairs_registered": registered,
            "pairs_chained": chained,
            "pairs_unregistered": len(unregistered),
            "pairs_failed": len(failed),
            "matches_refused": refused,
            "per_class": {k: v[0] for k, v in totals.items()},
        },
        summary="\n".join(lines),
        exit_code=SOME_FAILED if failed else 0,
    )


def unique_totals(
    kinds: list[str], results: list[PairResult], plan: UniquePlan, job: UniqueJob
) -> dict[str, list[int]]:
    """``class: [total, low, high, sightings]``.

    The interval is the count job's 90 % interval (its totals.csv beside the points: the
    detection's own uncertainty) scaled to the unique total, widened by the linking's: the
    matches of the class that lay in the outer half of the radius (each may be two animals
    joined). Without a count's totals, the linking's alone. A pair
    that could not be registered widens nothing: whether its frames overlap is unknown, and
    the summary and pairs.csv say so.
    """
    names = sorted({*kinds, *(c for s in plan.sightings.values() for c in s.classes.tolist())})
    sightings = {n: sum(int((s.classes == n).sum()) for s in plan.sightings.values()) for n in names}
    doubtful = dict.fromkeys(names, 0)
    tasks = {(t.a, t.b): t for t in plan.pairs}
    for r in results:
        task = tasks[(r.a, r.b)]
        for i, _, d in r.matches:
            name = task.sightings_a.classes[i]
            if d > plan.radii.get(name, DEFAULT_RADIUS) / 2:
                doubtful[name] += 1
    detection = _count_intervals(job)
    out = {}
    for n in names:
        total = kinds.count(n)
        low, high = total, total
        if n in detection:
            counted, lo, hi = detection[n]
            if counted > 0:
                low, high = round(total * lo / counted), round(total * hi / counted)
        out[n] = [total, max(0, low - doubtful[n]), high + doubtful[n], sightings[n]]
    return out


def _count_intervals(job: UniqueJob) -> dict[str, tuple[float, float, float]]:
    path = storage.join(job.count or storage.parent(job.points), "totals.csv")
    if not storage.exists(path):
        return {}
    out = {}
    for row in csv.DictReader(io.StringIO(storage.read_text(path))):
        try:
            out[row["class"]] = (float(row["counted"]), float(row["low"]), float(row["high"]))
        except (KeyError, ValueError):
            continue
    return out


def draw_flight(path: str, plan: UniquePlan, results: list[PairResult]) -> None:
    """The frames' footprints placed by chaining each frame's registration to an earlier one,
    from the first frame; a frame no chain of registrations reaches is left out."""
    from herdcount.plots import plot_footprints

    shapes = frame_shapes(results)
    links = {(r.a, r.b): np.array(r.matrix).reshape(3, 3) for r in results if r.matrix is not None}
    places = frame_places([f for f, _ in plan.frames], links)
    outlines = {}
    for f, _ in plan.frames:
        h, w = shapes.get(f, (0, 0))
        if h and places.get(f) is not None:
            outlines[f] = map_points(places[f], np.array([[0, 0], [w, 0], [w, h], [0, h], [0, 0]], float))
    plot_footprints(outlines, path)
