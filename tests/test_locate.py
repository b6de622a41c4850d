"""Points per animal from density maps and classified windows: animals planted at known
places are found within the radius, and points agree with the rounded counts."""

import json

import numpy as np
import pytest

from herdcount.locate import Points, density_points, patch_points, points_geojson
from herdcount.models.targets import density_target
from herdcount.points import match_points, score_points


def planted(rng, n, shape, *, apart, n_classes=5):
    """``n`` points at least ``apart`` pixels from every other point of their class."""
    points, classes = [], []
    while len(points) < n:
        p, k = rng.uniform((0, 0), shape), int(rng.integers(n_classes))
        if all(np.hypot(*(p - q)) >= apart for q, c in zip(points, classes) if c == k):
            points.append(p)
            classes.append(k)
    return np.array(points), np.array(classes)


@pytest.mark.parametrize("apart", [16, 24, 40])
def test_animals_planted_as_the_training_targets_are_found_where_they_are(apart):
    rng = np.random.default_rng(apart)
    shape = (700, 900)
    truth, classes = planted(rng, 250, shape, apart=apart)
    density = density_target(truth, classes, 5, (88, 113), stride=8, bounds=shape)
    found = density_points(density, stride=8)
    np.testing.assert_array_equal(found.counts(5), np.bincount(classes, minlength=5))
    scores = score_points(found.coords, found.classes, truth, classes, 5, radius=20)
    assert scores.f1.min() >= (0.99 if apart >= 24 else 0.97), scores.f1
    pairs = match_points(found.coords, truth, radius=20)
    errors = np.hypot(*(found.coords[pairs[:, 0]] - truth[pairs[:, 1]]).T)
    assert np.median(errors) < 2.5 and errors.max() < 12, (np.median(errors), errors.max())
    assert (found.scores > 0.5).mean() > 0.95 and found.scores.max() <= 1


def test_points_per_class_equal_the_rounded_count_and_faint_peaks_fill_the_remainder():
    density = np.zeros((40, 40, 2))
    density[5, 5, 0], density[20, 30, 0], density[30, 10, 0] = 1.0, 0.7, 0.2  # 1.9 adult males
    density[10, 10, 1] = 0.4  # 0.4 of a pup: rounds to none
    found = density_points(density, stride=8)
    np.testing.assert_array_equal(found.counts(2), [2, 0])
    # The whole animal and the larger remainder; the 0.2 peak is left out.
    np.testing.assert_allclose(sorted(found.coords.tolist()), [[44.0, 44.0], [164.0, 244.0]])
    np.testing.assert_allclose(sorted(found.scores), [0.7, 1.0])
    # Given counts win over the map's sums (the count job passes the submission's).
    assert len(density_points(density, stride=8, counts=[3, 1])) == 4


def test_two_animals_in_one_peak_become_two_points_on_either_side():
    truth = np.array([[100.0, 100.0], [100.0, 111.0]])  # 11 px apart: one peak of mass 2
    density = density_target(truth, [0, 0], 1, (30, 30), stride=8)
    found = density_points(density, stride=8)
    assert len(found) == 2
    assert len(match_points(found.coords, truth, radius=6)) == 2


def test_no_density_no_points_and_bad_input_is_refused():
    assert len(density_points(np.zeros((10, 10, 3)), stride=8)) == 0
    with pytest.raises(ValueError, match="shape"):
        density_points(np.zeros((10, 10)), stride=8)
    with pytest.raises(ValueError, match="one number per class"):
        density_points(np.zeros((10, 10, 3)), stride=8, counts=[1, 2])


def test_a_flat_plateau_is_one_peak_not_one_per_cell():
    density = np.zeros((20, 20, 1))
    density[5:7, 5:7, 0] = 0.25
    found = density_points(density, stride=8)
    assert len(found) == 1
    np.testing.assert_allclose(found.coords, [[48.0, 48.0]])


def test_tiles_won_by_an_animal_class_are_points_at_their_centres():
    scores = np.zeros((3, 4, 3))
    scores[..., 2] = 0.9  # background everywhere
    scores[0, 1] = [0.8, 0.1, 0.1]
    scores[2, 3] = [0.1, 0.6, 0.3]  # hangs over the photo's edge
    found = patch_points(scores, 2, patch=64, stride=64, shape=(150, 250))
    np.testing.assert_allclose(found.coords, [[31.5, 95.5], [149.0, 223.5]])
    np.testing.assert_array_equal(found.classes, [0, 1])
    np.testing.assert_allclose(found.scores, [0.8, 0.6])


def test_overlapping_windows_keep_the_best_one_per_half_patch_up_to_the_count():
    scores = np.zeros((10, 10, 2))
    scores[..., 1] = 0.5
    for (r, c), s in {(2, 2): 0.9, (2, 3): 0.8, (3, 2): 0.7, (8, 8): 0.6}.items():
        scores[r, c] = [s, 0.1]
    found = patch_points(scores, 1, patch=64, stride=16)
    # (2, 3) and (3, 2) lie 16 px from the best window, within half a patch: one animal.
    np.testing.assert_allclose(found.coords, [[63.5, 63.5], [159.5, 159.5]])
    assert len(patch_points(scores, 1, patch=64, stride=16, counts=[1])) == 1


def test_points_read_back_and_map_back_through_a_resize():
    points = Points(np.array([[10.0, 20.0], [5.5, 7.25]]), np.array([1, 0]), np.array([0.9, 0.31]))
    assert Points.from_dict(json.loads(json.dumps(points.to_dict()))) == Points(
        np.array([[10.0, 20.0], [5.5, 7.2]]), np.array([1, 0]), np.array([0.9, 0.31])
    )
    # Counted at half size: pixel centres map to pixel centres of the original.
    np.testing.assert_allclose(points.resized(0.5, 0.25).coords, [[20.5, 81.5], [11.5, 30.5]])
    collection = json.loads(points_geojson(points, ["a", "b"], name="Test/3.jpg"))
    assert collection["type"] == "FeatureCollection" and collection["name"] == "Test/3.jpg"
    first = collection["features"][0]
    assert first["geometry"] == {"type": "Point", "coordinates": [20.0, 10.0]}
    assert first["properties"] == {"class": "b", "score": 0.9}
