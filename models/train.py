"""Train a patch classifier or a density count model from an extract job's output
(``herdcount train``, whose command line is :mod:`herdcount.commands.train`).

A plain Keras 3 / TensorFlow program on one machine (not a Spark job); it uses a GPU
when TensorFlow sees one. RUN receives model.keras, model.json, history.csv, curves.png,
validation pictures and run.json. With MLFLOW_TRACKING_URI set, the run is also logged
to MLflow (``pip install -e .[tracking]``).

This module finds the inputs and the scheme and runs the kind's trainer
(:attr:`herdcount.kinds.ModelKind.trainer`: ``train_density``, ``train_classifier``,
``train_scale``); :mod:`herdcount.models.run_writer` writes RUN.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from herdcount.predictors import QUIET_TENSORFLOW, set_threads

os.environ.setdefault(*QUIET_TENSORFLOW)  # before TensorFlow is imported

import keras
import tensorflow as tf

from herdcount import storage
from herdcount.annotated import labelled_run
from herdcount.config import Config, resolve_scheme
from herdcount.kinds import kind_of
from herdcount.modelrun import ModelRun
from herdcount.models.run_writer import flat_metrics, write_run
from herdcount.models.settings import TrainSettings, check_settings, check_sources
from herdcount.runinfo import RunClock, read_run


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


def extract_annotations(s: TrainSettings) -> TrainSettings:
    """With ``--annotations``: the file extracted (in this process: a review's corrections
    are tens of photos) with its training windows into RUN/extract, which the run then
    trains from. Classes in the order of ``--classes``, else of the ``--init`` run (so that
    its output columns carry over), else of the file."""
    if not s.annotations:
        return s
    from herdcount.annotated import LabelSource
    from herdcount.extract import ExtractJob
    from herdcount.runner import run_in_process
    from herdcount.shards import WindowsJob
    from herdcount.windows import WindowSettings

    extract = storage.join(s.out, "extract")
    classes = s.classes
    if classes is None and s.init:
        classes = storage.join(extract, "classes.txt")
        storage.write_text_atomic(classes, "".join(f"{c}\n" for c in ModelRun.read(s.init).class_names))
    source = LabelSource(s.data, s.annotations, classes=classes)
    print(f"extracting {s.annotations} over {s.data} into {extract}", flush=True)
    done = run_in_process(
        ExtractJob(s.data, extract, scheme=s.scheme, windows=WindowSettings(), source=source)
    )
    print(done.summary, flush=True)
    if done.exit_code not in (0, 3):
        raise ValueError(f"extracting {s.annotations} failed (exit code {done.exit_code}); see above")
    run_in_process(WindowsJob(extract, s.data, storage.join(extract, "windows")))
    return dataclasses.replace(s, extract=extract)


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


def run_training(given: TrainSettings, clock: RunClock) -> int:
    """Train as ``given`` asks (``herdcount train``, :mod:`herdcount.commands.train`); the
    command's exit code: 0, or 2 for settings or inputs that cannot work."""
    try:
        check_sources(given)
        given = extract_annotations(given)
        given = with_extract_data(given)
        check_settings(given)
        settings = local_inputs(given)
        config = training_scheme(settings)
        trainer = importlib.import_module(kind_of(settings.kind).trainer)
        prepared = trainer.prepare(settings, config)
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
        loggers = [tracker.MlflowLogger()] if tracker else []
        model, history, metrics, trained = trainer.train(settings, config, prepared, loggers)
        run = Path(settings.out)
        write_run(run, settings, config, model, history, metrics, trained, clock, given=given)
        if storage.is_s3(given.out):
            storage.upload_tree(run, given.out, last=("model.json",))
        if tracker:
            tracker.finish(run, flat_metrics(metrics))
    except BaseException:
        if tracker:
            tracker.abort()
        if settings.out != given.out:
            print(f"the run's local files stay in {settings.out}", file=sys.stderr)
        raise
    if settings.out != given.out:  # the local stand-in for an S3 RUN, uploaded now
        shutil.rmtree(settings.out, ignore_errors=True)
    print(trainer.summary(metrics))
    return 0


def _tracker(settings: TrainSettings):
    # MLflow is optional and heavy: imported only when a tracking server is configured.
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    from herdcount.models import tracking

    tracking.start(f"{settings.kind}-{Path(settings.out).name}", settings.params())
    return tracking


def format_summary(kind: str, metrics: dict[str, Any]) -> str:
    """The lines printed at the end of a run, as the kind's trainer words them."""
    return importlib.import_module(kind_of(kind).trainer).summary(metrics)
