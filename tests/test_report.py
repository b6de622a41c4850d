"""The HTML report of a whole tiny pipeline, rendered in headless Chromium."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, find_chromium

from herdcount import report
from herdcount.commands import lineage as lineage_command
from herdcount.commands import report as report_command
from herdcount.commands import train
from herdcount.count import CountJob
from herdcount.runner import run_in_process
from herdcount.synth import truth_dir

pytestmark = pytest.mark.slow
ARTEFACTS = ROOT / "test-artefacts"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, survey, extracted):
    """Tiny runs of every stage on the shared survey: extract, both kinds trained, both counted."""
    root = tmp_path_factory.mktemp("pipeline")
    runs = {"density": root / "run-density", "classifier": root / "run-classifier"}
    tiny = {
        "density": ["--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "4", "--tile-size", "128"],
        "classifier": ["--epochs", "1", "--batch-size", "32"],
    }
    counts = {}
    for kind, run in runs.items():
        args = [
            "--kind",
            kind,
            "--extract",
            str(extracted),
            "--data",
            str(survey),
            "--out",
            str(run),
            *tiny[kind],
        ]
        assert train.main(args) == 0
        counts[kind] = root / f"count-{kind}"
        # In process: what the report reads of a count does not depend on Spark, which the
        # count job's own tests run.
        job = CountJob(
            images=str(survey / "Test"),
            sample=str(survey / "sample_submission.csv"),
            model=str(run),
            out=str(counts[kind]),
        )
        assert run_in_process(job).exit_code == 0
    return {
        "root": root,
        "runs": runs,
        "counts": counts,
        "truth": truth_dir(survey) / "test_counts.csv",
        "points": truth_dir(survey),
    }


@pytest.fixture(scope="module")
def rendered(pipeline, extracted):
    out = pipeline["root"] / "report.html"
    args = ["--extract", str(extracted), "--truth", str(pipeline["truth"]), "--out", str(out)]
    args += ["--points", str(pipeline["points"])]
    for kind in ("density", "classifier"):
        args += ["--run", str(pipeline["runs"][kind]), "--count", str(pipeline["counts"][kind])]
    assert report_command.main(args) == 0
    return out


def test_report_is_one_self_contained_file(rendered):
    text = rendered.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert text.count('src="data:image/png;base64,') >= 12
    for key, title in report.SECTIONS:
        assert f'<section id="{key}"><h2>{title}</h2>' in text


def test_chromium_shows_every_section_and_picture_without_console_errors(rendered):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    chromium = find_chromium()
    ARTEFACTS.mkdir(exist_ok=True)
    messages = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        # Offline: a page that needed the network would show broken pictures.
        page = browser.new_page(viewport={"width": 1300, "height": 900}, offline=True)
        page.on("console", lambda m: messages.append((m.type, m.text)))
        page.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
        page.goto(rendered.as_uri(), wait_until="load")
        sections = page.evaluate(
            "[...document.querySelectorAll('section')].map(s => [s.id, s.getBoundingClientRect().height, "
            "s.querySelectorAll('img').length])"
        )
        pictures = page.evaluate("[...document.images].map(i => [i.alt, i.complete, i.naturalWidth])")
        page.screenshot(path=str(ARTEFACTS / "report.png"), full_page=True)
        browser.close()
    assert [s[0] for s in sections] == [key for key, _ in report.SECTIONS]
    assert all(height > 50 for _, height, _ in sections), sections
    shown = {key: n for key, _, n in sections}
    # Dots on crops; curves and confusion; scatter plots and survey totals; the worst photos
    # overlaid with their points beside the truth's.
    assert shown["extraction"] >= 3 and shown["training"] >= 4 and shown["counting"] == 2 + 2
    assert shown["diagnosis"] == 2 * min(3, 2)  # two count runs, the survey's two test photos each
    assert pictures and all(complete and width > 0 for _, complete, width in pictures), pictures
    assert [m for m in messages if m[0] in ("error", "pageerror", "warning")] == []
    assert (ARTEFACTS / "report.png").stat().st_size > 50_000


def test_report_scores_the_points_and_shows_the_survey_totals(rendered, pipeline, extracted, config, capsys):
    from herdcount.score import read_counts, read_points_csv, read_points_truth, score_point_sets

    text = rendered.read_text()
    assert text.count("points matched one to one within 20 px</h3>") == 2
    assert text.count("survey totals</h3>") == 2
    assert (
        text.count("the model&#x27;s view and its points, right: the true points") == 2 * 4
    )  # alt and caption
    names = config.class_names
    _, ids, true = read_counts(pipeline["truth"])
    truth = read_points_truth(pipeline["points"], names, ids=set(ids))
    for kind in ("density", "classifier"):
        counted = pipeline["counts"][kind]
        found = read_points_csv(counted / "points.csv", names)
        scores, _ = score_point_sets(found, truth, set(ids), len(names), radius=20)
        # Each class's row of the F1 table, as the score command computes it.
        for k, name in enumerate(names):
            cells = [scores.precision[k], scores.recall[k], scores.f1[k]]
            row = f"<td>{name}</td>" + "".join(f"<td>{v:.3f}</td>" for v in cells)
            assert row + f"<td>{scores.found[k]}</td><td>{scores.truth[k]}</td>" in text, row
        # Each class's total beside the truth of the photos counted (every test photo here).
        for k, row in enumerate(list(csv.DictReader((counted / "totals.csv").open()))):
            assert row["class"] == names[k]
            cells = [float(row[c] or "nan") for c in ("total", "low", "high")] + [float(true[:, k].sum())]
            assert f"<td>{names[k]}</td>" + "".join(f"<td>{v:.3f}</td>" for v in cells) in text
    capsys.readouterr()
    out = pipeline["root"] / "x.html"
    assert (
        report_command.main(
            ["--extract", str(extracted), "--points", str(pipeline["points"]), "--out", str(out)]
        )
        == 2
    )
    assert "--points needs --truth" in capsys.readouterr().err


def test_report_lineage_names_the_runs_that_fed_each_stage(rendered, pipeline, extracted):
    text = rendered.read_text()
    for kind in ("density", "classifier"):
        assert str(pipeline["runs"][kind]) in text and str(pipeline["counts"][kind]) in text
        model = json.loads((pipeline["runs"][kind] / "model.json").read_text())
        assert model["training_data"]["fingerprint"] in text
    assert str(Path(extracted).resolve()) in text


def test_report_refuses_a_folder_that_is_not_a_finished_run(tmp_path, extracted, capsys):
    assert (
        report_command.main(
            ["--extract", str(extracted), "--run", str(tmp_path), "--out", str(tmp_path / "r.html")]
        )
        == 2
    )
    assert (
        f"model run {str(tmp_path)!r} has no model.json; expected a finished run" in capsys.readouterr().err
    )


def test_lineage_of_a_submission_runs_back_to_the_source_photos(pipeline, extracted, survey, capsys):

    assert lineage_command.main([str(pipeline["counts"]["density"] / "submission.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    stages = [line.split()[:2] for line in lines]
    assert stages == [
        ["count", str(pipeline["counts"]["density"])],
        ["train", str(pipeline["runs"]["density"].resolve())],
        ["extract", str(extracted)],
        ["source", str(survey)],
    ]
    fingerprint = json.loads((pipeline["runs"]["density"] / "model.json").read_text())["training_data"][
        "fingerprint"
    ]
    assert fingerprint in lines[1]


def test_photos_that_cannot_be_read_are_said_loudly(pipeline, extracted, tmp_path, capsys):
    # The extract run's DATA moved away: its dot crops cannot be drawn, and the report says so.
    moved = tmp_path / "extract"
    shutil.copytree(extracted, moved)
    run = json.loads((moved / "run.json").read_text())
    run["inputs"]["data"] = str(tmp_path / "gone")
    (moved / "run.json").write_text(json.dumps(run))
    out = tmp_path / "report.html"
    args = ["--extract", str(moved), "--run", str(pipeline["runs"]["density"]), "--out", str(out)]
    assert report_command.main(args) == 0
    said = capsys.readouterr()
    assert f"cannot read {tmp_path / 'gone' / 'Train'}" in said.err
    assert "pictures are missing" in said.out
    assert "pictures are missing:</b>" in out.read_text()


def test_the_extract_run_records_data_as_an_absolute_path(extracted, survey):
    run = json.loads((extracted / "run.json").read_text())
    assert run["inputs"]["data"] == str(survey.resolve())


def test_the_report_lists_photos_to_review_and_review_opens_a_real_count(rendered, pipeline):
    from herdcount.review import make_review
    from herdcount.score import read_points_csv

    text = rendered.read_text()
    count = pipeline["counts"]["density"]
    assert text.count("<h3>Review these: ") == 2 and f"herdcount review --count {count}" in text
    store = make_review(str(count), sample=1, seed=0)
    counted = {r["test_id"] for r in csv.DictReader(open(count / "counts.csv"))}
    assert set(store.photo_ids()) == counted and sum(p["sampled"] for p in store.photos()) == 1
    found = read_points_csv(count / "points.csv", store.classes)
    for photo in counted:
        coords, _ = found.get(photo, (np.zeros((0, 2)), np.zeros(0, int)))
        state = store.state(photo)
        assert len(state.points) == len(coords)
        assert sorted((round(p.row, 1), round(p.col, 1)) for p in state.points) == sorted(
            map(tuple, np.round(coords, 1))
        )
        assert f"<code>/photo/{photo}</code>" in text
