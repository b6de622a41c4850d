"""find_dots on planted arrays: known dots on synthetic backgrounds, checked by position."""

import io

import numpy as np
import pytest
from PIL import Image

from herdcount.dot_cells import black_blocks, grow_cells, masked_at, masked_points, noise_threshold
from herdcount.dot_colours import classify_pixels
from herdcount.dots import find_dots

COLOURS = [(243, 8, 5), (244, 8, 242), (87, 46, 10), (25, 56, 176), (38, 174, 21)]


def background(shape=(300, 400), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(120, 12, size=(*shape, 1)) + np.array([5.0, 0.0, -8.0])
    return np.clip(base, 0, 255).astype(np.uint8)


def plant(image, dots, radius=3.0):
    out = image.astype(np.float64)
    rr, cc = np.mgrid[: image.shape[0], : image.shape[1]]
    for row, col, k in dots:
        cover = np.clip(radius + 0.5 - np.hypot(rr - row, cc - col), 0, 1)[..., None]
        out += cover * (np.array(COLOURS[k]) - out)
    return np.clip(out, 0, 255).astype(np.uint8)


def jpeg(image, quality=90):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def assert_found(result, dots, tol=1.0):
    """Every planted dot has exactly one found dot of its class within ``tol`` pixels."""
    got = [(r, c, k) for (r, c), k in zip(result.coords, result.classes)]
    assert len(got) == len(dots), f"found {got}, planted {dots}"
    unused = list(got)
    for er, ec, ek in dots:
        near = [g for g in unused if g[2] == ek and abs(g[0] - er) <= tol and abs(g[1] - ec) <= tol]
        assert len(near) == 1, f"planted {(er, ec, ek)}; found {got}"
        unused.remove(near[0])


def test_each_colour_is_found_at_its_position():
    plain = background()
    dots = [(40.0, 50.0, 0), (60.3, 200.7, 1), (150.0, 120.0, 2), (220.5, 300.2, 3), (270.0, 30.0, 4)]
    result = find_dots(plain, plant(plain, dots), COLOURS)
    assert_found(result, dots, tol=0.5)


@pytest.mark.parametrize("quality", [85, 95])
def test_dots_survive_separate_jpeg_compression(quality):
    plain = background(seed=1)
    dots = [(30.0 + 24 * i, 40.0 + 31 * i, i % 5) for i in range(10)]
    result = find_dots(jpeg(plain, quality), jpeg(plant(plain, dots), quality + 3), COLOURS)
    assert_found(result, dots, tol=1.5)


def test_touching_dots_of_two_colours_are_two_dots():
    plain = background(seed=2)
    dots = [(100.0, 100.0, 2), (100.0, 106.5, 4), (200.0, 200.0, 0), (205.0, 204.0, 3)]
    result = find_dots(jpeg(plain), jpeg(plant(plain, dots)), COLOURS)
    assert_found(result, dots, tol=1.5)


def test_touching_dots_of_one_colour_are_split():
    plain = background(seed=3)
    dots = [(120.0, 120.0, 3), (120.0, 126.0, 3)]
    result = find_dots(plain, plant(plain, dots), COLOURS)
    assert_found(result, dots, tol=1.5)


def test_empty_photo_gives_empty_arrays_of_the_right_shape():
    plain = background(seed=4)
    result = find_dots(plain, plain.copy(), COLOURS)
    assert result.coords.shape == (0, 2)
    assert result.classes.shape == (0,)
    assert result.classes.dtype == np.int64
    assert result.counts(5).tolist() == [0, 0, 0, 0, 0]


def test_black_masked_area_yields_no_dots_and_is_reported_as_masked():
    plain = background((320, 320), seed=5)
    dotted = plain.copy()
    dotted[64:200, 80:240] = 0
    dots = [(20.0, 20.0, 0), (300.0, 300.0, 4)]
    dotted = jpeg(plant(dotted, dots), 88)
    result = find_dots(jpeg(plain, 92), dotted, COLOURS)
    assert_found(result, dots, tol=1.5)
    masked = result.masked
    assert masked[10:23, 12:28].all()  # the black block, in 8 px cells
    assert not masked[:6].any() and not masked[:, :8].any()


def test_dots_on_the_border_are_found():
    plain = background((200, 200), seed=6)
    dots = [(3.0, 100.0, 1), (100.0, 196.0, 3), (196.0, 3.0, 0)]
    result = find_dots(plain, plant(plain, dots), COLOURS)
    assert_found(result, dots, tol=1.0)


def test_photo_size_not_a_multiple_of_the_block():
    plain = background((203, 301), seed=7)
    dots = [(200.0, 150.0, 2), (100.0, 298.0, 4)]
    result = find_dots(plain, plant(plain, dots), COLOURS)
    assert_found(result, dots, tol=1.0)


def test_aligned_and_ragged_photos_give_the_same_dots_and_mask():
    # Whole 8 px cells take a word-wise fast path, ragged edges a general one: they agree.
    plain = background((300, 360), seed=11)
    dotted = plain.copy()
    dotted[90:170, 100:220] = 0
    dots = [(20.0, 30.0, 0), (60.0, 300.0, 1), (200.0, 50.0, 2), (230.0, 310.0, 3), (120.0, 20.0, 4)]
    plain, dotted = jpeg(plain, 92), jpeg(plant(dotted, dots), 88)
    aligned = find_dots(plain[:256, :320], dotted[:256, :320], COLOURS)
    ragged = find_dots(plain[:261, :325], dotted[:261, :325], COLOURS)
    assert_found(aligned, dots, tol=1.5)
    np.testing.assert_allclose(ragged.coords, aligned.coords)
    np.testing.assert_array_equal(ragged.classes, aligned.classes)
    assert aligned.masked[13:20, 14:26].all()
    np.testing.assert_array_equal(ragged.masked[:32, :40], aligned.masked)
    np.testing.assert_array_equal(black_blocks(dotted[:261, :325])[:32, :40], aligned.masked)


def test_change_of_a_colour_that_is_no_dot_colour_is_ignored():
    plain = background(seed=8)
    dotted = plain.copy()
    dotted[100:107, 100:107] = (255, 255, 255)  # a white scratch, no class
    result = find_dots(plain, dotted, COLOURS)
    assert len(result.coords) == 0


def test_classify_pixels_reports_partial_coverage_at_dot_edges():
    plain = np.full((9, 9, 3), 120, np.uint8)
    dotted = plant(plain, [(4.0, 4.0, 3)])
    cover, klass = classify_pixels(plain, dotted, COLOURS)
    assert klass[4, 4] == 3 and cover[4, 4] == pytest.approx(1.0, abs=0.02)
    edge = cover[4, 7]  # 3 px from the centre: half covered
    assert 0.3 < edge < 0.8
    assert klass[0, 0] == -1 and cover[0, 0] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"plain": np.zeros((10, 10, 3), np.uint8), "dotted": np.zeros((10, 11, 3), np.uint8)},
            "differ in shape",
        ),
        ({"plain": np.zeros((10, 10), np.uint8), "dotted": np.zeros((10, 10), np.uint8)}, r"\(H, W, 3\)"),
        ({"plain": np.zeros((10, 10, 3)), "dotted": np.zeros((10, 10, 3))}, "uint8"),
    ],
)
def test_bad_arrays_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        find_dots(colours=COLOURS, **kwargs)


