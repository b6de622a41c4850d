"""Each animal counted once across overlapping frames: registration, linking, the unique stage."""

from __future__ import annotations

import collections
import csv
import shutil

import numpy as np
import pytest
from conftest import spark_submit
from skimage.transform import SimilarityTransform, warp

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.frames import world_transform
from herdcount.imaging import encode_jpeg
from herdcount.linking import Sightings, join_animals, match_pair
from herdcount.register import REGISTERED, TOO_FEW, map_points, register_frames
from herdcount.runner import SOME_FAILED, run_in_process
from herdcount.synth_flight import FlightPlan, write_flight
from herdcount.synth_scenes import make_test_scene
from herdcount.unique import UniqueJob


@pytest.fixture(scope="module")
def config():
    return load_config(DEFAULT_SCHEME)


def rows(path):
    return list(csv.DictReader(path.open()))


def same_animal_pairs(ids):
    members = collections.defaultdict(list)
    for n, animal in enumerate(ids):
        members[animal].append(n)
    return {(i, j) for group in members.values() for i in group for j in group if i < j}


def test_registration_recovers_a_known_rotation_scale_and_shift(config):
    scene, _ = make_test_scene(np.random.default_rng(0), 1000, 1500, config, density=20)
    a = scene[100:700, 0:800]
    # b sees the scene shifted by 400 px, turned 4 degrees and 3 % larger.
    to_b = SimilarityTransform(scale=1.03, rotation=np.deg2rad(4), translation=(-400, -60))
    b = (warp(scene, to_b.inverse, output_shape=(600, 800)) * 255).astype(np.uint8)
    found = register_frames(a, b)
    assert found.status == REGISTERED and found.inliers >= 50
    probe = np.array([[500.0, 300.0], [700.0, 100.0], [450.0, 550.0]])
    expected = to_b(probe + [0, 100])
    assert np.abs(map_points(found.matrix, probe) - expected).max() < 3.0
    # About half of a lies in b (400 of 800 px across, a little more for the zoom and turn).
    assert 0.35 < found.overlap < 0.65


@pytest.mark.parametrize("seed", [1, 3])
def test_animals_that_moved_are_left_out_and_the_ground_registers_the_frames(config, seed):
    import dataclasses

    from herdcount.synth_scenes import make_background, paint_animals, place_animals

    rng = np.random.default_rng(seed)
    ground, water = make_background(rng, 700, 1300)
    still = place_animals(rng, np.zeros_like(water), config, 60)
    # Each animal steps 0.4 of its length between the shots; the ground keeps still.
    headings = rng.uniform(0, 2 * np.pi, len(still))
    moved = [
        dataclasses.replace(
            a,
            row=a.row + 0.4 * a.length * np.sin(h),
            col=a.col + 0.4 * a.length * np.cos(h),
            angle=a.angle + 0.2,
        )
        for a, h in zip(still, headings)
    ]
    shots = []
    for animals in (still, moved):
        scene = ground.copy()
        paint_animals(scene, animals, config, rng)
        shots.append(np.clip(scene, 0, 255).astype(np.uint8))
    a, b = shots[0][:, :800], shots[1][:, 500:1300]  # b sees the ground 500 px further on

    def known(animals, shift):
        return np.array([(x.col - shift, x.row) for x in animals]), np.array([x.length for x in animals])

    blind = register_frames(a, b)
    found = register_frames(a, b, animals_a=known(still, 0), animals_b=known(moved, 500))
    assert found.status == REGISTERED and found.inliers > max(100, 2 * blind.inliers)
    probe = np.array([[600.0, 100.0], [700.0, 600.0], [550.0, 350.0]])
    assert np.abs(map_points(found.matrix, probe) - (probe - [500, 0])).max() < 2.0


def test_featureless_water_is_not_registered_and_carries_no_transform():
    rng = np.random.default_rng(1)
    water = np.clip(rng.normal(60, 1.0, (600, 800, 3)) + [0, 40, 80], 0, 255).astype(np.uint8)
    found = register_frames(water, water.copy())
    assert found.status == TOO_FEW and found.matrix is None and found.overlap == 0.0


