"""Train a patch classifier or a density count model from an extract job's output.

    herdcount train --kind density --extract OUT --data DATA --out RUN [--epochs N] [--seed S]
    herdcount train --kind classifier --extract OUT --data DATA --out RUN

A plain Keras 3 / TensorFlow program on one machine (not a Spark job); it uses a GPU
when TensorFlow sees one. RUN receives model.keras, model.json, history.csv, curves.png,
validation pictures and run.json. With MLFLOW_TRACKING_URI set, the run is also logged
to MLflow (``pip install -e .[tracking]``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from herdcount.predictors import QUIET_TENSORFLOW, set_threads

os.environ.setdefault(*QUIET_TENSORFLOW)  # before TensorFlow is imported

import keras
import numpy as np
import tensorflow as tf

from herdcount import storage
from herdcount.annotated import labelled_run
from herdcount.annotations import resize_cells
from herdcount.config import Config, resolve_scheme
from herdcount.dots import grow_cells, masked_at, masked_points
from herdcount.imaging import resize_rgb
from herdcount.intervals import VALIDATION_COUNTS, group_errors, write_validation_counts
from herdcount.models.builders import (
    DensityLoss,
    ScaleLoss,
    balance_weights,
    describe_density_model,
    make_classifier_model,
    make_density_model,
    make_scale_model,
    save_model_run,
    scale_error,
    tile_count_error,
)
from herdcount.models.settings import TrainSettings, check_settings, parse_args
from herdcount.models.training_data import (
    PhotoDots,
    load_photo,
    read_extract,
    split_photos,
)
from herdcount.models.transfer import LayerRateAdam, Reused, init_from_run
from herdcount.models.windows import (
    GRID,
    ShardIndex,
    WindowsJob,
    patch_dataset,
    read_index,
    scale_dataset,
    window_dataset,
)
from herdcount.plots import plot_confusion, plot_counts, plot_curves
from herdcount.runinfo import RunClock, fingerprint_files, read_run, write_run_json
from herdcount.runner import run_in_process
from herdcount.scale import estimate_scale, working_scale
from herdcount.score import column_rmse
from herdcount.tiling import class_counts, density_map, masked_counts, tile_scores


def local_inputs(s: TrainSettings) -> TrainSettings:
    """The settings with S3 inputs copied to a local cache and an S3 RUN replaced by a local
    folder (uploaded at the end, model.json last): training runs on one machine and Keras
    and tf.data read local files. A second run reuses the copies."""
    cache = Path(tempfile.gettempdir()) / "herdcount-train-cache"
    changes: dict[str, Any] = {}
    if storage.is_s3(s.extract):
        changes["extract"] = str(storage.download_tree(s.extract, cache / _slug(s.extract)))
    if s.data and storage.is_s3(s.data) and labelled_run(s.extract):
        changes["data"] = str(storage.download_tree(s.data, cache / _slug(s.data)))
    elif s.data and storage.is_s3(s.data):
        local = cache / _slug(s.data)
        for folder in ("Train", "TrainDotted"):
            storage.download_tree(storage.join(s.data, folder), local / folder)
        mismatched = storage.join(s.data, "MismatchedTrainImages.txt")
        if storage.exists(mismatched):
            storage.write_bytes_atomic(local / "MismatchedTrainImages.txt", storage.read_bytes(mismatched))
        changes["data"] = str(local)
    if s.windows and storage.is_s3(s.windows):
        changes["windows"] = str(storage.download_tree(s.windows, cache / _slug(s.windows)))
    if storage.is_s3(s.out):
        changes["out"] = tempfile.mkdtemp(prefix="herdcount-run-")
    if changes:
        print("S3 paths: working on local copies: " + ", ".join(f"--{k} in {v}" for k, v in changes.items()))
    return dataclasses.replace(s, **changes)


def with_extract_data(settings: TrainSettings) -> TrainSettings:
    """The settings with ``--data`` found through the extract's record where it was left
    out: the images folder of an annotated extract, the survey root of a dotted one."""
    if settings.data:
        return settings
    run = read_run(settings.extract) if storage.is_dir(settings.extract) else None
    found = run and (run.inputs.get("images") or run.inputs.get("data"))
    return dataclasses.replace(settings, data=found) if found else settings


def training_scheme(settings: TrainSettings) -> Config:
    """The scheme the extract run recorded, or ``--scheme`` where it agrees with it (an
    extract without run.json: ``--scheme`` or the sea lions')."""
    run = read_run(settings.extract)
    recorded = run.config if run is not None and run.config.get("classes") else None
    return resolve_scheme(settings.scheme, recorded, f"the extract run {settings.extract!r}")


def _slug(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    clock = RunClock()
    given = parse_args(argv)
    try:
        given = with_extract_data(given)
        check_settings(given)
        settings = local_inputs(given)
        config = training_scheme(settings)
        prepared = (prepare_classifier if settings.kind == "classifier" else prepare_density)(
            settings, config
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # One pool for the ops themselves, two for running independent ops.
    if set_threads(settings.threads, inter=min(2, settings.threads))[0] != settings.threads:
        print(
            f"TensorFlow is already running: keeping its thread pools instead of {settings.threads} threads"
        )
    keras.utils.set_random_seed(settings.seed)
    devices = [d.device_type for d in tf.config.list_logical_devices()]
    print(f"training a {settings.kind} model on {', '.join(devices)} ({settings.threads} CPU threads)")
    tracker = _tracker(settings)
    try:
        train = {"classifier": train_classifier, "density": train_density, "scale": train_scale}[
            settings.kind
        ]
        loggers = [tracker.MlflowLogger()] if tracker else []
        model, history, metrics, info = train(settings, config, prepared, loggers)
        run = Path(settings.out)
        write_run(run, settings, config, model, history, metrics, info, clock, given=given)
        if storage.is_s3(given.out):
            storage.upload_tree(run, given.out, last=("model.json",))
        if tracker:
            tracker.finish(run, _flat(metrics))
    except BaseException:
        if tracker:
            tracker.abort()
        if settings.out != given.out:
            print(f"the run's local files stay in {settings.out}", file=sys.stderr)
        raise
    if settings.out != given.out:  # the local stand-in for an S3 RUN, uploaded now
        shutil.rmtree(settings.out, ignore_errors=True)
    print(format_summary(settings.kind, metrics))
    return 0


def _tracker(settings: TrainSettings):
    # MLflow is optional and heavy: imported only when a tracking server is configured.
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    from herdcount.models import tracking

    tracking.start(f"{settings.kind}-{Path(settings.out).name}", settings.params())
    return tracking


#: Epochs without improvement before the classifier's rate is halved.
PLATEAU_PATIENCE = 3


def _callbacks(
    monitor: str, settings: TrainSettings, first: list, last: list, *, plateau: bool = True
) -> list:
    """``first`` (which may add to the epoch's logs), learning-rate and early-stopping
    callbacks watching ``monitor``, then ``last`` (loggers, which see the complete logs)."""
    callbacks = [*first]
    if plateau:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, mode="min", factor=0.5, patience=PLATEAU_PATIENCE, verbose=1
            )
        )
    callbacks.append(
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode="min", patience=settings.patience, restore_best_weights=True, verbose=1
        )
    )
    return [*callbacks, *last]


