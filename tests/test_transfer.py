"""train --init RUN: another run's weights copied layer by layer, output columns matched by
class name, copied layers trained at a reduced rate."""

import json

import keras
import numpy as np
import pytest
from test_train import TINY_DENSITY, density_args

from herdcount.commands import train
from herdcount.models.builders import make_density_model, save_model_run
from herdcount.models.transfer import LayerRateAdam, init_from_run

SOURCE_CLASSES = ["seals", "gulls", "pups"]


@pytest.fixture
def source_run(tmp_path):
    keras.utils.set_random_seed(7)
    model = make_density_model(3, width=8, depth=2)
    # Batch-norm statistics as training leaves them, so copying them is seen.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([w + 0.25 for w in layer.get_weights()])
    run = tmp_path / "source"
    save_model_run(
        run, model, {"kind": "density", "class_names": SOURCE_CLASSES, "output_stride": 8, "margin": 8}
    )
    return run, model


def test_every_layer_is_copied_and_output_columns_follow_the_class_names(source_run):
    run, source = source_run
    keras.utils.set_random_seed(8)
    model = make_density_model(2, width=8, depth=2)
    fresh_out = model.get_layer("density_x100").get_weights()
    reused = init_from_run(model, str(run), "density", ["pups", "walruses"])
    for layer in model.layers:
        if layer.weights and layer.name != "density_x100":
            for mine, theirs in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(mine, theirs)
    kernel, bias = model.get_layer("density_x100").get_weights()
    their_kernel, their_bias = source.get_layer("density_x100").get_weights()
    # pups: the source's third column; walruses: the fresh initialisation.
    np.testing.assert_array_equal(kernel[..., 0], their_kernel[..., 2])
    np.testing.assert_array_equal(kernel[..., 1], fresh_out[0][..., 1])
    assert bias[1] == fresh_out[1][1] and bias[0] == their_bias[2]
    assert reused.classes == ["pups"] and reused.fresh_classes == ["walruses"]
    assert "density_x100" not in reused.layers and "stem4" in reused.layers
    # The same classes: the output layer is copied whole and counts as reused.
    same = make_density_model(3, width=8, depth=2)
    assert "density_x100" in init_from_run(same, str(run), "density", SOURCE_CLASSES).layers


def test_a_source_of_another_size_or_kind_is_refused_naming_what_differs(source_run, tmp_path):
    run, _ = source_run
    with pytest.raises(ValueError, match=r"layer 'stem4' has weights of shapes .* --width and --depth"):
        init_from_run(make_density_model(3, width=16, depth=2), str(run), "density", SOURCE_CLASSES)
    with pytest.raises(ValueError, match="is a density run; this run trains a classifier model"):
        init_from_run(make_density_model(3, width=8, depth=2), str(run), "classifier", SOURCE_CLASSES)
    with pytest.raises(ValueError, match="is not a finished training run"):
        init_from_run(make_density_model(3, width=8, depth=2), str(tmp_path / "none"), "density", [])


def test_copied_layers_step_at_the_reduced_rate():
    inputs = keras.Input((4,))
    slow = keras.layers.Dense(3, name="slow")
    fast = keras.layers.Dense(1, name="fast")
    model = keras.Model(inputs, fast(slow(inputs)))
    model.compile(
        optimizer=LayerRateAdam(learning_rate=0.01, slow_layers=["slow"], slow_factor=0.1), loss="mse"
    )
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.normal(size=(8, 4)), rng.normal(size=(8, 1)))
    moved = [np.abs(a - b).max() for a, b in zip(model.get_weights(), before)]
    # Adam's first step moves each weight by about its rate, whatever the gradient's size.
    assert moved[0] == pytest.approx(0.001, rel=0.05) and moved[2] == pytest.approx(0.01, rel=0.05)
    config = model.optimizer.get_config()
    assert config["slow_layers"] == ["slow"] and config["slow_factor"] == 0.1


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, survey, extracted):
    """A tiny density run of the shared survey: what the runs below start from."""
    first = tmp_path_factory.mktemp("transfer") / "first"
    assert train.main(density_args(extracted, survey, first)) == 0
    return first