def test_bad_colours_are_rejected():
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(K, 3\)"):
        find_dots(img, img, [(1, 2)])


def test_a_black_level_beyond_127_is_rejected():
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match=r"black_level must be in 0\.\.127, got 128"):
        find_dots(img, img, COLOURS, black_level=128)


def test_black_blocks_mark_mostly_dark_cells_and_grow_them_by_one():
    rng = np.random.default_rng(12)
    dotted = rng.integers(60, 255, (64, 80, 3), dtype=np.uint8)
    dotted[16:32, 40:56] = rng.integers(0, 20, (16, 16, 3))  # 2x2 black cells, JPEG-noisy
    dotted[0:3, 0:8] = 0  # a dark sliver: 3 of 8 rows, not most of the cell
    masked = black_blocks(dotted, black_level=30, block=8)
    expected = np.zeros((8, 10), bool)
    expected[1:5, 4:8] = True
    np.testing.assert_array_equal(masked, expected)
    with pytest.raises(ValueError, match="RGB"):
        black_blocks(dotted[..., 0])


def scatter(shape, n, seed, spacing=24):
    """``n`` dot centres on a grid ``spacing`` apart, jittered, with classes in turn."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(16, shape[0] - 16, spacing), np.arange(16, shape[1] - 16, spacing))
    picks = rng.choice(rows.size, n, replace=False)
    jitter = rng.uniform(-2, 2, (n, 2))
    return [(float(rows.flat[i] + dr), float(cols.flat[i] + dc), i % 5) for i, (dr, dc) in zip(picks, jitter)]


@pytest.mark.parametrize("radius", [2.0, 3.0, 4.0, 5.0])
def test_dots_of_any_radius_are_found_once_and_touching_ones_twice(radius):
    # The footprint is measured, not assumed: the same default settings for every radius.
    plain = background((360, 480), seed=20 + int(radius))
    dots = scatter((240, 480), 24, seed=int(radius), spacing=32)
    gap = 2 * radius + 0.5
    dots += [(300.0, 100.0, 4), (300.0, 100.0 + gap, 4), (300.0, 300.0, 2), (300.0 + gap, 300.0, 0)]
    result = find_dots(jpeg(plain, 92), jpeg(plant(plain, dots, radius=radius), 90), COLOURS)
    assert_found(result, dots, tol=1.5)
    assert result.footprint == pytest.approx(np.pi * radius**2, rel=0.3)


def test_a_given_dot_radius_overrides_the_measurement():
    plain = background(seed=21)
    dots = scatter((300, 400), 12, seed=21)
    result = find_dots(plain, plant(plain, dots, radius=4.0), COLOURS, dot_radius=4.0)
    assert_found(result, dots, tol=1.0)
    assert result.footprint == pytest.approx(np.pi * 16)
    with pytest.raises(ValueError, match="dot_radius"):
        find_dots(plain, plain, COLOURS, dot_radius=-1.0)


def test_dot_colours_are_measured_as_drawn():
    plain = background(seed=22)
    drawn = [(240, 30, 25), (220, 20, 230), (100, 60, 30), (40, 70, 190), (50, 160, 40)]
    dots = scatter((300, 400), 20, seed=22)
    dotted = plain.astype(np.float64)
    rr, cc = np.mgrid[: plain.shape[0], : plain.shape[1]]
    for row, col, k in dots:
        cover = np.clip(3.5 - np.hypot(rr - row, cc - col), 0, 1)[..., None]
        dotted += cover * (np.array(drawn[k]) - dotted)
    result = find_dots(plain, dotted.astype(np.uint8), COLOURS)
    assert_found(result, dots, tol=1.0)
    np.testing.assert_allclose(result.colours.mean, drawn, atol=2.0)
    assert (result.colours.pixels >= 4 * 9).all()


def test_a_brown_dot_drifted_towards_a_dark_animal_is_found():
    # The hard case of real surveys: a brown dot on an animal in shadow, its colour drifted
    # towards the body's: drawn (98, 56, 20) and (95, 50, 22) for the scheme's (87, 46, 10).
    plain = background(seed=23)
    plain[80:140, 80:200] = (70, 58, 46)  # a dark animal
    dots = [(110.0, 110.0, 2), (110.0, 170.0, 2), (40.0, 300.0, 0), (250.0, 60.0, 4)]
    dotted = plain.astype(np.float64)
    rr, cc = np.mgrid[: plain.shape[0], : plain.shape[1]]
    for (row, col, _), colour in zip(dots, [(98, 56, 20), (95, 50, 22), COLOURS[0], COLOURS[4]]):
        cover = np.clip(3.5 - np.hypot(rr - row, cc - col), 0, 1)[..., None]
        dotted += cover * (np.array(colour) - dotted)
    result = find_dots(jpeg(plain, 90), jpeg(dotted.astype(np.uint8), 90), COLOURS)
    assert_found(result, dots, tol=1.5)


def test_a_dark_animal_is_no_mask_but_painted_black_is():
    plain = background((320, 320), seed=24)
    plain[40:72, 40:80] = 22  # a wet pup in shadow, dark in both copies
    dotted = plain.copy()
    dotted[160:300, 160:300] = 0  # painted over by the annotators
    dots = [(56.0, 60.0, 4), (20.0, 200.0, 0)]
    result = find_dots(jpeg(plain, 92), jpeg(plant(dotted, dots), 90), COLOURS)
    assert_found(result, dots, tol=1.5)
    assert not result.masked[4:10, 4:11].any()
    assert result.masked[21:37, 21:37].all()
    blocks = black_blocks(jpeg(plant(dotted, dots), 90), plain=jpeg(plain, 92))
    np.testing.assert_array_equal(blocks, result.masked)


def test_noise_threshold_rises_with_jpeg_noise():
    rng = np.random.default_rng(25)
    textured = np.clip(rng.normal(120, 40, (256, 256, 3)), 0, 255).astype(np.uint8)
    assert noise_threshold(textured, textured) == 16  # no noise: the lowest threshold
    clean = noise_threshold(jpeg(textured, 95), jpeg(textured, 94))
    noisy = noise_threshold(jpeg(textured, 40), jpeg(textured, 45))
    assert 16 <= clean < noisy <= 30


def test_a_small_dot_whose_colour_jpeg_removed_is_classed_by_the_change_around_it():
    # At quality 70 a blue dot of radius 2 on a light animal decodes as a dark grey spot that
    # brown explains best pixel by pixel; summed over the dot's surroundings the change
    # still points to blue.
    for seed in range(4):
        plain = background((300, 400), seed=40 + seed)
        plain = np.clip(plain.astype(int) + (34, 24, 16), 0, 255).astype(np.uint8)
        dots = [(float(r), float(c), 3) for r in range(30, 300, 40) for c in range(30, 400, 60)]
        result = find_dots(jpeg(plain, 92), jpeg(plant(plain, dots, radius=2.0), 70), COLOURS)
        assert_found(result, dots, tol=1.5)


def test_brown_dots_too_faint_for_the_pixel_threshold_are_found_by_their_summed_change():
    # Brown dots on dark animals in a noisy pair saved at quality 70: each pixel changes by
    # less than the pair's noise threshold (26-28 here), so the per-pixel search alone found
    # 67 of these 180 dots. Summed over a dot's area the change stands out of the noise and
    # points from the animal's colour to brown. Every dot reported is a planted one.
    found = reported = 0
    planted = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        plain = background((300, 440), seed=60 + seed)
        plain = np.clip(plain.astype(int) + rng.normal(0, 6, plain.shape), 0, 255).astype(np.uint8)
        dots = []
        for row in range(40, 300, 60):
            for col in range(40, 370, 70):
                animal = np.array((66, 55, 46)) + rng.normal(0, 4, (29, 41, 3))
                plain[row - 14 : row + 15, col - 20 : col + 21] = np.clip(animal, 0, 255)
                dots.append((float(row), float(col), 2))
            dots.append((float(row), 410.0, [0, 1, 3, 4][(row // 60) % 4]))  # visible dots beside
        result = find_dots(jpeg(plain, 72), jpeg(plant(plain, dots), 70), COLOURS)
        got = [(r, c, k) for (r, c), k in zip(result.coords, result.classes)]
        assert all(
            any(k == dk and abs(r - dr) <= 2.5 and abs(c - dc) <= 2.5 for dr, dc, dk in dots)
            for r, c, k in got
        )
        found += sum(
            any(k == dk and abs(r - dr) <= 2.5 and abs(c - dc) <= 2.5 for r, c, k in got)
            for dr, dc, dk in dots
        )
        reported += len(got)
        planted += dots
    assert found >= 0.97 * len(planted), f"found {found} of {len(planted)}"
    assert reported == found


def test_a_dark_animal_at_the_black_level_keeps_its_dot_and_a_mask_over_a_pup_is_a_mask():
    # A wet pup in shadow whose pixels sit at the black level (30) crosses it back and forth
    # between two separate JPEG compressions; that is no mask, and its green dot is found.
    # Black painted over a pup of the scheme's body colour (58, 52, 50) is a mask.
    rng = np.random.default_rng(26)
    plain = background((320, 320), seed=26)
    plain[40:88, 40:100] = np.clip(29 + rng.normal(0, 3, (48, 60, 3)), 0, 255)
    plain[200:260, 200:260] = (58, 52, 50)
    dotted = plain.copy()
    dotted[180:300, 180:300] = 0
    dots = [(64.0, 70.0, 4), (20.0, 200.0, 0)]
    result = find_dots(jpeg(plain, 72), jpeg(plant(dotted, dots), 70), COLOURS)
    assert_found(result, dots, tol=1.5)
    assert not result.masked[5:11, 5:12].any()
    assert result.masked[23:37, 23:37].all()


def test_grow_cells_reaches_whole_cells_past_the_given_pixels():
    masked = np.zeros((12, 12), bool)
    masked[5, 5] = True
    np.testing.assert_array_equal(grow_cells(masked, 0), masked)
    grown = grow_cells(masked, 20, block=8)  # 20 px: three cells of 8 each way
    expected = np.zeros((12, 12), bool)
    expected[2:9, 2:9] = True
    np.testing.assert_array_equal(grown, expected)
    with pytest.raises(ValueError, match="pixels must be >= 0, got -1"):
        grow_cells(masked, -1)


def test_masked_points_looks_up_each_point_as_masked_at_looks_up_a_grid():
    masked = np.zeros((4, 5), bool)
    masked[1, 2] = masked[3, 4] = True
    points = np.array([[9.5, 17.0], [0.0, 0.0], [31.9, 39.0], [40.0, 50.0]])  # the last past the grid
    expected = masked_at(masked, points[:, 0], points[:, 1]).diagonal()
    np.testing.assert_array_equal(masked_points(masked, points), expected)
    np.testing.assert_array_equal(expected, [True, False, True, True])