def test_an_animal_at_the_edge_that_maps_just_outside_is_still_matched():
    # b is 100 x 200 (rows x cols). The first cow maps 4 px above b's top edge, where b sees
    # it 3 px inside: one animal. The second maps 30 px outside, beyond its radius: not in b.
    a = Sightings("a", np.array([[60.0, -4.0], [150.0, -30.0]]), np.array(["cow", "cow"]))
    b = Sightings("b", np.array([[61.0, 3.0], [150.0, 2.0]]), np.array(["cow", "cow"]))
    matches = match_pair(a, b, np.eye(3), {"cow": 10.0}, shape_b=(100, 200))
    assert [(i, j) for i, j, _ in matches] == [(0, 0)]
    assert matches[0][2] == pytest.approx(np.hypot(1, 7))


def test_matching_keeps_to_the_class_and_the_radius():
    a = Sightings("a", np.array([[10.0, 10.0], [50.0, 50.0], [90.0, 90.0]]), np.array(["cow", "cow", "pup"]))
    b = Sightings("b", np.array([[13.0, 10.0], [50.0, 75.0], [91.0, 90.0]]), np.array(["cow", "cow", "cow"]))
    shift = np.eye(3)
    matches = match_pair(a, b, shift, {"cow": 10.0, "pup": 10.0})
    # The first cow matches (3 px); the second is 25 px away; the pup finds no pup in b.
    assert [(i, j) for i, j, _ in matches] == [(0, 0)]
    assert matches[0][2] == pytest.approx(3.0)


def test_an_animal_is_never_in_one_frame_twice():
    frames = [
        Sightings("a", np.zeros((2, 2)), np.array(["cow", "cow"])),
        Sightings("b", np.zeros((1, 2)), np.array(["cow"])),
        Sightings("c", np.zeros((1, 2)), np.array(["cow"])),
    ]
    # a0-b0 and b0-c0 are one animal; c0-a1 would put a0 and a1 (one frame) together.
    ids, refused = join_animals(frames, [(0, 0, 1, 0, 1.0), (1, 0, 2, 0, 2.0), (2, 0, 0, 1, 3.0)])
    assert refused == 1
    assert ids.tolist() == [0, 1, 0, 0]


@pytest.fixture(scope="module")
def flight(tmp_path_factory, config):
    root = tmp_path_factory.mktemp("flight")
    plan = FlightPlan(lines=2, frames_per_line=4, height=600, width=800, rotation=5.0)
    write_flight(root / "data", root / "truth", plan, config, seed=1, density=60)
    return root


def unique(flight, out, **options):
    job = UniqueJob(
        images=str(flight / "data" / "Flight"),
        out=str(out),
        points=str(flight / "truth" / "flight.csv"),
        order=str(flight / "data" / "flight_order.csv"),
        **options,
    )
    return run_in_process(job)


def test_a_flight_counts_each_animal_once(flight, tmp_path):
    outcome = unique(flight, tmp_path / "out", neighbours=7)
    assert outcome.exit_code == 0
    truth = rows(flight / "truth" / "flight.csv")
    linked = rows(tmp_path / "out" / "unique_points.csv")
    # Every sighting kept, in the truth's order (frames in flight order).
    assert [(r["test_id"], r["class"]) for r in linked] == [(r["test_id"], r["class"]) for r in truth]
    true_pairs = same_animal_pairs([r["animal_id"] for r in truth])
    found_pairs = same_animal_pairs([r["animal_id"] for r in linked])
    hits = len(true_pairs & found_pairs)
    assert hits / len(found_pairs) >= 0.97 and hits / len(true_pairs) >= 0.97
    animals = {r["animal_id"]: r["class"] for r in truth}
    true_totals = collections.Counter(animals.values())
    totals = {r["class"]: int(r["total"]) for r in rows(tmp_path / "out" / "unique_totals.csv")}
    for name, n in true_totals.items():
        assert abs(totals[name] - n) <= 0.03 * n, (name, totals[name], n)
    summed = collections.Counter(r["class"] for r in truth)
    assert sum(summed.values()) > 2 * len(animals)  # the flight does overlap: sums would overcount
    assert len(rows(tmp_path / "out" / "animals.csv")) == sum(totals.values())
    pairs = rows(tmp_path / "out" / "pairs.csv")
    statuses = {p["status"] if not p["status"].startswith("chained via f") else "chained" for p in pairs}
    assert len(pairs) == 28 and statuses <= {"registered", "chained", "too few inliers"}
    for p in pairs:
        if p["status"].startswith("chained via"):
            # A chain names the frames between the pair's, each a registered step.
            via = p["status"].split()[2:]
            steps = list(zip([p["a"], *via], [*via, p["b"]]))
            placed = {(q["a"], q["b"]) for q in pairs if q["status"] == "registered"}
            assert all(step in placed or step[::-1] in placed for step in steps), p
    assert (tmp_path / "out" / "flight.png").stat().st_size > 10_000


