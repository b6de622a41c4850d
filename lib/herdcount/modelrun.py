"""A training run's folder, RUN/: the one place that reads and writes its model.json.

RUN/ is the contract between training and everything after it: the count job, the report,
the intervals, lineage and ``train --init`` read a run only through :class:`ModelRun`. It
holds

- ``model.json``: what the model is (:class:`ModelRun`'s fields), versioned
  (:data:`VERSION`; a file without a version is of version 0, read the same way);
- ``model.keras`` and the LiteRT exports of its kind (``model.tflite``, ...);
- ``validation_counts.csv``: the held-out photos' (or groups') true and counted animals, on
  which the survey intervals rest;
- ``run.json``, ``history.csv`` and the pictures of the run.

No TensorFlow: the model files are written by ``herdcount.models.builders.save_model_run``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herdcount import storage
from herdcount.intervals import ValidationCounts, read_validation_counts
from herdcount.kinds import ModelKind, kind_of

#: Version of model.json this code writes; it reads this one and every earlier one.
VERSION = 1
MODEL_JSON = "model.json"
MODEL_KERAS = "model.keras"


@dataclass(frozen=True)
class ModelRun:
    """What a trained model is, as its RUN/model.json records it.

    Attributes
    ----------
    path : str
        The run's folder (local or ``s3://``); not written to model.json.
    kind : str
        One of :data:`herdcount.kinds.KINDS`.
    class_names : tuple of str
        Its outputs in order (a classifier's last is the background).
    input_scale : float
        Resize factor the model works at; the count job multiplies ``--scale`` by it.
    class_lengths_px : dict or None
        Each class's body length in pixels, measured from boxes (score's ``--radius auto``).
    training_scale_range : tuple or None
        Resize range of the training tiles (density models): ``count --scale auto`` leaves a
        photo unresized inside it.
    output_stride, receptive_field, margin : int or None
        A density model's output cell, field and the margin its tiles need.
    flops_per_megapixel : float or None
        Its cost.
    patch_size, map_stride : int or None
        A classifier's patch and the stride of its fully convolutional export.
    tile_size : int or None
        A scale model's tile.
    zoom_range : tuple or None
        The ground scales a scale model was shown.
    init : dict or None
        The run it started from (``train --init``).
    training_data : dict
        The extract it learned from (path, fingerprint), the training and held-out ids, the
        held-out photos that chose the epoch (``epoch_chosen_on``) and what a row of
        validation_counts.csv is (``validation_unit``).
    metrics : dict
        Its final validation figures.
    epochs_run, seed : int or None
        How long it trained, and with what seed.
    int8 : dict or None
        The check of its int8 export against float on the held-out photos
        (:func:`herdcount.precision.compare_precisions`); None without an int8 export.
    version : int
        model.json's version as read (:data:`VERSION` when written here).
    """

    path: str
    kind: str
    class_names: tuple[str, ...]
    input_scale: float = 1.0
    class_lengths_px: dict[str, float | None] | None = None
    training_scale_range: tuple[float, float] | None = None
    output_stride: int | None = None
    receptive_field: int | None = None
    margin: int | None = None
    flops_per_megapixel: float | None = None
    patch_size: int | None = None
    map_stride: int | None = None
    tile_size: int | None = None
    zoom_range: tuple[float, float] | None = None
    init: dict[str, Any] | None = None
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    epochs_run: int | None = None
    seed: int | None = None
    int8: dict[str, Any] | None = None
    version: int = VERSION

    def __post_init__(self) -> None:
        model_kind = kind_of(self.kind)
        absent = [name for name in model_kind.needs if getattr(self, name) is None]
        if absent:
            raise ValueError(f"{self.file(MODEL_JSON)}: a {self.kind} model needs {absent}")

    @property
    def model_kind(self) -> ModelKind:
        """The kind's behaviour (:mod:`herdcount.kinds`)."""
        return kind_of(self.kind)

    def file(self, name: str) -> str:
        """The path of ``name`` inside the run."""
        return storage.join(self.path, name)

    @property
    def held_out(self) -> list[str]:
        """Held-out ids (photos or groups' photos) of the run."""
        return list(self.training_data.get("val_ids") or [])

    @property
    def epoch_chosen_on(self) -> list[str] | None:
        """Held-out photos whose counts chose the training epoch; None where the run does
        not say (then every held-out photo may have)."""
        chosen = self.training_data.get("epoch_chosen_on")
        return None if chosen is None else list(chosen)

    def validation_counts(self) -> ValidationCounts | None:
        """The held-out counts the intervals rest on, or None for a run without them."""
        return read_validation_counts(self.path)

    def description(self) -> dict[str, Any]:
        """model.json's content: every field that is set, in declaration order, version first."""
        out: dict[str, Any] = {"version": self.version}
        for f in dataclasses.fields(self):
            if f.name in ("path", "version"):
                continue
            value = getattr(self, f.name)
            if value is None or (f.name in ("training_data", "metrics") and not value):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        """model.json's text."""
        return json.dumps(self.description(), indent=2)

    def write(self) -> None:
        """Write model.json atomically: the mark of a finished run, so write it last."""
        storage.write_text_atomic(self.file(MODEL_JSON), self.to_json())

    def replace(self, **changes: Any) -> ModelRun:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_description(cls, path: str | Path, description: dict[str, Any]) -> ModelRun:
        """A run from model.json's content.

        Raises
        ------
        ValueError
            Naming the file and what is wrong: not an object, an unknown kind, a version
            newer than this code, an unknown field, or a field the kind needs missing.
        """
        path = str(path)
        where = storage.join(path, MODEL_JSON)
        if not isinstance(description, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(description).__name__}")
        values = dict(description)
        version = values.pop("version", 0)
        if not isinstance(version, int) or version > VERSION:
            raise ValueError(
                f"{where}: version {version!r} is newer than this herdcount reads ({VERSION}); upgrade herdcount"
            )
        kind = values.get("kind")
        kind_of(kind, where=where)
        names = {f.name for f in dataclasses.fields(cls)} - {"path", "version"}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{where}: unknown fields {unknown}")
        if "class_names" not in values:
            raise ValueError(f"{where}: missing ['class_names']")
        for name in ("class_names", "training_scale_range", "zoom_range"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        values["input_scale"] = float(values.get("input_scale") or 1.0)
        for name in ("training_data", "metrics"):
            values[name] = values.get(name) or {}
        return cls(path=path, version=version, **values)

    @classmethod
    def read(cls, run: str | Path) -> ModelRun:
        """The finished run in ``run``.

        Raises
        ------
        ValueError
            If RUN, its model.json or model.keras is missing, or model.json is unreadable or
            not a model's description (see :meth:`from_description`).
        """
        run = str(run)
        present = [name for name in (MODEL_JSON, MODEL_KERAS) if storage.exists(storage.join(run, name))]
        if not present and not storage.is_dir(run):
            raise ValueError(
                f"model run {run!r} does not exist; expected the --out folder of herdcount train"
            )
        for name in (MODEL_JSON, MODEL_KERAS):
            if name not in present:
                raise ValueError(
                    f"model run {run!r} has no {name}; expected a finished run of herdcount train"
                )
        where = storage.join(run, MODEL_JSON)
        try:
            description = json.loads(storage.read_text(where))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{where}: unreadable ({exc})") from None
        return cls.from_description(run, description)


def is_finished(run: str | Path) -> bool:
    """Whether ``run`` holds a finished model run (its model.json: written last)."""
    return storage.exists(storage.join(str(run), MODEL_JSON))
