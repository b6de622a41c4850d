"""Training windows: where they are cut, the shards the stage writes, and the stream training reads."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import spark_submit

from herdcount.extracted import read_extract
from herdcount.models.shard_reader import patch_dataset, read_index, window_dataset
from herdcount.models.targets import sample_tile
from herdcount.records import Status
from herdcount.runinfo import read_run
from herdcount.runner import SOME_FAILED, run_in_process, run_job
from herdcount.shards import WindowsJob
from herdcount.windows import (
    WindowSettings,
    centred_origin,
    cut_windows,
    grid_origins,
    keep_shares,
    window_patch,
)

SMALL = WindowSettings(size=256, step=192, dots_per_class=40, photos_per_shard=2)


def test_grid_windows_cover_the_photo_with_overlap():
    origins = grid_origins((700, 900), 256, 192)
    covered = np.zeros((700, 900), bool)
    for top, left in origins:
        covered[top : top + 256, left : left + 256] = True
    assert covered.all()
    assert grid_origins((100, 120), 256, 192) == [(0, 0)]  # smaller than a window: the photo


def test_a_dot_window_holds_its_dot_even_at_the_photo_edge():
    for centre in ([5.0, 5.0], [350.0, 450.0], [695.0, 898.0]):
        top, left = centred_origin(np.array(centre), (700, 900), 256)
        assert 0 <= top <= 700 - 256 and 0 <= left <= 900 - 256
        assert top <= centre[0] < top + 256 and left <= centre[1] < left + 256


def test_rare_classes_get_a_window_per_dot_common_ones_a_sample():
    np.testing.assert_allclose(keep_shares([10, 0, 4000, 400], 100), [1.0, 0.0, 0.025, 0.25])


def test_windows_carry_their_dots_and_masked_cells():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 520, 3), dtype=np.uint8)
    masked = np.zeros((38, 65), bool)
    masked[10:14, 40:50] = True
    points = np.array([[20.0, 30.0], [150.0, 260.0], [290.0, 500.0]])
    classes = np.array([0, 2, 2])
    windows = cut_windows("7", image, masked, points, classes, SMALL, np.array([1.0, 1.0, 0.0]), rng)
    grid = [w for w in windows if w.kind == "grid"]
    dots = [w for w in windows if w.kind != "grid"]
    assert [w.kind for w in dots] == [0]  # class 2 has share 0
    assert dots[0].centre == (20.0, 30.0)
    for w in grid:
        top, left = w.origin
        assert top % 8 == 0 and left % 8 == 0
        np.testing.assert_array_equal(w.image, image[top : top + 256, left : left + 256])
        np.testing.assert_array_equal(
            w.masked, masked[top // 8 : (top + 256) // 8, left // 8 : (left + 256) // 8]
        )
    # Every dot is inside at least one grid window, with its photo coordinates.
    for point in points:
        assert any(
            any(np.array_equal(p, point) for p in w.points)
            and w.origin[0] <= point[0] < w.origin[0] + 256
            and w.origin[1] <= point[1] < w.origin[1] + 256
            for w in grid
        )


def test_a_tile_cut_from_a_window_is_the_tile_cut_from_the_photo():
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 255, (400, 600, 3), dtype=np.uint8)
    masked = rng.random((50, 75)) < 0.1
    points = rng.uniform([0, 0], [400, 600], size=(40, 2))
    classes = rng.integers(0, 3, 40)
    centre = np.array([200.0, 310.0])
    top, left = 104, 216  # a window of 192 around the centre, on the block grid
    window = photo[top : top + 192, left : left + 192]
    cells = masked[top // 8 : (top + 192) // 8, left // 8 : (left + 192) // 8]
    common = {"size": 64, "stride": 8, "scale": 0.75, "centre": centre}
    whole = sample_tile(photo, points, classes, 3, np.random.default_rng(5), masked=masked, **common)
    part = sample_tile(
        window,
        points,
        classes,
        3,
        np.random.default_rng(5),
        masked=cells,
        offset=(top, left),
        bounds=(400, 600),
        **common,
    )
    np.testing.assert_array_equal(part.image, whole.image)
    np.testing.assert_allclose(part.target, whole.target, atol=1e-6)
    np.testing.assert_array_equal(part.weight, whole.weight)


def test_a_patch_cut_from_a_window_is_the_thumbnail_or_a_clear_background():
    rng = np.random.default_rng(2)
    photo = rng.integers(0, 255, (400, 600, 3), dtype=np.uint8)
    top, left = 96, 200
    window = photo[top : top + 256, left : left + 256]
    points = np.array([[200.0, 330.0], [240.0, 350.0], [100.0, 210.0]])
    classes = np.array([3, 1, 0])
    cells = np.zeros((32, 32), bool)
    cells[:, 20:] = True  # the window's right part is masked
    for shift in (-1, 0, 1):
        patch, label = window_patch(
            window, (top, left), points, classes, cells, (200.0, 330.0), rng, offsets=(shift,)
        )
        assert label == 3
        expected = photo[200 + shift - 32 : 200 + shift + 32, 330 + shift - 32 : 330 + shift + 32]
        np.testing.assert_array_equal(patch, expected)
    # Near the window's corner the patch is shifted inside it, as thumbnails at a photo's edge.
    patch, label = window_patch(window, (top, left), points, classes, cells, (100.0, 210.0), rng)
    assert label == 0
    np.testing.assert_array_equal(patch, window[:64, :64])
    for seed in range(20):
        patch, label = window_patch(
            window, (top, left), points, classes, cells, None, np.random.default_rng(seed)
        )
        assert label == -1
        ((r, c),) = [
            (r, c)
            for r in range(256 - 63)
            for c in range(256 - 63)
            if np.array_equal(window[r, c], patch[0, 0])
            and np.array_equal(window[r : r + 64, c : c + 64], patch)
        ]
        assert c + 64 <= 160  # clear of the masked cells
        local = points - [top, left]
        nearest_r = np.clip(local[:, 0], r, r + 63)
        nearest_c = np.clip(local[:, 1], c, c + 63)
        assert np.hypot(local[:, 0] - nearest_r, local[:, 1] - nearest_c).min() >= 40
    full = np.ones((32, 32), bool)
    assert window_patch(window, (top, left), points, classes, full, None, rng) is None


@pytest.fixture(scope="module")
def windows(tmp_path_factory, survey, extracted, config):
    out = tmp_path_factory.mktemp("windows") / "windows"
    outcome = run_in_process(WindowsJob(str(extracted), str(survey), str(out), settings=SMALL, config=config))
    return out, outcome


def test_shards_hold_every_photo_and_an_index_with_counts(windows, survey, extracted, config):
    out, outcome = windows
    photos = read_extract(extracted, config, survey)
    assert outcome.exit_code == 0 and outcome.totals["photos"] == len(photos) == 5
    index = json.loads((out / "index.json").read_text())
    assert len(index["shards"]) == 3  # 5 photos, 2 per shard
    shards = read_index(str(out), config)
    assert set(shards.windows["grid"]) == {p.train_id for p in photos}
    totals = np.sum([p.counts(5) for p in photos], axis=0)
    shares = keep_shares(totals, SMALL.dots_per_class)
    for k, name in enumerate(config.class_names):
        kept = sum(shards.windows.get(f"dots-{name}", {}).values())
        if shares[k] == 1:
            assert kept == totals[k]  # a rare class: a window for every dot
        else:
            assert 0.5 * shares[k] * totals[k] <= kept <= 1.5 * shares[k] * totals[k] + 3
    assert outcome.totals["windows"]["grid"] == sum(shards.windows["grid"].values())
    for files in shards.files.values():
        for file in files:
            assert Path(file).stat().st_size > 0


def test_the_stream_draws_tiles_of_the_photos_asked_for_only(windows, config):
    import tensorflow as tf

    out, _ = windows
    shards = read_index(str(out), config)
    ids = sorted(shards.windows["grid"])
    train, held = ids[:3], ids[3:]
    ds = window_dataset(shards, train, 5, size=64, stride=8, seed=3)
    batch = next(iter(ds.batch(16)))
    assert batch[0].shape == (16, 64, 64, 3) and batch[0].dtype == tf.uint8
    assert batch[1].shape == (16, 8, 8, 6)
    weights = batch[1][..., -1].numpy()
    assert set(np.unique(weights)) <= {0.0, 1.0}
    # The same seed gives the same tiles; the filter lets only the asked photos through.
    again = next(iter(window_dataset(shards, train, 5, size=64, stride=8, seed=3).batch(16)))
    np.testing.assert_array_equal(batch[0].numpy(), again[0].numpy())
    from herdcount.models.shard_reader import _parse

    records = tf.data.TFRecordDataset(shards.files["grid"]).map(_parse)
    seen = {r["train_id"].numpy().decode() for r in records}
    assert seen == set(ids)
    with pytest.raises(ValueError, match="no windows of the 1 photos"):
        window_dataset(shards, ["no-such-photo"], 5)
    tiles = window_dataset(shards, held, 5, size=64, stride=8, seed=3)
    assert next(iter(tiles))[0].shape == (64, 64, 3)


def test_dot_windows_put_tiles_on_dots(windows, config):
    """Tiles drawn from dot windows hold more dots than tiles placed at random: the
    sampler's class balance survives the move from photos in memory to shards."""
    out, _ = windows
    shards = read_index(str(out), config)
    ids = sorted(shards.windows["grid"])

    def mass(empty_share: float) -> float:
        ds = window_dataset(
            shards,
            ids,
            5,
            size=64,
            stride=8,
            empty_share=empty_share,
            scale_range=(1.0, 1.0),
            augmented=False,
        )
        return float(np.mean([t[..., :5].sum() for _, t in ds.take(60).as_numpy_iterator()]))

    on_dots, at_random = mass(0.0), mass(1.0)
    assert on_dots > 0.9 and on_dots > 1.5 * at_random


