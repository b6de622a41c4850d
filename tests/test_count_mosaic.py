"""The count job on an orthomosaic beside JPEG photos: a georeferenced GeoTIFF laid from
generated test photos, counted in chunks (each a task reading only its chunk and the
model's margin) to the same totals as its photos and as itself in one chunk, points in
map coordinates, bad rasters as error rows, and a rerun that resumes per chunk."""

import csv
import json
import shutil

import keras
import numpy as np
import pytest
from conftest import spark_submit
from keras import layers

from herdcount.count import CountJob
from herdcount.models.builders import save_model_run
from herdcount.mosaic import pixel_to_map, write_geotiff
from herdcount.runner import SOME_FAILED, run_in_process
from herdcount.synth import write_survey

pytestmark = pytest.mark.slow


def context_model() -> keras.Model:
    """Density per 8x8 cell from the mean colour of its 3x3 cells (zeros beyond the tile:
    a receptive field of 24 px, so a chunk's margin matters), one class per colour mix."""
    inputs = keras.Input(shape=(None, None, 3))
    x = layers.AveragePooling2D(8)(layers.Rescaling(1 / 255)(inputs))
    conv = layers.Conv2D(5, 3, padding="same", use_bias=False, activation="relu")
    model = keras.Model(inputs, conv(x))
    kernel = np.zeros((3, 3, 3, 5), np.float32)
    mix = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, -1, 0], [0, 1, -1]], np.float32) / 90
    kernel[:] = mix.T[None, None]
    conv.set_weights([kernel])
    return model


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory, config):
    root = tmp_path_factory.mktemp("mosaic")
    data = root / "data"
    truth = write_survey(
        data, n_train=0, n_test=5, seed=9, config=config, width=420, height=300, density=40, mosaic="ground"
    )
    mixed = root / "mixed"
    shutil.copytree(data / "Test", mixed)
    shutil.copy(data / "Mosaic" / "survey.tif", mixed / "survey.tif")
    run = root / "run"
    save_model_run(
        run,
        context_model(),
        {"kind": "density", "class_names": config.class_names, "output_stride": 8, "margin": 16},
    )
    return {"root": root, "data": data, "truth": truth, "mixed": mixed, "run": run}


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def counted(out, config):
    return {
        r["test_id"]: np.array([float(r[n]) for n in config.class_names]) for r in rows_of(out / "counts.csv")
    }


def _place(row):
    return row["class"], float(row["y"]), float(row["x"])


def test_a_mosaic_counts_in_chunks_to_its_photos_totals_with_map_coordinates(mosaic, config):
    outs = {}
    for chunk in (256, 4096):
        outs[chunk] = mosaic["root"] / f"out-{chunk}"
        job = CountJob(
            images=str(mosaic["mixed"]), out=str(outs[chunk]), model=str(mosaic["run"]), chunk=chunk
        )
        outcome = run_in_process(job)
        assert outcome.exit_code == 0, outcome.summary
    small, whole = counted(outs[256], config), counted(outs[4096], config)
    # Exact across chunk seams: 3 x 5 chunks of 256 px count what one chunk counts.
    np.testing.assert_allclose(small["survey"], whole["survey"], rtol=1e-4)
    run = json.loads((outs[256] / "run.json").read_text())
    assert run["totals"]["rasters"] == {
        "survey": {"width": 1260, "height": 600, "chunks": 15, "crs": "EPSG:32610"}
    }
    record = json.loads((outs[256] / "photos" / "survey.json").read_text())
    assert record["chunks"] == 15 and (record["width"], record["height"]) == (1260, 600)
    # Its photos, counted apart: the same pixels, other context only along their borders.
    photos = sum(small[str(i)] for i in range(5))
    assert np.abs(small["survey"] - photos).sum() <= 0.03 * photos.sum()
    # Points: pixels of the mosaic, and map coordinates through its transform.
    points = [r for r in rows_of(outs[256] / "points.csv") if r["test_id"] == "survey"]
    # Shared out over all chunks' peaks at once: per class, the raster's rounded count, and
    # the same points whatever the chunk size.
    rounded = np.rint(np.maximum(np.round(small["survey"], 4), 0))
    per_class = [sum(p["class"] == n for p in points) for n in config.class_names]
    assert per_class == rounded.astype(int).tolist()
    whole = [r for r in rows_of(outs[4096] / "points.csv") if r["test_id"] == "survey"]
    assert len(whole) == len(points)
    for a, b in zip(sorted(points, key=_place), sorted(whole, key=_place)):
        assert a["class"] == b["class"] and abs(float(a["x"]) - float(b["x"])) <= 0.2
        assert abs(float(a["y"]) - float(b["y"])) <= 0.2
    summary = json.loads((mosaic["truth"] / "mosaic.json").read_text())
    xs, ys = pixel_to_map(
        tuple(summary["transform"]), [float(p["y"]) for p in points], [float(p["x"]) for p in points]
    )
    np.testing.assert_allclose([float(p["map_x"]) for p in points], xs, atol=0.002)
    np.testing.assert_allclose([float(p["map_y"]) for p in points], ys, atol=0.002)
    assert all(
        p["map_x"] == "" for r in [rows_of(outs[256] / "points.csv")] for p in r if p["test_id"] != "survey"
    )
    collection = json.loads((outs[256] / "points" / "survey.geojson").read_text())
    lon, lat = collection["features"][0]["geometry"]["coordinates"]
    assert -124 < lon < -122 and 36 < lat < 38  # UTM 10N, 500 km east, 4,100 km north
    assert collection["crs_of_map_xy"] == "EPSG:32610"


