"""Synthetic aerial survey in the exact layout of Kaggle's NOAA sea lion data set.

``herdcount synth OUT --train N --test M --seed S [--width W --height H]``

writes ``OUT/Train/<id>.jpg``, ``OUT/Train/train.csv``, ``OUT/TrainDotted/<id>.jpg``,
``OUT/Test/<id>.jpg``, ``OUT/MismatchedTrainImages.txt`` and ``OUT/sample_submission.csv``,
and the ground truth beside OUT (never inside it) in ``OUT_truth/``:
``train/<id>.json`` and ``test/<id>.json`` (true dot positions per class as ``[x, y]``,
plus the animals hidden under black masks), ``train_counts.csv`` and ``test_counts.csv``.

Scenes: textured rock and water; animals of every class of the scheme with its body
length and colour, gathered in colonies where they touch and overlap, with shadows;
dots of the scheme's colours on the dotted copy; black masks over parts of some dotted
copies, where animals are neither dotted nor counted; both copies JPEG-compressed
separately; a few mismatched pairs. With ``--mosaic`` the test photos are also written as one
georeferenced orthomosaic, cut by default from one continuous stretch of ground.

How the annotators drew (:class:`AnnotationStyle`) varies as between annotation tools:
dot radius (default 2.7-3.3 px), per-dot colour drift from the scheme's colour (default
+-8 per channel), the JPEG quality range of both copies (default 85-95) and the share of
dark animals (wet or shadowed, default none), on which brown dots are hard to see.

The scenes themselves are drawn by :mod:`herdcount.synth_scenes`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from herdcount import annotation_writers as writers
from herdcount import annotations as labels
from herdcount.config import DEFAULT_SCHEME, Config, scheme_yaml
from herdcount.imaging import encode_jpeg
from herdcount.options import option
from herdcount.storage import write_bytes_atomic, write_csv_atomic
from herdcount.synth_scenes import (
    AnnotationStyle,
    make_pair,
    make_test_scene,
    value_range,
)

KAGGLE_SIZES = ((4992, 3328), (5616, 3744))


def truth_dir(out: str | Path) -> Path:
    """The ground-truth folder that belongs to the survey at ``out`` (beside it)."""
    out = Path(out)
    return out.parent / f"{out.name}_truth"


def read_truth_dots(
    truth: str | Path, split: str, photo_id: str, config: Config
) -> tuple[np.ndarray, np.ndarray]:
    """The true dots of a photo of a generated survey: (N, 2) ``(row, col)`` and (N,) classes.

    ``split`` is ``train`` (the dots on the dotted copy) or ``test`` (every animal).
    """
    record = json.loads((Path(truth) / split / f"{photo_id}.json").read_text())[config.annotation_key]
    points = [(y, x) for name in config.class_names for x, y in record[name]]
    classes = [k for k, name in enumerate(config.class_names) for _ in record[name]]
    return np.asarray(points, dtype=np.float64).reshape(-1, 2), np.asarray(classes, dtype=np.int64)


def _photo_size(rng: np.random.Generator, width: int | None, height: int | None) -> tuple[int, int]:
    """``(width, height)`` of a photo: the given size, else one of Kaggle's two, drawn."""
    return (width, height) if width else KAGGLE_SIZES[int(rng.integers(2))]


def _annotation(config: Config, points: list[tuple[float, float, int]], filename: str) -> dict:
    per_class = {name: [] for name in config.class_names}
    for row, col, k in points:
        per_class[config.class_names[k]].append([round(col, 2), round(row, 2)])
    return {config.annotation_key: per_class, "filename": filename}


def _counts(config: Config, points) -> list[int]:
    counts = [0] * len(config.classes)
    for _, _, k in points:
        counts[k] += 1
    return counts