def test_one_neighbour_misses_side_overlap_and_says_which_pairs_it_compared(flight, tmp_path):
    unique(flight, tmp_path / "out", neighbours=1)
    pairs = rows(tmp_path / "out" / "pairs.csv")
    assert [(p["a"], p["b"]) for p in pairs] == [(f"f{k:03d}", f"f{k + 1:03d}") for k in range(7)]
    animals = len({r["animal_id"] for r in rows(flight / "truth" / "flight.csv")})
    # Lines' side overlap lies beyond the next frame: some animals are counted twice, never fewer.
    found = len(rows(tmp_path / "out" / "animals.csv"))
    assert found > animals


def test_a_corrupt_frame_and_a_frame_over_water_cost_only_their_pairs(flight, tmp_path, config):
    images = tmp_path / "Flight"
    shutil.copytree(flight / "data" / "Flight", images)
    (images / "f002.jpg").write_bytes((images / "f002.jpg").read_bytes()[:500])
    water = np.clip(np.random.default_rng(2).normal(60, 1.0, (600, 800, 3)) + [0, 40, 80], 0, 255)
    (images / "f006.jpg").write_bytes(encode_jpeg(water.astype(np.uint8), 92))
    points = tmp_path / "points.csv"
    kept = [r for r in rows(flight / "truth" / "flight.csv") if r["test_id"] not in ("f002", "f006")]
    with points.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(kept[0]))
        writer.writeheader()
        writer.writerows(kept)
    job = UniqueJob(
        images=str(images),
        out=str(tmp_path / "out"),
        points=str(points),
        order=str(flight / "data" / "flight_order.csv"),
        neighbours=7,
    )
    outcome = run_in_process(job)
    assert outcome.exit_code == SOME_FAILED
    pairs = {(p["a"], p["b"]): p["status"] for p in rows(tmp_path / "out" / "pairs.csv")}
    assert all(s.startswith("error:") and "f002" in s for k, s in pairs.items() if "f002" in k)
    assert all(s == "too few inliers" for k, s in pairs.items() if "f006" in k and "f002" not in k)
    assert "failed" in outcome.summary and "f002.jpg" in outcome.summary
    # The other frames still link: far fewer animals than sightings.
    assert outcome.totals["animals"] < 0.6 * outcome.totals["sightings"]
    assert outcome.totals["sightings"] == len(kept)


def test_frames_that_do_not_overlap_keep_every_sighting_as_its_own_animal(tmp_path, config):
    plan = FlightPlan(lines=1, frames_per_line=3, forward=0.0, side=0.0, height=400, width=600, jitter=0.0)
    write_flight(tmp_path / "data", tmp_path / "truth", plan, config, seed=4, density=60)
    job = UniqueJob(
        images=str(tmp_path / "data" / "Flight"),
        out=str(tmp_path / "out"),
        points=str(tmp_path / "truth" / "flight.csv"),
        neighbours=2,
    )
    outcome = run_in_process(job)
    truth = rows(tmp_path / "truth" / "flight.csv")
    assert outcome.totals["animals"] == len(truth) == len({r["animal_id"] for r in truth})
    assert outcome.totals["pairs_registered"] == 0


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("stranger", "sightings of frames not in"),
        ("order", "no order for frames ['f003']"),
        ("columns", ":1: missing columns ['x']"),
    ],
)
def test_bad_inputs_stop_before_any_work_naming_the_file(flight, tmp_path, broken, message):
    points, order = flight / "truth" / "flight.csv", flight / "data" / "flight_order.csv"
    if broken == "stranger":
        points = tmp_path / "points.csv"
        points.write_text((flight / "truth" / "flight.csv").read_text() + "f999,pups,1,1,7\n")
    if broken == "order":
        order = tmp_path / "order.csv"
        order.write_text("".join(line for line in order_lines(flight) if not line.startswith("f003")))
    if broken == "columns":
        points = tmp_path / "points.csv"
        points.write_text("test_id,class,y\nf000,pups,3\n")
    job = UniqueJob(
        images=str(flight / "data" / "Flight"), out=str(tmp_path / "o"), points=str(points), order=str(order)
    )
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        job.plan()


