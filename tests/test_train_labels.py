"""Training from annotation files and from another survey's scheme: the scheme and the
images flow from the extract's record, whole groups are held out, large animals shrink."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from herdcount.annotated import LabelSource
from herdcount.commands import train
from herdcount.config import load_config
from herdcount.count import CountJob
from herdcount.extract import ExtractJob
from herdcount.intervals import group_errors, read_validation_counts
from herdcount.runner import run_in_process
from herdcount.score import class_radii
from herdcount.synth import write_survey

TINY = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--tile-size", "64", "--threads", "2"]


def test_group_errors_sum_each_group_in_order_of_appearance():
    ids, true, predicted = group_errors(
        ["a1", "b1", "a2", "c1"], ["A", "B", "A", None], [[1, 0], [2, 1], [3, 1], [4, 4]], np.ones((4, 2))
    )
    assert ids == ["A", "B", "c1"]
    np.testing.assert_array_equal(true, [[4, 1], [2, 1], [4, 4]])
    np.testing.assert_array_equal(predicted, [[2, 2], [1, 1], [1, 1]])


@pytest.mark.slow
def test_annotated_tiles_train_with_groups_held_out_whole_at_the_animals_scale(tmp_path):
    scheme = tmp_path / "big.yaml"
    # Large animals (box long side 150 px): the model works at half size or less.
    scheme.write_text(
        "annotation_key: seals\nclasses:\n"
        "  - {name: cows, dot_rgb: [250, 0, 0], length_px: [140, 160], body_rgb: [120, 100, 90]}\n"
        "  - {name: pups, dot_rgb: [0, 250, 0], length_px: [60, 70], body_rgb: [60, 55, 50]}\n"
    )
    data = tmp_path / "data"
    write_survey(
        data,
        n_train=12,
        n_test=0,
        seed=4,
        config=load_config(scheme),
        width=320,
        height=320,
        density=60,
        n_mismatched=0,
        mask_share=0.0,
        export=("points",),
    )
    # A group column: tiles 0-2 of source photo g0, 3-5 of g1, and so on.
    rows = list(csv.reader((data / "annotations" / "points.csv").open()))
    with (tmp_path / "grouped.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow([*rows[0], "group"])
        out.writerows([*row, f"g{int(row[0].split('.')[0]) // 3}"] for row in rows[1:])
    extract = tmp_path / "extract"
    source = LabelSource(str(data / "Train"), str(tmp_path / "grouped.csv"))
    # Points carry no size: the scheme's length_px gives it.
    record = run_in_process(ExtractJob(str(data / "Train"), str(extract), scheme=str(scheme), source=source))
    assert record.totals["sizes"]["cows"] == {"length_px": 150.0, "boxes": 0, "from": "scheme"}
    assert record.totals["groups"] == 4 and record.totals["done"] == 12
    run = tmp_path / "run"
    # Neither --data nor --scheme: the extract's record gives the images folder and the classes.
    rc = train.main(
        ["--kind", "density", "--extract", str(extract), "--out", str(run), *TINY, "--val-fraction", "0.25"]
    )
    assert rc == 0
    described = json.loads((run / "model.json").read_text())
    assert described["input_scale"] == pytest.approx(72 / 150, abs=0.02)
    names = [c["name"] for c in record.config["classes"]]
    assert described["class_names"] == names
    data_ = described["training_data"]
    group = {i: f"g{int(i) // 3}" for i in map(str, range(12))}
    assert {group[i] for i in data_["train_ids"]}.isdisjoint({group[i] for i in data_["val_ids"]})
    assert described["training_data"]["validation_unit"] == "group"
    held = read_validation_counts(run)
    assert held.ids == list(dict.fromkeys(group[i] for i in data_["val_ids"]))
    truth = [json.loads((extract / "metadata" / f"{i}.json").read_text())["counts"] for i in data_["val_ids"]]
    np.testing.assert_array_equal(held.true.sum(axis=0), np.sum(truth, axis=0))
    # The count job works at the model's scale and reports points in the photos' own pixels.
    counted = tmp_path / "count"
    outcome = run_in_process(CountJob(images=str(data / "Train"), out=str(counted), model=str(run)))
    # Train/ holds train.csv beside the photos: an error row of its own, every photo counted.
    assert outcome.exit_code == 3 and "1 of 13 photos failed" in outcome.summary, outcome.summary
    record = json.loads((counted / "photos" / "0.json").read_text())
    scale = described["input_scale"]
    assert record["scale"] == pytest.approx(scale, abs=1e-3) and record["width"] == round(320 * scale)
    with (counted / "points.csv").open() as f:
        points = list(csv.DictReader(f))
    assert points and all(0 <= float(p["x"]) < 320 and 0 <= float(p["y"]) < 320 for p in points)
    # score --radius auto: half of each class's length, as the training data measured it.
    assert described["class_lengths_px"] == {"cows": 150.0, "pups": 65.0}
    assert class_radii(str(counted / "submission.csv"), ["pups", "cows"]) == [32.5, 75.0]


@pytest.mark.slow
def test_a_scheme_recorded_by_the_survey_reaches_training(tmp_path):
    scheme = tmp_path / "seals.yaml"
    scheme.write_text(
        "annotation_key: harbour\nclasses:\n"
        "  - {name: grey_seals, dot_rgb: [250, 240, 20], length_px: [50, 70], body_rgb: [110, 110, 115]}\n"
        "  - {name: common_seals, dot_rgb: [20, 230, 240], length_px: [30, 45], body_rgb: [140, 125, 110]}\n"
    )
    data = tmp_path / "data"
    write_survey(
        data,
        n_train=4,
        n_test=0,
        seed=5,
        config=load_config(scheme),
        width=320,
        height=320,
        density=80,
        n_mismatched=0,
        mask_share=0.0,
    )
    extract = tmp_path / "extract"
    run_in_process(ExtractJob(str(data), str(extract)))  # the survey's scheme.yaml
    run = tmp_path / "run"
    # Once failed with KeyError: 'sea-lions' (the sea lions' scheme was training's default).
    assert train.main(["--kind", "density", "--extract", str(extract), "--out", str(run), *TINY]) == 0
    described = json.loads((run / "model.json").read_text())
    assert described["class_names"] == ["grey_seals", "common_seals"] and described["input_scale"] == 1.0
    assert json.loads((run / "run.json").read_text())["config"]["scheme"]["annotation_key"] == "harbour"
    assert (
        train.main(
            [
                "--kind",
                "density",
                "--extract",
                str(extract),
                "--out",
                str(tmp_path / "r2"),
                "--scheme",
                "sealions",
                *TINY,
            ]
        )
        == 2
    )
