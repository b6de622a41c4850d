import numpy as np
import pytest

from herdcount.patches import crop_centred, patch_origin, sample_background, thumbnails


def ramp(shape=(100, 120)):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.int32)


def test_window_is_centred_away_from_the_border():
    assert patch_origin((50, 60), 64, (200, 200)) == (18, 28)


@pytest.mark.parametrize(
    ("centre", "expected"),
    [((2, 2), (0, 0)), ((99, 119), (36, 56)), ((2, 119), (0, 56)), ((50, 0), (18, 0))],
)
def test_window_near_the_border_is_shifted_inside(centre, expected):
    assert patch_origin(centre, 64, (100, 120)) == expected


def test_crop_has_full_size_and_the_right_pixels_at_the_border():
    img = ramp()
    crop = crop_centred(img, (1, 118), 64)
    assert crop.shape == (64, 64, 3)
    assert crop[0, 0, 0] == 0 and crop[0, -1, 1] == 119


def test_thumbnails_shift_diagonally_by_each_offset():
    img = ramp((200, 200))
    crops = thumbnails(img, (100, 100), 64, (-1, 0, 1))
    assert [tuple(c[0, 0, :2]) for c in crops] == [(67, 67), (68, 68), (69, 69)]


def test_window_larger_than_the_photo_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        patch_origin((5, 5), 64, (32, 200))


def test_background_patches_keep_away_from_dots_and_from_each_other():
    dots = np.array([[100, 100], [300, 400], [250, 50]])
    corners = sample_background((400, 500), dots, 15, size=64, min_distance=40, rng=np.random.default_rng(0))
    assert len(corners) == 15
    for top, left in corners:
        assert 0 <= top <= 400 - 64 and 0 <= left <= 500 - 64
        nearest_r = np.clip(dots[:, 0], top, top + 63)
        nearest_c = np.clip(dots[:, 1], left, left + 63)
        assert np.hypot(dots[:, 0] - nearest_r, dots[:, 1] - nearest_c).min() >= 40
    for i, a in enumerate(corners):
        for b in corners[i + 1 :]:
            assert np.abs(a - b).max() >= 64


def test_background_patches_never_touch_masked_cells():
    masked = np.zeros((50, 50), dtype=bool)  # 8 px cells over a 400x400 photo
    masked[:, :25] = True  # left half masked
    corners = sample_background(
        (400, 400), np.zeros((0, 2)), 5, size=64, masked=masked, block=8, rng=np.random.default_rng(1)
    )
    assert len(corners) == 5
    assert (corners[:, 1] >= 200).all()


def test_background_is_repeatable_for_a_seed_and_empty_when_there_is_no_room():
    args = ((300, 300), np.array([[150, 150]]), 5)
    a = sample_background(*args, rng=np.random.default_rng(3))
    b = sample_background(*args, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    full = np.ones((10, 10), dtype=bool)
    assert sample_background((80, 80), [], 5, masked=full).shape == (0, 2)
    assert sample_background((300, 300), [], 0).shape == (0, 2)
