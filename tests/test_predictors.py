"""Counting with real Keras models in this process: the classifier's fully convolutional
form against window-by-window evaluation, tiling invariance, reduced-size decoding."""

import io
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import patches_at
from PIL import Image

from herdcount.count_tasks import CountSettings
from herdcount.count_worker import count_image
from herdcount.imaging import decode_rgb, decode_rgb_scaled, encode_jpeg, jpeg_shape
from herdcount.models.builders import (
    describe_density_model,
    make_classifier_model,
    make_density_model,
    save_model_run,
)
from herdcount.predictors import LOADS, clear_cache, fully_convolutional, load_model, native_stride
from herdcount.tiling import class_counts, patch_scores, tile_scores


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(7)
    return make_classifier_model((64, 64, 3), 4)


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(5)
    base = rng.integers(0, 255, (12, 16, 3)).astype(np.uint8)
    # Smooth blobs and fine noise, so windows differ in what a random classifier sees.
    image = np.asarray(Image.fromarray(base).resize((230, 171), Image.Resampling.BICUBIC)).astype(int)
    return np.clip(image + rng.integers(-30, 30, image.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("stride", "tile"), [(8, 1024), (8, 40), (16, 64), (32, 8), (64, 200)])
def test_fully_convolutional_classifier_scores_every_window_as_the_classifier_does(
    classifier, photo, stride, tile
):
    maps = fully_convolutional(classifier)
    assert native_stride(classifier) == 8
    got = patch_scores(photo, lambda b: np.asarray(maps(b)), stride=stride, step=8, tile=tile)
    windows = patches_at(photo, stride)
    expected = np.asarray(classifier(windows.reshape(-1, 64, 64, 3), training=False))
    np.testing.assert_allclose(got, expected.reshape(*windows.shape[:2], -1), atol=1e-5)
    assert len(np.unique(expected.argmax(axis=-1))) >= 2


def test_seed_tiles_are_the_windows_at_the_patch_stride(classifier, photo):
    tiles = tile_scores(photo, lambda b: np.asarray(classifier(b, training=False)), batch_size=5)
    assert tiles.shape == (3, 4, 4)  # ceil(171 / 64), ceil(230 / 64)
    expected = np.asarray(classifier(patches_at(photo, 64).reshape(-1, 64, 64, 3), training=False))
    np.testing.assert_allclose(tiles.reshape(-1, 4), expected, atol=1e-6)


def test_class_counts_by_hand():
    scores = np.zeros((2, 3, 3))
    winners = [[0, 1, 2], [1, 1, 2]]  # class 2 is the background
    for (r, c), k in np.ndenumerate(np.array(winners)):
        scores[r, c, k] = 1
    np.testing.assert_array_equal(class_counts(scores, 2), [1, 3])
    np.testing.assert_array_equal(class_counts(scores, 2, weight=0.25), [0.25, 0.75])


def test_a_layer_without_convolutional_form_is_named():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.BatchNormalization(name="norm")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match="layer 'norm' of type BatchNormalization"):
        fully_convolutional(model)


def test_density_counts_do_not_depend_on_the_tile_size(tmp_path, photo):
    keras.utils.set_random_seed(3)
    model = make_density_model(3, width=8, depth=2)
    # Untrained batch-norm statistics would give near-zero maps: make the output vary.
    model.get_layer("density_x100").set_weights(
        [np.full((1, 1, 16, 3), 0.05, "float32"), np.full(3, 0.5, "float32")]
    )
    save_model_run(
        tmp_path, model, {"kind": "density", "class_names": ["a", "b", "c"], **describe_density_model(model)}
    )
    clear_cache()
    loaded = load_model(tmp_path)
    settings = [
        CountSettings(out="", model=str(tmp_path), kind="density", num_classes=3, tile=t)
        for t in (16, 48, 96, 4096)
    ]
    counted = [count_image(photo, loaded, s) for s in settings]
    counts = [c for c, _ in counted]
    assert counts[0].min() > 1
    for c in counts[1:]:
        np.testing.assert_allclose(c, counts[-1], rtol=1e-5)
    # And so do the points found in the maps.
    for _, points in counted[:-1]:
        np.testing.assert_allclose(points.coords, counted[-1][1].coords, atol=1e-3)
        np.testing.assert_array_equal(points.classes, counted[-1][1].classes)
    load_model(tmp_path)
    assert LOADS[str((tmp_path / "model.keras").resolve())] == 1
    assert (
        json.loads((tmp_path / "model.json").read_text())["margin"] == describe_density_model(model)["margin"]
    )