def order_lines(flight):
    return (flight / "data" / "flight_order.csv").read_text().splitlines(keepends=True)


@pytest.mark.slow
def test_spark_submit_runs_the_stage(flight, tmp_path):
    proc = spark_submit(
        "jobs/unique.py",
        "--images",
        str(flight / "data" / "Flight"),
        "--points",
        str(flight / "truth" / "flight.csv"),
        "--order",
        str(flight / "data" / "flight_order.csv"),
        "--neighbours",
        "7",
        "--out",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    animals = len({r["animal_id"] for r in rows(flight / "truth" / "flight.csv")})
    assert abs(len(rows(tmp_path / "out" / "animals.csv")) - animals) <= 0.03 * animals
    assert "pairs: " in proc.stdout and (tmp_path / "out" / "run.json").is_file()


@pytest.mark.slow
def test_the_count_job_chains_the_stage(flight, tmp_path, config):
    from herdcount.commands import count as count_command
    from herdcount.models.builders import write_untrained_runs

    runs = write_untrained_runs(tmp_path / "runs", config)
    out = tmp_path / "count"
    args = ["--images", str(flight / "data" / "Flight"), "--model", str(runs["density"]), "--out", str(out)]
    order = ["--order", str(flight / "data" / "flight_order.csv"), "--neighbours", "2"]
    assert count_command.main([*args, "--unique", *order, "--master", "local[2]"]) == 0
    sightings = rows(out / "points.csv")
    linked = rows(out / "unique" / "unique_points.csv")
    assert len(linked) == len(sightings) > 0
    assert [(p["a"], p["b"]) for p in rows(out / "unique" / "pairs.csv")][:2] == [
        ("f000", "f001"),
        ("f000", "f002"),
    ]
    totals = rows(out / "unique" / "unique_totals.csv")
    assert sum(int(t["sightings"]) for t in totals) == len(sightings)
    assert sum(int(t["total"]) for t in totals) <= len(sightings)
    # The report shows the chained stage: its totals and the flight's footprints.
    from herdcount.report_counts import unique_html

    shown = unique_html({"path": str(out), "label": "flight"})
    assert "<h3>Each animal once: flight</h3>" in shown and 'alt="frame footprints of the flight"' in shown
    for t in totals:
        assert f"<td>{t['class']}</td><td>{t['total']}</td>" in shown


@pytest.mark.slow
@pytest.mark.parametrize(
    ("forward", "side", "rotation", "exposure", "movement", "perspective"),
    [
        (0.2, 0.2, 0.0, 0.0, 0.0, 0.0),
        (0.8, 0.5, 10.0, 0.2, 0.0, 0.0),
        (0.5, 0.3, 8.0, 0.3, 0.0, 0.0),
        (0.6, 0.3, 5.0, 0.1, 0.2, 0.0),
        (0.5, 0.3, 8.0, 0.3, 0.2, 0.0),
        (0.6, 0.3, 5.0, 0.1, 0.0, 0.04),
    ],
)
def test_the_linking_holds_across_overlaps_turns_exposures_movement_and_tilt(
    tmp_path, config, forward, side, rotation, exposure, movement, perspective
):
    plan = FlightPlan(
        lines=2,
        frames_per_line=3,
        forward=forward,
        side=side,
        height=600,
        width=800,
        rotation=rotation,
        exposure=exposure,
        movement=movement,
        perspective=perspective,
    )
    write_flight(tmp_path / "data", tmp_path / "truth", plan, config, seed=7, density=60)
    job = UniqueJob(
        images=str(tmp_path / "data" / "Flight"),
        out=str(tmp_path / "out"),
        points=str(tmp_path / "truth" / "flight.csv"),
        order=str(tmp_path / "data" / "flight_order.csv"),
        neighbours=5,
        scheme=DEFAULT_SCHEME,
    )
    run_in_process(job)
    truth, linked = rows(tmp_path / "truth" / "flight.csv"), rows(tmp_path / "out" / "unique_points.csv")
    true_pairs = same_animal_pairs([r["animal_id"] for r in truth])
    found_pairs = same_animal_pairs([r["animal_id"] for r in linked])
    hits = len(true_pairs & found_pairs)
    assert hits >= 0.97 * len(true_pairs) and hits >= 0.97 * len(found_pairs)
    animals = len({r["animal_id"] for r in truth})
    assert abs(len(rows(tmp_path / "out" / "animals.csv")) - animals) <= 0.03 * animals


def test_a_repeated_pass_is_linked_only_within_the_neighbours(flight, tmp_path):
    images = tmp_path / "Flight"
    shutil.copytree(flight / "data" / "Flight", images)
    # f003 (the first line's end) flown again after the last frame, five frames on; the
    # frame before the repeat (f007, the far end of the second line) shares no ground with it.
    shutil.copy(images / "f003.jpg", images / "f008.jpg")
    truth = rows(flight / "truth" / "flight.csv")
    again = [{**r, "test_id": "f008"} for r in truth if r["test_id"] == "f003"]
    points = tmp_path / "points.csv"
    with points.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(truth[0]))
        writer.writeheader()
        writer.writerows(truth + again)
    animals = len({r["animal_id"] for r in truth})
    found = {}
    for k in (1, 5):
        job = UniqueJob(images=str(images), out=str(tmp_path / f"k{k}"), points=str(points), neighbours=k)
        found[k] = run_in_process(job).totals["animals"]
    # Beyond the neighbours compared the pass's animals count again; within them they are linked.
    assert found[1] >= animals + 0.9 * len(again)
    assert abs(found[5] - animals) <= 0.03 * animals


