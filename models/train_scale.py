"""Train the scale model (``herdcount train --kind scale``, for ``herdcount count --scale auto``)."""

from __future__ import annotations

import os
from typing import Any

from herdcount.predictors import QUIET_TENSORFLOW

os.environ.setdefault(*QUIET_TENSORFLOW)  # before TensorFlow is imported

import keras
import numpy as np
import tensorflow as tf

from herdcount.config import Config
from herdcount.extracted import load_photo
from herdcount.imaging import resize_rgb
from herdcount.models.builders import (
    ScaleLoss,
    make_scale_model,
    scale_error,
)
from herdcount.models.fitting import (
    callbacks_for,
    device_strategy,
    fit_verbose,
)
from herdcount.models.run_writer import Trained
from herdcount.models.settings import TrainSettings
from herdcount.models.shard_reader import ShardIndex, scale_dataset
from herdcount.models.train_density import prepare as prepare_density
from herdcount.scale import estimate_scale

#: The scale model trains on the density model's split and windows.
prepare = prepare_density

#: Ground scales the validation photos are resized to, to check the photo estimate.
CHECK_ZOOMS = (0.6, 1.0, 1.6)


def train(settings: TrainSettings, config: Config, prep: dict[str, Any], loggers: list):
    """Train the scale model on zoomed squares of the windows; validate it on the held-out
    photos' windows (tiles) and on the held-out photos resized to :data:`CHECK_ZOOMS` (the
    whole-photo estimate the count job makes)."""
    reader = settings.scale
    shards: ShardIndex = prep["shards"]
    zooms = reader.zoom_range
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
    callbacks = callbacks_for("val_loss", settings, [], loggers, plateau=False)
    history = model.fit(
        train_ds,
        epochs=settings.epochs,
        steps_per_epoch=reader.steps_per_epoch,
        validation_data=val_ds,
        validation_steps=val_steps,
        shuffle=False,
        callbacks=callbacks,
        verbose=fit_verbose(),
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
    trained = Trained(
        list(config.class_names),
        prep["train_ids"],
        prep["val_ids"],
        described={"tile_size": reader.tile_size, "zoom_range": zooms},
    )
    return model, history, metrics, trained


def summary(metrics: dict[str, Any]) -> str:
    """The line printed at the end of a scale run."""
    return (
        f"scale read within {100 * metrics['val_scale_error']:.1f} % (mean log error) on held-out tiles; "
        f"held-out photos resized to {metrics['check_zooms']}: median error "
        f"{100 * metrics['photo_scale_error_median']:.1f} %, largest {100 * metrics['photo_scale_error_max']:.1f} % "
        f"over {metrics['photo_scale_checks']} estimates"
    )
