"""RUN/ through ModelRun alone, and kinds through their registry (herdcount.modelrun, herdcount.kinds)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.intervals import write_validation_counts
from herdcount.kinds import CLASSIFIER, DENSITY, KINDS, SCALE, kind_of
from herdcount.modelrun import VERSION, ModelRun

ROOT = Path(__file__).resolve().parents[1]

DENSITY_RUN = {
    "kind": "density",
    "class_names": ["bull", "cow", "pup"],
    "input_scale": 0.53,
    "class_lengths_px": {"bull": 137.0, "cow": 100.0, "pup": 54.0},
    "training_scale_range": [0.85, 1.15],
    "tile_size": 256,
    "output_stride": 8,
    "receptive_field": 144,
    "margin": 72,
    "flops_per_megapixel": 9.6e9,
    "training_data": {"extract": "/x", "train_ids": ["a"], "val_ids": ["b", "c"], "epoch_chosen_on": ["b"]},
    "metrics": {"val_rmse": 1.5},
    "epochs_run": 24,
    "seed": 0,
}


def _finished(folder: Path, description: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(description))
    (folder / "model.keras").write_bytes(b"")
    return folder


def test_a_written_run_reads_back_field_for_field(tmp_path):
    run = ModelRun.from_description(tmp_path, {**DENSITY_RUN, "version": VERSION})
    run.write()
    (tmp_path / "model.keras").write_bytes(b"")
    again = ModelRun.read(tmp_path)
    assert again == run
    assert again.training_scale_range == (0.85, 1.15) and again.class_names == ("bull", "cow", "pup")
    written = json.loads((tmp_path / "model.json").read_text())
    assert list(written)[:3] == ["version", "kind", "class_names"] and written["version"] == VERSION
    assert again.model_kind is DENSITY and again.epoch_chosen_on == ["b"] and again.held_out == ["b", "c"]


def test_a_file_of_an_earlier_herdcount_reads_as_version_0(tmp_path):
    old = {**DENSITY_RUN, "training_scale_range": None}
    run = ModelRun.read(_finished(tmp_path, old))
    assert run.version == 0 and run.training_scale_range is None and run.input_scale == 0.53


def test_without_epoch_record_every_held_out_photo_may_have_chosen(tmp_path):
    data = {k: v for k, v in DENSITY_RUN["training_data"].items() if k != "epoch_chosen_on"}
    run = ModelRun.read(_finished(tmp_path, {**DENSITY_RUN, "training_data": data}))
    assert run.epoch_chosen_on is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "regression"}, "kind 'regression' is not one of ['classifier', 'density', 'scale']"),
        ({"version": VERSION + 1}, f"version {VERSION + 1} is newer than this herdcount reads"),
        ({"colour": "red"}, "unknown fields ['colour']"),
        ({"margin": None}, "a density model needs ['margin']"),
    ],
)
def test_a_description_that_is_not_a_models_names_the_file_and_field(tmp_path, change, message):
    folder = _finished(tmp_path, {**DENSITY_RUN, **change})
    with pytest.raises(ValueError) as error:
        ModelRun.read(folder)
    assert str(error.value).startswith(str(folder / "model.json"))
    assert message in str(error.value)


def test_missing_files_say_which(tmp_path):
    with pytest.raises(ValueError, match="does not exist; expected the --out folder of herdcount train"):
        ModelRun.read(tmp_path / "none")
    (tmp_path / "model.json").write_text(json.dumps(DENSITY_RUN))
    with pytest.raises(ValueError, match=r"has no model\.keras"):
        ModelRun.read(tmp_path)
    (tmp_path / "model.keras").write_bytes(b"")
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"model\.json: unreadable"):
        ModelRun.read(tmp_path)


def test_validation_counts_come_through_the_run(tmp_path):
    run = ModelRun.read(_finished(tmp_path, DENSITY_RUN))
    assert run.validation_counts() is None
    true, predicted = np.array([[1.0, 2, 3], [4, 5, 6]]), np.array([[1.5, 2, 2], [4, 4, 7]])
    write_validation_counts(
        tmp_path / "validation_counts.csv", ["b", "c"], true, predicted, list(run.class_names)
    )
    counts = run.validation_counts()
    assert counts.ids == ["b", "c"]
    np.testing.assert_allclose(counts.predicted, predicted)


def test_kinds_answer_for_themselves():
    config = load_config(DEFAULT_SCHEME)
    assert list(KINDS) == ["classifier", "density", "scale"]
    assert CLASSIFIER.class_names(config) == [*config.class_names, config.background_class]
    assert DENSITY.class_names(config) == list(config.class_names)
    assert [k.name for k in KINDS.values() if k.counts_rasters] == ["density"]
    assert not SCALE.counts_animals and SCALE.needs == ("tile_size",)
    assert CLASSIFIER.exports == ("model.tflite", "maps.tflite")
    with pytest.raises(ValueError, match="kind 'sizes' is not one of"):
        kind_of("sizes")
    run = ModelRun.from_description("r", {"kind": "classifier", "class_names": ["a", "bg"], "patch_size": 64})
    assert CLASSIFIER.check_stride(run, None) == 64 and CLASSIFIER.check_stride(run, 32) == 32
    with pytest.raises(ValueError, match="multiple of 8 below it, got 30"):
        CLASSIFIER.check_stride(run, 30)
    with pytest.raises(ValueError, match="--stride is for classifier models"):
        DENSITY.check_stride(ModelRun.from_description("r", DENSITY_RUN), 16)


def _code(*folders: str):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, path.read_text()


def test_model_json_is_read_only_through_model_run():
    # Outside herdcount.modelrun no module opens model.json itself or looks a field up in it.
    for path, text in _code("lib/herdcount", "models"):
        if path.name == "modelrun.py":
            continue
        assert not re.search(r"json\.loads\([^)]*model\.json", text), path
        assert not re.search(r'\binfo\["', text), path


def test_kinds_are_named_only_in_the_registry():
    # A kind compared or switched on by its name outside herdcount.kinds is the string
    # switch the registry replaced.
    switch = re.compile(
        r'(==|!=|\bin)\s*\(?\s*"(density|classifier|scale)"|"(density|classifier|scale)"\s*:\s*\w+_'
    )
    for path, text in _code("lib/herdcount", "models"):
        if path.name == "kinds.py":
            continue
        assert not switch.search(text), (path, switch.search(text))


def test_int8_is_chosen_only_where_it_exists_and_its_check_passed(tmp_path):
    from herdcount.count_inputs import resolve_precision
    from herdcount.predictors import INT8

    plain = ModelRun.read(_finished(tmp_path / "plain", DENSITY_RUN))
    assert resolve_precision(plain, "auto") == "float" and resolve_precision(plain, "float") == "float"
    with pytest.raises(ValueError, match="has no int8 export; count with --precision float"):
        resolve_precision(plain, "int8")
    for passed, chosen in ((True, "int8"), (False, "float")):
        folder = _finished(tmp_path / str(passed), {**DENSITY_RUN, "int8": {"passed": passed}})
        (folder / INT8).write_bytes(b"")
        run = ModelRun.read(folder)
        assert resolve_precision(run, "auto") == chosen and resolve_precision(run, "int8") == "int8"
    with pytest.raises(ValueError, match="--precision must be one of auto, int8, float, got 'half'"):
        resolve_precision(plain, "half")
