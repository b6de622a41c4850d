"""Benchmark: CPU-seconds and peak memory per full-size photo for the count job, against the seed's method.

    python bench/count.py [--photos 4] [--density RUN] [--classifier RUN] [--tiles DIR] [--seed-tiles 40]
                           [--project 18636] [--vcpus 32] [--instance NAME] [--price-per-vcpu-hour P]

Makes full-size 4992x3328 test photos with the synthetic survey generator (or, with
``--tiles DIR``, of a real survey's tiles laid edge to edge), then counts
them on one core (one TensorFlow thread, as one Spark task with spark.task.cpus=1 has)
in a fresh process per method, after one untimed photo (a worker's first pays its
interpreter's first runs, once for thousands of photos), through ``herdcount.count_worker.count_photo``, the job's whole
per-photo work (reading, decoding, inference, points), with each next photo read and decoded
in a thread while one is counted, as a Spark task of several photos does. Then the decoding
and, for the density model, the model alone are timed again, and the table prints them
apart: ``decode``, ``infer`` (everything after decoding) and ``model`` (of infer, the density
model; the rest is making the points); ``wall`` is seconds per photo of the counting loop
(the decoding thread may use a second core where the machine has one):

- density model at scale 1.0 and 0.5, and with ``--scale auto`` (an untrained scale model
  whose output layer is zeroed, so that it reads scale 1: the estimate's cost beside the
  same count at the fixed scale);
- the classifier on the seed's non-overlapping 64x64 tiles, classified in batches;
- the int8 density model with each next photo decoded ahead and with each decoded in turn,
  in as many processes at once as the machine has cores (as a host whose every core counts
  runs its tasks): alone, a decoding thread finds an idle core; side by side it does not;
- the seed's method as published: one ``model.predict`` call per 64x64 tile, timed on
  ``--seed-tiles`` tiles and extrapolated to every tile of the photo (the output says so).

With ``--mosaic-side N`` (default 32768: a 1.07-gigapixel raster) it also lays the photos,
repeated, into one tiled GeoTIFF of N x N pixels (RGB and alpha, deflate; nodata outside an
inscribed ellipse, as a flight's footprint leaves it), then counts it chunk by chunk at
``--chunk`` 8192 and 2048 in a fresh process each: every chunk of the raster, one after
another, as one Spark task counts one. It prints the peak memory of each (goal: <= 1.5 GB at
8192, bounded by the chunk, not the raster) and CPU-s per megapixel against the photos'
(goal: within 1.2x).

Without RUN options the models are freshly built with untrained weights: the model's cost
does not depend on them, the points' cost does. An untrained density head is positive in
nearly every cell, thousands of animals a photo, so its output biases are shifted until it
counts, over the photos, as many animals of each class as the generator put in them. Its
map still spreads small densities over most cells, as no trained model's does: for the
points' cost of a survey, give ``--density`` a trained run. It prints CPU-s per photo, the ratio to the
seed's method, peak resident memory of each process (an upper bound of one task's), and
the hours the 18,636 photos of the Kaggle test set would take on a 32-vCPU host at the
measured per-core rate. Goals (issue 4): density <= 2 CPU-s per photo at scale 1.0,
>= 100x the seed's per-tile method, <= 2 GB per task.
"""

from __future__ import annotations

import os

# One core, as one Spark task has: set before numpy and TensorFlow start their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import atexit  # noqa: E402
import functools  # noqa: E402
import multiprocessing as mp  # noqa: E402
import queue as queue_module  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KAGGLE_TEST_PHOTOS = 18_636
NOT_AHEAD = "density, scale 1.0, int8, each photo decoded in turn"
AHEAD_SIDE = "  as the int8 row, tasks side by side"
NOT_AHEAD_SIDE = "  decoded in turn, tasks side by side"
HOST_VCPUS = 32