def test_decoding_into_a_given_array_equals_a_fresh_decode(photo):
    data = encode_jpeg(photo, 90)
    assert jpeg_shape(data) == photo.shape
    out = np.zeros(photo.shape, np.uint8)
    got = decode_rgb(data, out=out)
    np.testing.assert_array_equal(got, decode_rgb(data))
    assert np.shares_memory(got, out)
    # Another size, or no JPEG at all, decodes into a new array.
    assert not np.shares_memory(decode_rgb(encode_jpeg(photo[:64], 90), out=out), out)
    png = io.BytesIO()
    Image.fromarray(photo).save(png, "PNG")
    assert jpeg_shape(png.getvalue()) is None
    np.testing.assert_array_equal(decode_rgb(png.getvalue(), out=out), photo)


@pytest.mark.parametrize("scale", [0.5, 0.3, 0.125, 1.5])
def test_reduced_size_decoding_matches_a_full_decode_then_resize(photo, scale):
    big = np.asarray(Image.fromarray(photo).resize((920, 684)))
    data = encode_jpeg(big, 95)
    got = decode_rgb_scaled(data, scale=scale)
    size = (round(920 * scale), round(684 * scale))
    assert got.shape == (size[1], size[0], 3)
    full = Image.fromarray(decode_rgb(data))
    reference = np.asarray(full.resize(size, Image.Resampling.BILINEAR)).astype(int)
    nearest = np.asarray(full.resize(size, Image.Resampling.NEAREST)).astype(int)
    # Within JPEG noise of the antialiased reference, and closer to it than subsampling is.
    error = np.abs(got - reference).mean()
    assert error < 5 and (error < np.abs(nearest - reference).mean() or scale > 1)


@pytest.mark.parametrize("scale", [0, -1, 5])
def test_scales_out_of_range_are_rejected(scale):
    with pytest.raises(ValueError, match=f"scale must be in \\(0, 4\\], got {scale}"):
        decode_rgb_scaled(b"\xff\xd8", scale=scale)


@pytest.mark.parametrize("kind", ["density", "classifier"])
def test_the_litert_export_predicts_what_keras_does_and_keras_is_the_fallback(
    tmp_path, photo, classifier, kind
):
    if kind == "density":
        keras.utils.set_random_seed(4)
        model = make_density_model(2, width=8, depth=2)
        description = {"kind": "density", "class_names": ["a", "b"], **describe_density_model(model)}
    else:
        model, description = (
            classifier,
            {"kind": "classifier", "class_names": ["a", "b", "c", "bg"], "patch_size": 64},
        )
    save_model_run(tmp_path / "run", model, description)
    assert (tmp_path / "run" / "model.tflite").is_file()
    clear_cache()
    lite = load_model(tmp_path / "run", threads=2)
    assert lite.runtime == "litert" and lite.threads == (2, 2)
    windows = np.stack([photo[:64, :64], photo[100:164, 150:214], photo[:128, :128][::2, ::2]])
    batch = photo[None, :168, :224] if kind == "density" else windows
    np.testing.assert_allclose(lite.predict(batch), np.asarray(model(batch, training=False)), atol=1e-5)
    if kind == "classifier":
        assert lite.map_stride == 8
        maps = fully_convolutional(model)
        np.testing.assert_allclose(lite.predict_maps(photo[None]), np.asarray(maps(photo[None])), atol=1e-5)
    for name in ("model.tflite", "maps.tflite"):
        (tmp_path / "run" / name).unlink(missing_ok=True)
    clear_cache()
    fallback = load_model(tmp_path / "run")
    assert fallback.runtime == "keras"
    np.testing.assert_allclose(fallback.predict(batch), lite.predict(batch), atol=1e-5)


def test_the_int8_export_counts_as_float_does_and_the_check_says_how_close(tmp_path):
    from herdcount.precision import compare_precisions
    from herdcount.predictors import INT8, lite_predictor, quantized_tflite

    model = make_density_model(3, width=8, depth=2)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (200, 240, 3), dtype=np.uint8) for _ in range(3)]
    samples = [rng.integers(0, 255, (4, 64, 64, 3)).astype(np.float32) for _ in range(8)]
    quantized = quantized_tflite(model, samples)
    geo = describe_density_model(model)

    def exact(batch):
        return np.asarray(model(batch, training=False))

    same = compare_precisions(images, exact, exact, ["a", "b", "c"], stride=8, margin=geo["margin"])
    assert same["passed"] and set(same["count_share"].values()) == {0.0} and same["points_within_px"] == 1.0
    int8 = compare_precisions(
        images, exact, lite_predictor(quantized), ["a", "b", "c"], stride=8, margin=geo["margin"]
    )
    assert int8["photos"] == 3 and max(int8["count_share"].values()) < 0.05

    def louder(batch):
        return exact(batch) * 1.05

    assert not compare_precisions(images, exact, louder, ["a", "b", "c"], stride=8, margin=geo["margin"])[
        "passed"
    ]
    run = tmp_path / "run"
    save_model_run(run, model, {"kind": "density", "class_names": ["a", "b", "c"], **geo})
    (run / INT8).write_bytes(quantized)
    clear_cache()
    loaded = load_model(run, precision="int8")
    assert loaded.runtime == "litert-int8"
    batch = images[0][None, :64, :64].astype(np.float32)
    np.testing.assert_allclose(loaded.predict(batch).sum(), exact(batch).sum(), rtol=0.05)
    assert load_model(run).runtime == "litert"


