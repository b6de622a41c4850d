"""The vocabulary every job shares: one status type, one error record, one run record.

Task results of the jobs (:class:`herdcount.extract.PairResult`,
:class:`herdcount.count_tasks.PhotoResult`, :class:`herdcount.manifest.FileRecord`) carry a
:class:`Status`; those that failed carry a :class:`TaskError` naming the file and the
reason. Every job's ``run.json`` is a :class:`RunRecord`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """What became of one item of a job.

    A ``StrEnum``, so it is written to JSON, CSV and Parquet as its plain value
    (``"ok"``) and compares equal to it.
    """

    #: Done, now or by an earlier run.
    OK = "ok"
    #: Left out on purpose (a pair in MismatchedTrainImages.txt).
    SKIPPED = "skipped"
    #: Could not be done: see the item's :class:`TaskError`.
    ERROR = "error"
    #: The manifest's file that cannot be read as an image.
    UNREADABLE = "unreadable"
    #: The manifest's image in a format herdcount does not decode (HEIC, raw).
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class TaskError:
    """Why one item failed: the item's id, the file it concerns (as messages name it,
    ``Test/12.jpg``) and the reason, without the file name."""

    item: str
    file: str
    reason: str

    def __str__(self) -> str:
        # A reason worded as a predicate ("is missing") reads on from the file's name.
        if not self.file:
            return self.reason
        return (
            f"{self.file} {self.reason}" if self.reason.startswith("is ") else f"{self.file}: {self.reason}"
        )

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskError:
        return cls(item=str(data["item"]), file=str(data["file"]), reason=str(data["reason"]))


@dataclass
class RunRecord:
    """``OUT/run.json``: what a run was given, what it read, what it produced, how long it
    took, and with which libraries.

    ``config``, ``inputs`` and ``totals`` hold each job's own fields; the envelope is the
    same for every job, so lineage, the report and later stages read any run alike.
    """

    job: str
    config: dict[str, Any]
    inputs: dict[str, Any]
    totals: dict[str, Any]
    times: dict[str, Any]
    command: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    #: The Spark settings of jobs that ran on Spark.
    spark: dict[str, str] | None = None
    #: The model a count run used (its training run, kind, classes, metrics).
    model: dict[str, Any] | None = None

    _ORDER = ("job", "command", "config", "inputs", "versions", "times", "totals", "spark", "model")

    def to_dict(self) -> dict[str, Any]:
        """Plain data in run.json's key order; absent optional parts are left out."""
        return {k: getattr(self, k) for k in self._ORDER if getattr(self, k) is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Read a run record; keys this version does not know are refused.

        Raises
        ------
        ValueError
            If ``job`` is missing or a key is unknown.
        """
        unknown = sorted(set(data) - set(cls._ORDER))
        if unknown or "job" not in data:
            raise ValueError(f"not a herdcount run record: unknown keys {unknown} or no 'job'")
        return cls(
            job=data["job"],
            config=data.get("config", {}),
            inputs=data.get("inputs", {}),
            totals=data.get("totals", {}),
            times=data.get("times", {}),
            command=list(data.get("command", [])),
            versions=dict(data.get("versions", {})),
            spark=data.get("spark"),
            model=data.get("model"),
        )

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        return cls.from_dict(json.loads(text))