def device_strategy() -> tf.distribute.Strategy:
    """Every visible GPU through ``MirroredStrategy`` (the batch is split between them) when
    there are several; else the default: the one GPU TensorFlow sees, or the CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        print(f"training on {len(gpus)} GPUs with MirroredStrategy")
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _verbose() -> int:
    # A live bar on a terminal; one line per epoch in logs, where bars become noise.
    return 1 if sys.stdout.isatty() else 2


# --- classifier -------------------------------------------------------------------------


def _groups(photos: list[PhotoDots], settings: TrainSettings) -> dict[str, str | None] | None:
    """Each photo's group where the split holds out whole groups (``--split group``, the
    default, and the extract recorded groups), else None: photos held out one by one."""
    if settings.split != "group":
        return None
    return {p.train_id: p.group for p in photos}


def prepare_classifier(settings: TrainSettings, config: Config) -> dict[str, Any]:
    photos = read_extract(settings.extract, config, settings.data)
    train_ids, val_ids = split_photos(
        [p.train_id for p in photos],
        val_fraction=settings.val_fraction,
        seed=settings.seed,
        groups=_groups(photos, settings),
    )
    by_id = {p.train_id: p for p in photos}
    return {
        "names": [*config.class_names, config.background_class],
        "train_ids": train_ids,
        "val_ids": val_ids,
        "val": [by_id[i] for i in val_ids],
        "shards": training_windows(settings, config),
    }


def train_classifier(settings: TrainSettings, config: Config, prep: dict[str, Any], loggers: list):
    names, shards = prep["names"], prep["shards"]
    num_classes = len(config.classes)
    size = config.thumbnail_size
    patches = {
        "size": size,
        "offsets": config.offsets,
        "min_distance": config.background_min_distance,
    }
    train_ds = patch_dataset(shards, prep["train_ids"], num_classes, seed=settings.seed, **patches)
    train_ds = train_ds.batch(settings.batch_size).prefetch(tf.data.AUTOTUNE)
    # At most 1000 windows of each family (~12 KB a patch): validation is cached in memory.
    val_ds = patch_dataset(shards, prep["val_ids"], num_classes, training=False, per_family=1000, **patches)
    val_ds = val_ds.batch(256).cache()
    # Counted (and cached) once: Keras warns of an input that "ran out of data" when a
    # validation set of unknown length ends.
    val_batches = sum(1 for _ in val_ds)
    # An epoch sees about as many patches as the thumbnails were: each dot window once per
    # diagonal shift, and backgrounds as often as a class.
    train_set = set(prep["train_ids"])
    dot_windows = sum(
        n
        for family, per in shards.windows.items()
        if family != GRID
        for i, n in per.items()
        if i in train_set
    )
    steps = max(
        1, -(-dot_windows * len(config.offsets) * (num_classes + 1) // (num_classes * settings.batch_size))
    )
    print(
        f"training patches streamed from the windows in {shards.folder}: {steps} batches of "
        f"{settings.batch_size} per epoch from {len(prep['train_ids'])} photos; validation patches "
        f"of {len(prep['val_ids'])} photos"
    )
    with device_strategy().scope():
        model = make_classifier_model((size, size, 3), len(names))
        reused = _init_from(model, settings, names)
        model.compile(
            optimizer=_adam(settings.learning_rate, reused, settings),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=settings.epochs,
        steps_per_epoch=steps,
        validation_steps=val_batches,
        shuffle=False,
        callbacks=_callbacks("val_loss", settings, [], loggers),
        verbose=_verbose(),
    )
    predicted, labels = [], []
    for x, y in val_ds:
        predicted.append(np.argmax(model.predict_on_batch(x), axis=1))
        labels.append(np.argmax(y.numpy(), axis=1))
    predicted, labels = np.concatenate(predicted), np.concatenate(labels)
    matrix = np.zeros((len(names), len(names)), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    per_class = {
        n: (float(matrix[k, k] / matrix[k].sum()) if matrix[k].sum() else None) for k, n in enumerate(names)
    }
    metrics = {
        "val_accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
        "val_accuracy_per_class": per_class,
        "val_patches": int(matrix.sum()),
    }
    info = {
        "patch_size": size,
        "class_names": names,
        "confusion": matrix,
        "train_ids": prep["train_ids"],
        "val_ids": prep["val_ids"],
        **_init_record(reused, settings),
    }
    if settings.data:
        # Whole held-out photos counted as the count job counts them: the errors its survey
        # intervals are made from.
        truth, counted = classifier_photo_counts(model, prep["val"], settings.data, config)
        info["val_counts"] = {"ids": [p.train_id for p in prep["val"]], "true": truth, "predicted": counted}
        rmse, zero = column_rmse(truth, counted), column_rmse(truth, np.zeros_like(truth))
        metrics["val_photo_rmse"] = float(rmse.mean())
        metrics["val_photo_zero_rmse"] = float(zero.mean())
    return model, history.history, metrics, info


def classifier_photo_counts(
    model: keras.Model, photos: list[PhotoDots], data: str, config: Config
) -> tuple[np.ndarray, np.ndarray]:
    """True and counted animals per class of whole photos, counted by the classifier's
    non-overlapping tiles (the count job's default); tiles centred in masked cells, whose
    animals were never dotted, are left out."""
    size, num_classes = config.thumbnail_size, len(config.classes)
    truth, counted = [], []
    for dots in photos:
        photo = load_photo(data, dots, config)
        scores = tile_scores(photo.image, model.predict_on_batch, patch=size)
        centres = np.arange(max(scores.shape[:2])) * size + size // 2
        masked = masked_at(
            photo.masked, centres[: scores.shape[0]], centres[: scores.shape[1]], block=config.dots.block
        )
        counted.append(class_counts(scores[~masked], num_classes))
        truth.append(dots.counts(num_classes))
    return np.array(truth, np.float64).reshape(-1, num_classes), np.array(counted).reshape(-1, num_classes)


def _init_from(model: keras.Model, settings: TrainSettings, names: list[str]) -> Reused | None:
    """With ``--init RUN``, copy RUN's weights into the new model and say what was reused."""
    if not settings.init:
        return None
    reused = init_from_run(model, settings.init, settings.kind, names)
    # A few photos give batch statistics far from the source's: the copied batch-norm
    # layers keep the source's statistics and scales (inference mode), as Keras's
    # transfer-learning guide advises, and the rest adapts around them.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name in reused.layers:
            layer.trainable = False
    print(
        f"--init {settings.init}: {len(reused.layers)} layers copied (trained at {settings.init_rate:g} of the "
        f"learning rate); output columns copied for {reused.classes or 'no class'}"
        + (f", fresh for {reused.fresh_classes}" if reused.fresh_classes else "")
    )
    return reused


def _adam(rate, reused: Reused | None, settings: TrainSettings) -> keras.optimizers.Optimizer:
    """Adam, or with ``--init`` Adam at ``--init-rate`` of the rate for the copied layers."""
    if reused is None:
        return keras.optimizers.Adam(rate)
    return LayerRateAdam(learning_rate=rate, slow_layers=reused.layers, slow_factor=settings.init_rate)


def _init_record(reused: Reused | None, settings: TrainSettings) -> dict[str, Any]:
    """model.json's record of the run a model started from."""
    if reused is None:
        return {}
    return {
        "init": {
            "run": storage.absolute(reused.run),
            "layers_copied": reused.layers,
            "classes_copied": reused.classes,
            "classes_fresh": reused.fresh_classes,
            "rate": settings.init_rate,
            "batch_norm": "copied layers frozen (inference mode)",
        }
    }


# --- density model ----------------------------------------------------------------------


def prepare_density(settings: TrainSettings, config: Config) -> dict[str, Any]:
    photos = read_extract(settings.extract, config, settings.data)
    train_ids, val_ids = split_photos(
        [p.train_id for p in photos],
        val_fraction=settings.val_fraction,
        seed=settings.seed,
        groups=_groups(photos, settings),
    )
    data = Path(settings.data)
    missing = [
        name
        for p in photos
        for name in ([p.image] if p.image else [f"Train/{p.train_id}.jpg", f"TrainDotted/{p.train_id}.jpg"])
        if not (data / name).is_file()
    ]
    if missing:
        raise ValueError(
            f"DATA {settings.data!r} lacks photos that OUT has metadata for: {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    by_id = {p.train_id: p for p in photos}
    return {
        "train": [by_id[i] for i in train_ids],
        "val": [by_id[i] for i in val_ids],
        "train_ids": train_ids,
        "val_ids": val_ids,
        "shards": training_windows(settings, config),
    }


def training_windows(settings: TrainSettings, config: Config) -> ShardIndex:
    """The windows training streams, checked: ``--windows``, else EXTRACT/windows when the
    windows stage wrote them there, else cut now, in this process, into RUN/windows.

    Raises
    ------
    ValueError
        As :func:`read_index`: no index, another scheme's classes, a missing or truncated shard.
    """
    folder = settings.windows
    if folder is None:
        folder = storage.join(settings.extract, "windows")
        if not storage.exists(storage.join(folder, "index.json")):
            if not settings.data:
                raise ValueError(
                    f"no windows in {folder} to train from and no --data DATA to cut them from: "
                    "give --data, or --windows with the output of herdcount windows"
                )
            folder = storage.join(settings.out, "windows")
            print(
                f"no windows in {settings.extract}/windows: cutting them into {folder} "
                "(for a large survey run herdcount windows on Spark first)"
            )
            job = WindowsJob(settings.extract, settings.data, folder, config=config, seed=settings.seed)
            print(run_in_process(job).summary)
    return read_index(folder, config)


class WeightAverage(keras.callbacks.Callback):
    """A running average of the weights (Polyak averaging), swapped in at each epoch's end
    for the callbacks after this one (validation, early stopping: the run keeps the best
    epoch's average) and swapped out at the next epoch's start, so training steps go on
    from the last weights. The average is over the steps taken, weighted by ``momentum``
    to the power of their age.

    A whole-photo count sums tens of thousands of output cells, so a small shift of the
    last layers between steps moves it by whole animals: counted with the last step's
    weights, the held-out RMSE swings from epoch to epoch and early stopping picks an
    epoch by luck. The average over the last ~1 / (1 - momentum) steps does not swing.
    """

    def __init__(self, momentum: float) -> None:
        super().__init__()
        self.momentum = momentum
        self.variables: list = []
        self.average: list[np.ndarray] = []
        self.steps = 0
        self.kept: list[np.ndarray] | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Float variables only: the weights and the batch-norm statistics, not seed states.
        self.variables = [v for v in self.model.weights if "float" in str(v.dtype)]
        self.average = [np.zeros(v.shape, np.float64) for v in self.variables]
        self.steps = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.steps += 1
        for mean, v in zip(self.average, self.variables):
            mean *= self.momentum
            mean += (1.0 - self.momentum) * v.numpy()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.kept = [v.numpy() for v in self.variables]
        # Started from zero and divided by the weight it has gathered, as Adam's moments
        # are: an average of the steps so far only, not of the initial weights.
        gathered = 1.0 - self.momentum**self.steps
        for v, mean in zip(self.variables, self.average):
            v.assign((mean / gathered).astype(v.dtype))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.kept is not None:
            for v, value in zip(self.variables, self.kept):
                v.assign(value)
            self.kept = None


class PhotoValidation(keras.callbacks.Callback):
    """Counts whole held-out photos with the count job's tiled inference after each epoch
    and adds ``val_rmse`` (averaged over classes) to the epoch's logs.

    Photos are decoded one at a time, counted and dropped, so memory does not grow with the
    split. After each epoch a fixed sample of at most ``per_epoch`` photos is counted (the
    same photos every epoch, so epochs compare); :meth:`count` counts them all.
    """

    def __init__(
        self,
        photos: list[PhotoDots],
        data: str,
        config: Config,
        *,
        stride: int,
        tile: int,
        margin: int,
        per_epoch: int,
        seed: int = 0,
        input_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.photos, self.data, self.config = photos, data, config
        self.input_scale = input_scale
        self.stride, self.tile, self.margin = stride, tile, margin
        order = np.random.default_rng(seed).permutation(len(photos))
        self.sample = np.sort(order[: max(1, per_epoch)])

    def count(self, which: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """True and predicted counts, (M, K) each, of the photos ``which`` (default all).

        Both leave out the masked cells grown by the model's margin. An animal a mask hid is
        not dotted, but the part of it beyond the mask is seen, and the model counts it
        there (19 animals within 24 px of masks in the held-out photos of four 160-photo
        runs, where the truth had none: 2.4 % of those photos' counts); a cell whose
        receptive field reaches no mask sees none of that.
        """

        def predict(batch: np.ndarray) -> np.ndarray:
            return self.model(batch, training=False).numpy()

        block = self.config.dots.block
        truth, counts = [], []
        for k in range(len(self.photos)) if which is None else which:
            photo = load_photo(self.data, self.photos[k], self.config)
            image, masked = photo.image, photo.masked
            if self.input_scale != 1:
                image = resize_rgb(image, self.input_scale)
                masked = resize_cells(masked, image.shape[:2], block=block)
            ratio = np.divide(image.shape[:2], photo.image.shape[:2])
            hidden = grow_cells(masked, self.margin, block=block)
            density = density_map(image, predict, stride=self.stride, tile=self.tile, margin=self.margin)
            counts.append(masked_counts(density, hidden, stride=self.stride, block=block))
            dots = self.photos[k]
            seen = ~masked_points(hidden, dots.points * ratio, block=block)
            truth.append(np.bincount(dots.classes[seen], minlength=len(self.config.classes)))
        return np.array(truth).reshape(-1, len(self.config.classes)), np.array(counts)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            truth, predicted = self.count(self.sample)
            rmse = column_rmse(truth, predicted)
            logs["val_rmse"] = float(rmse.mean())
            # Per class too: a rare class learned late (or never) hides in the mean.
            logs.update({f"val_rmse_{name}": float(r) for name, r in zip(self.config.class_names, rmse)})


def train_density(settings: TrainSettings, config: Config, prep: dict[str, Any], loggers: list):
    num_classes = len(config.classes)
    shards: ShardIndex = prep["shards"]
    val = prep["val"]
    print(
        f"{len(prep['train'])} training photos streamed from the windows in {shards.folder}, "
        f"{len(val)} validation photos counted whole"
    )
    strategy = device_strategy()
    with strategy.scope():
        model = make_density_model(
            num_classes,
            width=settings.density.width,
            depth=settings.density.depth,
            head=settings.density.head,
        )
        reused = _init_from(model, settings, list(config.class_names))
    geo = describe_density_model(model)
    stride, flops, margin = geo["output_stride"], geo["flops_per_megapixel"], geo["margin"]
    print(
        f"density model: {model.count_params():,} weights, output stride {stride}, receptive field "
        f"{geo['receptive_field']} px, {flops / 1e9:.2f} GFLOP per megapixel"
    )
    sampling = {"size": settings.density.tile_size, "stride": stride, "sigma": settings.density.sigma}
    input_scale = settings.density.input_scale or working_scale(
        list(extract_lengths(settings.extract).values()), geo["receptive_field"]
    )
    if input_scale != 1:
        print(f"the model works at {input_scale:g} of the photos' size (the animals' sizes and its field)")
    train_ds = window_dataset(
        shards,
        prep["train_ids"],
        num_classes,
        empty_share=settings.density.empty_share,
        scale_range=(settings.density.min_scale * input_scale, settings.density.max_scale * input_scale),
        scale_sigma=settings.density.scale_sigma,
        seed=settings.seed,
        **sampling,
    )
    train_ds = train_ds.batch(settings.batch_size).prefetch(tf.data.AUTOTUNE)
    # Fixed validation tiles at scale 1 for val_loss; the photo counts below are what matters.
    val_tiles = window_dataset(
        shards,
        prep["val_ids"],
        num_classes,
        empty_share=settings.density.empty_share,
        scale_range=(input_scale, input_scale),
        augmented=False,
        seed=settings.seed + 1,
        **sampling,
    )
    tiles = list(val_tiles.take(8 * settings.batch_size).as_numpy_iterator())
    val_data = (np.stack([t[0] for t in tiles]), np.stack([t[1] for t in tiles]))
    validation = PhotoValidation(
        val,
        settings.data,
        config,
        stride=stride,
        tile=settings.density.inference_tile,
        margin=margin,
        per_epoch=settings.density.val_photos_per_epoch,
        seed=settings.seed,
        input_scale=input_scale,
    )
    fit = {
        "steps_per_epoch": settings.density.steps_per_epoch,
        "validation_data": val_data,
        "shuffle": False,
        "verbose": _verbose(),
    }
    # Cosine decay to a tenth settles the weights and the batch-norm statistics at the end,
    # which a whole-photo count (a sum over ~30,000 cells) is sensitive to.
    schedule = keras.optimizers.schedules.CosineDecay(
        settings.learning_rate, settings.epochs * settings.density.steps_per_epoch, alpha=0.1
    )
    class_weights = None
    if settings.density.class_balance:
        dots = np.sum([p.counts(num_classes) for p in prep["train"]], axis=0)
        class_weights = balance_weights(dots, settings.density.class_balance)
        print(
            "loss weights per class: "
            + ", ".join(f"{n} {w:.2f} ({d} dots)" for n, w, d in zip(config.class_names, class_weights, dots))
        )
    with strategy.scope():
        model.compile(
            optimizer=_adam(schedule, reused, settings),
            loss=DensityLoss(count_weight=settings.density.count_weight, class_weights=class_weights),
            metrics=[tile_count_error],
        )
    first = [validation]
    if settings.density.weight_average:
        first.insert(0, WeightAverage(settings.density.weight_average))
    callbacks = _callbacks("val_rmse", settings, first, loggers, plateau=False)
    start_rmse, start_weights, start_kept = None, None, False
    if reused is not None:
        # Fine-tuning must not hand back a model worse on the held-out photos than the one it
        # started from: the start is validated as epoch 0 and kept if no epoch beats it.
        validation.set_model(model)
        start_rmse = column_rmse(*validation.count(validation.sample)).mean()
        start_weights = model.get_weights()
        print(f"--init: the start counts the held-out photos at val_rmse {start_rmse:.4f}")
    history = model.fit(train_ds, epochs=settings.epochs, callbacks=callbacks, **fit).history
    if start_rmse is not None and min(history["val_rmse"]) >= start_rmse:
        print(
            f"--init: no epoch beat the start (best val_rmse {min(history['val_rmse']):.4f}): the start is kept"
        )
        model.set_weights(start_weights)
        start_kept = True
    truth, predicted = validation.count()
    rmse, zero = column_rmse(truth, predicted), column_rmse(truth, np.zeros_like(predicted))
    metrics = {
        **(
            {"init_start_val_rmse": float(start_rmse), "init_start_kept": start_kept}
            if start_rmse is not None
            else {}
        ),
        "val_rmse": float(rmse.mean()),
        "val_rmse_per_class": dict(zip(config.class_names, rmse.round(4).tolist())),
        "zero_baseline_rmse": float(zero.mean()),
        "zero_baseline_rmse_per_class": dict(zip(config.class_names, zero.round(4).tolist())),
        "rmse_ratio_to_zero_baseline": float(rmse.mean() / zero.mean()) if zero.mean() > 0 else None,
        "val_photos": len(val),
        "val_total_per_class": dict(zip(config.class_names, truth.sum(axis=0).tolist())),
        "val_predicted_total_per_class": dict(
            zip(config.class_names, predicted.sum(axis=0).round(1).tolist())
        ),
    }
    info = {
        "tile_size": settings.density.tile_size,
        "input_scale": input_scale,
        "output_stride": stride,
        "receptive_field": geo["receptive_field"],
        "margin": margin,
        "flops_per_megapixel": flops,
        "class_names": config.class_names,
        "val_counts": {"ids": [p.train_id for p in val], "true": truth, "predicted": predicted},
        "val_unit": "photo",
        "train_ids": prep["train_ids"],
        "val_ids": prep["val_ids"],
        # The photos whose counts chose the epoch kept: their errors are a little optimistic.
        "epoch_chosen_on": sorted(val[i].train_id for i in validation.sample),
        **_init_record(reused, settings),
    }
    if any(p.group is not None for p in val):
        # Tiles of one source photo share its light, ground and crowding: their errors are
        # not independent, so the intervals resample whole groups, as the split held them out.
        groups = [p.group for p in val]
        ids, true_g, predicted_g = group_errors(info["val_counts"]["ids"], groups, truth, predicted)
        chosen = {val[i].group or val[i].train_id for i in validation.sample}
        info.update(
            val_counts={"ids": ids, "true": true_g, "predicted": predicted_g},
            val_unit="group",
            epoch_chosen_on=sorted(chosen),
        )
    return model, history, metrics, info


# --- scale model ------------------------------------------------------------------------

#: Ground scales the validation photos are resized to, to check the photo estimate.
CHECK_ZOOMS = (0.6, 1.0, 1.6)


def train_scale(settings: TrainSettings, config: Config, prep: dict[str, Any], loggers: list):
    """Train the scale model on zoomed squares of the windows; validate it on the held-out
    photos' windows (tiles) and on the held-out photos resized to :data:`CHECK_ZOOMS` (the
    whole-photo estimate the count job makes)."""
    reader = settings.scale
    shards: ShardIndex = prep["shards"]
    zooms = (reader.min_zoom, reader.max_zoom)
    strategy = device_strategy()
    with strategy.scope():
        model = make_scale_model(width=reader.width)
    print(
        f"scale model: {model.count_params():,} weights, tiles of {reader.tile_size} px shown at ground "
        f"scales {zooms[0]}-{zooms[1]}; {len(prep['train'])} training photos, {len(prep['val'])} held out"
    )
    common = {"size": reader.tile_size, "zoom_range": zooms}
    train_ds = scale_dataset(shards, prep["train_ids"], seed=settings.seed, **common)
    train_ds = train_ds.batch(settings.batch_size).prefetch(tf.data.AUTOTUNE)
    val_ds = scale_dataset(
        shards, prep["val_ids"], training=False, seed=settings.seed + 1, per_family=64, **common
    )
    val_ds = val_ds.batch(settings.batch_size).cache()
    val_steps = sum(1 for _ in val_ds)
    schedule = keras.optimizers.schedules.CosineDecay(
        settings.learning_rate, settings.epochs * reader.steps_per_epoch, alpha=0.1
    )
    with strategy.scope():
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=ScaleLoss(), metrics=[scale_error])
    callbacks = _callbacks("val_loss", settings, [], loggers, plateau=False)
    history = model.fit(
        train_ds,
        epochs=settings.epochs,
        steps_per_epoch=reader.steps_per_epoch,
        validation_data=val_ds,
        validation_steps=val_steps,
        shuffle=False,
        callbacks=callbacks,
        verbose=_verbose(),
    ).history

    def predict(batch: np.ndarray) -> np.ndarray:
        return model(batch, training=False).numpy()

    errors = []
    for photo in prep["val"]:
        image = load_photo(settings.data, photo, config).image
        for zoom in CHECK_ZOOMS:
            shown = resize_rgb(image, zoom)
            if min(shown.shape[:2]) < reader.tile_size:
                continue
            found = estimate_scale(shown, predict, size=reader.tile_size)
            errors.append(found.scale / zoom - 1)
    errors = np.abs(np.array(errors)) if errors else np.array([np.nan])
    metrics = {
        "val_scale_error": float(history["val_scale_error"][int(np.argmin(history["val_loss"]))]),
        "photo_scale_error_median": float(np.median(errors)),
        "photo_scale_error_max": float(np.max(errors)),
        "photo_scale_checks": int(np.isfinite(errors).sum()),
        "check_zooms": list(CHECK_ZOOMS),
    }
    info = {
        "tile_size": reader.tile_size,
        "zoom_range": list(zooms),
        "class_names": config.class_names,
        "train_ids": prep["train_ids"],
        "val_ids": prep["val_ids"],
    }
    return model, history, metrics, info


# --- outputs ----------------------------------------------------------------------------


def write_run(
    run: Path,
    settings: TrainSettings,
    config: Config,
    model: keras.Model,
    history: dict,
    metrics: dict,
    info: dict,
    clock: RunClock,
    *,
    given: TrainSettings | None = None,
) -> None:
    """Write the model and every report; model.json last, as the mark of a finished run.

    ``given`` holds the settings as the user gave them (S3 URIs) when ``settings`` point at
    local copies; the records name what was given."""
    given = given or settings
    run.mkdir(parents=True, exist_ok=True)
    history = {k: [float(v) for v in vals] for k, vals in history.items()}
    epochs = len(next(iter(history.values()), []))
    lines = [",".join(["epoch", *history])]
    lines += [",".join([str(e + 1), *(f"{history[k][e]:.6g}" for k in history)]) for e in range(epochs)]
    storage.write_text_atomic(run / "history.csv", "\n".join(lines) + "\n")
    plot_curves(history, run / "curves.png")
    names = info["class_names"]
    if "confusion" in info:
        matrix = info["confusion"]
        rows = [",".join(["true\\predicted", *names])]
        rows += [",".join([names[k], *map(str, matrix[k])]) for k in range(len(names))]
        storage.write_text_atomic(run / "confusion.csv", "\n".join(rows) + "\n")
        plot_confusion(matrix, names, run / "confusion.png")
    if "val_counts" in info:
        val = info["val_counts"]
        counted = names[: val["true"].shape[1]]
        plot_counts(val["true"], val["predicted"], counted, run / "validation_counts.png")
        # The model's measured errors, per held-out photo: the count job's survey intervals.
        write_validation_counts(run / VALIDATION_COUNTS, val["ids"], val["true"], val["predicted"], counted)
    extract_run = _extract_run(settings.extract)
    fingerprint = fingerprint_files(settings.extract, ["metadata"])
    described = {
        "kind": settings.kind,
        "class_names": names,
        "input_scale": info.get("input_scale", 1.0),
        # Each class's body length from its boxes: point matching's radius (score --radius auto).
        **(
            {"class_lengths_px": lengths}
            if any((lengths := extract_lengths(settings.extract)).values())
            else {}
        ),
        "training_scale_range": [settings.density.min_scale, settings.density.max_scale]
        if settings.kind == "density"
        else None,
        **{
            k: info[k]
            for k in (
                "patch_size",
                "tile_size",
                "output_stride",
                "receptive_field",
                "margin",
                "flops_per_megapixel",
                "zoom_range",
                "init",
            )
            if k in info
        },
        "training_data": {
            "extract": storage.absolute(given.extract),
            "fingerprint": fingerprint,
            "train_ids": info["train_ids"],
            "val_ids": info["val_ids"],
            **({"epoch_chosen_on": info["epoch_chosen_on"]} if "epoch_chosen_on" in info else {}),
            # What a row of validation_counts.csv is: a held-out photo, or a held-out group.
            **({"validation_unit": info["val_unit"]} if info.get("val_unit") == "group" else {}),
        },
        "metrics": metrics,
        "epochs_run": epochs,
        "seed": settings.seed,
    }
    write_run_json(
        run,
        job="train",
        config={"settings": dataclasses.asdict(given), "scheme": config.to_dict()},
        inputs={
            # Absolute: a report or lineage run from another folder must find them.
            "extract": storage.absolute(given.extract),
            "data": storage.absolute(given.data) if given.data else None,
            "fingerprint": fingerprint,
            "extract_run": extract_run,
        },
        clock=clock,
        totals=metrics,
    )
    save_model_run(run, model, described)


def extract_lengths(extract: str) -> dict[str, float | None]:
    """Each class's body length as the extract measured it from boxes (none for dotted pairs)."""
    run = read_run(extract)
    sizes = (run.totals.get("sizes") if run is not None else None) or {}
    return {name: v.get("length_px") for name, v in sizes.items()}


def _extract_run(out: str) -> dict[str, Any] | None:
    run = read_run(out)
    if run is None:
        return None
    return {
        "path": storage.absolute(storage.join(out, "run.json")),
        "started_at": run.times.get("started_at"),
        "inputs": run.inputs,
    }


def _flat(metrics: dict[str, Any]) -> dict[str, float]:
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, (int, float))})
        elif isinstance(value, (int, float)):
            flat[key] = value
    return flat


