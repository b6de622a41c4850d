"""Orthomosaics read chunk by chunk: real GeoTIFFs written with rasterio, chunks whose
densities add up exactly to the whole raster's, nodata excluded, map coordinates, and the
generator's georeferenced mosaic."""

import csv
import json

import numpy as np
import pytest
import rasterio
from scipy import ndimage as ndi

from herdcount.imaging import decode_rgb
from herdcount.locate import PEAK_CONTEXT, Peaks, density_peaks, density_points, peak_points
from herdcount.mosaic import (
    RasterError,
    chunk_density,
    map_to_pixel,
    pixel_to_map,
    plan_chunks,
    raster_info,
    read_chunk,
    valid_cells,
    write_geotiff,
)
from herdcount.synth import MOSAIC_CRS, cut_ground, write_survey
from herdcount.synth_scenes import make_test_scene
from herdcount.tiling import density_map

STRIDE, MARGIN = 8, 16
TRANSFORM = (0.05, 0.0, 400_000.0, 0.0, -0.05, 5_200_000.0)


def box_model(batch: np.ndarray) -> np.ndarray:
    """A stand-in density model with context: each 8x8 cell's mean colour, then the mean of
    its 3x3 cells with zeros outside the chunk (receptive field 24 px: margin 16 is enough,
    and a chunk's edge changes what it sees there)."""
    n, h, w, _ = batch.shape
    cells = batch.reshape(n, h // 8, 8, w // 8, 8, 3).mean(axis=(2, 4), dtype=np.float64) / 255
    padded = np.pad(cells, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = sum(padded[:, i : i + h // 8, j : j + w // 8] for i in range(3) for j in range(3)) / 9
    return out.astype(np.float32)


@pytest.fixture(scope="module")
def raster(tmp_path_factory):
    """A 1003 x 690 RGB-and-alpha GeoTIFF (sizes off the stride) with a nodata corner."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(690, 1003, 3), dtype=np.uint8)
    valid = np.ones(rgb.shape[:2], bool)
    valid[500:, 700:] = False
    path = tmp_path_factory.mktemp("raster") / "site.tif"
    write_geotiff(path, rgb, valid, transform=TRANSFORM, crs="EPSG:32633", block=128)
    return path, np.where(valid[..., None], rgb, 0).astype(np.uint8), valid


def test_chunks_partition_the_raster_and_read_their_margin():
    chunks = plan_chunks(690, 1003, chunk=256, margin=MARGIN, stride=STRIDE)
    cover = np.zeros((696, 1008), int)
    for w in chunks:
        kt, kl, kb, kr = w.keep
        cover[kt:kb, kl:kr] += 1
        rt, rl, rb, rr = w.read
        assert rt <= max(kt - MARGIN, 0) and rl <= max(kl - MARGIN, 0)
        assert rb >= min(kb + MARGIN, 696) and rr >= min(kr + MARGIN, 1008)
        assert all(v % STRIDE == 0 for v in (*w.keep, *w.read))
    assert (cover == 1).all()
    assert [w.index for w in chunks] == list(range(3 * 4))
    # A chunk larger than the raster is the raster, read once.
    assert len(plan_chunks(690, 1003, chunk=2048, margin=MARGIN, stride=STRIDE)) == 1
    with pytest.raises(ValueError, match="multiple of stride 8"):
        plan_chunks(690, 1003, chunk=250, margin=MARGIN, stride=STRIDE)


@pytest.mark.parametrize("side", [128, 256, 512, 1024])
def test_chunk_densities_add_up_to_the_whole_rasters_whatever_the_chunk_size(raster, side):
    path, pixels, valid = raster
    info = raster_info(path)
    assert (info.height, info.width, info.bands) == (690, 1003, 4) and info.georeferenced
    whole = density_map(pixels, box_model, stride=STRIDE, tile=1024, margin=MARGIN)
    padded_valid = np.pad(valid, ((0, 6), (0, 5)), mode="edge")
    whole *= valid_cells(padded_valid, STRIDE)[..., None]
    laid = np.full_like(whole, np.nan)
    for chunk in plan_chunks(info.height, info.width, chunk=side, margin=MARGIN, stride=STRIDE):
        rgb, ok = read_chunk(path, chunk, info)
        assert rgb.shape[:2] == (chunk.read[2] - chunk.read[0], chunk.read[3] - chunk.read[1])
        part, (top, left, bottom, right), origin = chunk_density(
            rgb, ok, chunk, box_model, stride=STRIDE, margin=MARGIN, tile=128
        )
        kt, kl, kb, kr = (v // STRIDE for v in chunk.keep)
        assert origin == (chunk.keep[0], chunk.keep[1])
        assert (bottom - top, right - left) == (kb - kt, kr - kl)
        laid[kt:kb, kl:kr] = part[top:bottom, left:right]
    np.testing.assert_allclose(laid, whole, rtol=1e-6, atol=1e-7)
    # The nodata corner counts nothing, the rest does.
    assert laid[63:, 88:].sum() == 0 and laid[:60, :80].sum() > 0


@pytest.mark.parametrize("side", [128, 256, 512])
def test_points_shared_over_the_chunks_peaks_are_the_whole_rasters_points(raster, side):
    # Random blobs of density, some on chunk seams: the chunks' peaks (each chunk reading
    # PEAK_CONTEXT cells more) give the points one map of the whole raster gives.
    info = raster_info(raster[0])
    rng = np.random.default_rng(side)
    shape = (-(-info.height // STRIDE), -(-info.width // STRIDE))
    truth = np.zeros((*shape, 2), np.float32)
    for k in range(2):
        rows, cols = rng.integers(0, shape[0], 120), rng.integers(0, shape[1], 120)
        np.add.at(truth[..., k], (rows, cols), rng.uniform(0.3, 1.2, 120))
    truth = np.stack([ndi.gaussian_filter(truth[..., k], 1.0) for k in range(2)], axis=-1)

    counts = np.rint(truth.sum(axis=(0, 1)))
    whole = density_points(truth, stride=STRIDE, counts=counts)
    margin = MARGIN + PEAK_CONTEXT * STRIDE
    parts = []
    for chunk in plan_chunks(info.height, info.width, chunk=side, margin=margin, stride=STRIDE):
        rt, rl, rb, rr = chunk.read
        region = truth[rt // 8 : rb // 8, rl // 8 : rr // 8]
        padded = np.zeros(((rb - rt) // 8, (rr - rl) // 8, 2), np.float32)
        padded[: region.shape[0], : region.shape[1]] = region

        def model(batch, padded=padded):
            return np.repeat(padded[None], len(batch), axis=0)

        rgb = np.zeros((rb - rt, rr - rl, 3), np.uint8)
        part, box, origin = chunk_density(
            rgb,
            np.ones(rgb.shape[:2], bool),
            chunk,
            model,
            stride=STRIDE,
            margin=margin,
            tile=4096,
            context=PEAK_CONTEXT,
        )
        parts.append(density_peaks(part, stride=STRIDE, keep=box).shifted(origin))
    laid = peak_points(Peaks.concat(parts), counts)
    a, b = (np.lexsort((p.coords[:, 1], p.coords[:, 0], p.classes)) for p in (whole, laid))
    np.testing.assert_array_equal(whole.classes[a], laid.classes[b])
    np.testing.assert_allclose(whole.coords[a], laid.coords[b], atol=1e-6)
    np.testing.assert_allclose(whole.scores[a], laid.scores[b], atol=1e-9)
    assert len(laid) == counts.sum() > 150


def test_bad_rasters_are_errors_naming_the_file_and_what_is_wrong(raster, tmp_path):
    path, _, _ = raster
    data = path.read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    info = raster_info(tmp_path / "cut.tif", "Mosaic/cut.tif")
    chunks = plan_chunks(info.height, info.width, chunk=256, margin=MARGIN, stride=STRIDE)
    with pytest.raises(RasterError, match="could not be read"):
        for chunk in chunks:
            read_chunk(tmp_path / "cut.tif", chunk, info)
    (tmp_path / "junk.tif").write_bytes(b"II*\x00 not a tiff at all")
    with pytest.raises(RasterError, match=r"Mosaic/junk\.tif: not a readable raster"):
        raster_info(tmp_path / "junk.tif", "Mosaic/junk.tif")
    grey = np.zeros((40, 40, 3), np.uint8)

    with rasterio.open(
        tmp_path / "grey.tif", "w", driver="GTiff", height=40, width=40, count=1, dtype="uint16"
    ) as ds:
        ds.write(grey[..., 0].astype(np.uint16), 1)
    with pytest.raises(RasterError, match=r"1 bands of \['uint16'\]; expected 3 \(RGB\) or 4"):
        raster_info(tmp_path / "grey.tif")


def test_map_coordinates_follow_the_transform_both_ways():
    rows, cols = np.array([0.0, 10.5, 689.0]), np.array([0.0, 3.0, 1002.0])
    xs, ys = pixel_to_map(TRANSFORM, rows, cols)
    np.testing.assert_allclose(xs, 400_000.0 + 0.05 * (cols + 0.5))
    np.testing.assert_allclose(ys, 5_200_000.0 - 0.05 * (rows + 0.5))
    back = map_to_pixel(TRANSFORM, xs, ys)
    np.testing.assert_allclose(back, (rows, cols), atol=1e-6)


def test_the_generator_lays_its_test_photos_into_a_georeferenced_mosaic(tmp_path, config):
    data = tmp_path / "data"
    truth = write_survey(
        data, n_train=0, n_test=5, seed=3, config=config, width=420, height=300, density=40, mosaic="laid"
    )
    path = data / "Mosaic" / "survey.tif"
    info = raster_info(path)
    summary = json.loads((truth / "mosaic.json").read_text())
    assert (info.height, info.width) == (2 * 300, 3 * 420) and info.crs == MOSAIC_CRS
    assert tuple(summary["transform"]) == info.transform
    chunk = plan_chunks(info.height, info.width, chunk=2048, margin=0, stride=STRIDE)[0]
    rgb, ok = read_chunk(path, chunk, info)
    for photo, (top, left, h, w) in summary["photos"].items():
        expected = decode_rgb((data / "Test" / f"{photo}.jpg").read_bytes())
        np.testing.assert_array_equal(rgb[top : top + h, left : left + w], expected)
    assert ok[:300, :].all() and not ok[300:, 840:].any()  # the sixth cell of the grid is empty
    with open(truth / "mosaic_points.csv", newline="") as f:
        points = list(csv.DictReader(f))
    with open(truth / "test_counts.csv", newline="") as f:
        total = sum(sum(int(v) for k, v in row.items() if k != "test_id") for row in csv.DictReader(f))
    assert len(points) == total > 0
    rows, cols = map_to_pixel(
        info.transform, [float(p["map_x"]) for p in points], [float(p["map_y"]) for p in points]
    )
    np.testing.assert_allclose(cols, [float(p["x"]) for p in points], atol=0.05)
    np.testing.assert_allclose(rows, [float(p["y"]) for p in points], atol=0.05)


def _seam_jump(rgb: np.ndarray, col: int) -> float:
    """How much the mosaic changes across column ``col``, against neighbouring columns inside
    the photos: about 1 where the ground runs on, several times that at an edge of two scenes."""
    step = lambda c: float(np.abs(rgb[:, c].astype(float) - rgb[:, c - 1]).mean())  # noqa: E731
    inside = [step(c) for c in (col // 4, col // 2, col + col // 2)]
    return step(col) / float(np.mean(inside))


def test_a_ground_mosaic_cuts_its_photos_from_one_continuous_stretch_of_ground(tmp_path, config):
    jumps = {}
    for how in ("laid", "ground"):
        data = tmp_path / how
        truth = write_survey(
            data, n_train=0, n_test=4, seed=3, config=config, width=420, height=300, density=40, mosaic=how
        )
        info = raster_info(data / "Mosaic" / "survey.tif")
        chunk = plan_chunks(info.height, info.width, chunk=2048, margin=0, stride=STRIDE)[0]
        rgb, ok = read_chunk(data / "Mosaic" / "survey.tif", chunk, info)
        assert ok.all() and rgb.shape[:2] == (600, 840)
        jumps[how] = (_seam_jump(rgb, 420), _seam_jump(rgb.transpose(1, 0, 2), 300))
        assert json.loads((truth / "survey.json").read_text())["mosaic"] == how
    assert max(jumps["ground"]) < 2.0 and min(jumps["laid"]) > 3.0, jumps
    with pytest.raises(ValueError, match="'tiles'"):
        write_survey(tmp_path / "bad", n_train=0, n_test=2, seed=3, config=config, mosaic="tiles")
    with pytest.raises(ValueError, match="one altitude"):
        write_survey(
            tmp_path / "bad", n_train=0, n_test=2, seed=3, config=config, mosaic="ground", test_scale=(0.5, 1)
        )

    # Every animal of the ground lies in exactly one photo, at its place in the mosaic.
    h, w = 240, 320
    photos = cut_ground(np.random.default_rng(11), 3, h, w, config, density=150)
    whole, animals = make_test_scene(np.random.default_rng(11), 2 * h, 2 * w, config, density=150)
    assert len(animals) > 20
    for n, (pixels, inside) in enumerate(photos):
        top, left = (n // 2) * h, (n % 2) * w
        np.testing.assert_array_equal(pixels, whole[top : top + h, left : left + w])
        assert all(0 <= r < h and 0 <= c < w for r, c, _ in inside)
        shifted = sorted((round(r + top, 6), round(c + left, 6), k) for r, c, k in inside)
        expected = sorted(
            (round(r, 6), round(c, 6), k)
            for r, c, k in animals
            if top <= r < top + h and left <= c < left + w
        )
        assert shifted == expected
    assert sum(len(a) for _, a in photos) == sum(1 for r, c, _ in animals if r < h or c < w)
