"""``run.json``: what a run was given, what it read, what it produced and how long it took."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from herdcount import __version__, storage
from herdcount.records import RunRecord

_PACKAGES = ("pyspark", "numpy", "scipy", "scikit-image", "pillow", "tensorflow-cpu", "keras", "boto3")


def library_versions() -> dict[str, str]:
    """Versions of Python, herdcount and the libraries it computes with."""
    versions = {"python": platform.python_version(), "herdcount": __version__}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def fingerprint_files(
    root: str | Path,
    folders: list[str],
    files: list[str] = (),
    *,
    listings: Mapping[str, list[tuple[str, int]]] | None = None,
) -> str:
    """A hash over the names and sizes of the files in ``folders`` and over the bytes of
    ``files`` (small ones such as train.csv), all relative to ``root``.

    Listing-based, so fingerprinting 100 GB of photos costs one directory walk, and none
    for a folder in ``listings`` (its ``storage.file_stats`` as a job's plan made it).
    """
    digest = hashlib.sha256()
    for folder in folders:
        stats = (listings or {}).get(folder)
        for name, size in stats if stats is not None else storage.file_stats(storage.join(root, folder)):
            digest.update(f"{folder}/{name}\0{size}\n".encode())
    for name in files:
        path = storage.join(root, name)
        if storage.exists(path):
            digest.update(f"{name}\0".encode() + hashlib.sha256(storage.read_bytes(path)).digest())
    return "sha256:" + digest.hexdigest()


class RunClock:
    """Wall and CPU time of the driver since creation."""

    def __init__(self) -> None:
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def times(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "wall_s": round(time.monotonic() - self._wall, 3),
            "driver_cpu_s": round(time.process_time() - self._cpu, 3),
        }


def verbose() -> bool:
    """Whether library noise (Spark's start-up notices, TensorFlow's export listings) should
    show: ``herdcount -v VERB`` sets ``HERDCOUNT_VERBOSE=1``, which Spark's workers inherit."""
    return os.environ.get("HERDCOUNT_VERBOSE") == "1"


def read_run(folder: str | Path) -> RunRecord | None:
    """The run.json of an output folder (local or S3), or None when it has none.

    Raises
    ------
    ValueError
        If the folder's run.json is not a herdcount run record.
    """
    path = storage.join(folder, "run.json")
    if not storage.exists(path):
        return None
    try:
        return RunRecord.from_json(storage.read_text(path))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def write_run_json(
    out: str | Path,
    *,
    job: str,
    config: dict,
    inputs: dict,
    clock: RunClock,
    totals: dict,
    spark: dict[str, str] | None = None,
    model: dict[str, Any] | None = None,
) -> RunRecord:
    """Write ``OUT/run.json`` atomically and return what was written."""
    run = RunRecord(
        job=job,
        command=list(sys.argv),
        config=config,
        inputs=inputs,
        versions=library_versions(),
        times=clock.times(),
        totals=totals,
        spark=spark,
        model=model,
    )
    storage.write_text_atomic(storage.join(out, "run.json"), run.to_json())
    return run