def test_classifier_patches_stream_balanced_and_validation_counts_every_dot_window(windows, config):
    out, _ = windows
    shards = read_index(str(out), config)
    ids = sorted(shards.windows["grid"])
    train, held = ids[:3], ids[3:]

    def draw(seed):
        batch = next(iter(patch_dataset(shards, train, 5, seed=seed).batch(300)))
        return batch[0].numpy(), batch[1].numpy()

    x, y = draw(4)
    again, _ = draw(4)
    assert x.shape == (300, 64, 64, 3) and y.shape == (300, 6)
    np.testing.assert_array_equal(x, again)
    present = [
        k
        for k in range(5)
        if any(f"dots-{config.class_names[k]}" in f for f in shards.families_with(set(train)))
    ]
    shares = y.sum(axis=0) / len(y)
    # Background and each class present in these photos' windows drawn about equally often.
    assert set(np.flatnonzero(shares)) == {*present, 5}
    np.testing.assert_allclose(shares[[*present, 5]], 1 / (len(present) + 1), atol=0.08)

    val = list(patch_dataset(shards, held, 5, training=False).as_numpy_iterator())
    labels = np.array([np.argmax(label) for _, label in val])
    held_set = set(held)
    for k, name in enumerate(config.class_names):
        expected = sum(n for i, n in shards.windows.get(f"dots-{name}", {}).items() if i in held_set)
        assert (labels == k).sum() == expected
    grid = sum(n for i, n in shards.windows["grid"].items() if i in held_set)
    assert 0.5 * grid <= (labels == 5).sum() <= grid
    twice = [
        label.argmax() for _, label in patch_dataset(shards, held, 5, training=False).as_numpy_iterator()
    ]
    np.testing.assert_array_equal(labels, twice)
    capped = np.bincount(
        [
            label.argmax()
            for _, label in patch_dataset(shards, held, 5, training=False, per_family=2).as_numpy_iterator()
        ],
        minlength=6,
    )
    for k, name in enumerate(config.class_names):
        available = sum(n for i, n in shards.windows.get(f"dots-{name}", {}).items() if i in held_set)
        assert capped[k] == min(2, available)
    assert 1 <= capped[5] <= 2


