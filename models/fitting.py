"""What every trainer shares: callbacks, the device strategy, the split by groups, ``--init``,
and the training windows."""

from __future__ import annotations

import os
import sys
from typing import Any

from herdcount.predictors import QUIET_TENSORFLOW

os.environ.setdefault(*QUIET_TENSORFLOW)  # before TensorFlow is imported

import keras
import tensorflow as tf

from herdcount import storage
from herdcount.config import Config
from herdcount.extracted import PhotoDots, read_extract, split_photos
from herdcount.models.settings import TrainSettings
from herdcount.models.shard_reader import ShardIndex, read_index
from herdcount.models.transfer import LayerRateAdam, Reused, init_from_run
from herdcount.runner import run_in_process
from herdcount.shards import WindowsJob

#: Epochs without improvement before the classifier's rate is halved.
PLATEAU_PATIENCE = 3


def callbacks_for(
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
            monitor=monitor,
            mode="min",
            patience=settings.patience,
            restore_best_weights=settings.keep == "best",
            verbose=1,
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


def fit_verbose() -> int:
    # A live bar on a terminal; one line per epoch in logs, where bars become noise.
    return 1 if sys.stdout.isatty() else 2


def split_extract(settings: TrainSettings, config: Config) -> tuple[list[PhotoDots], list[str], list[str]]:
    """The extract's photos and their split into training and held-out ids (whole groups
    held out where ``--split group`` and the extract recorded groups)."""
    photos = read_extract(settings.extract, config, settings.data)
    train_ids, val_ids = split_photos(
        [p.train_id for p in photos],
        val_fraction=settings.val_fraction,
        seed=settings.seed,
        groups=photo_groups(photos, settings),
    )
    return photos, train_ids, val_ids


def photo_groups(photos: list[PhotoDots], settings: TrainSettings) -> dict[str, str | None] | None:
    """Each photo's group where the split holds out whole groups (``--split group``, the
    default, and the extract recorded groups), else None: photos held out one by one."""
    if settings.split != "group":
        return None
    return {p.train_id: p.group for p in photos}


def init_from(model: keras.Model, settings: TrainSettings, names: list[str]) -> Reused | None:
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


def adam_for(rate, reused: Reused | None, settings: TrainSettings) -> keras.optimizers.Optimizer:
    """Adam, or with ``--init`` Adam at ``--init-rate`` of the rate for the copied layers."""
    if reused is None:
        return keras.optimizers.Adam(rate)
    return LayerRateAdam(learning_rate=rate, slow_layers=reused.layers, slow_factor=settings.init_rate)


def init_record(reused: Reused | None, settings: TrainSettings) -> dict[str, Any]:
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
