"""The realistic generator (``synth --realism 1``): its truth stays exact."""

import math

import numpy as np
import pytest

from herdcount import realism
from herdcount.dotstyle import score_against_truth
from herdcount.synth import truth_dir, write_survey
from herdcount.synth_scenes import make_scene


def test_no_animal_centre_lies_under_another_and_gulls_keep_clear(config):
    rng = np.random.default_rng(5)
    ground, water = realism.make_ground(rng, 700, 900)
    assert ground.shape == (700, 900, 3) and water.shape == (700, 900)
    scene, animals = make_scene(np.random.default_rng(6), 700, 900, config, density=80, realism=1)
    assert len(animals) > 20 and scene.shape == (700, 900, 3)
    pups = {k for k, c in enumerate(config.classes) if c.name == "pups"}
    for a in animals:
        for b in animals:
            # Pups are drawn first, under everyone, and may be tucked under their mothers;
            # no other animal's dot point is ever under another's outline.
            if a is not b and a.klass not in pups and b.klass not in pups:
                assert not realism.covers(a, b.row, b.col, rim=0.0), (a, b)
    assert any(a.wet for a in animals) and any(not a.wet for a in animals)
    assert len({round(a.bend, 3) for a in animals}) > 10
    img = np.full((700, 900, 3), 100.0, np.float32)
    near = animals[:6]
    clutter = realism.add_clutter(
        img, np.zeros((700, 900), bool), near, np.random.default_rng(10), np.zeros(2)
    )
    gulls = [(r, c) for kind, r, c in clutter if kind == "gull"]
    assert {kind for kind, _, _ in clutter} == {"rock", "kelp", "gull"}
    for r, c in gulls:
        assert all(math.hypot(a.row - r, a.col - c) >= a.length for a in near)


@pytest.mark.slow
def test_a_realistic_survey_is_extracted_dot_by_dot(tmp_path, config):
    data = tmp_path / "data"
    write_survey(
        data,
        n_train=4,
        n_test=2,
        seed=8,
        config=config,
        width=1200,
        height=900,
        density=40,
        n_mismatched=0,
        realism=1,
    )
    total = score_against_truth(str(data), str(truth_dir(data)), config)
    assert (total.truth >= 5).all(), total.truth
    assert (total.precision == 1).all() and (total.recall == 1).all(), (total.precision, total.recall)
    rows = (data / "Train" / "train.csv").read_text().splitlines()[1:]
    assert sum(sum(int(v) for v in r.split(",")[1:]) for r in rows) == int(total.truth.sum())