def test_a_line_turn_without_overlap_breaks_the_chain_but_not_the_lines(tmp_path, config):
    plan = FlightPlan(lines=2, frames_per_line=3, forward=0.6, side=0.0, height=600, width=800, jitter=0.0)
    write_flight(tmp_path / "data", tmp_path / "truth", plan, config, seed=9, density=60)
    truth = rows(tmp_path / "truth" / "flight.csv")
    # Both lines flown left to right: the last frame of the first line and the first of the
    # second lie a line apart and do not overlap.
    order = tmp_path / "order.csv"
    order.write_text("test_id,order\nf000,0\nf001,1\nf002,2\nf005,3\nf004,4\nf003,5\n")
    job = UniqueJob(
        images=str(tmp_path / "data" / "Flight"),
        out=str(tmp_path / "out"),
        points=str(tmp_path / "truth" / "flight.csv"),
        order=str(order),
        neighbours=1,
        scheme=DEFAULT_SCHEME,
    )
    outcome = run_in_process(job)
    pairs = {(p["a"], p["b"]): p["status"] for p in rows(tmp_path / "out" / "pairs.csv")}
    assert pairs[("f002", "f005")] != "registered"
    assert all(s == "registered" for k, s in pairs.items() if k != ("f002", "f005"))
    # Within each line every animal is linked; the few that a frame's turn and zoom put in
    # both lines are counted once per line, as no registered pair joins the lines.
    lines = collections.defaultdict(set)
    for r in truth:
        lines[r["animal_id"]].add(int(r["test_id"][1:]) // 3)
    both = sum(len(v) == 2 for v in lines.values())
    assert outcome.totals["animals"] == len(lines) + both


def test_animals_walk_between_the_frames_of_a_flight(tmp_path, config):
    def residual_steps(movement: float) -> np.ndarray:
        """How far each animal seen in the first two frames is from where the frames' step
        alone (160 px along the line, no rotation) would put it."""
        plan = FlightPlan(
            lines=1, frames_per_line=2, forward=0.8, side=0.0, height=600, width=800, jitter=0.0,
            rotation=0.0, movement=movement,
        )  # fmt: skip
        root = tmp_path / str(movement)
        write_flight(root / "data", root / "truth", plan, config, seed=2, density=120)
        where: dict[str, dict[str, tuple[float, float]]] = {}
        for r in rows(root / "truth" / "flight.csv"):
            where.setdefault(r["animal_id"], {})[r["test_id"]] = (float(r["x"]), float(r["y"]))
        both = [seen for seen in where.values() if len(seen) == 2]
        return np.array(
            [np.hypot(s["f001"][0] - s["f000"][0] + 80, s["f001"][1] - s["f000"][1]) for s in both]
        )

    still, walking = residual_steps(0.0), residual_steps(0.5)
    longest = max(c.length_px[1] for c in config.classes)
    # Still animals move only by the frames' own scale (0.97-1.03 about their centres).
    assert len(still) > 20 and len(walking) > 20
    assert np.median(walking) > np.median(still) + 5
    assert walking.max() <= 0.5 * longest * 1.03 + still.max() + 1
    with pytest.raises(ValueError, match=r"movement must be in 0\.\.2"):
        FlightPlan(movement=3)


def test_georeferenced_frames_are_placed_by_their_map_transforms(tmp_path):
    """Featureless GeoTIFF frames (nothing for ORB to match): only their transforms can place them."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    rng = np.random.default_rng(3)
    frames, size, step, metres = tmp_path / "frames", (300, 400), 200, 0.05
    frames.mkdir()
    ground = rng.uniform([10, 10], [size[0] - 10, 3 * step + size[1] - 10], (40, 2))  # (row, col)
    rows_out = [["test_id", "class", "x", "y"]]
    for k in range(4):
        name = f"g{k}"
        pixels = np.full((3, *size), 120, np.uint8)
        transform = Affine(metres, 0, 500_000 + k * step * metres, 0, -metres, 4_100_000)
        with rasterio.open(
            frames / f"{name}.tif", "w", driver="GTiff", height=size[0], width=size[1], count=3,
            dtype="uint8", crs="EPSG:32610", transform=transform,
        ) as ds:  # fmt: skip
            ds.write(pixels)
        for r, c in ground:
            col = c - k * step
            if 0 <= col < size[1]:
                rows_out.append([name, "cows", round(col, 2), round(r, 2)])
    points = tmp_path / "points.csv"
    with points.open("w", newline="") as f:
        csv.writer(f).writerows(rows_out)
    job = UniqueJob(images=str(frames), out=str(tmp_path / "out"), points=str(points), neighbours=2)
    run_in_process(job)
    pairs = rows(tmp_path / "out" / "pairs.csv")
    assert [(p["a"], p["b"], p["status"], p["inliers"]) for p in pairs] == [
        ("g0", "g1", "registered", "0"),
        ("g0", "g2", "no overlap", "0"),
        ("g1", "g2", "registered", "0"),
        ("g1", "g3", "no overlap", "0"),
        ("g2", "g3", "registered", "0"),
    ]
    assert float(pairs[0]["overlap"]) == pytest.approx(0.5, abs=0.01)
    assert len(rows(tmp_path / "out" / "animals.csv")) == len(ground)
    # The same frames as JPEGs with world files (centre of the top-left pixel) beside them.
    worlds = tmp_path / "worlds"
    worlds.mkdir()
    for k in range(4):
        (worlds / f"g{k}.jpg").write_bytes(encode_jpeg(np.full((*size, 3), 120, np.uint8)))
        left = 500_000 + k * step * metres + metres / 2
        (worlds / f"g{k}.jgw").write_text(f"{metres}\n0\n0\n{-metres}\n{left}\n{4_100_000 - metres / 2}\n")
    job = UniqueJob(images=str(worlds), out=str(tmp_path / "out-w"), points=str(points), neighbours=2)
    run_in_process(job)
    placed = rows(tmp_path / "out-w" / "pairs.csv")
    assert [p["status"] for p in placed] == [p["status"] for p in pairs]
    shifts = [float(p["h02"]) for p in placed if p["status"] == "registered"]
    assert shifts == pytest.approx([float(p["h02"]) for p in pairs if p["status"] == "registered"], abs=1e-6)
    assert shifts == pytest.approx([-step] * 3, abs=1e-6)
    assert len(rows(tmp_path / "out-w" / "animals.csv")) == len(ground)
    (worlds / "g1.jgw").write_text("0.05\n0\nzero\n")
    with pytest.raises(ValueError, match=r"g1\.jgw: a world file has 6 lines"):
        world_transform(str(worlds / "g1.jpg"))
    (worlds / "g1.jgw").write_text("0.05\n0\nzero\n-0.05\n1\n2\n")
    with pytest.raises(ValueError, match=r"g1\.jgw, line 3: expected a number, got 'zero'"):
        world_transform(str(worlds / "g1.jpg"))
    # Without georeferencing the same frames cannot be registered: nothing is linked.
    plain = tmp_path / "plain"
    plain.mkdir()
    for k in range(4):
        (plain / f"g{k}.jpg").write_bytes(encode_jpeg(np.full((*size, 3), 120, np.uint8)))
    job = UniqueJob(images=str(plain), out=str(tmp_path / "out2"), points=str(points), neighbours=2)
    run_in_process(job)
    assert {p["status"] for p in rows(tmp_path / "out2" / "pairs.csv")} <= {"too few inliers", "no overlap"}
    assert len(rows(tmp_path / "out2" / "animals.csv")) == len(rows_out) - 1