def _peak_mb() -> float:
    # VmHWM of this process; ru_maxrss would include the parent's peak across exec.
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def _count_child(run, kind, scale, photos, out, num_classes, precision, queue, ahead=True):
    from herdcount.count_tasks import CountSettings, PhotoTask
    from herdcount.count_worker import count_photo, read_item
    from herdcount.modelrun import ModelRun
    from herdcount.readahead import read_ahead

    reader = None
    if isinstance(scale, Path):  # --scale auto with this scale run
        reader, scale = str(scale), 1.0
    # As the count job's plan sets it: the model may work at a fraction of the photos' size.
    working = ModelRun.read(str(run)).input_scale or 1.0
    settings = CountSettings(
        out=str(out),
        model=str(run),
        kind=kind,
        num_classes=num_classes,
        scale=scale,
        scale_model=reader,
        precision=precision,
        input_scale=working,
    )
    seconds = []
    tasks = [PhotoTask(Path(path).stem, path, Path(path).name) for path in photos]
    # A worker's first photo also pays the interpreter's first runs (its buffers for each
    # tile shape), once for the thousands of photos it counts: a photo counted first, and
    # untimed, leaves the steady cost per photo to the timed ones.
    count_photo(PhotoTask("warm-up", photos[0], "warm-up.jpg"), replace(settings, out=str(out / "warm-up")))
    # As one Spark task counts its photos: each next photo decodes in a thread beside the
    # counting of this one; a record's cpu_s holds its decode and its inference once each.
    started = time.monotonic()
    reading = (
        read_ahead(tasks, functools.partial(read_item, settings=settings))
        if ahead
        else ((t, None) for t in tasks)
    )
    for task, read in reading:
        record = count_photo(task, settings, read)
        if record.status != "ok":
            raise RuntimeError(str(record.error))
        seconds.append(record.cpu_s)
    wall = (time.monotonic() - started) / len(tasks)
    # The decoding alone, as count_photo does it (DCT-scaled where the scale allows; the whole
    # photo for --scale auto, which reads the ground first): the rest of cpu_s is inference.
    from herdcount.imaging import decode_rgb, decode_rgb_scaled
    from herdcount.predictors import load_model
    from herdcount.tiling import density_map

    # The model alone too, for the density model at a fixed scale, as count_photo runs it
    # (same loaded interpreter, tiles and batch): what is left of cpu_s after decoding and
    # the model is making the points.
    loaded = load_model(str(run), precision=precision) if kind == "density" and reader is None else None
    decoding, model_s = [], []
    for path in photos:
        data, started = Path(path).read_bytes(), time.process_time()
        if reader is None:
            image = decode_rgb_scaled(data, path, scale=scale * working)
        else:
            image = decode_rgb(data, path)
        decoding.append(time.process_time() - started)
        if loaded is not None:
            step, started = loaded.run.output_stride, time.process_time()
            density_map(
                image,
                loaded.predict,
                stride=step,
                tile=max(step, settings.tile // step * step),
                margin=loaded.run.margin,
                batch_size=settings.batch_size,
            )
            model_s.append(time.process_time() - started)
    queue.put(
        {"cpu_s": seconds, "decode_s": decoding, "model_s": model_s, "wall_s": wall, "peak_mb": _peak_mb()}
    )


def _count_child_in_turn(run, kind, scale, photos, out, num_classes, precision, queue):
    """:func:`_count_child` with each photo decoded by its own counting, none ahead."""
    _count_child(run, kind, scale, photos, out, num_classes, precision, queue, ahead=False)


def _seed_child(run, photos, n_tiles, queue):
    import keras
    import numpy as np

    from herdcount.imaging import decode_rgb
    from herdcount.predictors import set_threads

    set_threads(1)
    model = keras.models.load_model(Path(run) / "model.keras", compile=False)
    image = decode_rgb(Path(photos[0]).read_bytes())
    rows, cols = -(-image.shape[0] // 64), -(-image.shape[1] // 64)
    rng = np.random.default_rng(0)
    picks = rng.choice(rows * cols, size=min(n_tiles, rows * cols), replace=False)
    model.predict(image[None, :64, :64], verbose=0)  # the seed loaded its model once, too
    start = time.process_time()
    for k in picks:
        r, c = divmod(int(k), cols)
        tile = image[r * 64 : r * 64 + 64, c * 64 : c * 64 + 64]
        if tile.shape[:2] == (64, 64):
            model.predict(tile[None], verbose=0)
    per_tile = (time.process_time() - start) / len(picks)
    queue.put(
        {
            "cpu_s": [per_tile * rows * cols],
            "per_tile_s": per_tile,
            "tiles": rows * cols,
            "peak_mb": _peak_mb(),
        }
    )


def _chunk_child(run, raster, side, out, num_classes, queue):
    from herdcount.count_rasters import raster_chunks
    from herdcount.count_tasks import ChunkTask, CountSettings
    from herdcount.count_worker import count_chunk
    from herdcount.modelrun import ModelRun
    from herdcount.mosaic import raster_info

    info = raster_info(raster)
    # The job's chunks: the model's margin and the peaks' context.
    model = ModelRun.read(run)
    chunks = raster_chunks(model, info, side)
    settings = CountSettings(out=str(out), model=str(run), kind=model.kind, num_classes=num_classes)
    seconds, counted = [], 0.0
    for chunk in chunks:
        task = ChunkTask(Path(raster).stem, str(raster), Path(raster).name, info, chunk, len(chunks))
        record = count_chunk(task, settings)
        if record.status != "ok":
            raise RuntimeError(str(record.error))
        seconds.append(record.cpu_s)
        counted += sum(record.counts)
    queue.put({"cpu_s": seconds, "chunks": len(chunks), "peak_mb": _peak_mb(), "counted": counted})


def write_test_mosaic(path: Path, photos: list[str], side: int, *, strip: int = 512) -> None:
    """A ``side`` x ``side`` tiled GeoTIFF of the photos repeated edge to edge, written strip
    by strip (never whole in memory); alpha 0 outside the inscribed ellipse."""
    import numpy as np
    import rasterio
    from affine import Affine

    from herdcount.imaging import decode_rgb

    images = [decode_rgb(Path(p).read_bytes()) for p in photos]
    h, w = images[0].shape[:2]
    across = -(-side // w)
    profile = {
        "driver": "GTiff",
        "height": side,
        "width": side,
        "count": 4,
        "dtype": "uint8",
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "zlevel": 1,
        "photometric": "RGB",
        "alpha": "YES",
        "BIGTIFF": "YES",
        "transform": Affine(0.03, 0, 500_000, 0, -0.03, 4_100_000),
        "crs": "EPSG:32610",
    }
    temp = path.with_name(f".{path.name}.tmp")
    cols = (np.arange(side) + 0.5 - side / 2) / (side / 2)
    with rasterio.open(temp, "w", **profile) as ds:
        for top in range(0, side, strip):
            rows = np.arange(top, min(top + strip, side))
            block = np.empty((len(rows), side, 4), np.uint8)
            for i, r in enumerate(rows):
                line = [images[((r // h) * across + k) % len(images)][r % h] for k in range(across)]
                block[i, :, :3] = np.concatenate(line)[:side]
            y = (rows[:, None] + 0.5 - side / 2) / (side / 2)
            block[..., 3] = np.where(y**2 + cols[None] ** 2 <= 1, 255, 0)
            ds.write(np.moveaxis(block, -1, 0), window=rasterio.windows.Window(0, top, side, len(rows)))
    temp.replace(path)


def match_counts(run: Path, photos: list[str], truth: np.ndarray) -> np.ndarray:
    """Shift the untrained density model's output biases so that it counts, over ``photos``,
    as many animals of each class as they hold (``truth``, per class): an untrained head
    is positive in nearly every cell (thousands of animals a photo), and making points of
    them would be timed instead of a survey's. Rewrites RUN; returns the counts it gives."""
    import keras

    from herdcount.imaging import decode_rgb
    from herdcount.modelrun import ModelRun
    from herdcount.models.builders import save_model_run

    model = keras.models.load_model(run / "model.keras", compile=False)
    head = model.get_layer("density_x100")
    before = keras.Model(model.input, head.output)
    # Pre-activation values (x100) of every cell of the photos, per class.
    z = np.concatenate(
        [
            np.asarray(before(decode_rgb(Path(p).read_bytes(), p)[None])).reshape(-1, truth.size)
            for p in photos
        ]
    )

    def counted(shift: np.ndarray) -> np.ndarray:
        return 0.01 * np.maximum(z + shift, 0).sum(axis=0)

    low, high = np.full(truth.size, -z.max() - 1.0), np.full(truth.size, -z.min() + 1.0)
    for _ in range(60):  # bisection per class: the count grows with the shift
        mid = (low + high) / 2
        over = counted(mid) > truth
        high, low = np.where(over, mid, high), np.where(over, low, mid)
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias + low])
    save_model_run(run, model, ModelRun.read(str(run)))
    return counted(low)


def tiled_photos(folder: Path, out: Path, n: int) -> list[str]:
    """``n`` full-size 4992x3328 JPEGs (quality 95) of a real survey's tiles laid edge to edge,
    in name order, going on where the last photo stopped: photos with that survey's
    animals, as densely packed as its tiles hold them."""
    from herdcount.imaging import decode_rgb, encode_jpeg

    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not names:
        raise SystemExit(f"--tiles {folder}: no photos there")
    out.mkdir(parents=True, exist_ok=True)
    photos, k = [], 0
    for i in range(n):
        canvas = np.zeros((3328, 4992, 3), np.uint8)
        top = 0
        while top < 3328:
            left, height = 0, 0
            while left < 4992:
                tile = decode_rgb(names[k % len(names)].read_bytes(), str(names[k % len(names)]))
                k += 1
                h, w = min(tile.shape[0], 3328 - top), min(tile.shape[1], 4992 - left)
                canvas[top : top + h, left : left + w] = tile[:h, :w]
                left, height = left + w, max(height, h)
            top += height
        path = out / f"{i}.jpg"
        path.write_bytes(encode_jpeg(canvas, quality=95))
        photos.append(str(path))
    return photos


def write_int8(run: Path, photo: str) -> None:
    """An int8 export of RUN's model beside its float one, calibrated on crops of a photo
    (the cost of int8 inference does not depend on what it was calibrated on)."""
    import keras
    import numpy as np

    from herdcount.imaging import decode_rgb
    from herdcount.predictors import quantized_tflite

    image = decode_rgb(Path(photo).read_bytes(), photo).astype(np.float32)
    crops = [image[None, r : r + 256, c : c + 256] for r in (0, 1000, 2000) for c in (0, 2000)]
    (run / "model.int8.tflite").write_bytes(
        quantized_tflite(keras.models.load_model(run / "model.keras", compile=False), crops)
    )


def projection(
    results: dict[str, dict], photos: int, vcpus: int, instance: str, price: float | None, seed: str
) -> str:
    """Wall hours and dollars of counting ``photos`` on ``instance`` at each method's measured
    CPU-s per photo (one task per vCPU; the job's parallel efficiency on many cores is in
    docs/results.md#scaling, not applied here)."""
    lines = [
        f"\n{photos:,} photos on {instance} ({vcpus} vCPUs)"
        + (f" at ${price:g} per vCPU-hour" if price else " (give --price-per-vcpu-hour for dollars)")
    ]
    lines.append(f"{'method':<62} {'vCPU-h':>8} {'wall h':>8}" + (f" {'dollars':>9}" if price else ""))
    for name, r in results.items():
        vcpu_hours = photos * sum(r["cpu_s"]) / len(r["cpu_s"]) / 3600
        row = f"{name:<62} {vcpu_hours:>8.2f} {vcpu_hours / vcpus:>8.2f}"
        lines.append(row + (f" {vcpu_hours * price:>9.2f}" if price else ""))
    return "\n".join(lines)


def run_child(target, *args) -> dict:
    """``target(*args, queue)`` in a fresh process; what it put in the queue."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise SystemExit(f"{target.__name__} died with exit code {proc.exitcode}") from None
    proc.join()
    return result


def run_children(n: int, target, run, kind, scale, photos, out, *rest) -> dict:
    """A count child in ``n`` fresh processes at once, each counting the photos into its own
    OUT, as tasks side by side on a host whose every core counts; their CPU-s per photo
    together, the mean wall and the largest peak."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    outs = [Path(f"{out}-{i}") for i in range(n)]
    for folder in outs:
        shutil.rmtree(folder, ignore_errors=True)  # records left there would be read back, not counted
    procs = [ctx.Process(target=target, args=(run, kind, scale, photos, o, *rest, queue)) for o in outs]
    for proc in procs:
        proc.start()
    results = []
    while len(results) < n:
        try:
            results.append(queue.get(timeout=5))
        except queue_module.Empty:
            for proc in procs:
                if not proc.is_alive() and proc.exitcode:
                    raise SystemExit(f"{target.__name__} died with exit code {proc.exitcode}") from None
    for proc in procs:
        proc.join()
    merged = {k: [v for r in results for v in r[k]] for k in ("cpu_s", "decode_s", "model_s")}
    return {
        **merged,
        "wall_s": sum(r["wall_s"] for r in results) / n,
        "peak_mb": max(r["peak_mb"] for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=4, help="full-size test photos to count")
    p.add_argument("--density", help="a density run of herdcount train (default: untrained weights)")
    p.add_argument("--classifier", help="a classifier run of herdcount train (default: untrained weights)")
    p.add_argument("--seed-tiles", type=int, default=40, help="tiles timed for the seed's per-tile method")
    p.add_argument("--keep", help="folder for the photos and runs (default: a temporary one)")
    p.add_argument(
        "--tiles",
        type=Path,
        help="lay a real survey's tiles (e.g. ../shared/data/elephant-seals/valid) edge to edge into the "
        "test photos instead of generating them; needs --density",
    )
    p.add_argument("--project", type=int, default=KAGGLE_TEST_PHOTOS, help="photos to project the cost of")
    p.add_argument("--vcpus", type=int, default=HOST_VCPUS, help="vCPUs of the host the projection runs on")
    p.add_argument("--instance", default="a 32-vCPU host", help="the host's name, for the printout")
    p.add_argument(
        "--price-per-vcpu-hour",
        type=float,
        help="dollars per vCPU-hour of that host (e.g. an on-demand price over its vCPUs); prints the cost",
    )
    p.add_argument(
        "--mosaic-side",
        type=int,
        default=32768,
        help="side of the generated mosaic in pixels (32768: 1.07 gigapixels); 0 skips it",
    )
    args = p.parse_args(argv)

    from herdcount.config import DEFAULT_SCHEME, load_config
    from herdcount.synth import truth_dir, write_survey

    config = load_config(DEFAULT_SCHEME)
    work = Path(args.keep or tempfile.mkdtemp(prefix="herdcount-bench-count-"))
    if not args.keep:
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    if args.tiles and not args.density:
        p.error("--tiles needs --density: an untrained model is matched to the generator's truth")
    data = work / "data"
    if args.tiles:
        photos = tiled_photos(args.tiles, work / "tiled", args.photos)
    else:
        if not (data / "sample_submission.csv").is_file():
            write_survey(data, n_train=0, n_test=args.photos, seed=7, config=config, width=4992, height=3328)
        photos = [str(data / "Test" / f"{i}.jpg") for i in range(args.photos)]
    from herdcount.models.builders import write_untrained_runs

    runs = write_untrained_runs(work / "runs", config)
    where = args.tiles or data
    print(f"{len(photos)} photos of 4992x3328 (16.6 MP) from {where}; one core per method", flush=True)
    if not args.density:
        truth = np.loadtxt(truth_dir(data) / "test_counts.csv", delimiter=",", skiprows=1, ndmin=2)[
            : args.photos, 1:
        ]
        found = match_counts(runs["density"], photos, truth.sum(axis=0))
        print(
            f"the untrained density model's biases shifted to count the photos' {truth.sum():.0f} animals "
            f"({', '.join(f'{v:.0f}' for v in found)} per class, as the photos hold)",
            flush=True,
        )
    runs.update({k: Path(v) for k, v in (("density", args.density), ("classifier", args.classifier)) if v})

    # The untrained run is written afresh (a kept folder's int8 export would be of old biases).
    if not args.density or not (runs["density"] / "model.int8.tflite").is_file():
        write_int8(runs["density"], photos[0])
    methods = [
        ("density, scale 1.0", _count_child, (runs["density"], "density", 1.0)),
        ("density, scale 1.0, int8", _count_child, (runs["density"], "density", 1.0, "int8")),
        (NOT_AHEAD, _count_child_in_turn, (runs["density"], "density", 1.0, "int8")),
        ("density, scale 0.5", _count_child, (runs["density"], "density", 0.5)),
        ("density, scale 0.5, int8", _count_child, (runs["density"], "density", 0.5, "int8")),
        (
            "density, --scale auto (reading scale 1)",
            _count_child,
            (runs["density"], "density", runs["scale"]),
        ),
        ("classifier, 64x64 tiles in batches", _count_child, (runs["classifier"], "classifier", 1.0)),
    ]
    results = {}
    for name, target, (run, kind, scale, *precision) in methods:
        out = work / f"out-{kind}-{scale if not isinstance(scale, Path) else 'auto'}-{''.join(precision)}"
        shutil.rmtree(out, ignore_errors=True)  # a kept folder's records would be read back, not counted
        results[name] = run_child(
            target, run, kind, scale, photos, out, len(config.classes), *(precision or ["float"])
        )
        print(f"  {name}: done", flush=True)
    # Alone, a task's decoding thread gets an idle core; on a host whose every core counts,
    # the threads of all tasks share the cores and their caches either way.
    side = os.cpu_count() or 1
    side_rows = []
    if side > 1:
        for name, target in ((AHEAD_SIDE, _count_child), (NOT_AHEAD_SIDE, _count_child_in_turn)):
            out = work / "out-side-by-side"
            side_rows.append(f"{name} ({side} tasks)")
            results[side_rows[-1]] = run_children(
                side, target, runs["density"], "density", 1.0, photos, out, len(config.classes), "int8"
            )
            print(f"  {name}: done", flush=True)
    seed = run_child(_seed_child, runs["classifier"], photos, args.seed_tiles)
    seed_name = f"seed: one predict per tile ({args.seed_tiles} of {seed['tiles']} timed, extrapolated)"
    results[seed_name] = seed
    reference = seed["cpu_s"][0]
    print(
        f"\n{'method':<62} {'CPU-s/photo':>11} {'decode':>7} {'infer':>7} {'model':>7} {'wall':>7} {'x seed':>8}"
        f" {'peak MB':>8} {'h, Kaggle test':>15}"
    )
    for name, r in results.items():
        cpu = sum(r["cpu_s"]) / len(r["cpu_s"])
        hours = KAGGLE_TEST_PHOTOS * cpu / HOST_VCPUS / 3600
        decode = sum(r["decode_s"]) / len(r["decode_s"]) if "decode_s" in r else None
        model = sum(r["model_s"]) / len(r["model_s"]) if r.get("model_s") else None
        parts = f"{'':>7} {'':>7}" if decode is None else f"{decode:>7.2f} {cpu - decode:>7.2f}"
        parts += f" {'':>7}" if model is None else f" {model:>7.2f}"
        parts += f" {'':>7}" if "wall_s" not in r else f" {r['wall_s']:>7.2f}"
        print(f"{name:<62} {cpu:>11.2f} {parts} {reference / cpu:>8.1f} {r['peak_mb']:>8.0f} {hours:>15.2f}")
    print(
        f"\nseed per tile: {seed['per_tile_s'] * 1000:.0f} ms; hours: {KAGGLE_TEST_PHOTOS:,} photos on a "
        f"{HOST_VCPUS}-vCPU host at the measured per-core rate"
    )
    print(projection(results, args.project, args.vcpus, args.instance, args.price_per_vcpu_hour, seed_name))
    int8 = sum(results["density, scale 1.0, int8"]["cpu_s"]) / args.photos
    in_turn = results[NOT_AHEAD]
    print(
        f"decoding the next photo while one is counted (int8, scale 1.0): CPU-s {int8 / (sum(in_turn['cpu_s']) / args.photos):.2f}, "
        f"wall {results['density, scale 1.0, int8']['wall_s'] / in_turn['wall_s']:.2f} of decoding each in turn"
    )
    if side_rows:
        ahead, turn = (sum(results[k]["cpu_s"]) / len(results[k]["cpu_s"]) for k in side_rows)
        print(f"the same with every core counting a task: CPU-s {ahead / turn:.2f} of decoding each in turn")
    density = sum(results["density, scale 1.0"]["cpu_s"]) / args.photos
    print(
        f"int8 / float at scale 1.0: {int8 / density:.2f} ({int8:.2f} CPU-s per photo; issue 35's goal <= 0.25)"
    )
    auto = sum(results["density, --scale auto (reading scale 1)"]["cpu_s"]) / args.photos
    print(f"--scale auto / scale 1.0: {auto / density:.2f} (goal <= 2: the estimate is the extra)")
    print(
        f"goals: density <= 2 CPU-s per photo (got {density:.2f}), >= 100x the seed "
        f"(got {reference / density:.0f}x), <= 2048 MB per task "
        f"(got {max(r['peak_mb'] for r in results.values()):.0f})"
    )
    if args.mosaic_side:
        mosaic_section(args.mosaic_side, work, photos, runs["density"], len(config.classes), density)
    return 0


def mosaic_section(side: int, work: Path, photos: list[str], run: Path, num_classes: int, photo_cpu: float):
    raster = work / f"mosaic-{side}.tif"
    if not raster.is_file():
        start = time.monotonic()
        write_test_mosaic(raster, photos, side)
        print(
            f"\nmosaic: {side}x{side} ({side * side / 1e9:.2f} gigapixels, {raster.stat().st_size / 1e6:.0f} MB "
            f"on disk) written in {time.monotonic() - start:.0f} s",
            flush=True,
        )
    photo_rate = photo_cpu / (4992 * 3328 / 1e6)
    print(
        f"\n{'mosaic, chunk':<20} {'chunks':>8} {'CPU-s':>8} {'CPU-s/MP':>9} {'x photos':>9} {'peak MB':>8}"
    )
    peaks = {}
    for chunk in (8192, 2048):
        out = work / f"out-mosaic-{chunk}"
        shutil.rmtree(out, ignore_errors=True)
        r = run_child(_chunk_child, run, str(raster), chunk, out, num_classes)
        cpu = sum(r["cpu_s"])
        rate = cpu / (side * side / 1e6)
        peaks[chunk] = r["peak_mb"]
        print(
            f"{'--chunk ' + str(chunk):<20} {r['chunks']:>8} {cpu:>8.1f} {rate:>9.4f} "
            f"{rate / photo_rate:>9.2f} {r['peak_mb']:>8.0f}",
            flush=True,
        )
    print(
        f"photos: {photo_rate:.4f} CPU-s/MP (density, scale 1.0). goals: <= 1536 MB per task at "
        f"--chunk 8192 (got {peaks[8192]:.0f}), CPU-s/MP within 1.2x of the photos'"
    )


if __name__ == "__main__":
    sys.exit(main())
