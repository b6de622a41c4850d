import csv
import json

import numpy as np
from PIL import Image

from herdcount.commands.synth import main
from herdcount.synth import truth_dir, write_survey


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_layout_matches_kaggle(survey, config):
    assert sorted(p.name for p in survey.iterdir()) == [
        "MismatchedTrainImages.txt",
        "Test",
        "Train",
        "TrainDotted",
        "sample_submission.csv",
        "scheme.yaml",  # the scheme flows with the data
    ]
    assert sorted(p.name for p in (survey / "Train").iterdir()) == [
        *(f"{i}.jpg" for i in range(6)),
        "train.csv",
    ]
    assert sorted(p.name for p in (survey / "TrainDotted").iterdir()) == [f"{i}.jpg" for i in range(6)]
    rows = read_csv(survey / "Train" / "train.csv")
    assert rows[0] == ["train_id", *config.class_names]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(6)]
    assert read_csv(survey / "sample_submission.csv")[0] == ["test_id", *config.class_names]
    assert read_csv(survey / "MismatchedTrainImages.txt")[0] == ["train_id"]
    assert len(read_csv(survey / "MismatchedTrainImages.txt")) == 2
    with Image.open(survey / "Train" / "0.jpg") as img:
        assert img.format == "JPEG" and img.size == (900, 700)


def test_truth_lies_beside_the_survey_and_matches_train_csv(survey, config):
    truth = truth_dir(survey)
    assert truth.parent == survey.parent and not (survey / truth.name).exists()
    mismatched = {r[0] for r in read_csv(survey / "MismatchedTrainImages.txt")[1:]}
    for row in read_csv(survey / "Train" / "train.csv")[1:]:
        record = json.loads((truth / "train" / f"{row[0]}.json").read_text())
        if row[0] not in mismatched:
            dots = record[config.annotation_key]
            assert [len(dots[c]) for c in config.class_names] == [int(v) for v in row[1:]]
    counts = read_csv(truth / "test_counts.csv")
    assert counts[0] == ["test_id", *config.class_names] and len(counts) == 3


def test_masked_animals_are_hidden_and_not_dotted(survey, config):
    truth = truth_dir(survey)
    hidden_total = 0
    for i in range(6):
        record = json.loads((truth / "train" / f"{i}.json").read_text())
        if record["mismatched"]:
            continue
        dotted = np.asarray(Image.open(survey / "TrainDotted" / f"{i}.jpg"))
        for points in record["hidden"].values():
            for x, y in points:
                hidden_total += 1
                window = dotted[max(int(y) - 24, 0) : int(y) + 25, max(int(x) - 24, 0) : int(x) + 25]
                assert (window.max(axis=2) < 30).any(), "a hidden animal must lie by a black area"
    assert hidden_total > 0, "the fixture survey should hide some animals under masks"


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, config):
    kwargs = {"n_train": 2, "n_test": 1, "config": config, "width": 320, "height": 240, "density": 80}
    write_survey(tmp_path / "a", seed=5, **kwargs)
    write_survey(tmp_path / "b", seed=5, **kwargs)
    write_survey(tmp_path / "c", seed=6, **kwargs)
    for rel in ["Train/0.jpg", "TrainDotted/1.jpg", "Test/0.jpg", "Train/train.csv"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert (tmp_path / "a/Train/0.jpg").read_bytes() != (tmp_path / "c/Train/0.jpg").read_bytes()


def test_command_line_writes_a_survey(tmp_path, capsys):
    assert (
        main(
            [
                str(tmp_path / "d"),
                "--train",
                "1",
                "--test",
                "1",
                "--seed",
                "2",
                "--width",
                "300",
                "--height",
                "200",
            ]
        )
        == 0
    )
    assert (tmp_path / "d" / "Train" / "0.jpg").is_file()
    assert (tmp_path / "d_truth" / "test" / "0.json").is_file()
    assert main([str(tmp_path / "e"), "--width", "300"]) == 2
    assert "both width and height" in capsys.readouterr().err


def test_a_photo_flown_higher_is_the_ground_below_it_resampled(config):
    """At ground scale 0.5 a test photo is the scene of twice its extent at the training
    altitude, resampled to half: animals, shadows and texture shrink together, positions halve."""
    from herdcount.synth_scenes import make_test_scene

    common = {"density": 60.0}
    low, animals_low = make_test_scene(np.random.default_rng(3), 120, 160, config, scale=0.5, **common)
    ground, animals = make_test_scene(np.random.default_rng(3), 240, 320, config, **common)
    expected = np.asarray(Image.fromarray(ground).resize((160, 120), Image.LANCZOS))
    np.testing.assert_array_equal(low, expected)
    assert len(animals_low) == len(animals) > 0
    np.testing.assert_allclose(
        [(r, c) for r, c, _ in animals_low],
        [((r + 0.5) / 2 - 0.5, (c + 0.5) / 2 - 0.5) for r, c, _ in animals],
    )
    assert [k for *_, k in animals_low] == [k for *_, k in animals]


def test_test_scale_draws_an_altitude_per_photo_and_records_it(tmp_path, config):
    kwargs = {"n_train": 0, "n_test": 12, "config": config, "width": 400, "height": 300, "density": 40}
    truth = write_survey(tmp_path / "alt", seed=3, test_scale=(0.6, 1.6), **kwargs)
    rows = read_csv(truth / "test_scales.csv")
    assert rows[0] == ["test_id", "scale"] and len(rows) == 13
    scales = np.array([float(r[1]) for r in rows[1:]])
    assert ((0.6 <= scales) & (scales <= 1.6)).all() and scales.min() < 0.9 and scales.max() > 1.1
    for i, scale in enumerate(scales):
        record = json.loads((truth / "test" / f"{i}.json").read_text())
        assert record["scale"] == scale
    assert json.loads((truth / "survey.json").read_text())["test_scale"] == [0.6, 1.6]
    # Flown higher, a photo covers more ground and holds more animals: counts grow as 1/scale^2.
    counts = np.array([sum(int(v) for v in r[1:]) for r in read_csv(truth / "test_counts.csv")[1:]])
    high, low = counts[scales < 0.9], counts[scales > 1.1]
    assert high.mean() > 1.5 * low.mean()
    plain = write_survey(tmp_path / "flat", seed=3, **kwargs)
    assert [float(r[1]) for r in read_csv(plain / "test_scales.csv")[1:]] == [1.0] * 12
    assert main([str(tmp_path / "bad"), "--test-scale", "0.1,2"]) == 2