def test_bad_rasters_are_error_rows_and_the_rest_is_counted_and_resumed(mosaic, config, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(mosaic["mixed"], images)
    data = (images / "survey.tif").read_bytes()
    (images / "cut.tif").write_bytes(data[: len(data) // 3])
    import rasterio

    with rasterio.open(
        images / "grey.tif", "w", driver="GTiff", height=64, width=64, count=1, dtype="uint8"
    ) as ds:
        ds.write(np.zeros((64, 64), np.uint8), 1)
    write_geotiff(
        images / "plain.tif",
        np.full((100, 140, 3), 90, np.uint8),
        None,
        transform=(1, 0, 0, 0, 1, 0),
        crs=None,
    )
    out = tmp_path / "out"
    job = CountJob(images=str(images), out=str(out), model=str(mosaic["run"]), chunk=256)
    outcome = run_in_process(job)
    assert outcome.exit_code == SOME_FAILED
    errors = {r["file"]: r["reason"] for r in rows_of(out / "errors.csv")}
    assert set(errors) == {"images/cut.tif", "images/grey.tif"}
    assert "chunk" in errors["images/cut.tif"] and "could not be read" in errors["images/cut.tif"]
    assert "1 bands of ['uint8']; expected 3 (RGB) or 4" in errors["images/grey.tif"]
    rows = counted(out, config)
    assert set(rows) == {"0", "1", "2", "3", "4", "survey", "plain"}
    # A raster without georeferencing keeps pixel coordinates only.
    plain = json.loads((out / "points" / "plain.geojson").read_text())
    assert "coordinates" in plain and "crs_of_map_xy" not in plain
    # A rerun recounts only the failed rasters' chunks that failed; the rest are read back.
    (images / "cut.tif").unlink()
    # A raster's record as written before its parts were called chunks resumes too.
    record = out / "photos" / "survey.json"
    earlier = json.loads(record.read_text())
    earlier["windows"] = earlier.pop("chunks")
    record.write_text(json.dumps(earlier))
    again = run_in_process(CountJob(images=str(images), out=str(out), model=str(mosaic["run"]), chunk=256))
    assert again.totals["resumed"] == 7 and again.totals["failed"] == 1
    # Asked for map coordinates, the raster without a CRS is an error row; the rest still count.
    (images / "grey.tif").unlink()
    mapped = tmp_path / "mapped"
    job = CountJob(
        images=str(images), out=str(mapped), model=str(mosaic["run"]), chunk=256, map_coordinates=True
    )
    assert run_in_process(job).exit_code == SOME_FAILED
    errors = {r["file"]: r["reason"] for r in rows_of(mapped / "errors.csv")}
    assert set(errors) == {"images/plain.tif"} and "no georeferencing" in errors["images/plain.tif"]
    assert set(counted(mapped, config)) == {"0", "1", "2", "3", "4", "survey"}


def test_spark_counts_the_chunks_as_tasks_to_the_same_counts(mosaic, config):
    out = mosaic["root"] / "out-spark"
    proc = spark_submit(
        "jobs/count.py",
        "--images",
        str(mosaic["mixed"]),
        "--model",
        str(mosaic["run"]),
        "--out",
        str(out),
        "--chunk",
        "256",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "5 photos and 15 chunks of 1 rasters to count" in proc.stdout + proc.stderr
    mine = counted(out, config)
    local = mosaic["root"] / "out-local"
    run_in_process(CountJob(images=str(mosaic["mixed"]), out=str(local), model=str(mosaic["run"]), chunk=256))
    theirs = counted(local, config)
    assert set(mine) == set(theirs)
    for key in mine:
        np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-5)
    assert len(list((out / "chunks" / "survey").glob("*.json"))) == 15
