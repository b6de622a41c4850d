"""One-to-one point matching within a radius, and per-class scores."""

import numpy as np
import pytest

from herdcount.points import match_points, score_points


def test_each_point_matches_at_most_once_and_the_nearest_pairing_wins():
    found = [(10.0, 10.0), (10.0, 14.0), (100.0, 100.0)]
    truth = [(10.0, 12.5), (10.0, 16.0), (300.0, 300.0)]
    pairs = match_points(found, truth, radius=5.0)
    # Greedy nearest-first would pair found 1 with truth 0 (1.5 px) and leave found 0 alone.
    np.testing.assert_array_equal(pairs, [[0, 0], [1, 1]])


def test_nothing_matches_beyond_the_radius_or_in_empty_sets():
    assert match_points([(0.0, 0.0)], [(0.0, 20.5)], radius=20.0).shape == (0, 2)
    assert match_points(np.zeros((0, 2)), [(1.0, 1.0)]).shape == (0, 2)
    with pytest.raises(ValueError, match="radius"):
        match_points([(0.0, 0.0)], [(0.0, 0.0)], radius=0)


def test_scores_count_matches_per_class_only_within_a_class():
    found = [(0.0, 0.0), (50.0, 50.0), (90.0, 90.0)]
    truth = [(1.0, 1.0), (50.0, 51.0), (200.0, 200.0)]
    scores = score_points(found, [0, 1, 1], truth, [0, 0, 1], 2, radius=3.0)
    np.testing.assert_array_equal(scores.matched, [1, 0])
    np.testing.assert_array_equal(scores.found, [1, 2])
    np.testing.assert_array_equal(scores.truth, [2, 1])
    np.testing.assert_allclose(scores.precision, [1.0, 0.0])
    np.testing.assert_allclose(scores.recall, [0.5, 0.0])
    total = scores + scores
    np.testing.assert_array_equal(total.matched, [2, 0])


def test_each_class_may_have_its_own_radius():
    truth = [[0, 0], [100, 100]]
    found = [[30, 0], [130, 100]]
    # 30 px off each: a large animal's point matches within half its length, a small one's not.
    scores = score_points(found, [0, 1], truth, [0, 1], 2, radius=[50.0, 20.0])
    np.testing.assert_array_equal(scores.matched, [1, 0])
    np.testing.assert_array_equal(score_points(found, [0, 1], truth, [0, 1], 2, radius=40.0).matched, [1, 1])
