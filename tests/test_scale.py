"""The photo's ground scale: tiles, pooling of the tiles' readings, and the zoomed squares
the scale model learns from."""

import numpy as np
import pytest

from herdcount.scale import estimate_scale, resize_for, scale_tiles, vary_camera, weighted_median, zoom_crop

RADIUS = 12.0  # of a disc "animal" at ground scale 1


def ground(shape, discs, scale, seed=0):
    """Grey ground with bright discs of radius RADIUS * scale at ``discs`` (row, col)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(90, 6, size=(*shape, 3))
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    for row, col in discs:
        image[np.hypot(rr - row, cc - col) <= RADIUS * scale] = 220
    return np.clip(image, 0, 255).astype(np.uint8)


def disc_reader(tiles: np.ndarray) -> np.ndarray:
    """A scale model of disc animals: the bright area of a tile gives its discs' radius
    (one disc per tile in these tests), and so the scale; no bright pixel, no animal."""
    bright = (tiles.mean(axis=3) > 160).sum(axis=(1, 2)).astype(np.float64)
    log_scale = np.where(bright > 0, 0.5 * np.log(np.maximum(bright, 1) / (np.pi * RADIUS**2)), 0.0)
    return np.column_stack([log_scale, np.where(bright > 0, 8.0, -8.0)])


def test_photos_read_within_the_models_training_range_are_counted_as_they_are():
    trained = (0.85, 1.15)
    for inside in (0.85, 0.93, 1.0, 1.1, 1.15):
        assert resize_for(inside, trained=trained) == 1.0
    assert resize_for(1.3, trained=trained) == pytest.approx(1 / 1.3)
    assert resize_for(0.6, trained=trained) == pytest.approx(1 / 0.6)
    assert resize_for(0.84, trained=trained) == pytest.approx(1 / 0.84)
    # Without a range, every reading resizes; the limits still hold.
    assert resize_for(1.05) == pytest.approx(1 / 1.05)
    assert resize_for(10.0, trained=trained) == 0.25 and resize_for(0.1, trained=trained) == 4.0
    for bad in ({"ground_scale": 0.0}, {"ground_scale": 1.0, "trained": (1.1, 1.3)}):
        with pytest.raises(ValueError, match="trained range must hold 1"):
            resize_for(**bad)


def test_tiles_cover_the_photo_evenly_and_are_its_pixels():
    image = np.random.default_rng(1).integers(0, 255, (600, 900, 3), dtype=np.uint8)
    tiles, origins = scale_tiles(image, size=200, count=6)
    assert len(tiles) == 6 and tiles.shape[1:] == (200, 200, 3)
    assert origins[:, 0].min() == 0 and origins[:, 0].max() == 400
    assert origins[:, 1].min() == 0 and origins[:, 1].max() == 700
    for tile, (top, left) in zip(tiles, origins):
        np.testing.assert_array_equal(tile, image[top : top + 200, left : left + 200])
    with pytest.raises(ValueError, match="smaller than one 256 px tile"):
        scale_tiles(image[:100], size=256)
    tiles, origins = scale_tiles(image, size=200, count=6, side=300)
    assert tiles.shape == (6, 200, 200, 3) and origins[:, 0].max() == 300 and origins[:, 1].max() == 600


@pytest.mark.parametrize("scale", [0.6, 1.0, 1.6])
def test_the_scale_is_read_from_the_tiles_holding_animals(scale):
    # One disc near the centre of each of 6 tiles of a 2 x 3 grid; the rest is bare ground.
    shape, size = (480, 720), 240
    discs = [(120, 120), (120, 360), (120, 600), (360, 120), (360, 360), (360, 600)]
    image = ground(shape, discs[:4], scale)
    found = estimate_scale(image, disc_reader, size=size, count=6)
    # Six tiles at each of the two zooms (squares of 300 and 192 px resized to 240).
    assert found.tiles == 12 and found.votes == 8
    assert found.scale == pytest.approx(scale, rel=0.05)
    assert found.spread < 0.05


def test_one_misread_tile_does_not_move_the_median():
    image = ground((480, 720), [(120, 120), (120, 360), (120, 600), (360, 120), (360, 360)], 1.0)
    image[300:420, 540:660] = 220  # a large bright rock in the sixth tile, read as a huge animal
    found = estimate_scale(image, disc_reader, size=240, count=6)
    assert found.votes == 12 and found.scale == pytest.approx(1.0, rel=0.05)
    found = estimate_scale(image, disc_reader, size=240, count=6, zooms=(1.0,))
    assert found.votes == 6 and found.scale == pytest.approx(1.0, rel=0.05)


def test_without_any_animal_every_tile_votes_by_its_weight():
    image = ground((480, 720), [], 1.0)
    found = estimate_scale(image, disc_reader, size=240, count=6)
    assert found.votes == 0 and found.scale == pytest.approx(1.0)


def test_weighted_median():
    assert weighted_median(np.array([3.0, 1.0, 2.0]), np.ones(3)) == 2.0
    assert weighted_median(np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4)) == 2.5
    assert weighted_median(np.array([1.0, 2.0, 10.0]), np.array([1.0, 1.0, 5.0])) == 10.0
    with pytest.raises(ValueError, match="equal-length"):
        weighted_median(np.array([1.0]), np.array([1.0, 2.0]))


def test_a_zoomed_square_shows_the_ground_at_that_scale():
    rng = np.random.default_rng(3)
    window = ground((512, 512), [(256, 256)], 1.0)
    for zoom in (0.5, 0.8, 1.0, 1.5, 2.0):
        tile, animals = zoom_crop(
            window, np.array([[256.0, 256.0]]), zoom, rng, size=256, centre=(256.0, 256.0)
        )
        assert tile.shape == (256, 256, 3) and animals == 1
        # The disc's area scales with the square of the zoom.
        area = (tile.mean(axis=2) > 160).sum()
        assert area == pytest.approx(np.pi * (RADIUS * zoom) ** 2, rel=0.15)
    tile, animals = zoom_crop(window, np.array([[10.0, 10.0]]), 1.0, rng, size=256, centre=(400.0, 400.0))
    assert animals == 0
    with pytest.raises(ValueError, match="does not fit"):
        zoom_crop(window, np.zeros((0, 2)), 0.4, rng, size=256)


def test_another_camera_blurs_adds_noise_and_compresses_repeatably():
    window = ground((256, 256), [(128, 128)], 1.0)
    a = vary_camera(window, np.random.default_rng(4))
    b = vary_camera(window, np.random.default_rng(4))
    assert a.shape == window.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - window).mean() > 0.5
    # The animal is still there, about as large.
    assert (a.mean(axis=2) > 160).sum() == pytest.approx((window.mean(axis=2) > 160).sum(), rel=0.2)


@pytest.mark.slow
@pytest.mark.accuracy
def test_a_trained_scale_model_reads_photos_flown_at_known_altitudes(tmp_path, config):
    # The scale model as a user trains it (smaller tiles and fewer steps, for time): from a
    # generated survey at one altitude, it reads fresh photos flown at ground scales drawn in
    # 0.6-1.6, which the generator records. Measured: median error 5.5-6.2 % on two such
    # surveys, no bias (mean +0.5-0.8 %), single small photos off by up to 22 %.
    import csv
    import statistics

    from herdcount.commands import train
    from herdcount.extract import ExtractJob
    from herdcount.imaging import decode_rgb
    from herdcount.predictors import load_model
    from herdcount.runner import run_in_process
    from herdcount.synth import truth_dir, write_survey

    size = {"width": 900, "height": 700, "density": 60}
    data, out, run = tmp_path / "data", tmp_path / "out", tmp_path / "run"
    write_survey(data, n_train=24, n_test=0, seed=31, config=config, n_mismatched=0, **size)
    run_in_process(ExtractJob(data, out, config=config))
    options = ["--epochs", "40", "--scale-steps", "60", "--batch-size", "16", "--scale-tile", "128"]
    common = [
        "--kind",
        "scale",
        "--extract",
        str(out),
        "--data",
        str(data),
        "--out",
        str(run),
        "--threads",
        "2",
    ]
    assert train.main([*common, *options]) == 0
    flown = tmp_path / "flown"
    write_survey(flown, n_train=0, n_test=10, seed=41, config=config, test_scale=(0.6, 1.6), **size)
    with open(truth_dir(flown) / "test_scales.csv", newline="") as f:
        truth = {row["test_id"]: float(row["scale"]) for row in csv.DictReader(f)}
    model = load_model(run)
    log_errors = []
    for test_id, scale in truth.items():
        photo = decode_rgb((flown / "Test" / f"{test_id}.jpg").read_bytes(), test_id)
        log_errors.append(np.log(estimate_scale(photo, model.predict, size=128).scale / scale))
    errors = np.expm1(np.abs(log_errors))
    assert min(truth.values()) < 0.8 and max(truth.values()) > 1.2  # the altitudes do differ
    assert statistics.median(errors) <= 0.10, f"scale read off by {np.round(100 * errors, 1)} %"
    assert abs(np.mean(log_errors)) <= 0.05
