"""What the count job reads on the driver before it counts: the model, the photo folder and
what an earlier run finished, sample_submission.csv, groups and calibration counts, and OUT's
claim."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from herdcount import storage
from herdcount.config import Config
from herdcount.count_tasks import (
    PHOTO_EXTENSIONS,
    CountPlan,
    CountSettings,
    PhotoTask,
    error_result,
    finished_records,
)
from herdcount.kaggle import id_key
from herdcount.modelrun import ModelRun
from herdcount.predictors import INT8

#: ``count --precision``: ``auto`` is int8 where the run's check passed, else float.
PRECISIONS = ("auto", "int8", "float")


def check_model(run: str | Path, config: Config) -> ModelRun:
    """The finished run in RUN, checked against the scheme.

    Raises
    ------
    ValueError
        If RUN is not a finished training run of a kind that counts animals, or its classes
        differ from the scheme's (a classifier adds the background class last).
    """
    model = ModelRun.read(run)
    if not model.model_kind.counts_animals:
        raise ValueError(f"{model.file('model.json')}: a {model.kind} model counts no animals")
    expected = model.model_kind.class_names(config)
    if list(model.class_names) != expected:
        raise ValueError(
            f"{model.file('model.json')}: classes {list(model.class_names)} do not match the scheme; "
            f"expected {expected} (a {model.kind} model trained with this scheme)"
        )
    return model


def plan_count(images: str | Path, out: str | Path, *, sample: str | Path | None = None) -> CountPlan:
    """List the photos to count, what an earlier run finished, and the submission order.

    Raises
    ------
    ValueError
        If the photo folder is missing or holds no photos, or sample_submission.csv is
        unreadable.
    """
    images = str(images)
    if not storage.is_dir(images):
        raise ValueError(f"photo folder {images!r} does not exist; expected a folder of <id>.jpg photos")
    listing = storage.file_stats(images)
    names = [name for name, _ in listing]
    photos = [n for n in names if n.rsplit(".", 1)[-1].lower() in PHOTO_EXTENSIONS and "." in n]
    if not photos:
        raise ValueError(
            f"photo folder {images!r} holds no photos ({len(names)} other files); expected <id>.jpg files"
        )
    plan = CountPlan(str(out), [], listing=listing)
    done = finished_records(storage.join(str(out), "photos"))
    seen: dict[str, str] = {}
    for name in names:
        photo_id, label = name.rsplit(".", 1)[0], f"{storage.basename(images)}/{name}"
        if name not in photos:
            plan.rows.append(error_result(photo_id, label, "not a photo; expected <id>.jpg"))
        elif photo_id in seen:
            plan.rows.append(
                error_result(photo_id, label, f"id {photo_id!r} is also {seen[photo_id]}; counted once")
            )
        else:
            seen[photo_id] = label
            if photo_id in done:
                plan.done.append(done[photo_id])
            else:
                plan.tasks.append(PhotoTask(photo_id, storage.join(images, name), label))
    if sample is not None and storage.exists(sample):
        plan.sample = str(sample)
        plan.order = read_sample_ids(sample)
        for photo_id in plan.order:
            if photo_id not in seen:
                plan.rows.append(
                    error_result(
                        photo_id,
                        f"{storage.basename(images)}/{photo_id}.jpg",
                        "missing from the photo folder",
                    )
                )
    else:
        plan.order = sorted(seen, key=id_key)
    return plan


def read_sample_ids(path: str | Path) -> list[str]:
    """The ``test_id`` column of sample_submission.csv, in its order.

    Raises
    ------
    ValueError
        If the first column is not ``test_id`` or an id appears twice.
    """
    rows = list(csv.reader(io.StringIO(storage.read_text(path), newline="")))
    if not rows or not rows[0] or rows[0][0].strip() != "test_id":
        raise ValueError(f"{path}: the first column must be test_id")
    ids, seen = [], set()
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        key = row[0].strip()
        if key in seen:
            raise ValueError(f"{path}, line {line}: id {key!r} appears twice")
        seen.add(key)
        ids.append(key)
    return ids


def read_calibration(path: str | Path, ids: set[str], class_names: list[str]) -> dict[str, np.ndarray]:
    """True counts of annotated photos of the survey: photo id to a (K,) array, from a CSV of
    ``test_id`` and a column per class (the layout of train.csv and the generator's
    test_counts.csv; other columns are ignored).

    Raises
    ------
    ValueError
        If a class column is missing, a count is not a number >= 0, an id appears twice or is
        not a photo of the survey, or fewer than 2 photos are listed; the message names the
        file and line.
    """
    header, rows = _read_table(path)
    missing = [c for c in ["test_id", *class_names] if c not in header]
    if missing:
        raise ValueError(f"{path}: columns {header}; missing {missing} (test_id and one column per class)")
    at = [header.index(c) for c in class_names]
    truth: dict[str, np.ndarray] = {}
    for line, photo, row in _photo_rows(path, header, rows, ids, key="test_id"):
        try:
            values = np.array([float(row[i]) for i in at])
        except ValueError:
            raise ValueError(
                f"{path}, line {line}: counts must be numbers, got {[row[i] for i in at]}"
            ) from None
        if not np.isfinite(values).all() or (values < 0).any():
            raise ValueError(f"{path}, line {line}: counts must be numbers >= 0, got {values.tolist()}")
        truth[photo] = values
    if len(truth) < 2:
        raise ValueError(f"{path}: {len(truth)} annotated photo; an interval needs at least 2")
    return truth


def _read_table(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """A CSV's header (stripped) and its other rows."""
    rows = list(csv.reader(io.StringIO(storage.read_text(path), newline="")))
    return ([c.strip() for c in rows[0]] if rows else []), rows[1:]


