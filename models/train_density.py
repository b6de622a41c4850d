"""Train the density count model (``herdcount train --kind density``): tiles streamed from the
windows with their density targets, held-out photos counted whole after each epoch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from herdcount.predictors import QUIET_TENSORFLOW

os.environ.setdefault(*QUIET_TENSORFLOW)  # before TensorFlow is imported

import keras
import numpy as np
import tensorflow as tf

from herdcount.annotations import resize_cells
from herdcount.config import Config
from herdcount.dot_cells import grow_cells, masked_points
from herdcount.extracted import PhotoDots, load_photo
from herdcount.imaging import resize_rgb
from herdcount.intervals import group_errors
from herdcount.models.builders import (
    DensityLoss,
    balance_weights,
    density_count_error,
    describe_density_model,
    inference_model,
    make_density_model,
    tile_count_error,
    with_centre_head,
)
from herdcount.models.fitting import (
    adam_for,
    callbacks_for,
    device_strategy,
    fit_verbose,
    init_from,
    init_record,
    split_extract,
    training_windows,
)
from herdcount.models.run_writer import HeldOutCounts, Trained, extract_lengths
from herdcount.models.settings import TrainSettings
from herdcount.models.shard_reader import ShardIndex, window_dataset
from herdcount.precision import compare_precisions, count_scales, scaled
from herdcount.predictors import INT8, lite_predictor, quantized_tflite
from herdcount.scale import working_scale
from herdcount.score import column_rmse
from herdcount.tiling import density_map, masked_counts


def prepare(settings: TrainSettings, config: Config) -> dict[str, Any]:
    photos, train_ids, val_ids = split_extract(settings, config)
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
        counting: keras.Model | None = None,
    ) -> None:
        super().__init__()
        # The model counted: the one fitted, or the density model inside it (a model with
        # a centre head fits both heads and counts with the density maps alone).
        self.counting = counting
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
            return (self.counting or self.model)(batch, training=False).numpy()

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

    def images(self, which: np.ndarray | None = None):
        """The photos ``which`` (default all) as the model sees them, one at a time."""
        for k in range(len(self.photos)) if which is None else which:
            image = load_photo(self.data, self.photos[k], self.config).image
            yield resize_rgb(image, self.input_scale) if self.input_scale != 1 else image

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            truth, predicted = self.count(self.sample)
            rmse = column_rmse(truth, predicted)
            logs["val_rmse"] = float(rmse.mean())
            # Per class too: a rare class learned late (or never) hides in the mean.
            logs.update({f"val_rmse_{name}": float(r) for name, r in zip(self.config.class_names, rmse)})


def train(settings: TrainSettings, config: Config, prep: dict[str, Any], loggers: list):
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
        reused = init_from(model, settings, list(config.class_names))
    geo = describe_density_model(model)
    stride, flops, margin = geo["output_stride"], geo["flops_per_megapixel"], geo["margin"]
    print(
        f"density model: {model.count_params():,} weights, output stride {stride}, receptive field "
        f"{geo['receptive_field']} px, {flops / 1e9:.2f} GFLOP per megapixel"
    )
    centres = settings.density.centre_weight > 0
    if centres:
        print(
            f"a centre head trains beside the density map (focal loss, weight "
            f"{settings.density.centre_weight:g}); the density model alone is kept"
        )
    sampling = {
        "size": settings.density.tile_size,
        "stride": stride,
        "sigma": settings.density.sigma,
        "centres": centres,
    }
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
        counting=model if centres else None,
    )
    fit = {
        "steps_per_epoch": settings.density.steps_per_epoch,
        "validation_data": val_data,
        "shuffle": False,
        "verbose": fit_verbose(),
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
        # With a centre head, the model fitted is the density model and the head; the
        # density model alone is validated, kept and exported.
        fitted = with_centre_head(model) if centres else model
        fitted.compile(
            optimizer=adam_for(schedule, reused, settings),
            loss=DensityLoss(
                count_weight=settings.density.count_weight,
                class_weights=class_weights,
                centre_weight=settings.density.centre_weight,
            ),
            metrics=[density_count_error(num_classes) if centres else tile_count_error],
        )
    first = [validation]
    if settings.density.weight_average:
        first.insert(0, WeightAverage(settings.density.weight_average))
    callbacks = callbacks_for("val_rmse", settings, first, loggers, plateau=False)
    start_rmse, start_weights, start_kept = None, None, False
    if reused is not None:
        # Fine-tuning must not hand back a model worse on the held-out photos than the one it
        # started from: the start is validated as epoch 0 and kept if no epoch beats it.
        validation.set_model(model)
        start_rmse = column_rmse(*validation.count(validation.sample)).mean()
        start_weights = model.get_weights()
        print(f"--init: the start counts the held-out photos at val_rmse {start_rmse:.4f}")
    history = fitted.fit(train_ds, epochs=settings.epochs, callbacks=callbacks, **fit).history
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
    files, int8 = {}, None
    if settings.density.int8:
        # Calibrated on training windows; checked on the held-out photos that chose no epoch
        # where there are enough of them (else those that did).
        samples = [x for x, _ in train_ds.take(4).as_numpy_iterator()]
        quantized = quantized_tflite(inference_model(model), samples)
        unchosen = np.setdiff1d(np.arange(len(val)), validation.sample)
        which = (unchosen if len(unchosen) >= 8 else np.arange(len(val)))[
            : settings.density.val_photos_per_epoch
        ]

        def exact(batch: np.ndarray) -> np.ndarray:
            return model(batch, training=False).numpy()

        # Each class's steady share off float, measured on more training tiles than the
        # calibration's (rare classes need them), is undone before the held-out check.
        fast = lite_predictor(quantized)
        scales = count_scales((x for x, _ in train_ds.take(16).as_numpy_iterator()), exact, fast)
        int8 = compare_precisions(
            validation.images(which),
            exact,
            scaled(fast, scales),
            list(config.class_names),
            stride=stride,
            margin=margin,
            tile=settings.density.inference_tile,
        )
        int8["count_scale"] = {n: round(float(v), 5) for n, v in zip(config.class_names, scales)}
        files[INT8] = quantized
        worst = max(int8["count_share"].values(), default=0.0)
        print(
            "int8 export: counts scaled by "
            + ", ".join(f"{n} {v:.4f}" for n, v in int8["count_scale"].items())
            + f" (float over int8 on training tiles); within {100 * worst:.2f} % of float per class, "
            f"{100 * int8['points_within_px']:.1f} % of points within {int8['thresholds']['point_px']:g} px "
            f"on {int8['photos']} held-out photos: {'kept for counting' if int8['passed'] else 'float counts'}"
        )
    described = {
        "tile_size": settings.density.tile_size,
        "input_scale": input_scale,
        "training_scale_range": (settings.density.min_scale, settings.density.max_scale),
        "output_stride": stride,
        "receptive_field": geo["receptive_field"],
        "margin": margin,
        "flops_per_megapixel": flops,
        **init_record(reused, settings),
        **({"int8": int8} if int8 is not None else {}),
    }
    held_out = HeldOutCounts([p.train_id for p in val], truth, predicted)
    # The photos whose counts chose the epoch kept: their errors are a little optimistic.
    chosen, unit = sorted(val[i].train_id for i in validation.sample), "photo"
    if any(p.group is not None for p in val):
        # Tiles of one source photo share its light, ground and crowding: their errors are
        # not independent, so the intervals resample whole groups, as the split held them out.
        held_out = HeldOutCounts(*group_errors(held_out.ids, [p.group for p in val], truth, predicted))
        chosen, unit = sorted({val[i].group or val[i].train_id for i in validation.sample}), "group"
    trained = Trained(
        list(config.class_names),
        prep["train_ids"],
        prep["val_ids"],
        described=described,
        held_out=held_out,
        held_out_unit=unit,
        epoch_chosen_on=chosen,
        files=files,
    )
    return model, history, metrics, trained


def summary(metrics: dict[str, Any]) -> str:
    """The lines printed at the end of a density run: a table of the validation photos per
    class and a warning for each class counted no better than all zeros."""
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
