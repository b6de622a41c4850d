"""Write a finished training run into RUN: history, pictures, validation counts, run.json,
and the model with its model.json last."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herdcount.predictors import QUIET_TENSORFLOW

os.environ.setdefault(*QUIET_TENSORFLOW)  # before TensorFlow is imported

import keras
import numpy as np

from herdcount import storage
from herdcount.config import Config
from herdcount.intervals import VALIDATION_COUNTS, write_validation_counts
from herdcount.modelrun import ModelRun
from herdcount.models.builders import (
    save_model_run,
)
from herdcount.models.settings import TrainSettings
from herdcount.plots import plot_confusion, plot_counts, plot_curves
from herdcount.runinfo import RunClock, fingerprint_files, read_run, write_run_json


@dataclass(frozen=True)
class HeldOutCounts:
    """True and counted animals of the held-out photos (or groups), one row each."""

    ids: list[str]
    true: np.ndarray
    predicted: np.ndarray


@dataclass(frozen=True)
class Trained:
    """What a trainer hands the run writer beside the model, its history and its metrics."""

    class_names: list[str]
    train_ids: list[str]
    val_ids: list[str]
    #: The :class:`~herdcount.modelrun.ModelRun` fields the trainer knows (geometry,
    #: working scale, the run it started from).
    described: dict[str, Any] = field(default_factory=dict)
    #: The held-out counts the survey intervals rest on (validation_counts.csv).
    held_out: HeldOutCounts | None = None
    #: What a row of ``held_out`` is: a ``photo`` or a ``group`` of photos.
    held_out_unit: str = "photo"
    #: Held-out photos (or groups) whose counts chose the epoch kept.
    epoch_chosen_on: list[str] | None = None
    #: A classifier's confusion matrix over the held-out patches.
    confusion: np.ndarray | None = None
    #: More files of the run (the int8 export), written before model.json.
    files: dict[str, bytes] = field(default_factory=dict)


def write_run(
    run: Path,
    settings: TrainSettings,
    config: Config,
    model: keras.Model,
    history: dict,
    metrics: dict,
    trained: Trained,
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
    names = trained.class_names
    if trained.confusion is not None:
        matrix = trained.confusion
        rows = [",".join(["true\\predicted", *names])]
        rows += [",".join([names[k], *map(str, matrix[k])]) for k in range(len(names))]
        storage.write_text_atomic(run / "confusion.csv", "\n".join(rows) + "\n")
        plot_confusion(matrix, names, run / "confusion.png")
    val = trained.held_out
    if val is not None:
        counted = names[: val.true.shape[1]]
        plot_counts(val.true, val.predicted, counted, run / "validation_counts.png")
        # The model's measured errors, per held-out photo: the count job's survey intervals.
        write_validation_counts(run / VALIDATION_COUNTS, val.ids, val.true, val.predicted, counted)
    extract_run = extract_run_record(settings.extract)
    fingerprint = fingerprint_files(settings.extract, ["metadata"])
    lengths = extract_lengths(settings.extract)
    described = ModelRun(
        path=str(run),
        kind=settings.kind,
        class_names=tuple(names),
        # Each class's body length from its boxes: point matching's radius (score --radius auto).
        class_lengths_px=lengths if any(lengths.values()) else None,
        **trained.described,
        training_data={
            "extract": storage.absolute(given.extract),
            "fingerprint": fingerprint,
            "train_ids": trained.train_ids,
            "val_ids": trained.val_ids,
            **({"epoch_chosen_on": trained.epoch_chosen_on} if trained.epoch_chosen_on is not None else {}),
            # What a row of validation_counts.csv is: a held-out photo, or a held-out group.
            **({"validation_unit": trained.held_out_unit} if trained.held_out_unit != "photo" else {}),
        },
        metrics=metrics,
        epochs_run=epochs,
        seed=settings.seed,
    )
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
    for name, data in trained.files.items():
        storage.write_bytes_atomic(run / name, data)
    save_model_run(run, model, described)


def extract_lengths(extract: str) -> dict[str, float | None]:
    """Each class's body length as the extract measured it from boxes (none for dotted pairs)."""
    run = read_run(extract)
    sizes = (run.totals.get("sizes") if run is not None else None) or {}
    return {name: v.get("length_px") for name, v in sizes.items()}


def extract_run_record(out: str) -> dict[str, Any] | None:
    run = read_run(out)
    if run is None:
        return None
    return {
        "path": storage.absolute(storage.join(out, "run.json")),
        "started_at": run.times.get("started_at"),
        "inputs": run.inputs,
    }


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, (int, float))})
        elif isinstance(value, (int, float)):
            flat[key] = value
    return flat
