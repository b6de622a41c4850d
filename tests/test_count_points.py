"""The count job's points and survey totals, end to end in one process (the runner's
in-process mode, which makes the same outputs as Spark): animals painted at known places,
a density model with fixed weights that turns each into one animal's mass, and the points
found where they were painted, at the photo's own size and counted at twice it."""

import csv
import json
import shutil

import keras
import numpy as np
import pytest
from keras import layers
from PIL import Image

from herdcount.commands.score import main as score_main
from herdcount.count import CountJob
from herdcount.intervals import DEFAULT_SURVEY_SHIFT, write_validation_counts
from herdcount.models.builders import save_model_run
from herdcount.runner import run_in_process

pytestmark = pytest.mark.slow

SIGMA, PEAK = 6.0, 250.0  # the painted animals: Gaussian spots, one colour channel per class
SHAPE = (300, 400)


def spot_model(scale: float) -> keras.Model:
    """Density per 8x8 cell: class k (k < 3) is the cell's mean channel k, weighted so that a
    spot counted at ``scale`` holds one animal; classes 3 and 4 are never seen."""
    inputs = keras.Input(shape=(None, None, 3))
    x = layers.AveragePooling2D(8)(layers.Rescaling(1 / 255)(inputs))
    conv = layers.Conv2D(5, 1, use_bias=False)
    model = keras.Model(inputs, conv(x))
    weight = 64 * 255 / (PEAK * 2 * np.pi * (SIGMA * scale) ** 2)
    kernel = np.zeros((1, 1, 3, 5), np.float32)
    kernel[0, 0, [0, 1, 2], [0, 1, 2]] = weight
    conv.set_weights([kernel])
    return model


def paint(rng) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """A black photo with 6 spots of each of 3 classes, a class's spots 40 px apart or more
    and 24 px from the edges."""
    animals: list[tuple[float, float, int]] = []
    while len(animals) < 18:
        row, col, k = *rng.uniform((24, 24), (SHAPE[0] - 24, SHAPE[1] - 24)), len(animals) % 3
        if all(np.hypot(row - r, col - c) >= 40 for r, c, j in animals if j == k):
            animals.append((row, col, k))
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    image = np.zeros((*SHAPE, 3))
    for row, col, k in animals:
        image[..., k] += PEAK * np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * SIGMA**2))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), animals