def test_windows_cut_by_the_extract_job_are_sharded_without_the_photos(tmp_path, windows, survey, config):
    """extract --windows cuts each pair's windows while it holds the pair decoded; the stage
    then shards them without reading a photo, into the same bytes as cutting from DATA."""
    from herdcount.extract import ExtractJob

    data = tmp_path / "data"
    shutil.copytree(survey, data)
    out = tmp_path / "out"
    run_in_process(ExtractJob(str(data), str(out), config=config, windows=SMALL))
    parts = sorted(p.name for p in (out / "windows" / "parts").iterdir())
    photos = read_extract(out, config, data)
    assert parts == sorted(f"{p.train_id}.{ext}" for p in photos for ext in ("json", "tfrecord"))
    for photo in (data / "Train").glob("*.jpg"):
        photo.unlink()
    for photo in (data / "TrainDotted").glob("*.jpg"):
        photo.unlink()
    outcome = run_in_process(
        WindowsJob(str(out), str(data), str(out / "windows"), settings=SMALL, config=config)
    )
    assert outcome.exit_code == 0 and outcome.totals["photos"] == len(photos)
    reference, _ = windows
    made = {p.name: p.read_bytes() for p in (out / "windows" / "shards").glob("*.tfrecord")}
    assert made == {p.name: p.read_bytes() for p in (reference / "shards").glob("*.tfrecord")}
    assert not list((out / "windows" / "parts").iterdir())  # in the shards now