def _photo_rows(
    path: str | Path, header: list[str], rows: list[list[str]], ids: set[str], *, key: str
) -> Iterator[tuple[int, str, list[str]]]:
    """``(line, photo id, row)`` of each non-empty row of a table that lists photos of the
    survey by its ``key`` column (``path``: the file's stem is the id, as in manifest.csv).

    Raises
    ------
    ValueError
        If a row has another number of fields than the header, or its id appears twice or is
        not in ``ids``; the message names the file and line.
    """
    at, seen = header.index(key), set()
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(f"{path}, line {line}: {len(row)} fields; expected {len(header)}")
        photo = row[at].strip()
        if key == "path":
            photo = storage.basename(photo).rsplit(".", 1)[0]
        if photo in seen:
            raise ValueError(f"{path}, line {line}: id {photo!r} appears twice")
        if photo not in ids:
            raise ValueError(f"{path}, line {line}: id {photo!r} is not a photo of this survey")
        seen.add(photo)
        yield line, photo, row


def read_groups(path: str | Path, ids: set[str], *, column: str = "group") -> dict[str, str]:
    """Photo id to group, from a CSV with a ``test_id`` (or ``path``: the file's stem is the
    id, as in manifest.csv) and a ``column`` column; photos it does not list are in no group.

    Raises
    ------
    ValueError
        If a column is missing, an id appears twice or is not a photo of the survey; the
        message names the file and line.
    """
    header, rows = _read_table(path)
    key = "test_id" if "test_id" in header else "path" if "path" in header else None
    if key is None or column not in header:
        raise ValueError(f"{path}: columns {header}; expected test_id (or path) and {column!r}")
    at = header.index(column)
    return {photo: row[at].strip() for _, photo, row in _photo_rows(path, header, rows, ids, key=key)}


def resolve_precision(model: ModelRun, asked: str) -> str:
    """The export the executors run: ``float``; ``int8`` where asked (it must exist), or with
    ``auto`` where the run has it and its check on the held-out photos passed.

    Raises
    ------
    ValueError
        If ``int8`` is asked of a run without the export, or ``asked`` is unknown.
    """
    if asked not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {asked!r}")
    present = storage.exists(model.file(INT8))
    if asked == "int8" and not present:
        raise ValueError(
            f"{model.file(INT8)} does not exist: the run has no int8 export; count with --precision float"
        )
    if asked == "auto":
        return "int8" if present and bool((model.int8 or {}).get("passed")) else "float"
    return asked


def settings_key(settings: CountSettings) -> dict[str, Any]:
    """What decides the counts of a photo: the model file and the options that change them."""
    model = storage.read_bytes(storage.join(settings.model, "model.keras"))
    return {
        "model": storage.absolute(settings.model),
        "model_sha256": hashlib.sha256(model).hexdigest(),
        "kind": settings.kind,
        "scale": "auto" if settings.scale_model else settings.scale,
        "stride": settings.stride,
        **({"precision": settings.precision} if settings.precision != "float" else {}),
        **(
            {
                "scale_model": storage.absolute(settings.scale_model),
                "scale_model_sha256": hashlib.sha256(
                    storage.read_bytes(storage.join(settings.scale_model, "model.keras"))
                ).hexdigest(),
            }
            if settings.scale_model
            else {}
        ),
    }


def claim_out(settings: CountSettings) -> None:
    """Record in OUT/settings.json what its counts are made with, or check an earlier
    run's record against it.

    Raises
    ------
    ValueError
        If OUT holds counts made with another model, scale or stride.
    """
    path = storage.join(settings.out, "settings.json")
    key = settings_key(settings)
    if storage.exists(path):
        earlier = json.loads(storage.read_text(path))
        changed = sorted(k for k in key if earlier.get(k) != key[k])
        if changed:
            raise ValueError(
                f"{settings.out} holds counts made with other settings ({', '.join(changed)} differ); "
                "give another --out, or delete its photos/ folder and settings.json to count again"
            )
        return
    storage.write_text_atomic(path, json.dumps(key, indent=2))