def format_summary(kind: str, metrics: dict[str, Any]) -> str:
    """The lines printed at the end of a run: for a density model, a table of the validation
    photos per class and a warning for each class counted no better than all zeros."""
    if kind == "scale":
        return (
            f"scale read within {100 * metrics['val_scale_error']:.1f} % (mean log error) on held-out tiles; "
            f"held-out photos resized to {metrics['check_zooms']}: median error "
            f"{100 * metrics['photo_scale_error_median']:.1f} %, largest {100 * metrics['photo_scale_error_max']:.1f} % "
            f"over {metrics['photo_scale_checks']} estimates"
        )
    if kind == "classifier":
        per = ", ".join(f"{k} {v:.3f}" for k, v in metrics["val_accuracy_per_class"].items() if v is not None)
        return f"validation accuracy {metrics['val_accuracy']:.3f} over {metrics['val_patches']} patches\n  per class: {per}"
    ratio = metrics["rmse_ratio_to_zero_baseline"]
    lines = [
        f"validation RMSE {metrics['val_rmse']:.3f} averaged over classes on {metrics['val_photos']} photos "
        f"(all-zeros baseline {metrics['zero_baseline_rmse']:.3f}; ratio "
        f"{'n/a' if ratio is None else f'{ratio:.3f}'})"
    ]
    rmse, zero = metrics["val_rmse_per_class"], metrics["zero_baseline_rmse_per_class"]
    true, predicted = metrics.get("val_total_per_class", {}), metrics.get("val_predicted_total_per_class", {})
    width = max(len("class"), *map(len, rmse))
    lines.append(
        f"  {'class':<{width}}  {'true':>6}  {'counted':>8}  {'RMSE':>7}  {'zeros':>7}  {'ratio':>6}"
    )
    weak = []
    for name in rmse:
        share = rmse[name] / zero[name] if zero[name] > 0 else float("nan")
        lines.append(
            f"  {name:<{width}}  {true.get(name, float('nan')):>6.0f}  {predicted.get(name, float('nan')):>8.1f}"
            f"  {rmse[name]:>7.3f}  {zero[name]:>7.3f}  {share:>6.2f}"
        )
        if zero[name] > 0 and rmse[name] >= zero[name]:
            weak.append(name)
    for name in weak:
        lines.append(
            f"warning: {name} is counted no better than predicting none (RMSE {rmse[name]:.3f}, all zeros "
            f"{zero[name]:.3f}): too few in the training photos, or confused with another class"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
