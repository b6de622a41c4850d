"""The Keras module's parts: builders, density targets, training tiles, splits, inputs."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from herdcount.extracted import split_photos
from herdcount.models.builders import (
    DensityLoss,
    centre_focal_loss,
    density_count_error,
    describe_density_model,
    flops_per_megapixel,
    geometry,
    make_classifier_model,
    make_density_model,
    save_model_run,
    tile_count_error,
    with_centre_head,
)
from herdcount.models.targets import augment, centre_target, density_target, sample_tile
from herdcount.tiling import density_map, pad_to_stride


def test_classifier_has_the_seed_architecture_and_output():
    model = make_classifier_model((64, 64, 3), 6)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "InputLayer",
        "Rescaling",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
        "Dropout",
        "Dense",
    ]
    assert [model.get_layer(f"conv{n}").filters for n in (1, 2, 3)] == [32, 64, 128]
    out = model.predict(np.zeros((3, 64, 64, 3), np.uint8), verbose=0)
    assert out.shape == (3, 6)
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)
    rescale = model.get_layer("rescale")
    np.testing.assert_allclose(rescale(np.array([0.0, 255.0])), [-0.5, 0.5])


@pytest.mark.parametrize(("height", "width"), [(64, 64), (256, 136), (520, 96)])
def test_density_model_maps_any_tile_at_stride_eight(height, width):
    model = make_density_model(5)
    out = model.predict(np.zeros((2, height, width, 3), np.uint8), verbose=0)
    assert out.shape == (2, height // 8, width // 8, 5)
    assert geometry(model) == {"output_stride": 8, "receptive_field": 144}
    assert all(type(layer).__name__ != "Dense" for layer in model.layers)


def test_split_head_shares_one_animal_map_among_the_classes():
    model = make_density_model(3, width=8, head="split")
    assert geometry(model) == {"output_stride": 8, "receptive_field": 144}
    tiles = np.random.default_rng(0).integers(0, 255, (2, 64, 80, 3), dtype=np.uint8)
    out = model.predict(tiles, verbose=0)
    assert out.shape == (2, 8, 10, 3)
    # Each cell's classes split the animals' density between them: their sum is that map.
    animals = keras.Model(model.input, model.get_layer("animals_relu").output).predict(tiles, verbose=0)
    np.testing.assert_allclose(out.sum(axis=-1), animals[..., 0] / 100, rtol=1e-4, atol=1e-7)
    cells8 = 1e6 / 64
    joint = flops_per_megapixel(make_density_model(3, width=8))
    assert flops_per_megapixel(model) == pytest.approx(joint + 2 * cells8 * 16 * 1)
    with pytest.raises(ValueError, match="head must be one of"):
        make_density_model(3, head="both")


def test_density_model_flops_are_counted_layer_by_layer():
    model = make_density_model(5, width=16, depth=4)
    cells4, cells8 = 1e6 / 16, 1e6 / 64
    expected = 2 * (
        cells4 * 4 * 4 * 3 * 16
        + cells4 * 3 * 3 * 16 * 16
        + cells8 * 2 * 2 * 16 * 32
        + 4 * cells8 * 3 * 3 * 32 * 32
        + cells8 * 32 * 5
    )
    assert flops_per_megapixel(model) == pytest.approx(expected)
    assert 1e9 <= expected <= 2e9
    with pytest.raises(ValueError, match="Dense"):
        flops_per_megapixel(make_classifier_model())


@pytest.mark.parametrize("kind", ["classifier", "density"])
def test_models_survive_a_save_and_load_round_trip(tmp_path, kind):
    model = make_classifier_model() if kind == "classifier" else make_density_model(3, width=8, depth=2)
    if kind == "density":
        model.compile(optimizer="adam", loss=DensityLoss())
    batch = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), rtol=1e-5)


def test_a_saved_density_run_loads_and_counts_without_herdcount(tmp_path):
    # Trained with RecoverableReLU (a herdcount layer); saved with Keras's ReLU in its place.
    model = make_density_model(3, width=8, depth=2)
    batch = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    save_model_run(
        tmp_path, model, {"kind": "density", "class_names": ["a", "b", "c"], **describe_density_model(model)}
    )
    np.save(tmp_path / "batch.npy", batch)
    script = (
        "import sys, keras, numpy as np\n"
        "m = keras.models.load_model(sys.argv[1] + '/model.keras', compile=False)\n"
        "assert not [n for n in sys.modules if n.startswith('herdcount')], 'herdcount was imported'\n"
        "print(sorted({type(layer).__module__.split('.')[0] for layer in m.layers}))\n"
        "np.save(sys.argv[1] + '/out.npy', m.predict(np.load(sys.argv[1] + '/batch.npy'), verbose=0))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['keras']"
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"), model.predict(batch, verbose=0), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("tile", [64, 136, 512])
def test_density_model_counts_do_not_depend_on_tiling(tile):
    keras.utils.set_random_seed(1)
    model = make_density_model(2, width=8, depth=4)
    # Positive biases so that every layer passes signal and borders would show.
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.full(layer.bias.shape, 0.05, np.float32))
    image = np.random.default_rng(2).integers(0, 255, (300, 420, 3), dtype=np.uint8)
    predict = lambda batch: model(batch, training=False).numpy()  # noqa: E731
    whole = predict(pad_to_stride(image, 8)[None])[0]
    assert whole.sum() > 0
    tiled = density_map(image, predict, stride=8, tile=tile, margin=72)
    np.testing.assert_allclose(tiled, whole, rtol=1e-4, atol=1e-5)


def test_each_dot_of_a_target_sums_to_one_even_at_the_border():
    points = [[4, 4], [60.5, 30], [127, 127], [0, 100]]
    target = density_target(points, [0, 1, 1, 2], 3, (16, 16), stride=8, sigma=1.5)
    assert target.shape == (16, 16, 3)
    np.testing.assert_allclose(target.sum(axis=(0, 1)), [1, 2, 1], rtol=1e-5)
    row, col = np.unravel_index(np.argmax(target[..., 0]), (16, 16))
    assert (row, col) == (0, 0)


def test_centre_heatmaps_mark_each_animal_with_a_one_and_fall_off_around_it():
    # Two pups 12 px apart (their Gaussians overlap), a cow, and a bull 6 px past the grid.
    points = [[20, 30], [20, 42], [60, 60], [-6, 10]]
    heat = centre_target(points, [2, 2, 1, 0], 3, (10, 10), stride=8, sigma=1.0)
    assert heat.shape == (10, 10, 3) and heat.dtype == np.float32
    assert sorted(zip(*np.nonzero(heat == 1.0))) == [(2, 3, 2), (2, 5, 2), (7, 7, 1)]
    # Between the pups (cell centre 20, 36), 0.75 cells from each: the larger, not the sum.
    np.testing.assert_allclose(heat[2, 4, 2], np.exp(-(0.75**2) / 2), rtol=1e-6)
    np.testing.assert_allclose(heat[1, 3, 2], np.exp(-(1.0**2 + 0.25**2) / 2), rtol=1e-6)
    # The bull outside the grid has no cell of 1 but marks the top row near it.
    assert heat[..., 0].max() < 1 and heat[0, 1, 0] == pytest.approx(np.exp(-(1.25**2 + 0.25**2) / 2))
    assert heat[:4, :, 1].max() == 0 and heat[6:, :, 2].max() == 0  # each class its own map
    with pytest.raises(ValueError, match=r"class indices must be in 0\.\.2"):
        centre_target(points, [0, 1, 2, 3], 3, (10, 10))


def test_sampled_tiles_carry_the_heatmaps_after_the_density_maps():
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    points, classes = rng.uniform(10, 246, (12, 2)), rng.integers(0, 2, 12)
    plain = sample_tile(photo, points, classes, 2, np.random.default_rng(1), size=256)
    both = sample_tile(photo, points, classes, 2, np.random.default_rng(1), size=256, centres=True)
    assert both.target.shape == (32, 32, 4)
    np.testing.assert_array_equal(both.target[..., :2], plain.target)
    np.testing.assert_array_equal(both.target[..., 2:], centre_target(points, classes, 2, (32, 32)))


def test_the_centre_loss_is_the_focal_loss_added_to_the_density_loss():
    rng = np.random.default_rng(4)
    target = np.zeros((2, 6, 6, 2), np.float32)
    target[0, 2, 3, 1] = target[1, 4, 4, 0] = target[1, 1, 1, 0] = 1.0
    # A heatmap of zeros misses each centre at -log(1e-4) (the clip) per centre, averaged.
    missed = centre_focal_loss(target, np.zeros_like(target), np.ones((2, 6, 6, 1), np.float32))
    np.testing.assert_allclose(np.asarray(missed), -np.log(1e-4) * (1 - 1e-4) ** 2, rtol=1e-4)
    exact = centre_focal_loss(target, target, np.ones((2, 6, 6, 1), np.float32))
    assert np.asarray(exact).max() < 1e-3
    density = rng.uniform(0, 0.2, (2, 6, 6, 2)).astype(np.float32)
    predicted = rng.uniform(0, 0.2, (2, 6, 6, 2)).astype(np.float32)
    weight = (rng.random((2, 6, 6, 1)) > 0.2).astype(np.float32)
    heat = rng.uniform(0, 1, (2, 6, 6, 2)).astype(np.float32)
    alone = DensityLoss(class_weights=[1.0, 2.0])(np.concatenate([density, weight], -1), predicted)
    both = DensityLoss(class_weights=[1.0, 2.0], centre_weight=0.5)(
        np.concatenate([density, target, weight], -1), np.concatenate([predicted, heat], -1)
    )
    focal = np.asarray(centre_focal_loss(target, heat, weight)).mean()
    np.testing.assert_allclose(float(both), float(alone) + 0.5 * focal, rtol=1e-5)
    # The count error of the density maps alone, whatever the heatmaps hold.
    np.testing.assert_allclose(
        np.asarray(
            density_count_error(2)(
                np.concatenate([density, target, weight], -1), np.concatenate([predicted, heat], -1)
            )
        ),
        np.asarray(tile_count_error(np.concatenate([density, weight], -1), predicted)),
        rtol=1e-6,
    )


def test_the_centre_head_shares_the_density_models_layers():
    model = make_density_model(3, width=8)
    fitted = with_centre_head(model)
    tile = np.random.default_rng(0).integers(0, 255, (1, 64, 96, 3), dtype=np.uint8)
    both = np.asarray(fitted(tile, training=False))
    assert both.shape == (1, 8, 12, 6) and ((both[..., 3:] > 0) & (both[..., 3:] < 1)).all()
    np.testing.assert_allclose(both[..., :3], np.asarray(model(tile, training=False)), rtol=1e-6)
    assert {w.path for w in model.weights} < {w.path for w in fitted.weights}
    assert len(fitted.layers) == len(model.layers) + 2


def test_tiles_of_a_photo_add_up_to_its_counts():
    rng = np.random.default_rng(5)
    points = rng.uniform(0, [200, 300], (40, 2))
    classes = rng.integers(0, 4, 40)
    whole = density_target(points, classes, 4, (25, 38), stride=8, bounds=(200, 300))
    parts = sum(
        density_target(points, classes, 4, (13, 19), stride=8, origin=(top, left), bounds=(200, 300)).sum(
            axis=(0, 1)
        )
        for top in (0, 104)
        for left in (0, 152)
    )
    np.testing.assert_allclose(parts, np.bincount(classes, minlength=4), rtol=1e-5)
    np.testing.assert_allclose(whole.sum(axis=(0, 1)), np.bincount(classes, minlength=4), rtol=1e-5)


@pytest.mark.parametrize("scale", [0.5, 0.8, 1.0, 1.6])
def test_scale_augmentation_keeps_the_counts_and_moves_the_dots(scale):
    rng = np.random.default_rng(6)
    side = round(256 / scale)  # the tile covers the whole photo at this scale
    photo = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    points = rng.uniform(5, side - 5, (25, 2))
    classes = rng.integers(0, 3, 25)
    tile = sample_tile(photo, points, classes, 3, rng, size=256, scale=scale)
    assert tile.image.shape == (256, 256, 3) and tile.target.shape == (32, 32, 3)
    np.testing.assert_allclose(tile.target.sum(axis=(0, 1)), np.bincount(classes, minlength=3), rtol=1e-4)
    one = sample_tile(photo, points[:1], [0], 1, rng, size=256, scale=scale, sigma=0.4)
    expected = np.floor(points[0] * 256 / side / 8)
    np.testing.assert_array_equal(np.unravel_index(np.argmax(one.target[..., 0]), (32, 32)), expected)


def test_masked_cells_get_zero_weight_at_any_scale():
    rng = np.random.default_rng(8)
    photo = np.zeros((512, 512, 3), np.uint8)
    masked = np.zeros((64, 64), bool)
    masked[:, :32] = True  # the left half of the photo
    for scale, size in ((1.0, 512), (0.5, 256)):
        tile = sample_tile(photo, np.zeros((0, 2)), [], 2, rng, size=size, scale=scale, masked=masked)
        cells = size // 8
        np.testing.assert_array_equal(tile.weight[:, : cells // 2], 0)
        np.testing.assert_array_equal(tile.weight[:, cells // 2 :], 1)


def test_augmentation_moves_maps_with_the_pixels():
    rng = np.random.default_rng(9)
    photo = np.zeros((256, 256, 3), np.uint8)
    photo[8:16, 200:208] = 255  # a bright block on the cell of the dot
    tile = sample_tile(photo, [[12, 204]], [0], 1, rng, size=256, scale=1.0, sigma=0.3)
    for _ in range(8):
        moved = augment(tile, rng, brightness=0, contrast=0)
        cell = np.unravel_index(np.argmax(moved.target[..., 0]), (32, 32))
        bright = np.unravel_index(
            np.argmax(moved.image[..., 0].reshape(32, 8, 32, 8).sum(axis=(1, 3))), (32, 32)
        )
        assert cell == bright
        assert moved.target.sum() == pytest.approx(1, rel=1e-5)


def test_split_is_by_photo_repeatable_and_disjoint():
    ids = [str(i) for i in range(20)]
    train, val = split_photos(ids, val_fraction=0.25, seed=3)
    assert not set(train) & set(val) and sorted(train + val, key=int) == ids and len(val) == 5
    assert split_photos(ids, val_fraction=0.25, seed=3) == (train, val)
    assert split_photos(ids, val_fraction=0.25, seed=4) != (train, val)
    with pytest.raises(ValueError, match="too few"):
        split_photos(["1", "2"])


def test_weight_average_validates_and_keeps_the_running_mean_of_the_weights():
    import keras

    from herdcount.models.train_density import WeightAverage

    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = np.random.default_rng(0).normal(size=(40, 3)), np.random.default_rng(1).normal(size=(40, 2))
    steps, validated, begun = [], [], []

    class Steps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append([w.copy() for w in self.model.get_weights()])

    class Validation(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            begun.append([w.copy() for w in self.model.get_weights()])

        def on_epoch_end(self, epoch, logs=None):
            validated.append([w.copy() for w in self.model.get_weights()])

    total = [np.zeros_like(w, dtype=float) for w in model.get_weights()]
    callbacks = [Steps(), WeightAverage(0.5), Validation()]
    model.fit(x, y, batch_size=10, epochs=3, shuffle=False, verbose=0, callbacks=callbacks)
    expected = []
    for step, weights in enumerate(steps):
        # Each step's weights count 0.5 ** age, normalised over the steps so far.
        total = [0.5 * t + 0.5 * w for t, w in zip(total, weights)]
        if step % 4 == 3:  # 4 batches an epoch
            expected.append([t / (1 - 0.5 ** (step + 1)) for t in total])
    # Callbacks after it see the average at each epoch's end, and the run keeps the last
    # one; training went on from the last step's weights, which differ from the average.
    assert len(validated) == len(expected) == 3
    for got, want in zip([*validated, model.get_weights()], [*expected, expected[-1]]):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
    assert not np.allclose(steps[-1][0], expected[-1][0])
    for epoch in (1, 2):
        for g, w in zip(begun[epoch], steps[4 * epoch - 1]):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("recoverable", [True, False])
def test_a_density_channel_pushed_below_zero_everywhere_comes_back_only_if_recoverable(recoverable):
    """A class's output channel driven negative over every cell (a bad step early in
    training) gets no gradient through a plain ReLU and stays at zero for good; the
    density model's output layer keeps a slope below zero in training, and learns again."""
    from herdcount.models.builders import RecoverableReLU

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,))
    x = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(-5.0))(inputs)
    x = RecoverableReLU()(x) if recoverable else keras.layers.ReLU()(x)
    model = keras.Model(inputs, x)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    features = np.random.default_rng(0).uniform(0, 1, (256, 4)).astype("float32")
    target = features.sum(axis=1, keepdims=True)
    assert float(np.abs(model.predict(features, verbose=0)).max()) == 0.0  # dead at the start
    model.fit(features, target, epochs=40, batch_size=32, verbose=0)
    predicted = model.predict(features, verbose=0)
    if recoverable:
        assert float(np.abs(predicted - target).mean()) < 0.3 and (predicted >= 0).all()
    else:
        assert float(np.abs(predicted).max()) == 0.0
    # Its values are the ReLU's in training too; only the gradient below zero differs.
    layer = RecoverableReLU(slope=0.1)
    values = tf.constant([[-2.0, 3.0]])
    with tf.GradientTape() as tape:
        tape.watch(values)
        out = layer(values, training=True)
    np.testing.assert_allclose(out, [[0.0, 3.0]])
    np.testing.assert_allclose(tape.gradient(out, values), [[0.1, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(layer(values), [[0.0, 3.0]])
    with pytest.raises(ValueError, match="slope must be in"):
        RecoverableReLU(slope=1.5)
