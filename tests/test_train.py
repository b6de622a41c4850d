"""herdcount train end to end on a tiny survey: both kinds, every output, bad input, MLflow."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from scipy import ndimage as ndi

from herdcount.commands import train
from herdcount.dot_cells import black_blocks
from herdcount.extracted import load_photo, read_extract
from herdcount.imaging import decode_rgb
from herdcount.intervals import read_validation_counts
from herdcount.models.builders import make_density_model
from herdcount.models.training_data import tile_stream
from herdcount.runner import run_in_process

ROOT = Path(__file__).resolve().parents[1]
TINY_DENSITY = [
    "--epochs",
    "2",
    "--steps-per-epoch",
    "3",
    "--batch-size",
    "4",
    "--tile-size",
    "128",
    "--inference-tile",
    "256",
    "--threads",
    "2",
]


def density_args(extracted: Path, survey: Path, run: Path, *extra: str) -> list[str]:
    """Arguments of a tiny density run: seconds, not minutes."""
    return [
        "--kind",
        "density",
        "--extract",
        str(extracted),
        "--data",
        str(survey),
        "--out",
        str(run),
        *TINY_DENSITY,
        *extra,
    ]


def run_train(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("herdcount")), "train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.slow
def test_density_run_writes_a_described_model(tmp_path, survey, extracted, config, capsys):
    run = tmp_path / "run"
    rc = train.main(density_args(extracted, survey, run, "--seed", "3"))
    assert rc == 0
    printed = capsys.readouterr().out
    assert "GFLOP per megapixel" in printed and "validation RMSE" in printed
    names = {p.name for p in run.iterdir()}
    assert {
        "model.keras",
        "model.json",
        "history.csv",
        "curves.png",
        "validation_counts.png",
        "run.json",
    } <= names
    described = json.loads((run / "model.json").read_text())
    assert described["kind"] == "density" and described["class_names"] == config.class_names
    assert (
        described["output_stride"] == 8 and described["tile_size"] == 128 and described["input_scale"] == 1.0
    )
    assert described["margin"] >= described["receptive_field"] / 2
    # The int8 export's check, and the per-class scales it was checked (and counts) with.
    int8 = described["int8"]
    assert (run / "model.int8.tflite").is_file() and isinstance(int8["passed"], bool)
    assert list(int8["count_scale"]) == config.class_names
    assert all(0.5 < v < 2 for v in int8["count_scale"].values())
    data = described["training_data"]
    photos = {p.train_id for p in read_extract(extracted, config, survey)}
    assert set(data["train_ids"]) | set(data["val_ids"]) == photos and not set(data["train_ids"]) & set(
        data["val_ids"]
    )
    # Which held-out photos chose the epoch: all of them, fewer than the per-epoch cap of 16.
    assert data["epoch_chosen_on"] == sorted(data["val_ids"])
    assert data["fingerprint"].startswith("sha256:")
    metrics = described["metrics"]
    assert set(metrics["val_rmse_per_class"]) == set(config.class_names)
    # Held-out truth leaves out the dots within the model's margin of a masked cell, as the
    # predicted counts leave out those cells: what a mask hid is half seen beside it.
    val = [p for p in read_extract(extracted, config, survey) if p.train_id in data["val_ids"]]
    truth = []
    for p in val:
        plain, dotted = (
            decode_rgb((survey / folder / f"{p.train_id}.jpg").read_bytes())
            for folder in ("Train", "TrainDotted")
        )
        steps = int(np.ceil(described["margin"] / 8))
        masked = black_blocks(dotted, plain=plain)
        hidden = (
            ndi.binary_dilation(masked, np.ones((3, 3), bool), iterations=steps) if masked.any() else masked
        )
        seen = ~hidden[(p.points[:, 0] // 8).astype(int), (p.points[:, 1] // 8).astype(int)]
        truth.append(np.bincount(p.classes[seen], minlength=5))
    truth = np.array(truth)
    assert (truth.sum(axis=1) < [p.counts(5).sum() for p in val]).any()  # the survey has masks near dots
    held = read_validation_counts(run)
    assert held.ids == [p.train_id for p in val]
    np.testing.assert_array_equal(held.true, truth)
    np.testing.assert_allclose(
        list(metrics["zero_baseline_rmse_per_class"].values()),
        np.sqrt((truth.astype(float) ** 2).mean(axis=0)),
        atol=1e-4,
    )
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == described["epochs_run"] and 1 <= len(rows) <= 2
    assert {"loss", "val_loss", "val_rmse", "tile_count_error"} <= set(rows[0])
    model = keras.models.load_model(run / "model.keras", compile=False)
    assert model.predict(np.zeros((1, 64, 96, 3), np.uint8), verbose=0).shape == (1, 8, 12, 5)
    info = json.loads((run / "run.json").read_text())
    assert info["job"] == "train" and info["config"]["settings"]["seed"] == 3
    assert info["inputs"]["extract_run"]["path"] == str((extracted / "run.json").resolve())


@pytest.mark.slow
def test_a_centre_head_trains_beside_the_density_map_and_stays_out_of_the_export(
    tmp_path, survey, extracted, capsys
):
    run = tmp_path / "run"
    assert train.main(density_args(extracted, survey, run, "--centre-weight", "1", "--no-int8")) == 0
    assert "a centre head trains beside the density map (focal loss, weight 1)" in capsys.readouterr().out
    model = keras.models.load_model(run / "model.keras", compile=False)
    assert "centres" not in {layer.name for layer in model.layers}
    assert model.predict(np.zeros((1, 64, 96, 3), np.uint8), verbose=0).shape == (1, 8, 12, 5)
    assert json.loads((run / "run.json").read_text())["config"]["settings"]["density"]["centre_weight"] == 1
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"tile_count_error", "val_rmse"} <= set(rows[0])


@pytest.mark.slow
def test_classifier_run_reports_accuracy_and_confusion_without_importing_mlflow(
    tmp_path, survey, extracted, config
):
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    code = (
        "import sys; from herdcount.commands import train; "
        f"rc = train.main(['--kind', 'classifier', '--extract', {str(extracted)!r}, '--data', {str(survey)!r}, "
        f"'--out', {str(run)!r}, '--epochs', '2', '--threads', '2']); "
        "print('mlflow imported:', 'mlflow' in sys.modules); sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mlflow imported: False" in done.stdout
    assert "validation accuracy" in done.stdout
    described = json.loads((run / "model.json").read_text())
    names = [*config.class_names, config.background_class]
    assert (
        described["kind"] == "classifier"
        and described["class_names"] == names
        and described["patch_size"] == 64
    )
    with open(run / "confusion.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true\\predicted", *names] and [r[0] for r in rows[1:]] == names
    matrix = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    metrics = described["metrics"]
    assert matrix.sum() == metrics["val_patches"] > 0
    assert metrics["val_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    # Validation holds a centred patch of each dot window and a background of each grid
    # window of the held-out photos, from the windows training cut into RUN/windows.
    val_ids = set(described["training_data"]["val_ids"])
    index = json.loads((run / "windows" / "index.json").read_text())
    per_family: dict[str, int] = {}
    for shard in index["shards"]:
        for family, per in shard["windows"].items():
            per_family[family] = per_family.get(family, 0) + sum(n for i, n in per.items() if i in val_ids)
    for k, name in enumerate(config.class_names):
        assert matrix[k].sum() == per_family.get(f"dots-{name}", 0)
    assert 0 < matrix[-1].sum() <= per_family["grid"]
    assert (run / "confusion.png").stat().st_size > 0 and (run / "curves.png").stat().st_size > 0


@pytest.mark.slow
def test_mlflow_receives_params_metrics_curves_and_model(tmp_path, survey, extracted):
    pytest.importorskip("mlflow")
    store = tmp_path / "mlflow.db"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
        "MLFLOW_EXPERIMENT_NAME": "herdcount-test",
    }
    run = tmp_path / "run"
    # MLflow puts a SQLite store's artifacts in ./mlruns: keep them in the test's folder.
    done = run_train(*density_args(extracted, survey, run), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "mlruns").is_dir() and not (ROOT / "mlruns").exists()
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("herdcount-test")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED"
    assert logged.data.params["kind"] == "density" and logged.data.params["epochs"] == "2"
    epochs = json.loads((run / "model.json").read_text())["epochs_run"]
    assert len(client.get_metric_history(logged.info.run_id, "val_rmse")) == epochs
    assert logged.data.metrics["final_val_rmse"] == pytest.approx(
        json.loads((run / "model.json").read_text())["metrics"]["val_rmse"]
    )
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"curves.png", "model.json", "history.csv", "model"} <= artifacts
    assert [a.path for a in client.list_artifacts(logged.info.run_id, "model")] == ["model/model.keras"]


def test_seed_repeats_the_sampling_and_the_initial_weights(survey, extracted, config):
    photos = [load_photo(survey, p, config) for p in read_extract(extracted, config, survey)[:2]]

    def first_tiles(seed):
        stream = tile_stream(photos, 5, np.random.default_rng(seed), size=64)
        return [next(stream) for _ in range(3)]

    for (a_img, a_tgt), (b_img, b_tgt) in zip(first_tiles(4), first_tiles(4)):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_tgt, b_tgt)
    assert not np.array_equal(first_tiles(4)[0][0], first_tiles(5)[0][0])

    def weights(seed):
        keras.utils.set_random_seed(seed)
        return make_density_model(5, width=8, depth=2).get_weights()

    for a, b in zip(weights(7), weights(7)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "case",
    [
        "no metadata",
        "unknown class",
        "too few photos",
        "existing run",
        "no windows and no data",
        "photo missing",
        "truncated shard",
    ],
)
def test_bad_input_stops_before_training(tmp_path, survey, extracted, config, case):
    out = tmp_path / "out"
    shutil.copytree(extracted, out)
    run = tmp_path / "run"
    kind, expected, data = "density", "", survey
    if case == "truncated shard":
        from herdcount.shards import WindowsJob

        run_in_process(WindowsJob(str(out), str(survey), str(out / "windows"), config=config))
        shard = sorted((out / "windows" / "shards").glob("grid-*.tfrecord"))[0]
        shard.write_bytes(shard.read_bytes()[:-100])
        expected = f"{shard}: {shard.stat().st_size} bytes but index.json says"
    elif case == "photo missing":
        data = tmp_path / "data"
        shutil.copytree(survey, data)
        first = sorted((out / "metadata").glob("*.json"))[0].stem
        (data / "TrainDotted" / f"{first}.jpg").unlink()
        expected = f"lacks photos that OUT has metadata for: TrainDotted/{first}.jpg"
    elif case == "no metadata":
        shutil.rmtree(out / "metadata")
        expected = "holds no metadata"
    elif case == "unknown class":
        path = next((out / "metadata").glob("*.json"))
        meta = json.loads(path.read_text())
        meta["sea-lions"]["walruses"] = [[10, 10]]
        path.write_text(json.dumps(meta))
        expected = "['walruses'] are not in the scheme"
    elif case == "too few photos":
        for path in sorted((out / "metadata").glob("*.json"))[2:]:
            path.unlink()
        expected = "too few"
    elif case == "existing run":
        run.mkdir()
        (run / "model.json").write_text("{}")
        expected = "--overwrite"
    else:
        # Without --data, training finds the survey through the extract's run.json: here none.
        (out / "run.json").unlink()
        kind, expected, data = "classifier", "no --data DATA to cut them from", None
    data_args = ["--data", str(data)] if data else []
    done = run_train("--kind", kind, "--extract", str(out), *data_args, "--out", str(run))
    assert done.returncode == 2
    assert expected in done.stderr and "Epoch" not in done.stdout
    assert not (run / "model.keras").exists()


def test_the_summary_tables_each_class_and_warns_of_one_counted_no_better_than_zeros():
    names = ["adult_males", "subadult_males", "pups"]
    metrics = {
        "val_rmse": 1.0,
        "val_photos": 7,
        "zero_baseline_rmse": 2.5,
        "rmse_ratio_to_zero_baseline": 0.4,
        "val_rmse_per_class": dict(zip(names, [0.5, 1.37, 1.2])),
        "zero_baseline_rmse_per_class": dict(zip(names, [1.5, 1.37, 4.6])),
        "val_total_per_class": dict(zip(names, [5, 4, 30])),
        "val_predicted_total_per_class": dict(zip(names, [4.6, 0.0, 29.0])),
    }
    from herdcount.models.train import format_summary

    text = format_summary("density", metrics)
    rows = {
        line.split()[0]: line.split()[1:] for line in text.splitlines()[2:] if not line.startswith("warning")
    }
    assert rows["subadult_males"] == ["4", "0.0", "1.370", "1.370", "1.00"]
    assert rows["pups"] == ["30", "29.0", "1.200", "4.600", "0.26"]
    warnings = [line for line in text.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "subadult_males" in warnings[0]


@pytest.mark.slow
def test_scale_run_writes_a_model_that_reads_tiles_and_the_count_job_loads(
    tmp_path, survey, extracted, config
):
    from herdcount.predictors import load_model

    run = tmp_path / "run-scale"
    common = ["--kind", "scale", "--extract", str(extracted), "--data", str(survey), "--out", str(run)]
    assert train.main([*common, "--zoom-range", "1.2,2"]) == 2  # 1 must lie inside
    tiny = [
        "--epochs",
        "1",
        "--scale-steps",
        "3",
        "--batch-size",
        "4",
        "--scale-width",
        "4",
        "--threads",
        "2",
    ]
    assert train.main([*common, *tiny, "--scale-tile", "128"]) == 0
    described = json.loads((run / "model.json").read_text())
    assert described["kind"] == "scale" and described["tile_size"] == 128
    assert described["zoom_range"] == [0.5, 2.0]
    metrics = described["metrics"]
    assert metrics["check_zooms"] == [0.6, 1.0, 1.6] and metrics["photo_scale_checks"] == 3 * len(
        described["training_data"]["val_ids"]
    )
    assert 0 <= metrics["photo_scale_error_median"] <= metrics["photo_scale_error_max"]
    with open(run / "history.csv") as f:
        assert {"loss", "scale_error", "val_loss", "val_scale_error"} <= set(next(csv.DictReader(f)))
    loaded = load_model(run)
    assert loaded.runtime == "litert"
    assert loaded.predict(np.zeros((3, 128, 128, 3), np.uint8)).shape == (3, 2)


@pytest.mark.parametrize("keep", ["best", "last"])
def test_keep_hands_back_the_best_scored_epochs_weights_or_the_last_ones(keep):
    from herdcount.models.fitting import callbacks_for
    from herdcount.models.settings import TrainSettings, check_settings

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    seen = []

    class HeldOut(keras.callbacks.Callback):  # scores the first epoch best, then worse and worse
        def on_epoch_end(self, epoch, logs=None):
            logs["val_rmse"] = float(epoch + 1)
            seen.append(self.model.get_weights())

    settings = TrainSettings(kind="density", extract=None, data=None, out="unused", keep=keep)
    callbacks = callbacks_for("val_rmse", settings, [HeldOut()], [], plateau=False)
    x, y = np.ones((8, 2), np.float32), np.full((8, 1), 3.0, np.float32)
    model.fit(x, y, epochs=3, verbose=0, callbacks=callbacks)
    kept = seen[0] if keep == "best" else seen[-1]
    assert not np.allclose(seen[0][0], seen[-1][0])  # the weights did move between them
    for got, expected in zip(model.get_weights(), kept):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="--keep must be best or last, got 'first'"):
        check_settings(
            TrainSettings(
                kind="density", extract=None, data="d", out="unused", epochs=1, batch_size=1, keep="first"
            )
        )
