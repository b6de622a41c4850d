"""The extract run measures the survey's dots and diagnoses disagreements; dotstyle prints them."""

import csv
import dataclasses
import json

import numpy as np
import pytest

from herdcount.commands import dotstyle
from herdcount.commands.synth import main as synth_main
from herdcount.extract import ExtractJob
from herdcount.extract_report import diagnose, likely_cause
from herdcount.runner import run_in_process
from herdcount.synth import write_survey
from herdcount.synth_scenes import AnnotationStyle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_dots(tmp_path_factory, config):
    """A survey whose annotators drew dots of radius 4.5 px, their colours drifting by up to 20."""
    data = tmp_path_factory.mktemp("big_dots") / "data"
    style = AnnotationStyle((4.4, 4.6), 20)
    size = {"width": 1000, "height": 800, "density": 40.0}
    write_survey(
        data, n_train=4, n_test=0, seed=3, config=config, n_mismatched=0, mask_share=0.0, style=style, **size
    )
    return data


def test_the_run_records_the_measured_footprint_and_colours(big_dots, tmp_path, config):
    totals = run_in_process(ExtractJob(big_dots, tmp_path / "out", config=config)).totals
    assert totals["disagree_with_train_csv"] == [] and totals["likely_cause"] is None
    measured = json.loads((tmp_path / "out" / "run.json").read_text())["totals"]["measured_dots"]
    assert measured["radius_px"] == pytest.approx(4.5, rel=0.1)
    for spec in config.classes:
        got = measured["colours"][spec.name]
        assert got["scheme_rgb"] == list(spec.dot_rgb)
        # Each dot drifts by up to 20 per channel; their mean stays near the scheme's.
        assert np.abs(np.subtract(got["rgb"], spec.dot_rgb)).max() <= 12, (spec.name, got)


def test_a_wrong_radius_no_longer_doubles_the_dots(big_dots, tmp_path, config):
    # A user who sets the radius of another survey's annotators (3.2 px for dots of 4.5, each
    # about two footprints): the halves of a split dot lie closer than 1.5 radii, so they
    # are one dot again.
    wrong = dataclasses.replace(config, dots=dataclasses.replace(config.dots, dot_radius=3.2))
    totals = run_in_process(ExtractJob(big_dots, tmp_path / "out", config=wrong)).totals
    assert totals["disagree_with_train_csv"] == [] and totals["likely_cause"] is None
    with open(tmp_path / "out" / "extract_report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["footprint"]) == pytest.approx(np.pi * 3.2**2, abs=0.01) for r in rows)


def test_dots_split_in_two_are_diagnosed_as_such(config):
    names = config.class_names
    why = diagnose([4, 2, 30, 12, 20], [2, 1, 15, 6, 10], names, 32.2, 63.0)
    assert why.startswith("about twice the expected dots of every class: one dot split in two")
    assert "dot area here 32 px, survey median 63 px" in why and "dots.dot_radius" in why
    cause = likely_cause(
        {"1": why, "2": why, "3": diagnose([0, 1, 15, 6, 10], [2, 1, 15, 6, 10], names, None, None)}
    )
    assert cause.startswith("likely cause (2 of 3 photos): dots split in two")
    assert "2 adult_males not found" in diagnose([0, 1, 15, 6, 10], [2, 1, 15, 6, 10], names, None, None)


def test_dotstyle_prints_the_measured_radius_and_colours(big_dots, config, capsys):
    assert dotstyle.main([str(big_dots), "--pairs", "2"]) == 0
    out = capsys.readouterr().out
    radius = float(out.split("(radius ")[1].split(" px")[0])
    assert radius == pytest.approx(4.5, rel=0.1)
    assert "pairs measured: 0, 3" in out
    for spec in config.classes:
        assert f"- {{name: {spec.name}, dot_rgb: [" in out
    assert dotstyle.main([str(big_dots / "missing")]) == 2
    assert "has no pairs" in capsys.readouterr().err


def test_synth_takes_the_annotation_style_and_records_it(tmp_path, capsys):
    args = [str(tmp_path / "d"), "--train", "1", "--test", "0", "--width", "300", "--height", "200"]
    style = ["--dot-radius", "4", "--dot-drift", "20", "--jpeg-quality", "70,80", "--dark-share", "0.5"]
    assert synth_main(args + style) == 0
    survey = json.loads((tmp_path / "d_truth" / "survey.json").read_text())
    assert survey["annotation_style"] == {
        "radius": [4.0, 4.0],
        "drift": 20,
        "quality": [70, 80],
        "dark_share": 0.5,
    }
    with pytest.raises(SystemExit) as stop:
        synth_main([*args, "--jpeg-quality", "90,80"])
    assert stop.value.code == 2 and "LO <= HI" in capsys.readouterr().err
    assert synth_main([*args, "--dot-drift", "99"]) == 2
    assert "drift must be in 0..60" in capsys.readouterr().err