def test_int8_count_scales_undo_each_class_share_off_float_and_counting_applies_them(tmp_path):
    from herdcount.precision import compare_precisions, count_scales, scaled
    from herdcount.predictors import INT8, quantized_tflite

    rng = np.random.default_rng(1)
    maps = rng.random((6, 4, 8, 8, 3)).astype(np.float32) * np.float32([0.2, 0.2, 0.001])
    batches = [rng.integers(0, 255, (4, 64, 64, 3)).astype(np.float32) for _ in range(6)]
    lookup = {id(b): m for b, m in zip(batches, maps)}

    def exact(batch):
        return lookup[id(batch)]

    def skewed(batch):  # a steady share off per class, as int8 lands
        return lookup[id(batch)] * np.float32([1.1, 0.95, 3.0])

    scales = count_scales(batches, exact, skewed)
    # Class c counts under one animal over all the tiles: too few to trust a ratio.
    np.testing.assert_allclose(scales, [1 / 1.1, 1 / 0.95, 1.0], rtol=1e-5)
    np.testing.assert_allclose(scaled(skewed, scales)(batches[0])[..., :2], maps[0][..., :2], rtol=1e-5)
    with pytest.raises(ValueError, match="at least one batch"):
        count_scales([], exact, skewed)

    def erratic(batch):  # off by 10 % either way, tile by tile: no steady share to undo
        signs = np.where(np.arange(len(batch)) % 2, 1.1, 0.9).astype(np.float32)[:, None, None, None]
        return lookup[id(batch)] * signs

    np.testing.assert_array_equal(count_scales(batches, exact, erratic), [1.0, 1.0, 1.0])

    model = make_density_model(3, width=8, depth=2)
    geo = describe_density_model(model)
    images = [rng.integers(0, 255, (200, 240, 3), dtype=np.uint8) for _ in range(2)]

    def float_model(batch):
        return np.asarray(model(batch, training=False))

    def louder(batch):
        return float_model(batch) * np.float32([1.05, 1.0, 0.96])

    check = [images, float_model]
    assert not compare_precisions(*check, louder, ["a", "b", "c"], stride=8, margin=geo["margin"])["passed"]
    # An untrained map holds about 0.005 animals a cell: 4,096 cells hold enough of each class.
    tiles = [rng.integers(0, 255, (4, 128, 128, 3)).astype(np.float32) for _ in range(4)]
    fixed = scaled(louder, count_scales(tiles, float_model, louder))
    assert compare_precisions(*check, fixed, ["a", "b", "c"], stride=8, margin=geo["margin"])["passed"]

    # The count job multiplies the int8 export's maps by the scales its run recorded.
    run = tmp_path / "run"
    recorded = {"a": 0.5, "b": 1.0, "c": 2.0}
    save_model_run(run, model, {"kind": "density", "class_names": ["a", "b", "c"], **geo})
    (run / INT8).write_bytes(quantized_tflite(model, tiles))
    clear_cache()
    plain = load_model(run, precision="int8").predict(tiles[0])
    description = json.loads((run / "model.json").read_text())
    description["int8"] = {"passed": False, "count_scale": recorded}
    (run / "model.json").write_text(json.dumps(description))
    clear_cache()
    np.testing.assert_allclose(
        load_model(run, precision="int8").predict(tiles[0]), plain * np.float32([0.5, 1.0, 2.0]), rtol=1e-6
    )


def test_tensorflow_start_up_notices_are_held_back_and_everything_else_kept():
    # A fresh interpreter: TensorFlow prints its notices once, at its first import.
    code = (
        "import os, sys\n"
        "from herdcount.predictors import tensorflow_notices_filtered\n"
        "with tensorflow_notices_filtered():\n"
        "    import herdcount.models.train\n"
        "    os.write(2, b'a line from C\\n')\n"
        "    print('a line from Python', file=sys.stderr)\n"
        "with tensorflow_notices_filtered():\n"
        "    raise ValueError('an import that fails')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "oneDNN" not in done.stderr and "absl::InitializeLog" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[:2] == ["a line from C", "a line from Python"]
    assert lines[-1] == "ValueError: an import that fails"
