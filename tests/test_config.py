import dataclasses

import pytest

from herdcount.config import config_from_dict, load_config, packaged_text


def test_default_scheme_lists_the_kaggle_columns_and_colours(config):
    assert config.class_names == ["adult_males", "subadult_males", "adult_females", "juveniles", "pups"]
    assert config.dot_colours[0] == (243, 8, 5)
    assert config.dot_colours[4] == (38, 174, 21)
    assert config.background_class == "background"
    assert config.thumbnail_size == 64
    assert config.offsets == (-1, 0, 1)


def test_round_trip_through_plain_data(config):
    assert config_from_dict(config.to_dict()) == config


def test_unknown_top_level_key_is_named(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(packaged_text("sealions.yaml") + "\nthumbnail_sise: 32\n")
    with pytest.raises(ValueError, match="unknown key 'thumbnail_sise'"):
        load_config(path)


def test_unknown_nested_key_is_named_with_its_section(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("classes: [{name: a, dot_rgb: [1, 2, 3]}]\ndots: {treshold: 3}\n")
    with pytest.raises(ValueError, match=r"unknown key dots\.'treshold'"):
        load_config(path)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("classes: [{name: a, dot_rgb: [1, 2, 300]}]", "0..255"),
        ("classes: [{name: a, dot_rgb: [1, 2]}]", "expected 3 values"),
        ("classes: [{name: a, dot_rgb: [1, 2, 3]}, {name: a, dot_rgb: [3, 2, 1]}]", "unique"),
        ("classes: [{name: a, dot_rgb: [1, 2, 3]}]\nthumbnail_size: big", "expected an integer"),
        ("classes: []", "no classes"),
        ("classes: [{name: background, dot_rgb: [1, 2, 3]}]", "also an animal class"),
    ],
)
def test_bad_values_are_rejected_with_the_offending_value(tmp_path, yaml_text, message):
    path = tmp_path / "s.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_config_is_immutable(config):
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.thumbnail_size = 32
