"""int8 against float: the same photos counted by a run's two LiteRT exports, in one process.

    python bench/precision.py --run RUN --images DIR [--calibrate DIR] [--photos 48]

Counts up to ``--photos`` photos of DIR (at the model's ``input_scale``) with the float export
(model.tflite) and the int8 one (model.int8.tflite; for a run trained before int8 exports,
made here from 256-px crops of ``--calibrate``'s photos) on one thread each, and prints the
inference CPU-seconds per megapixel of each, their ratio, and the check training records
(``herdcount.precision.compare_precisions``: per-class count difference, points within 2 px),
of the int8 maps as they come and scaled by each class's count scale (the run's, or for a run
without one, ``herdcount.precision.count_scales`` on ``--scale-crops`` crops of ``--calibrate``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from herdcount.imaging import decode_rgb, resize_rgb
from herdcount.modelrun import ModelRun
from herdcount.precision import compare_precisions, count_scales, scaled
from herdcount.predictors import INT8, lite_predictor, quantized_tflite
from herdcount.tiling import density_map

PHOTOS = (".jpg", ".jpeg", ".png")


def photos_in(folder: Path, n: int, scale: float) -> list[np.ndarray]:
    """Up to ``n`` photos of FOLDER spread evenly over its names (tiles of one source photo
    sort together), at ``scale``."""
    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTOS)
    names = names[:: max(1, len(names) // n)][:n]
    images = [decode_rgb(p.read_bytes(), str(p)) for p in names]
    return [resize_rgb(i, scale) if scale != 1 else i for i in images]


def crops(images: list[np.ndarray], size: int, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        image = images[k % len(images)]
        top = rng.integers(0, max(1, image.shape[0] - size))
        left = rng.integers(0, max(1, image.shape[1] - size))
        out.append(image[top : top + size, left : left + size][None].astype(np.float32))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--calibrate", type=Path, help="photos to calibrate a run without an int8 export on")
    p.add_argument("--photos", type=int, default=48)
    p.add_argument("--crops", type=int, default=64, help="calibration crops where the bench makes the export")
    p.add_argument(
        "--scale-crops",
        type=int,
        default=256,
        help="crops of --calibrate for the count scales of a run without them",
    )
    args = p.parse_args(argv)
    run = ModelRun.read(args.run)
    images = photos_in(args.images, args.photos, run.input_scale)
    exact = lite_predictor((args.run / "model.tflite").read_bytes())
    own_export = (args.run / INT8).is_file()
    if own_export:
        quantized = (args.run / INT8).read_bytes()
        made = "the run's"
    else:
        if not args.calibrate:
            print(f"{args.run} has no {INT8}: give --calibrate DIR to make one", file=sys.stderr)
            return 2
        import keras

        model = keras.models.load_model(args.run / "model.keras", compile=False)
        quantized = quantized_tflite(
            model, crops(photos_in(args.calibrate, args.crops, run.input_scale), 256, args.crops)
        )
        made = f"made here from {args.crops} crops of {args.calibrate}"
    fast = lite_predictor(quantized)
    megapixels = sum(i.shape[0] * i.shape[1] for i in images) / 1e6
    cost = {}
    for name, predict in (("float", exact), ("int8", fast)):
        density_map(images[0], predict, stride=run.output_stride, margin=run.margin)  # warm
        started = time.process_time()
        for image in images:
            density_map(image, predict, stride=run.output_stride, margin=run.margin)
        cost[name] = (time.process_time() - started) / megapixels
    print(
        f"{run.path}: {len(images)} photos of {args.images} ({megapixels:.1f} MP at scale {run.input_scale:g}); int8 {made}"
    )
    print(
        f"inference CPU-s per megapixel (one thread): float {cost['float']:.4f}, int8 {cost['int8']:.4f} "
        f"({cost['float'] / cost['int8']:.2f}x faster)"
    )
    recorded = (run.int8 or {}).get("count_scale")
    scales, how = None, ""
    if recorded and own_export:
        scales, how = np.array([recorded[n] for n in run.class_names]), "the run's"
    elif args.calibrate:
        tiles = crops(
            photos_in(args.calibrate, args.scale_crops, run.input_scale), 256, args.scale_crops, seed=1
        )
        batches = [np.concatenate(tiles[i : i + 16]) for i in range(0, len(tiles), 16)]
        scales, how = count_scales(batches, exact, fast), f"from {len(tiles)} crops of {args.calibrate}"
    variants = [("as exported", fast)] + (
        [(f"scaled ({how})", scaled(fast, scales))] if scales is not None else []
    )
    if scales is not None:
        print("count scales: " + ", ".join(f"{n} {v:.4f}" for n, v in zip(run.class_names, scales)))
    for label, predict in variants:
        check = compare_precisions(
            images, exact, predict, list(run.class_names), stride=run.output_stride, margin=run.margin
        )
        shares = ", ".join(f"{k} {100 * v:.2f} %" for k, v in check["count_share"].items())
        print(
            f"int8 {label} against float: {shares}; points within 2 px: {100 * check['points_within_px']:.1f} %;"
            f" check {'passed' if check['passed'] else 'failed'} (counts within 1 % per class, 99 % of points)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