def test_a_rerun_resumes_and_recuts_only_a_lost_shard(tmp_path, windows, survey, extracted, config):
    out, _ = windows
    copy = tmp_path / "windows"
    shutil.copytree(out, copy)
    before = {p.name: p.read_bytes() for p in (copy / "shards").glob("*.tfrecord")}
    (copy / "shards" / "00001.json").unlink()
    for p in (copy / "shards").glob("*-00001.tfrecord"):
        p.unlink()
    outcome = run_in_process(
        WindowsJob(str(extracted), str(survey), str(copy), settings=SMALL, config=config)
    )
    assert outcome.totals["resumed"] == 2 and outcome.totals["shards"] == 3
    after = {p.name: p.read_bytes() for p in (copy / "shards").glob("*.tfrecord")}
    assert after == before  # the same windows, byte for byte
    with pytest.raises(ValueError, match="other settings"):
        run_in_process(
            WindowsJob(
                str(extracted),
                str(survey),
                str(copy),
                settings=WindowSettings(size=128, step=64),
                config=config,
            )
        )


def test_a_truncated_shard_or_another_scheme_stops_before_training(tmp_path, windows, config):
    out, _ = windows
    copy = tmp_path / "windows"
    shutil.copytree(out, copy)
    victim = sorted((copy / "shards").glob("grid-*.tfrecord"))[0]
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(ValueError, match=rf"{victim.name}: 1000 bytes but index\.json says"):
        read_index(str(copy), config)
    two = dataclasses.replace(config, classes=config.classes[:2])
    with pytest.raises(ValueError, match=r"index\.json: windows of classes"):
        read_index(str(out), two)


def test_a_photo_missing_from_data_is_an_error_row_and_the_rest_is_cut(
    tmp_path, survey, extracted, config, capsys
):
    data = tmp_path / "data"
    shutil.copytree(survey, data)
    gone = sorted(p.stem for p in (extracted / "metadata").glob("*.json"))[0]
    (data / "Train" / f"{gone}.jpg").unlink()
    out = tmp_path / "windows"
    job = WindowsJob(str(extracted), str(data), str(out), settings=SMALL, config=config)
    assert run_job(job, spark=None) == SOME_FAILED
    said = capsys.readouterr().out
    assert f"failed Train/{gone}.jpg: missing from DATA" in said
    run = read_run(out)
    assert run.totals["failed"] == 1 and run.totals["photos"] == 4
    shards = read_index(str(out), config)
    assert gone not in shards.windows["grid"] and len(shards.windows["grid"]) == 4
    first = json.loads((out / "index.json").read_text())["shards"][0]
    assert first["status"] == Status.OK and first["errors"][0]["item"] == gone
    # No marker: a rerun, the photo back in place, cuts that shard again and only that one.
    assert not (out / "shards" / "00000.json").exists()
    shutil.copy(survey / "Train" / f"{gone}.jpg", data / "Train" / f"{gone}.jpg")
    assert run_job(job, spark=None) == 0
    assert read_run(out).totals["resumed"] == 2 and read_index(str(out), config).windows["grid"].keys() >= {
        gone
    }


@pytest.mark.slow
def test_spark_submit_cuts_the_same_shards(tmp_path, windows, survey, extracted):
    out, _ = windows
    spark_out = tmp_path / "windows"
    proc = spark_submit(
        "jobs/windows.py",
        "--extract",
        str(extracted),
        "--data",
        str(survey),
        "--out",
        str(spark_out),
        "--size",
        str(SMALL.size),
        "--step",
        str(SMALL.step),
        "--dots-per-class",
        str(SMALL.dots_per_class),
        "--photos-per-shard",
        str(SMALL.photos_per_shard),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = {p.name: p.read_bytes() for p in (out / "shards").glob("*.tfrecord")}
    theirs = {p.name: p.read_bytes() for p in (spark_out / "shards").glob("*.tfrecord")}
    assert ours == theirs and ours
    assert read_run(spark_out).spark["spark.master"] == "local[2]"


@pytest.mark.slow
def test_spark_submit_extract_with_windows_cuts_them_in_the_pair_tasks(tmp_path, survey, extracted, config):
    out = tmp_path / "out"
    proc = spark_submit("jobs/extract.py", "--data", str(survey), "--out", str(out), "--windows")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list((out / "windows" / "parts").iterdir())
    # The parts became shards, those the stage alone cuts from DATA with the same (default)
    # settings (that the stage then reads no photo is the in-process test's).
    reference = tmp_path / "reference"
    run_in_process(WindowsJob(str(extracted), str(survey), str(reference), config=config))
    made = {p.name: p.read_bytes() for p in (out / "windows" / "shards").glob("*.tfrecord")}
    assert made and made == {p.name: p.read_bytes() for p in (reference / "shards").glob("*.tfrecord")}
    assert read_run(out / "windows").totals["photos"] == len(read_extract(extracted, config, survey))
