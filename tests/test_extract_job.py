"""End to end: ``spark-submit jobs/extract.py`` on small synthetic surveys with bad input."""

import csv
import json
import shutil
import time

import numpy as np
import pytest
from conftest import spark_submit
from PIL import Image
from pyspark.sql import SparkSession

from herdcount.commands import extract as extract_command
from herdcount.config import config_from_dict, load_config
from herdcount.kaggle import parse_thumbnail_name, thumbnail_name
from herdcount.runinfo import fingerprint_files
from herdcount.synth import truth_dir, write_survey

pytestmark = pytest.mark.slow


def read_report(out):
    with open(out / "extract_report.csv", newline="") as f:
        return {row["train_id"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, survey):
    """The shared survey plus every kind of bad input the job must survive."""
    root = tmp_path_factory.mktemp("damaged")
    data = root / "data"
    shutil.copytree(survey, data)
    shutil.copytree(truth_dir(survey), truth_dir(data))
    mismatched = (data / "MismatchedTrainImages.txt").read_text().split()[1:]
    good = [str(i) for i in range(6) if str(i) not in mismatched]
    truncated, resized = good[-2], good[-1]
    raw = (data / "Train" / f"{truncated}.jpg").read_bytes()
    (data / "Train" / f"{truncated}.jpg").write_bytes(raw[: len(raw) // 3])
    with Image.open(data / "TrainDotted" / f"{resized}.jpg") as img:
        img.resize((450, 350)).save(data / "TrainDotted" / f"{resized}.jpg")
    shutil.copy(data / "Train" / "0.jpg", data / "Train" / "7.jpg")  # no dotted copy
    (data / "Train" / "notes.txt").write_text("field notes, not a photo")
    (data / "Train" / "8.jpg").write_text("not a jpeg at all")
    (data / "TrainDotted" / "8.jpg").write_text("not a jpeg at all")
    out = root / "out"
    started = time.monotonic()
    proc = spark_submit("jobs/extract.py", "--data", str(data), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {
        "data": data,
        "out": out,
        "proc": proc,
        "good": good[:-2],
        "mismatched": mismatched,
        "truncated": truncated,
        "resized": resized,
        "seconds": time.monotonic() - started,
    }


def test_report_has_a_row_per_id_with_a_clear_reason(damaged):
    report = read_report(damaged["out"])
    assert set(report) == {*map(str, range(6)), "7", "8", "notes.txt"}
    for i in damaged["good"]:
        assert report[i]["status"] == "ok" and report[i]["agrees"] == "true"
    for i in damaged["mismatched"]:
        assert report[i]["status"] == "skipped"
        assert "MismatchedTrainImages.txt" in report[i]["message"]
    t, r = damaged["truncated"], damaged["resized"]
    assert report[t]["status"] == "error" and f"Train/{t}.jpg" in report[t]["message"]
    assert "truncated or corrupt" in report[t]["message"]
    assert report[r]["message"] == f"TrainDotted/{r}.jpg is 450x350 but Train/{r}.jpg is 900x700"
    assert report["7"]["message"] == "TrainDotted/7.jpg is missing"
    assert report["8"]["message"].startswith("Train/8.jpg: not an image")
    assert report["notes.txt"]["message"] == "Train/notes.txt: not a photo; expected Train/<id>.jpg"
    summary = damaged["proc"].stdout
    assert f"photos: {len(damaged['good'])} done (0 resumed), 1 skipped, 5 failed" in summary
    assert "counts disagreeing with train.csv: 0" in summary


def test_metadata_matches_the_truth(damaged, config):
    out, truth = damaged["out"], truth_dir(damaged["data"])
    listed = json.loads((out / "training_metadata.json").read_text())
    assert [m["filename"] for m in listed] == [f"{i}.jpg" for i in damaged["good"]]
    for i in damaged["good"]:
        meta = json.loads((out / "metadata" / f"{i}.json").read_text())
        assert meta in listed
        assert set(meta[config.annotation_key]) == set(config.class_names)
        true = json.loads((truth / "train" / f"{i}.json").read_text())[config.annotation_key]
        for name in config.class_names:
            found = sorted(meta[config.annotation_key][name])
            expected = sorted(true[name])
            assert len(found) == len(expected), (i, name)
            for x, y in found:
                assert min(np.hypot(x - tx, y - ty) for tx, ty in expected) <= 3


def test_thumbnails_three_per_dot_all_full_size(damaged, config):
    out = damaged["out"]
    for name in config.class_names:
        expected = 0
        for i in damaged["good"]:
            meta = json.loads((out / "metadata" / f"{i}.json").read_text())
            n = len(meta[config.annotation_key][name])
            expected += 3 * n
            for k in range(n):
                for offset in (-1, 0, 1):
                    assert (out / "thumbnails" / name / f"img_{i}-{name}-{k}-{offset}.jpg").is_file()
        files = sorted((out / "thumbnails" / name).glob("*.jpg"))
        assert len(files) == expected
        for path in files[:20]:
            with Image.open(path) as img:
                assert img.size == (64, 64)


def test_background_patches_avoid_dots_and_black_areas(damaged, config):
    out, data = damaged["out"], damaged["data"]
    total = 0
    for i in damaged["good"]:
        meta = json.loads((out / "metadata" / f"{i}.json").read_text())
        dots = np.array([p for pts in meta[config.annotation_key].values() for p in pts], float).reshape(
            -1, 2
        )
        dotted = np.asarray(Image.open(data / "TrainDotted" / f"{i}.jpg").convert("RGB"))
        assert len(meta["backgrounds"]) == config.backgrounds_per_photo
        for n, (x, y) in enumerate(meta["backgrounds"]):
            path = out / "thumbnails" / "background" / f"img_{i}-background-{n}-0.jpg"
            assert Image.open(path).size == (64, 64)
            nearest_x, nearest_y = np.clip(dots[:, 0], x, x + 63), np.clip(dots[:, 1], y, y + 63)
            if len(dots):
                assert np.hypot(dots[:, 0] - nearest_x, dots[:, 1] - nearest_y).min() >= 40
            assert (dotted[y : y + 64, x : x + 64].max(axis=2) >= 30).all(), "patch touches a black area"
            total += 1
    assert total == len(list((out / "thumbnails" / "background").glob("*.jpg")))


def test_run_json_records_config_inputs_versions_and_times(damaged, config):
    run = json.loads((damaged["out"] / "run.json").read_text())
    assert run["job"] == "extract"
    assert config_from_dict(run["config"]) == config
    # Made from the plan's listing: the same as listing DATA again.
    assert run["inputs"]["fingerprint"] == fingerprint_files(
        damaged["data"], ["Train", "TrainDotted"], ["MismatchedTrainImages.txt"]
    )
    assert run["versions"]["pyspark"].startswith("4.")
    assert run["times"]["wall_s"] > 0
    assert run["totals"]["done"] == len(damaged["good"]) and run["totals"]["failed"] == 5
    assert run["spark"]["spark.master"] == "local[2]"


def test_rerun_resumes_and_redoes_only_what_is_missing(damaged):
    out = damaged["out"]
    first, second = damaged["good"][0], damaged["good"][1]
    thumb = next((out / "thumbnails").glob(f"*/img_{first}-*-0-0.jpg"))
    stamps = {p: p.stat().st_mtime_ns for p in [out / "metadata" / f"{first}.json", thumb]}
    (out / "metadata" / f"{second}.json").unlink()
    proc = spark_submit("jobs/extract.py", "--data", str(damaged["data"]), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    n = len(damaged["good"])
    assert f"photos: {n} done ({n - 1} resumed)" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (out / "metadata" / f"{second}.json").is_file()
    assert read_report(out)[second]["status"] == "ok"
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


@pytest.mark.parametrize(
    ("layout", "message"),
    [("missing", "does not exist"), ("no_dotted", "has no TrainDotted/")],
)
def test_bad_data_stops_before_spark_starts(tmp_path, layout, message, capsys):
    data = tmp_path / "data"
    if layout == "no_dotted":
        (data / "Train").mkdir(parents=True)
    # In process: the plan refuses it, so Spark never starts.
    assert extract_command.main(["--data", str(data), "--out", str(tmp_path / "out")]) == 2
    said = capsys.readouterr().err
    assert message in said and "expected" in said
    assert SparkSession.getActiveSession() is None
    assert not (tmp_path / "out").exists()


def test_another_scheme_needs_no_code_change(tmp_path, capsys):
    scheme = tmp_path / "seals.yaml"
    scheme.write_text(
        "annotation_key: harbour\n"
        "background_class: empty\n"
        "classes:\n"
        "  - {name: grey_seals, dot_rgb: [250, 240, 20], length_px: [50, 70], body_rgb: [110, 110, 115]}\n"
        "  - {name: common_seals, dot_rgb: [20, 230, 240], length_px: [30, 45], body_rgb: [140, 125, 110]}\n"
        "backgrounds_per_photo: 3\n"
    )
    config = load_config(scheme)
    data = tmp_path / "data"
    write_survey(
        data,
        n_train=2,
        n_test=0,
        seed=5,
        config=config,
        width=600,
        height=500,
        density=80,
        n_mismatched=0,
        mask_share=0.0,
    )
    out = tmp_path / "out"
    # No --scheme: the one synth recorded in DATA/scheme.yaml flows on; a contradicting one stops the job.
    assert extract_command.main(["--data", str(data), "--out", str(out), "--scheme", "sealions"]) == 2
    said = capsys.readouterr().err
    assert "has classes ['adult_males'" in said
    assert "was made with ['grey_seals', 'common_seals']" in said
    assert not out.exists()
    proc = spark_submit("jobs/extract.py", "--data", str(data), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["config"]["annotation_key"] == "harbour"
    report = read_report(out)
    assert list(report["0"])[3:5] == ["found_grey_seals", "found_common_seals"]
    assert all(row["agrees"] == "true" for row in report.values())
    metas = [json.loads((out / "metadata" / f"{i}.json").read_text()) for i in (0, 1)]
    assert all(set(m["harbour"]) == {"grey_seals", "common_seals"} for m in metas)
    assert sum(sum(m["counts"]) for m in metas) > 0
    assert sorted(p.name for p in (out / "thumbnails").iterdir()) == ["common_seals", "empty", "grey_seals"]


def test_without_train_csv_extraction_runs_and_skips_the_comparison(tmp_path, survey, config):
    from herdcount.extract import extract_pair, plan_extract, write_outputs

    data = tmp_path / "data"
    shutil.copytree(survey, data)
    (data / "Train" / "train.csv").unlink()
    plan = plan_extract(data, tmp_path / "out", config)
    assert plan.expected is None
    results = [extract_pair(task, str(tmp_path / "out"), config) for task in plan.tasks[:2]]
    totals = write_outputs(plan, results)
    assert totals["done"] == 2 and totals["disagree_with_train_csv"] is None
    report = read_report(tmp_path / "out")
    assert all(
        report[t.train_id]["expected_pups"] == "" and report[t.train_id]["agrees"] == ""
        for t in plan.tasks[:2]
    )


@pytest.mark.parametrize(
    ("train_id", "klass", "n", "offset"),
    [("5", "pups", 3, -1), ("12a-b", "adult_males", 0, 1), ("7", "background", 19, 0)],
)
def test_thumbnail_names_parse_back(train_id, klass, n, offset):
    assert parse_thumbnail_name(thumbnail_name(train_id, klass, n, offset)) == (train_id, klass, n, offset)


def test_a_name_that_is_no_thumbnail_is_rejected():
    with pytest.raises(ValueError, match="not a thumbnail name"):
        parse_thumbnail_name("notes.txt")
