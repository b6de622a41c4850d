import numpy as np
import pytest

from herdcount.patches import tile_grid
from herdcount.tiling import density_map, masked_counts, pad_to_stride


@pytest.mark.parametrize(
    ("shape", "tile", "margin"),
    [((96, 160), 32, 16), ((64, 64), 64, 0), ((40, 200), 48, 24), ((24, 24), 64, 32)],
)
def test_kept_parts_of_the_tiles_cover_the_photo_exactly_once(shape, tile, margin):
    cover = np.zeros(shape, int)
    tiles = tile_grid(shape, tile, margin, stride=8)
    sizes = {(t.read[2] - t.read[0], t.read[3] - t.read[1]) for t in tiles}
    assert sizes == {(min(tile + 2 * margin, shape[0]), min(tile + 2 * margin, shape[1]))}
    for t in tiles:
        top, left, bottom, right = t.keep
        cover[top:bottom, left:right] += 1
        wt, wl, wb, wr = t.read
        assert 0 <= wt <= top and bottom <= wb <= shape[0] and 0 <= wl <= left and right <= wr <= shape[1]
        # Context: the margin on every side, or the photo's own border.
        assert top - wt >= margin or wt == 0
        assert wb - bottom >= margin or wb == shape[0]
        assert left - wl >= margin or wl == 0
        assert wr - right >= margin or wr == shape[1]
    np.testing.assert_array_equal(cover, 1)


@pytest.mark.parametrize(("tile", "margin", "stride"), [(30, 8, 8), (32, 4, 8), (0, 0, 8)])
def test_tile_sizes_off_the_output_grid_are_rejected(tile, margin, stride):
    with pytest.raises(ValueError, match="multiple of stride"):
        tile_grid((64, 64), tile, margin, stride=stride)


def box_sum_model(radius: int, stride: int):
    """A real receptive-field model in numpy: each output cell sums the first channel over
    its block grown by ``radius`` pixels, zero beyond the window (like 'same' padding)."""

    def predict(batch: np.ndarray) -> np.ndarray:
        n, h, w, _ = batch.shape
        padded = np.pad(batch[..., 0].astype(np.float64), ((0, 0), (radius, radius), (radius, radius)))
        out = np.zeros((n, h // stride, w // stride, 1))
        for i in range(h // stride):
            for j in range(w // stride):
                block = padded[
                    :, i * stride : (i + 1) * stride + 2 * radius, j * stride : (j + 1) * stride + 2 * radius
                ]
                out[:, i, j, 0] = block.sum(axis=(1, 2))
        return out

    return predict


@pytest.mark.parametrize("tile", [8, 16, 40, 64, 1024])
def test_tiled_density_equals_the_whole_photo_for_any_tile_size(tile):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (75, 101, 3), dtype=np.uint8)
    predict = box_sum_model(radius=12, stride=8)
    whole = predict(pad_to_stride(image, 8)[None])[0]
    tiled = density_map(image, predict, stride=8, tile=tile, margin=16, batch_size=3)
    assert tiled.shape == (10, 13, 1)
    np.testing.assert_allclose(tiled, whole)


def test_too_small_a_margin_shows_the_tile_borders():
    image = np.random.default_rng(4).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    predict = box_sum_model(radius=12, stride=8)
    whole = predict(image[None])[0]
    assert not np.allclose(density_map(image, predict, stride=8, tile=16, margin=0), whole)


def test_masked_counts_leave_out_masked_cells():
    density = np.ones((4, 6, 2), np.float32)
    masked = np.zeros((4, 6), bool)
    masked[:2, :3] = True
    np.testing.assert_allclose(masked_counts(density, masked, stride=8, block=8), [18, 18])
    np.testing.assert_allclose(masked_counts(density, None, stride=8), [24, 24])
    # A 4 px block grid under a stride 8 map: each cell takes the block under its centre.
    fine = np.zeros((8, 12), bool)
    fine[1, 1] = True  # centre of density cell (0, 0) is pixel (4, 4): block (1, 1)
    np.testing.assert_allclose(masked_counts(density, fine, stride=8, block=4), [23, 23])
