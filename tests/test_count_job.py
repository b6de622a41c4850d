"""End to end: ``spark-submit jobs/count.py`` with models whose counts are known in advance."""

import csv
import importlib.util
import json
import shutil
import subprocess

import keras
import numpy as np
import pytest
from conftest import BIN, ROOT, patches_at, spark_env, spark_submit
from keras import layers
from pyspark.sql import SparkSession

from herdcount.commands import count as count_command
from herdcount.commands.count import SOME_FAILED
from herdcount.imaging import decode_rgb, decode_rgb_scaled, resize_rgb
from herdcount.models.builders import make_classifier_model, save_model_run
from herdcount.runinfo import fingerprint_files
from herdcount.scale import estimate_scale
from herdcount.synth import write_survey

pytestmark = pytest.mark.slow

# Class k's density per 8x8 cell is COLOUR_WEIGHTS[k] . (mean RGB of the cell / 255).
COLOUR_WEIGHTS = np.array(
    [[0.004, 0, 0], [0, 0.004, 0], [0, 0, 0.004], [0.002, 0.002, 0], [0.001, 0.001, 0.001]]
)


def colour_density_model() -> keras.Model:
    """A density model of stride 8 with fixed weights: counts are a known sum of pixels."""
    inputs = keras.Input(shape=(None, None, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.AveragePooling2D(8)(x)
    conv = layers.Conv2D(len(COLOUR_WEIGHTS), 1, use_bias=False)
    outputs = conv(x)
    model = keras.Model(inputs, outputs)
    conv.set_weights([COLOUR_WEIGHTS.T[None, None].astype("float32")])
    return model


def expected_density_counts(image: np.ndarray) -> np.ndarray:
    pad = ((0, -image.shape[0] % 8), (0, -image.shape[1] % 8), (0, 0))
    sums = np.pad(image, pad, mode="edge").astype(np.float64).sum(axis=(0, 1)) / 255 / 64
    return COLOUR_WEIGHTS @ sums


def expected_patch_counts(model: keras.Model, image: np.ndarray, stride: int) -> np.ndarray:
    """Patch by patch, as the seed did, but all in one call: patches at ``stride``
    offsets covering the photo (edge-padded), each counting (stride / 64) ** 2."""
    patches = patches_at(image, stride).reshape(-1, 64, 64, 3)
    winners = np.argmax(np.asarray(model(patches, training=False)), axis=-1)
    return np.bincount(winners, minlength=6)[:5] * (stride / 64) ** 2


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def counting(tmp_path_factory, config):
    """A test folder with bad files, both kinds of model, and the density model's run."""
    root = tmp_path_factory.mktemp("count")
    data = root / "data"
    write_survey(data, n_train=0, n_test=6, seed=4, config=config, width=420, height=300, density=40)
    names = config.class_names
    order = ["3", "0", "5", "1", "6", "4", "2"]  # 6 has no photo
    with open(data / "sample_submission.csv", "w", newline="") as f:
        csv.writer(f).writerows([["test_id", *names], *([i] + [1] * 5 for i in order)])
    raw = (data / "Test" / "2.jpg").read_bytes()
    (data / "Test" / "2.jpg").write_bytes(raw[: len(raw) // 3])
    (data / "Test" / "notes.txt").write_text("not a photo")
    (data / "Test" / "9.jpg").write_text("not a jpeg at all")  # not in sample_submission.csv
    density = root / "run-density"
    save_model_run(
        density,
        colour_density_model(),
        {
            "kind": "density",
            "class_names": names,
            "output_stride": 8,
            "receptive_field": 8,
            "margin": 8,
            "input_scale": 1.0,
        },
    )
    keras.utils.set_random_seed(2)
    classifier_model = make_classifier_model((64, 64, 3), len(names) + 1)
    classifier = root / "run-classifier"
    save_model_run(
        classifier,
        classifier_model,
        {"kind": "classifier", "patch_size": 64, "class_names": [*names, config.background_class]},
    )
    out = root / "out-density"
    proc = spark_submit(
        "jobs/count.py", "--data", str(data), "--model", str(density), "--out", str(out), "--tile", "64"
    )
    assert proc.returncode == SOME_FAILED, proc.stderr[-3000:]
    return {
        "root": root,
        "data": data,
        "order": order,
        "density": density,
        "classifier": classifier,
        "classifier_model": classifier_model,
        "out": out,
        "proc": proc,
    }


def test_submission_follows_sample_order_with_rounded_known_counts(counting, config):
    rows = read_csv(counting["out"] / "submission.csv")
    assert rows[0] == ["test_id", *config.class_names]
    assert [r[0] for r in rows[1:]] == counting["order"]
    by_id = {r[0]: [int(v) for v in r[1:]] for r in rows[1:]}
    for i in ("0", "1", "3", "4", "5"):
        image = decode_rgb((counting["data"] / "Test" / f"{i}.jpg").read_bytes())
        expected = expected_density_counts(image)
        assert by_id[i] == np.rint(expected).astype(int).tolist()
    assert by_id["2"] == by_id["6"] == [0] * 5


def test_counts_csv_keeps_unrounded_counts_equal_to_the_known_sums(counting):
    rows = {r[0]: r for r in read_csv(counting["out"] / "counts.csv")[1:]}
    assert sorted(rows) == ["0", "1", "3", "4", "5"]
    for i, row in rows.items():
        image = decode_rgb((counting["data"] / "Test" / f"{i}.jpg").read_bytes())
        np.testing.assert_allclose([float(v) for v in row[1:6]], expected_density_counts(image), atol=2e-4)
        assert (int(row[6]), int(row[7])) == (420, 300)


def test_points_agree_with_the_submission_and_failed_photos_have_none(counting, config):
    out = counting["out"]
    rows = read_csv(out / "points.csv")
    assert rows[0] == ["test_id", "class", "x", "y", "score", "map_x", "map_y"]
    submission = {r[0]: r[1:] for r in read_csv(out / "submission.csv")[1:]}
    for photo in ("0", "1", "3", "4", "5"):
        mine = [r for r in rows[1:] if r[0] == photo]
        assert [sum(r[1] == name for r in mine) for name in config.class_names] == [
            int(v) for v in submission[photo]
        ]
        assert all(0 <= float(r[2]) < 420 and 0 <= float(r[3]) < 300 for r in mine)
        features = json.loads((out / "points" / f"{photo}.geojson").read_text())["features"]
        assert len(features) == len(mine)
    # Photos that failed have no points and no GeoJSON: errors.csv lists them.
    assert not {r[0] for r in rows[1:]} & {"2", "6", "9"}
    assert sorted(p.stem for p in (out / "points").glob("*.geojson")) == ["0", "1", "3", "4", "5"]
    # A run without validation_counts.csv: totals are the counted sums, without intervals.
    totals = read_csv(out / "totals.csv")
    assert totals[0] == ["class", "total", "low", "high", "counted", "photos"]
    counted = np.array([r[1:6] for r in read_csv(out / "counts.csv")[1:]], float).sum(axis=0)
    for row, summed in zip(totals[1:], counted):
        assert row[2:4] == ["", ""] and row[5] == "5"
        assert float(row[1]) == pytest.approx(summed, abs=0.06) and float(row[4]) == pytest.approx(
            summed, abs=0.006
        )
    assert "survey totals without intervals" in counting["proc"].stdout


def test_errors_csv_names_every_bad_file_with_its_reason(counting):
    rows = {r[1]: r for r in read_csv(counting["out"] / "errors.csv")[1:]}
    assert set(rows) == {"Test/2.jpg", "Test/6.jpg", "Test/9.jpg", "Test/notes.txt"}
    assert "truncated or corrupt" in rows["Test/2.jpg"][2]
    assert "missing from the photo folder" in rows["Test/6.jpg"][2]
    assert "not an image" in rows["Test/9.jpg"][2]
    assert "not a photo" in rows["Test/notes.txt"][2]
    summary = counting["proc"].stdout
    assert "5 counted (0 resumed), 4 failed" in summary
    # Everything countable is counted, but the run ends with its own exit code, said last.
    assert (
        summary.strip().splitlines()[-1]
        == f"count: 4 of 9 photos failed (see errors.csv); exit code {SOME_FAILED}"
    )
    assert "1 counted photos are not in sample_submission.csv" not in summary  # 9 failed, so not counted


def test_each_worker_loads_the_model_once_and_runs_tf_on_the_task_cpus(counting):
    records = [json.loads(p.read_text()) for p in (counting["out"] / "photos").glob("*.json")]
    assert len(records) == 5
    assert {r["model_loads"] for r in records} == {1}
    assert {(r["runtime"], tuple(r["threads"])) for r in records} == {("litert", (1, 1))}
    run = json.loads((counting["out"] / "run.json").read_text())
    assert run["job"] == "count" and run["model"]["run"] == str(counting["density"].resolve())
    assert run["model"]["kind"] == "density" and run["totals"]["counted"] == 5
    assert run["config"]["settings"]["tile"] == 64 and run["spark"]["spark.task.cpus"] == "1"
    assert run["inputs"]["fingerprint"] == fingerprint_files(counting["data"], ["Test"])


def test_rerun_resumes_from_finished_photos_and_gives_the_same_outputs(counting, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(counting["out"], out)
    (out / "photos" / "1.json").unlink()
    for name in ("submission.csv", "counts.csv", "errors.csv"):
        (out / name).unlink()
    proc = spark_submit(
        "jobs/count.py",
        "--data",
        str(counting["data"]),
        "--model",
        str(counting["density"]),
        "--out",
        str(out),
        "--tile",
        "200",
    )
    assert proc.returncode == SOME_FAILED, proc.stderr[-3000:]
    # Photo 1 and the two bad photos (failures are tried again); the 4 others are resumed.
    assert "3 photos to count with the density model, 4 done by an earlier run" in proc.stdout
    assert "5 counted (4 resumed)" in proc.stdout
    for name in ("submission.csv", "errors.csv"):
        assert (out / name).read_text() == (counting["out"] / name).read_text()
    first = {r[0]: np.array(r[1:6], float) for r in read_csv(counting["out"] / "counts.csv")[1:]}
    again = {r[0]: np.array(r[1:6], float) for r in read_csv(out / "counts.csv")[1:]}
    assert first.keys() == again.keys()
    for i in first:  # photo 1 counted again with other tiles: the same up to float rounding
        np.testing.assert_allclose(again[i], first[i], atol=2e-4)


def test_rerun_with_other_settings_into_the_same_out_is_refused(counting, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(counting["out"], out)
    args = ["--data", str(counting["data"]), "--model", str(counting["density"]), "--out", str(out)]
    # In process: a configuration error is refused in the plan, before Spark starts.
    assert count_command.main([*args, "--scale", "0.5"]) == 2
    assert "holds counts made with other settings (scale differ)" in capsys.readouterr().err
    assert SparkSession.getActiveSession() is None


def test_sliding_classifier_at_half_scale_with_two_cpus_per_task(counting, tmp_path):
    out = tmp_path / "out"
    proc = spark_submit(
        "--conf",
        "spark.task.cpus=2",
        "jobs/count.py",
        "--images",
        str(counting["data"] / "Test"),
        "--model",
        str(counting["classifier"]),
        "--out",
        str(out),
        "--scale",
        "0.5",
        "--stride",
        "32",
        "--tile",
        "96",
    )
    assert proc.returncode == SOME_FAILED, proc.stderr[-3000:]
    rows = {r[0]: r for r in read_csv(out / "counts.csv")[1:]}
    assert sorted(rows) == ["0", "1", "3", "4", "5"]
    seen = set()
    for i, row in rows.items():
        image = decode_rgb_scaled((counting["data"] / "Test" / f"{i}.jpg").read_bytes(), scale=0.5)
        assert (int(row[6]), int(row[7])) == (210, 150)
        expected = expected_patch_counts(counting["classifier_model"], image, 32)
        np.testing.assert_allclose([float(v) for v in row[1:6]], expected)
        seen.update(np.flatnonzero(expected).tolist())
    assert len(seen) >= 2, "the fixed weights should tell patches apart"
    # Without sample_submission.csv (--images only), rows follow the numeric ids.
    assert [r[0] for r in read_csv(out / "submission.csv")[1:]] == ["0", "1", "2", "3", "4", "5", "9"]
    records = [json.loads(p.read_text()) for p in (out / "photos").glob("*.json")]
    assert {(r["runtime"], tuple(r["threads"])) for r in records} == {("litert", (2, 2))}


def _job():
    spec = importlib.util.spec_from_file_location("count_job", ROOT / "jobs" / "count.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "case", ["no model", "other classes", "empty folder", "no folder", "bad stride", "bad survey shift"]
)
def test_configuration_errors_stop_the_job_before_spark_starts(counting, tmp_path, case, capsys):
    from pyspark import SparkContext

    model, images = counting["density"], tmp_path / "photos"
    shutil.copytree(counting["data"] / "Test", images)
    extra = []
    expected = {
        "no model": "does not exist; expected the --out folder of herdcount train",
        "other classes": "do not match the scheme; expected ['adult_males'",
        "empty folder": "holds no photos (1 other files); expected <id>.jpg files",
        "no folder": "does not exist; expected a folder of <id>.jpg photos",
        "bad stride": "--stride is for classifier models",
        "bad survey shift": "--survey-shift must be in [0, 1], got -0.1",
    }[case]
    if case == "no model":
        model = tmp_path / "nowhere"
    elif case == "other classes":
        model = tmp_path / "run"
        shutil.copytree(counting["density"], model)
        info = json.loads((model / "model.json").read_text())
        info["class_names"] = ["seals", "gulls", "a", "b", "c"]
        (model / "model.json").write_text(json.dumps(info))
    elif case == "empty folder":
        shutil.rmtree(images)
        images.mkdir()
        (images / "readme.txt").write_text("nothing here")
    elif case == "no folder":
        shutil.rmtree(images)
    elif case == "bad survey shift":
        extra = ["--survey-shift", "-0.1"]
    else:
        extra = ["--stride", "32"]
    code = _job().main(
        ["--images", str(images), "--model", str(model), "--out", str(tmp_path / "out"), *extra]
    )
    assert code == 2
    assert expected in capsys.readouterr().err
    assert SparkContext._active_spark_context is None
    assert not (tmp_path / "out").exists()


def test_the_herdcount_command_writes_the_same_submission_as_spark_submit(counting, tmp_path):
    # The console script, from a folder outside the checkout, starting Spark itself; each
    # task decodes its next photo while it counts one (the corrupt ones among them).
    out = tmp_path / "out"
    args = ["--data", str(counting["data"]), "--model", str(counting["density"]), "--out", str(out)]
    cmd = [
        str(BIN / "herdcount"),
        "count",
        *args,
        "--tile",
        "64",
        "--master",
        "local[2]",
        "--read-ahead",
        "always",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=spark_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == SOME_FAILED, proc.stderr[-3000:]
    assert (out / "submission.csv").read_bytes() == (counting["out"] / "submission.csv").read_bytes()
    assert (out / "errors.csv").read_bytes() == (counting["out"] / "errors.csv").read_bytes()
    ahead = {p.name: json.loads(p.read_text()) for p in (out / "photos").glob("*.json")}
    in_turn = {p.name: json.loads(p.read_text()) for p in (counting["out"] / "photos").glob("*.json")}
    assert {k: v["counts"] for k, v in ahead.items()} == {k: v["counts"] for k, v in in_turn.items()}
    assert all(v["cpu_s"] > 0 for v in ahead.values())


def brightness_scale_model() -> keras.Model:
    """A scale model with fixed weights: a tile's log ground scale is its mean red (0-1)
    less 0.1, and every tile holds an animal."""
    inputs = keras.Input(shape=(None, None, 3))
    x = layers.GlobalAveragePooling2D()(layers.Rescaling(1 / 255)(inputs))
    dense = layers.Dense(2)
    model = keras.Model(inputs, dense(x))
    dense.set_weights([np.array([[1, 0], [0, 0], [0, 0]], np.float32), np.array([-0.1, 10], np.float32)])
    return model


def test_scale_auto_counts_each_photo_at_the_scale_read_in_it(counting, tmp_path, config, capsys):
    reader = tmp_path / "run-scale"
    save_model_run(
        reader,
        brightness_scale_model(),
        {"kind": "scale", "class_names": config.class_names, "tile_size": 128},
    )
    images, found = {}, {}
    for i in ("0", "1", "3", "4", "5"):
        images[i] = decode_rgb((counting["data"] / "Test" / f"{i}.jpg").read_bytes())
        found[i] = estimate_scale(
            images[i],
            lambda t: np.column_stack([t[..., 0].mean(axis=(1, 2)) / 255 - 0.1, np.full(len(t), 10.0)]),
            size=128,
        )
    # A density model trained on tiles resized up to the middle reading: photos read inside
    # that range are counted as they are, the others brought back to scale 1.
    high = float(np.median([f.scale for f in found.values()]))
    density = tmp_path / "run-density"
    shutil.copytree(counting["density"], density)
    info = json.loads((density / "model.json").read_text())
    (density / "model.json").write_text(json.dumps({**info, "training_scale_range": [0.5, high]}))
    out = tmp_path / "out"
    args = ["--data", str(counting["data"]), "--model", str(density), "--out", str(out), "--tile", "64"]
    proc = spark_submit("jobs/count.py", *args, "--scale", "auto", "--scale-model", str(reader))
    assert proc.returncode == SOME_FAILED, proc.stderr[-3000:]
    rows = {r[0]: r for r in read_csv(out / "counts.csv")[1:]}
    header = read_csv(out / "counts.csv")[0]
    assert header[6:] == ["width", "height", "scale", "ground_scale", "cpu_s"]
    kept = 0
    for i, image in images.items():
        record = json.loads((out / "photos" / f"{i}.json").read_text())
        assert record["ground_scale"] == pytest.approx(found[i].scale, rel=1e-3) and found[i].scale > 1.05
        if found[i].scale <= high:
            assert record["scale"] == 1.0
            kept += 1
        else:
            assert record["scale"] == pytest.approx(1 / found[i].scale, rel=1e-3)
        counted = resize_rgb(image, record["scale"])
        assert (record["width"], record["height"]) == (counted.shape[1], counted.shape[0])
        np.testing.assert_allclose(record["counts"], expected_density_counts(counted), atol=2e-3)
        assert float(rows[i][8]) == record["scale"] and float(rows[i][9]) == record["ground_scale"]
    assert 1 <= kept < 5
    settings = json.loads((out / "settings.json").read_text())
    assert settings["scale"] == "auto" and settings["scale_model"] == str(reader.resolve())
    # --scale auto asks for its model, and a model of another kind is refused before Spark starts.
    with pytest.raises(SystemExit) as stop:
        count_command.main([*args, "--scale", "auto"])
    assert (
        stop.value.code == 2 and "--scale auto and --scale-model RUN go together" in capsys.readouterr().err
    )
    refused = [
        *args[:-4],
        "--out",
        str(tmp_path / "o2"),
        "--scale",
        "auto",
        "--scale-model",
        str(counting["density"]),
    ]
    assert count_command.main(refused) == 2 and "is a density run" in capsys.readouterr().err
    assert SparkSession.getActiveSession() is None
