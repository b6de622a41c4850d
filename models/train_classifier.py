"""Train the patch classifier (``herdcount train --kind classifier``): patches streamed from the
windows, whole held-out photos counted by its tiles."""

from __future__ import annotations

import os
from typing import Any

from herdcount.predictors import QUIET_TENSORFLOW

os.environ.setdefault(*QUIET_TENSORFLOW)  # before TensorFlow is imported

import keras
import numpy as np
import tensorflow as tf

from herdcount.config import Config
from herdcount.dot_cells import masked_at
from herdcount.extracted import PhotoDots, load_photo
from herdcount.models.builders import (
    make_classifier_model,
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
from herdcount.models.run_writer import HeldOutCounts, Trained
from herdcount.models.settings import TrainSettings
from herdcount.models.shard_reader import patch_dataset
from herdcount.score import column_rmse
from herdcount.tiling import class_counts, tile_scores
from herdcount.windows import GRID


def prepare(settings: TrainSettings, config: Config) -> dict[str, Any]:
    photos, train_ids, val_ids = split_extract(settings, config)
    by_id = {p.train_id: p for p in photos}
    return {
        "names": [*config.class_names, config.background_class],
        "train_ids": train_ids,
        "val_ids": val_ids,
        "val": [by_id[i] for i in val_ids],
        "shards": training_windows(settings, config),
    }


def train(settings: TrainSettings, config: Config, prep: dict[str, Any], loggers: list):
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
        reused = init_from(model, settings, names)
        model.compile(
            optimizer=adam_for(settings.learning_rate, reused, settings),
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
        callbacks=callbacks_for("val_loss", settings, [], loggers),
        verbose=fit_verbose(),
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
    held_out = None
    if settings.data:
        # Whole held-out photos counted as the count job counts them: the errors its survey
        # intervals are made from.
        truth, counted = classifier_photo_counts(model, prep["val"], settings.data, config)
        held_out = HeldOutCounts([p.train_id for p in prep["val"]], truth, counted)
        rmse, zero = column_rmse(truth, counted), column_rmse(truth, np.zeros_like(truth))
        metrics["val_photo_rmse"] = float(rmse.mean())
        metrics["val_photo_zero_rmse"] = float(zero.mean())
    trained = Trained(
        names,
        prep["train_ids"],
        prep["val_ids"],
        described={"patch_size": size, **init_record(reused, settings)},
        held_out=held_out,
        confusion=matrix,
    )
    return model, history.history, metrics, trained


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


def summary(metrics: dict[str, Any]) -> str:
    """The lines printed at the end of a classifier run."""
    per = ", ".join(f"{k} {v:.3f}" for k, v in metrics["val_accuracy_per_class"].items() if v is not None)
    return f"validation accuracy {metrics['val_accuracy']:.3f} over {metrics['val_patches']} patches\n  per class: {per}"
