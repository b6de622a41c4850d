"""Print the chain of runs behind an output, from the source photos to it.

    herdcount lineage PATH

PATH is an output folder of any stage (count, train, extract, manifest, clean, split) or a
file in one. Each stage's run.json names the fingerprint of its inputs and the folder of
the run that produced them; this follows those links upstream.
"""

from __future__ import annotations

from dataclasses import dataclass

from herdcount import storage
from herdcount.options import option
from herdcount.records import RunRecord
from herdcount.runinfo import read_run


@dataclass(frozen=True)
class LineageSettings:
    """The options of ``herdcount lineage``."""

    path: str = option(flag="path", help="an output folder, or a file in one")


def upstream(run: RunRecord) -> str | None:
    """The folder of the run that produced a run's input, or None for source photos."""
    job, inputs = run.job, run.inputs
    if job == "count":
        return (run.model or {}).get("run")
    if job == "train":
        return inputs.get("extract")
    if job in ("clean", "split"):
        return inputs.get("manifest")
    return None


def chain(path: str) -> list[tuple[str, RunRecord | None]]:
    """``(folder, run)`` pairs from PATH's run upstream to the one that read source photos;
    the run is None where a folder named upstream has no run.json (moved or deleted).

    Raises
    ------
    ValueError
        If neither PATH nor its folder holds a run.json.
    """
    folder = path if read_run(path) else storage.parent(path)
    if read_run(folder) is None:
        raise ValueError(f"{path!r} is not an output of herdcount: no run.json there or beside it")
    found, seen = [], set()
    while folder and folder not in seen:
        run = read_run(folder)
        if run is None:
            found.append((folder, None))
            break
        seen.add(folder)
        found.append((folder, run))
        folder = upstream(run)
    return found


def describe(folder: str, run: RunRecord | None) -> str:
    """One line per stage: job, folder, start time and the fingerprint of its inputs."""
    if run is None:
        return f"  ?        {folder}: no run.json (moved or deleted?)"
    fingerprint = run.inputs.get("fingerprint") or "-"
    started = run.times.get("started_at", "-")
    line = f"  {run.job:<8} {folder}  (started {started}, inputs {fingerprint})"
    source = run.inputs.get("data") if run.job in ("extract", "manifest") else None
    return line + (f"\n  source   {source}" if source else "")