def write_survey(
    out: str | Path,
    *,
    n_train: int,
    n_test: int,
    seed: int,
    config: Config,
    width: int | None = None,
    height: int | None = None,
    density: float = 10.0,
    n_mismatched: int | None = None,
    mask_share: float = 0.35,
    style: AnnotationStyle = AnnotationStyle(),
    test_scale: tuple[float, float] | None = None,
    realism: int = 0,
    mosaic: str | None = None,
    export: tuple[str, ...] = (),
) -> Path:
    """Write a synthetic survey to ``out`` and its truth beside it; returns the truth folder.

    Deterministic for a seed: photo ``i`` of each split draws from its own seeded stream,
    so a survey with more photos starts with the same ones. ``test_scale`` ``(lo, hi)``
    flies each test photo at its own ground scale, log-uniform in that range (1: the
    training altitude; see :func:`make_test_scene`); each photo's scale goes into its
    truth record and ``test_scales.csv``. ``realism`` 1 draws the scenes of
    :mod:`herdcount.realism`. ``mosaic`` also lays the test photos into one georeferenced
    orthomosaic (:func:`write_mosaic`): ``"ground"`` cuts them from one continuous stretch of
    ground first (:func:`cut_ground`; all of one size and scale, as a drone's photos of one
    colony), ``"laid"`` lays independent scenes edge to edge.
    """
    if mosaic not in (None, "laid", "ground"):
        raise ValueError(f"mosaic must be 'laid' or 'ground', got {mosaic!r}")
    if mosaic == "ground" and test_scale is not None:
        raise ValueError(f"a ground mosaic is flown at one altitude; got test_scale={test_scale}")
    if test_scale is not None and not 0.2 <= test_scale[0] <= test_scale[1] <= 5.0:
        raise ValueError(f"test scale range must be LO,HI with 0.2 <= LO <= HI <= 5, got {test_scale}")
    if (width is None) != (height is None):
        raise ValueError(f"give both width and height or neither, got width={width}, height={height}")
    if n_train < 0 or n_test < 0:
        raise ValueError(f"photo counts must be >= 0, got train={n_train}, test={n_test}")
    out, truth = Path(out), truth_dir(out)
    for d in (out / "Train", out / "TrainDotted", out / "Test", truth / "train", truth / "test"):
        d.mkdir(parents=True, exist_ok=True)
    if n_mismatched is None:
        n_mismatched = n_train // 12
    pick = np.random.default_rng([seed, 7])
    mismatched = set(pick.choice(n_train, size=min(n_mismatched, n_train), replace=False).tolist())
    header = ["train_id", *config.class_names]
    train_rows = []
    for i in range(n_train):
        rng = np.random.default_rng([seed, 1, i])
        w, h = _photo_size(rng, width, height)
        masked = rng.random() < mask_share
        pair = make_pair(
            rng,
            h,
            w,
            config,
            density=density,
            masked=masked,
            mismatched=i in mismatched,
            style=style,
            realism=realism,
        )
        write_bytes_atomic(out / "Train" / f"{i}.jpg", pair["plain"])
        write_bytes_atomic(out / "TrainDotted" / f"{i}.jpg", pair["dotted"])
        # train.csv counts the animals the annotators dotted; for a mismatched pair,
        # those of the plain photo (the dotted file is the wrong one).
        counted = pair["scene_animals"] if i in mismatched else pair["dots"]
        train_rows.append([i, *_counts(config, counted)])
        record = _annotation(config, pair["dots"], f"{i}.jpg")
        record.update(
            hidden=_annotation(config, pair["hidden"], "")[config.annotation_key],
            mismatched=i in mismatched,
            width=w,
            height=h,
        )
        write_bytes_atomic(truth / "train" / f"{i}.json", json.dumps(record).encode())
    write_csv_atomic(out / "Train" / "train.csv", header, train_rows)
    write_csv_atomic(truth / "train_counts.csv", header, train_rows)
    if export:
        export_annotations(out, truth, config, export)
    write_csv_atomic(out / "MismatchedTrainImages.txt", ["train_id"], [[i] for i in sorted(mismatched)])
    test_rows, scales = [], []
    ground = []
    if mosaic == "ground" and n_test:
        # The size photo 0 draws, for every photo: one ground is cut into equal photos.
        w, h = _photo_size(np.random.default_rng([seed, 2, 0]), width, height)
        ground = cut_ground(
            np.random.default_rng([seed, 4]),
            n_test,
            h,
            w,
            config,
            density=density,
            style=style,
            realism=realism,
        )
    for i in range(n_test):
        rng = np.random.default_rng([seed, 2, i])
        w, h = _photo_size(rng, width, height)
        scale = 1.0
        if test_scale is not None:
            # A stream of its own, so that a survey without altitudes keeps its photos.
            lo, hi = np.log(test_scale)
            scale = round(float(np.exp(np.random.default_rng([seed, 3, i]).uniform(lo, hi))), 4)
        if ground:
            scene, animals = ground[i]
            h, w = scene.shape[:2]
        else:
            scene, animals = make_test_scene(
                rng, h, w, config, density=density, style=style, scale=scale, realism=realism
            )
        low, high = style.quality
        write_bytes_atomic(out / "Test" / f"{i}.jpg", encode_jpeg(scene, rng.integers(low, high + 1)))
        record = _annotation(config, animals, f"{i}.jpg")
        record.update(width=w, height=h, scale=scale)
        scales.append([i, scale])
        write_bytes_atomic(truth / "test" / f"{i}.json", json.dumps(record).encode())
        test_rows.append([i, *_counts(config, animals)])
    test_header = ["test_id", *config.class_names]
    write_csv_atomic(
        out / "sample_submission.csv", test_header, [[i] + [1] * len(config.classes) for i in range(n_test)]
    )
    write_csv_atomic(truth / "test_counts.csv", test_header, test_rows)
    if mosaic and n_test:
        write_mosaic(out, truth, config)
    write_csv_atomic(truth / "test_scales.csv", ["test_id", "scale"], scales)
    # The scheme flows with the data: extract reads it from here, unless told otherwise.
    write_bytes_atomic(out / "scheme.yaml", scheme_yaml(config).encode())
    summary = {
        "seed": seed,
        "train": n_train,
        "test": n_test,
        "width": width,
        "height": height,
        "density": density,
        "mismatched": sorted(mismatched),
        "classes": config.class_names,
        "annotation_style": dataclasses.asdict(style),
        "test_scale": list(test_scale) if test_scale else None,
        "realism": realism,
        "mosaic": mosaic,
    }
    write_bytes_atomic(truth / "survey.json", json.dumps(summary, indent=2).encode())
    return truth