@pytest.fixture(scope="module")
def painted(tmp_path_factory, config):
    root = tmp_path_factory.mktemp("painted")
    rng = np.random.default_rng(3)
    truth = [["test_id", "class", "x", "y"]]
    counts = [["test_id", *config.class_names]]
    for i in range(3):
        image, animals = paint(rng)
        (root / "Test").mkdir(exist_ok=True)
        Image.fromarray(image).save(root / "Test" / f"{i}.png")
        truth += [[i, config.class_names[k], round(col, 2), round(row, 2)] for row, col, k in animals]
        counts.append([i, *np.bincount([k for *_, k in animals], minlength=5).tolist()])
    for name, rows in (("points.csv", truth), ("counts.csv", counts)):
        with open(root / name, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    runs = {}
    for scale in (1.0, 2.0):
        runs[scale] = root / f"run-{scale:g}"
        save_model_run(
            runs[scale],
            spot_model(scale),
            {"kind": "density", "class_names": config.class_names, "output_stride": 8, "margin": 8},
        )
    # Held-out photos the model counted 10 % low: the totals are calibrated up and bounded.
    held = np.array([[2, 1, 6, 3, 0], [1, 0, 4, 5, 2], [0, 2, 8, 2, 1], [3, 1, 5, 4, 0], [1, 1, 7, 3, 3]])
    write_validation_counts(
        runs[1.0] / "validation_counts.csv", list("abcde"), held, 0.9 * held, config.class_names
    )
    (root / "groups.csv").write_text("test_id,group\n0,north\n1,north\n2,south\n")
    return root, runs


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_painted_animals_are_found_where_they_were_painted(painted, config, scale, capsys):
    root, runs = painted
    out = root / f"out-{scale:g}"
    job = CountJob(images=str(root / "Test"), out=str(out), model=str(runs[scale]), scale=scale, tile=128)
    outcome = run_in_process(job)
    assert outcome.exit_code == 0
    points = read_rows(out / "points.csv")
    submission = {r["test_id"]: r for r in read_rows(out / "submission.csv")}
    # Points agree with the rounded counts, photo by photo and class by class.
    for photo, row in submission.items():
        for name in config.class_names:
            assert int(row[name]) == sum(p["test_id"] == photo and p["class"] == name for p in points)
    assert len(points) == 54
    collection = json.loads((out / "points" / "1.geojson").read_text())
    assert len(collection["features"]) == sum(p["test_id"] == "1" for p in points)
    # Every painted animal found within 20 px, in the photo's own pixels at either scale.
    code = score_main(
        [str(out / "submission.csv"), str(root / "counts.csv"), "--points", str(root / "points.csv")]
    )
    printed = capsys.readouterr().out
    assert code == 0
    means = [line.split() for line in printed.splitlines() if line.startswith("mean")]
    assert means[-1] == ["mean", "1.000", "1.000", "1.000"], printed
    truth = {(r["test_id"], r["class"]): [] for r in read_rows(root / "points.csv")}
    for r in read_rows(root / "points.csv"):
        truth[r["test_id"], r["class"]].append((float(r["x"]), float(r["y"])))
    errors = [
        min(np.hypot(float(p["x"]) - x, float(p["y"]) - y) for x, y in truth[p["test_id"], p["class"]])
        for p in points
    ]
    assert np.median(errors) < 1.6 and max(errors) < 3.5, (np.median(errors), max(errors))


def test_survey_totals_are_calibrated_with_intervals_and_given_per_group(painted, config, capsys):
    root, runs = painted
    out = root / "out-groups"
    job = CountJob(
        images=str(root / "Test"),
        out=str(out),
        model=str(runs[1.0]),
        tile=128,
        groups=str(root / "groups.csv"),
    )
    outcome = run_in_process(job)
    totals = {r["class"]: r for r in read_rows(out / "totals.csv")}
    assert list(totals) == config.class_names
    counted = {r["test_id"]: r for r in read_rows(out / "counts.csv")}
    for name in config.class_names:
        row = totals[name]
        summed = sum(float(r[name]) for r in counted.values())
        assert float(row["counted"]) == pytest.approx(summed, abs=0.01) and row["photos"] == "3"
        # The held-out photos were counted at 0.9 of their truth: the total is raised to match.
        assert float(row["low"]) <= float(row["total"]) <= float(row["high"])
        if summed > 1:
            assert float(row["total"]) > summed
    groups = read_rows(out / "totals_by_group.csv")
    assert {(r["group"], r["photos"]) for r in groups} == {("north", "2"), ("south", "1")}
    for name in config.class_names:
        parts = sum(float(r["counted"]) for r in groups if r["class"] == name)
        assert parts == pytest.approx(float(totals[name]["counted"]), abs=0.02)
    record = outcome.totals["survey_totals"]["adult_females"]
    assert record["low"] <= record["total"] <= record["high"]
    assert outcome.totals["interval_from_photos"] == 5
    assert "survey totals, 90 % intervals from the model's 5 held-out photos" in outcome.summary
    # The score command puts each total beside the truth of the photos it covers.
    assert score_main([str(out / "submission.csv"), str(root / "counts.csv")]) == 0
    printed = capsys.readouterr().out
    assert "class totals inside their intervals" in printed


def test_bad_groups_and_bad_point_truth_name_the_line(painted, config, tmp_path, capsys):
    root, runs = painted
    (tmp_path / "groups.csv").write_text("test_id,group\n0,north\n7,south\n")
    job = CountJob(
        images=str(root / "Test"),
        out=str(tmp_path / "out"),
        model=str(runs[1.0]),
        groups=str(tmp_path / "groups.csv"),
    )
    with pytest.raises(ValueError, match=r"groups.csv, line 3: id '7' is not a photo of this survey"):
        run_in_process(job)
    # A submission with its count job's files beside it; the truth is read first.
    for name in ("submission.csv", "counts.csv"):
        (tmp_path / name).write_text((root / "counts.csv").read_text())
    (tmp_path / "points.csv").write_text("test_id,class,x,y,score\n")
    for body, message in (
        ("test_id,class,x,y\n0,walruses,1,2\n", "line 2: unknown class 'walruses'"),
        ("test_id,class,x,y\n0,pups,1,2\n12,pups,3,4\n", "line 3: id '12' is not a photo"),
    ):
        (tmp_path / "truth.csv").write_text(body)
        code = score_main(
            [
                str(tmp_path / "submission.csv"),
                str(root / "counts.csv"),
                "--points",
                str(tmp_path / "truth.csv"),
            ]
        )
        assert code == 2 and message in capsys.readouterr().err


def test_a_model_measured_on_one_held_out_photo_counts_without_intervals(painted, config, tmp_path):
    root, runs = painted
    run = tmp_path / "run"
    shutil.copytree(runs[1.0], run)
    write_validation_counts(
        run / "validation_counts.csv", ["a"], [[1, 0, 2, 0, 3]], [[1, 0, 2, 0, 3]], config.class_names
    )
    outcome = run_in_process(
        CountJob(images=str(root / "Test"), out=str(tmp_path / "out"), model=str(run), tile=128)
    )
    assert outcome.exit_code == 0
    rows = read_rows(tmp_path / "out" / "totals.csv")
    assert [(r["low"], r["high"]) for r in rows] == [("", "")] * 5
    assert [float(r["total"]) for r in rows] == pytest.approx([float(r["counted"]) for r in rows], abs=0.06)
    assert "measured its errors on 1 held-out photo" in outcome.summary


def test_annotated_photos_of_the_survey_calibrate_its_totals(painted, config, tmp_path):
    root, runs = painted
    truth = {r["test_id"]: r for r in read_rows(root / "counts.csv")}
    (tmp_path / "calibration.csv").write_text(
        "test_id,site,"
        + ",".join(config.class_names)
        + "\n"
        + "".join(f"{i},north," + ",".join(truth[i][n] for n in config.class_names) + "\n" for i in "01")
    )
    out = tmp_path / "out"
    job = CountJob(
        images=str(root / "Test"),
        out=str(out),
        model=str(runs[1.0]),
        tile=128,
        calibration=str(tmp_path / "calibration.csv"),
    )
    outcome = run_in_process(job)
    assert outcome.exit_code == 0
    assert outcome.totals["interval_from"] == "annotated" and outcome.totals["interval_from_photos"] == 2
    # Measured on this survey: no allowance for another survey's bias.
    assert outcome.totals["interval_survey_shift"] is None
    assert "90 % intervals from 2 annotated photos of this survey" in outcome.summary
    counted = {r["test_id"]: r for r in read_rows(out / "counts.csv")}
    for row in read_rows(out / "totals.csv"):
        name = row["class"]
        known = sum(float(truth[i][name]) for i in "01")
        ratio = (known + 1) / (sum(float(counted[i][name]) for i in "01") + 1)
        # The annotated photos' truth as it is, the third photo calibrated by their ratio.
        assert float(row["total"]) == pytest.approx(known + ratio * float(counted["2"][name]), abs=0.06)
        assert float(row["low"]) - 0.06 <= float(row["total"]) <= float(row["high"]) + 0.06
        assert float(row["low"]) >= known - 0.05
    for body, message in (
        (
            "test_id,pups\n0,1\n1,2\n",
            r"calibration.csv: columns \['test_id', 'pups'\]; missing \['adult_males'",
        ),
        (
            "test_id," + ",".join(config.class_names) + "\n0,1,0,2,0,1\n9,0,0,1,0,0\n",
            "line 3: id '9' is not a photo",
        ),
        (
            "test_id," + ",".join(config.class_names) + "\n0,1,0,2,0,1\n1,0,x,1,0,0\n",
            "line 3: counts must be numbers",
        ),
        (
            "test_id," + ",".join(config.class_names) + "\n0,1,0,2,0,1\n",
            "1 annotated photo; an interval needs",
        ),
    ):
        (tmp_path / "calibration.csv").write_text(body)
        with pytest.raises(ValueError, match=message):
            run_in_process(job)


def test_intervals_rest_on_held_out_photos_that_did_not_choose_the_epoch(painted, config, tmp_path):
    root, runs = painted
    run = tmp_path / "run"
    shutil.copytree(runs[1.0], run)
    rng = np.random.default_rng(4)
    true = rng.poisson(4.0, size=(20, 5)).astype(float)
    # The 12 photos that chose the epoch were counted right, the 8 others 20 % low.
    predicted = np.vstack([true[:12], 0.8 * true[12:]])
    ids = [f"p{i}" for i in range(20)]
    write_validation_counts(run / "validation_counts.csv", ids, true, predicted, config.class_names)
    described = json.loads((run / "model.json").read_text())
    described["training_data"] = {"val_ids": ids, "epoch_chosen_on": ids[:12]}
    (run / "model.json").write_text(json.dumps(described))
    out = tmp_path / "out"
    outcome = run_in_process(CountJob(images=str(root / "Test"), out=str(out), model=str(run), tile=128))
    assert outcome.exit_code == 0
    assert (
        outcome.totals["interval_from"] == "held-out-unchosen" and outcome.totals["interval_from_photos"] == 8
    )
    assert (
        "from the model's 8 held-out photos that did not choose its epoch, allowing 0.03" in outcome.summary
    )
    assert outcome.totals["interval_survey_shift"] == DEFAULT_SURVEY_SHIFT == 0.03
    for row in read_rows(out / "totals.csv"):
        k = config.class_names.index(row["class"])
        ratio = (true[12:, k].sum() + 1) / (predicted[12:, k].sum() + 1)
        assert float(row["total"]) == pytest.approx(ratio * float(row["counted"]), abs=0.06)
    # Taking the survey's photos to be like the held-out ones (no shift): the same totals,
    # narrower intervals.
    alike = run_in_process(
        CountJob(
            images=str(root / "Test"), out=str(tmp_path / "alike"), model=str(run), tile=128, survey_shift=0
        )
    )
    assert alike.totals["interval_survey_shift"] == 0
    wide = {r["class"]: r for r in read_rows(out / "totals.csv")}
    for row in read_rows(tmp_path / "alike" / "totals.csv"):
        assert row["total"] == wide[row["class"]]["total"]
        if float(row["counted"]) > 1:
            narrow = float(row["high"]) - float(row["low"])
            assert narrow < float(wide[row["class"]]["high"]) - float(wide[row["class"]]["low"])
    # With 13 that chose it, 7 others are too few: every held-out photo counts.
    described["training_data"]["epoch_chosen_on"] = ids[:13]
    (run / "model.json").write_text(json.dumps(described))
    again = run_in_process(
        CountJob(images=str(root / "Test"), out=str(tmp_path / "all"), model=str(run), tile=128)
    )
    assert again.totals["interval_from"] == "held-out" and again.totals["interval_from_photos"] == 20