@pytest.mark.slow
def test_a_run_started_from_another_keeps_its_weights_close_and_says_so(
    tmp_path, survey, extracted, config, capsys, first_run
):
    first = first_run
    source = keras.models.load_model(first / "model.keras", compile=False)
    second = tmp_path / "second"
    args = density_args(
        extracted, survey, second, "--init", str(first), "--epochs", "1", "--learning-rate", "1e-4"
    )
    assert train.main(args) == 0
    printed = capsys.readouterr().out
    assert "--init" in printed and "the start counts the held-out photos at val_rmse" in printed
    metrics = json.loads((second / "model.json").read_text())["metrics"]
    # The start was validated as epoch 0; whichever won, the run says so and scores it.
    assert metrics["init_start_kept"] == ("no epoch beat the start" in printed)
    if metrics["init_start_kept"]:
        assert metrics["val_rmse"] == pytest.approx(metrics["init_start_val_rmse"], rel=1e-4)
    tuned = keras.models.load_model(second / "model.keras", compile=False)
    # 3 steps at 1e-5 for the copied layers: each weight within a few 1e-5 of the source's.
    # (Trainable weights here; the frozen batch-norm layers are checked below.)
    for layer in tuned.layers:
        theirs = source.get_layer(layer.name).trainable_weights
        for mine, their in zip(layer.trainable_weights, theirs):
            assert np.abs(mine.numpy() - their.numpy()).max() < 1e-3, layer.name
    fresh = make_density_model(len(config.class_names))
    assert (
        np.abs(fresh.get_layer("stem4").get_weights()[0] - tuned.get_layer("stem4").get_weights()[0]).max()
        > 0.01
    )
    init = json.loads((second / "model.json").read_text())["init"]
    assert init["run"] == str(first.resolve()) and init["classes_copied"] == config.class_names
    assert init["classes_fresh"] == [] and init["rate"] == 0.1
    # The copied batch-norm layers kept the source's statistics: frozen in inference mode.
    for name in ("stem4_bn", "conv8_1_bn"):
        for mine, theirs in zip(tuned.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)


@pytest.mark.slow
def test_a_run_fine_tunes_on_an_annotation_file_in_the_init_runs_class_order(
    tmp_path, survey, extracted, config, first_run
):
    """The review loop's last step: corrections (a points CSV) straight into train --init."""
    first = first_run
    names = config.class_names
    # A points CSV of the extracted dots, classes in reverse order of first appearance.
    rows = ["image,x,y,class"]
    for meta in sorted((extracted / "metadata").glob("*.json")):
        record = json.loads(meta.read_text())
        dots = [
            f"{record['filename']},{x},{y},{name}"
            for name in reversed(names)
            for x, y in record[config.annotation_key][name]
        ]
        rows += dots or [f"{record['filename']},,,"]  # a photo without animals
    corrections = tmp_path / "corrections.csv"
    corrections.write_text("\n".join(rows) + "\n")
    tuned = tmp_path / "tuned"
    args = ["--kind", "density", "--init", str(first), "--annotations", str(corrections)]
    args += ["--data", str(survey / "Train"), "--out", str(tuned), *TINY_DENSITY, "--epochs", "1"]
    assert train.main(args) == 0
    described = json.loads((tuned / "model.json").read_text())
    assert described["class_names"] == names and described["init"]["classes_copied"] == names
    extract_run = json.loads((tuned / "extract" / "run.json").read_text())
    assert extract_run["inputs"]["annotations"] == str(corrections.resolve())
    assert sum(1 for _ in (tuned / "extract" / "metadata").glob("*.json")) == len(
        list((extracted / "metadata").glob("*.json"))
    )
    # Sources: exactly one of --extract and --annotations; --annotations needs the images.
    assert train.main(["--kind", "density", "--out", str(tmp_path / "x")]) == 2
    assert (
        train.main(["--kind", "density", "--annotations", str(corrections), "--out", str(tmp_path / "x")])
        == 2
    )