#: Where generated mosaics lie: UTM zone 10N, 3 cm pixels, north up.
MOSAIC_CRS = "EPSG:32610"


MOSAIC_ORIGIN = (500_000.0, 4_100_000.0)


MOSAIC_PIXEL = 0.03


def mosaic_grid(n_photos: int) -> tuple[int, int]:
    """Rows and columns of the grid a mosaic of ``n_photos`` is laid in: as square as can be,
    filled row by row."""
    columns = int(np.ceil(np.sqrt(n_photos)))
    return -(-n_photos // columns), columns


def cut_ground(
    rng: np.random.Generator,
    n_photos: int,
    height: int,
    width: int,
    config: Config,
    *,
    density: float,
    style: AnnotationStyle = AnnotationStyle(),
    realism: int = 0,
) -> list[tuple[np.ndarray, list[tuple[float, float, int]]]]:
    """Photos cut from one continuous stretch of ground, as a drone photographs a colony.

    One scene covers the whole grid of :func:`mosaic_grid` (ground, shore, colonies and
    shadows run on across the photos' borders) and is cut into ``n_photos`` photos of
    ``(height, width)``, row by row. An animal belongs to the photo its centre lies in, so
    one lying across a border is whole in the mosaic and cut in two photos.

    Returns
    -------
    list of (image, animals)
        Each photo as an (H, W, 3) uint8 array and its animals ``(row, col, class)`` in the
        photo's pixels.
    """
    rows, columns = mosaic_grid(n_photos)
    scene, animals = make_test_scene(
        rng, rows * height, columns * width, config, density=density, style=style, realism=realism
    )
    photos = []
    for n in range(n_photos):
        top, left = (n // columns) * height, (n % columns) * width
        inside = [
            (r - top, c - left, k)
            for r, c, k in animals
            if top <= r < top + height and left <= c < left + width
        ]
        photos.append((scene[top : top + height, left : left + width].copy(), inside))
    return photos


def write_mosaic(out: Path, truth: Path, config: Config, *, name: str = "survey") -> Path:
    """Lay a written survey's test photos edge to edge, row by row, into one tiled GeoTIFF
    ``OUT/Mosaic/<name>.tif`` (RGB and alpha; cells of the grid without a photo are nodata)
    with a UTM CRS, and its truth beside the survey's: ``mosaic.json`` (each photo's place,
    the transform, the CRS) and ``mosaic_points.csv`` (``class,x,y,map_x,map_y``: every
    animal in the mosaic's pixels and in map coordinates).

    The photos are laid as decoded from their JPEGs, so counting the mosaic sees the same
    pixels as counting the photos; only the context across photo borders differs.
    """
    from herdcount.imaging import decode_rgb
    from herdcount.mosaic import pixel_to_map, write_geotiff

    ids = sorted(int(p.stem) for p in (out / "Test").glob("*.jpg"))
    photos = [decode_rgb((out / "Test" / f"{i}.jpg").read_bytes()) for i in ids]
    rows, columns = mosaic_grid(len(photos))
    cell_h, cell_w = max(p.shape[0] for p in photos), max(p.shape[1] for p in photos)
    rgb = np.zeros((rows * cell_h, columns * cell_w, 3), np.uint8)
    valid = np.zeros(rgb.shape[:2], bool)
    transform = (MOSAIC_PIXEL, 0.0, MOSAIC_ORIGIN[0], 0.0, -MOSAIC_PIXEL, MOSAIC_ORIGIN[1])
    places, points = {}, []
    for n, (i, photo) in enumerate(zip(ids, photos)):
        top, left = (n // columns) * cell_h, (n % columns) * cell_w
        rgb[top : top + photo.shape[0], left : left + photo.shape[1]] = photo
        valid[top : top + photo.shape[0], left : left + photo.shape[1]] = True
        places[str(i)] = [top, left, photo.shape[0], photo.shape[1]]
        record = json.loads((truth / "test" / f"{i}.json").read_text())[config.annotation_key]
        for klass, dots in record.items():
            for x, y in dots:
                points.append((klass, left + x, top + y))
    path = out / "Mosaic" / f"{name}.tif"
    write_geotiff(path, rgb, valid, transform=transform, crs=MOSAIC_CRS)
    xs, ys = pixel_to_map(transform, [p[2] for p in points], [p[1] for p in points])
    write_csv_atomic(
        truth / "mosaic_points.csv",
        ["class", "x", "y", "map_x", "map_y"],
        [
            [k, round(x, 2), round(y, 2), round(mx, 3), round(my, 3)]
            for (k, x, y), mx, my in zip(points, xs, ys)
        ],
    )
    summary = {
        "file": f"Mosaic/{name}.tif",
        "crs": MOSAIC_CRS,
        "transform": list(transform),
        "photos": places,
    }
    write_bytes_atomic(truth / "mosaic.json", json.dumps(summary, indent=2).encode())
    return path


#: Where ``--export`` writes each format, under OUT/annotations.
EXPORTS = {"boxes": "boxes.csv", "points": "points.csv", "coco": "coco.json", "yolo": "yolo"}


def export_annotations(out: Path, truth: Path, config: Config, formats: tuple[str, ...]) -> None:
    """Write the training photos' animals as annotation files, one per format, in
    ``out/annotations`` (boxes of the class's middle length, square: the generator's
    animals turn every way), read back from the truth; mismatched pairs are left out."""
    images = []
    for path in sorted((truth / "train").glob("*.json"), key=lambda p: int(p.stem)):
        record = json.loads(path.read_text())
        if record.get("mismatched"):
            continue
        animals = []
        height, width = int(record["height"]), int(record["width"])
        for part in (record[config.annotation_key], record.get("hidden") or {}):
            for spec in config.classes:
                half = float(np.mean(spec.length_px)) / 2
                for x, y in part.get(spec.name, []):
                    # Cut at the photo's edge, as annotation tools do: the box's centre moves in.
                    top, bottom = max(0.0, y - half), min(float(height), y + half)
                    left, right = max(0.0, x - half), min(float(width), x + half)
                    row, col = (top + bottom) / 2, (left + right) / 2
                    animals.append(
                        labels.Animal(f"{path.stem}.jpg", spec.name, row, col, bottom - top, right - left)
                    )
        images.append(writers.LabelledImage(f"{path.stem}.jpg", height, width, tuple(animals)))
    for fmt in formats:
        writers.write_annotations(images, config.class_names, fmt, str(out / "annotations" / EXPORTS[fmt]))


def _grid(text: str) -> tuple[int, int]:
    try:
        lines, frames = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LINESxFRAMES such as 2x5, got {text!r}") from None
    return lines, frames


@dataclass(frozen=True, kw_only=True)
class SynthSettings:
    """What ``herdcount synth`` is asked to write (its annotation style apart)."""

    out: str = option(flag="out", help="dataset root to write (Kaggle layout)")
    train: int = option(8, help="training pairs (default 8)")
    test: int = option(4, help="test photos (default 4)")
    seed: int = option(0, help="random seed (default 0)")
    width: int | None = option(None, type=int, help="photo width; default: Kaggle's 4992 or 5616")
    height: int | None = option(None, type=int, help="photo height; default: Kaggle's 3328 or 3744")
    density: float = option(10.0, help="animals per megapixel (default 10)")
    mismatched: int | None = option(None, type=int, help="mismatched pairs (default: one in 12)")
    scheme: str = option(
        DEFAULT_SCHEME, help="class scheme: a YAML file or a packaged scheme (default: %(default)s)"
    )
    test_scale: tuple[float, float] | None = option(
        None,
        type=value_range(float),
        metavar="S|LO,HI",
        help="ground scale of each test photo against the training photos, log-uniform per photo "
        "(0.5: flown twice as high; default 1)",
    )
    realism: int = option(
        0,
        choices=[0, 1],
        help="1: scenes of rock with cracks, wet patches, sand and surf, animals with heads and "
        "flippers, wet or dry, one sun per photo, gulls, kelp and pup-sized rocks (default 0)",
    )
    mosaic: str | None = option(
        None,
        const="ground",
        choices=["ground", "laid"],
        help="also write the test photos as one georeferenced orthomosaic, OUT/Mosaic/survey.tif (a tiled "
        "GeoTIFF in UTM 10N, 3 cm pixels), its truth in map coordinates in <out>_truth/mosaic_points.csv: "
        "'ground' (the default) cuts the photos from one continuous stretch of ground, 'laid' lays "
        "independent scenes edge to edge",
    )
    export: tuple[str, ...] = option(
        (),
        repeat=True,
        choices=sorted(EXPORTS),
        help="also write the training photos' animals as an annotation file of this format in "
        "OUT/annotations (repeatable), for herdcount extract --images OUT/Train --annotations FILE",
    )
    #: A survey flight of overlapping frames (for herdcount unique).
    flight: tuple[int, int] | None = option(
        None,
        type=_grid,
        metavar="LINESxFRAMES",
        help="also fly serpentine lines over one continuous ground: OUT/Flight/<id>.jpg, "
        "OUT/flight_order.csv, and the sightings with their animals in the truth's flight.csv",
    )
    overlap: tuple[float, float] = option(
        (0.6, 0.3),
        type=value_range(float),
        metavar="FORWARD,SIDE",
        help="overlap of consecutive frames and of neighbouring lines (default 0.6,0.3)",
    )
    rotation: float = option(5.0, help="largest rotation of a frame, degrees (default 5)")
    movement: float = option(
        0.0, help="largest step of an animal between frames, in body lengths (default 0: they keep still)"
    )
    perspective: float = option(
        0.0,
        help="largest shift of a frame's corner, as a share of its size: a tilted camera (default 0: "
        "straight down)",
    )
