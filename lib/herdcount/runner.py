"""One shape for every job, and one runner for all of them.

A job is described once, as three steps:

- **plan** (driver): validate the inputs, list the items, read what an earlier run into
  the same OUT finished. A ``ValueError`` here is a configuration error: the runner
  prints it and exits 2 before Spark starts.
- **work on one item** (executor): a picklable function of one item that never raises for
  bad input; it returns a typed result with a :class:`~herdcount.records.Status`.
- **finish** (driver): write the outputs from the plan and the results, and say what goes
  into ``run.json`` and the summary.

:func:`run_job` drives a job on Spark (one task per ``items_per_task`` items, progress
every 10 s; a job with a reader reads each task's next item while it works on one); :func:`run_in_process` drives the same job item after item in this process,
for tests and for stages run on small surveys. Both time the run and write ``run.json``
as a :class:`~herdcount.records.RunRecord`.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from herdcount import storage
from herdcount.readahead import work_items
from herdcount.runinfo import RunClock, write_run_json

#: Exit code of a configuration error found before any work started.
CONFIG_ERROR = 2
#: Exit code of a run that did everything it could, but where some items failed.
SOME_FAILED = 3

PlanT = TypeVar("PlanT")
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclass
class Outcome:
    """What a job's finish step hands back to the runner."""

    #: The parts of run.json the job owns.
    config: dict[str, Any]
    inputs: dict[str, Any]
    totals: dict[str, Any]
    #: The lines printed at the end.
    summary: str
    #: Count runs: the model they used.
    model: dict[str, Any] | None = None
    exit_code: int = 0


class Job(ABC, Generic[PlanT, ItemT, ResultT]):
    """A job: plan on the driver, work on one item on the executors, finish on the driver."""

    #: The job's name in messages, Spark's application name and run.json.
    name: ClassVar[str]
    #: The output folder, where run.json goes.
    out: str
    #: Items per Spark task: more spares task overhead on small items.
    items_per_task: int = 1

    def paths(self) -> list[str | None]:
        """Paths whose S3 buckets must exist before anything starts (None ones are skipped)."""
        return [self.out]

    @abstractmethod
    def plan(self) -> PlanT:
        """Check the inputs and decide the work.

        Raises
        ------
        ValueError
            For a configuration the job cannot run with, naming the offending value.
        """

    @abstractmethod
    def items(self, plan: PlanT) -> Sequence[ItemT]:
        """The items the executors work on."""

    def announce(self, plan: PlanT) -> str:
        """One line on what is about to happen, or "" for none."""
        return ""

    def worker(self, plan: PlanT, task_cpus: int) -> Callable[[ItemT], ResultT]:
        """The function of one item run on the executors: picklable, never raises for bad
        input. ``task_cpus`` is the cores Spark gives each task.

        Asked for only when the plan has items: a job whose work all happens on the driver
        (clean) lists none and needs no worker.
        """
        raise NotImplementedError(f"the {self.name} job has no work per item")

    def reader(self, plan: PlanT) -> Callable[[ItemT], Any] | None:
        """What to read of each item ahead of its work (:mod:`herdcount.readahead`), or None
        (the default) where the worker reads its item itself.

        With a reader, the worker is called as ``worker(item, read)``: ``read`` is the
        :class:`~herdcount.readahead.Read` of that item, done in a background thread while
        the task's previous item was worked on. Picklable; may raise for bad input (the
        worker gets the error through ``read`` and reports it).
        """
        return None

    @abstractmethod
    def finish(self, plan: PlanT, results: list[ResultT], work_s: float) -> Outcome:
        """Write the outputs; ``work_s`` is the wall time of the work on the items."""


@dataclass(frozen=True)
class SparkOptions:
    """Where the runner starts Spark: ``master`` (None: spark-submit's, else ``local[*]``)
    and a spark-defaults file or packaged name."""

    master: str | None = None
    conf: str | None = "spark-local"


def plan_job(job: Job) -> Any:
    """Check the buckets of the job's paths, then plan it.

    Raises
    ------
    ValueError
        From the bucket checks and from the job's plan.
    """
    for path in job.paths():
        if path:
            storage.check_bucket(path)
    return job.plan()


def complete_job(job: Job, plan: Any, clock: RunClock, spark: SparkOptions | None) -> Outcome:
    """Work on the plan's items (on Spark, or in this process when ``spark`` is None), finish
    the job and write its run.json."""
    items = list(job.items(plan))
    started = time.monotonic()
    settings = None
    if items and spark is not None:
        from herdcount.spark import build_session, recorded_settings, run_tasks

        session = build_session(f"herdcount-{job.name}", spark.conf, spark.master)
        try:
            cpus = int(session.sparkContext.getConf().get("spark.task.cpus", "1"))
            work = job.worker(plan, cpus)
            results = run_tasks(
                session, work, items, label=job.name, items_per_task=job.items_per_task, read=job.reader(plan)
            )
            settings = recorded_settings(session)
        finally:
            session.stop()
    elif items:
        results = list(work_items(job.worker(plan, 1), items, job.reader(plan)))
    else:
        results = []
    outcome = job.finish(plan, results, time.monotonic() - started)
    write_run_json(
        job.out,
        job=job.name,
        config=outcome.config,
        inputs=outcome.inputs,
        clock=clock,
        totals=outcome.totals,
        spark=settings,
        model=outcome.model,
    )
    return outcome


def run_job(job: Job, spark: SparkOptions | None = SparkOptions()) -> int:
    """Run a job from the command line: plan, work (on Spark unless ``spark`` is None),
    finish; print the summary; return the exit code (2 for a configuration error)."""
    clock = RunClock()
    try:
        plan = plan_job(job)
    except ValueError as exc:
        print(f"{job.name}: error: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    line = job.announce(plan)
    if line:
        print(f"{job.name}: {line}", file=sys.stderr)
    outcome = complete_job(job, plan, clock, spark)
    print(outcome.summary)
    return outcome.exit_code


def run_in_process(job: Job) -> Outcome:
    """Run a whole job in this process, item after item, without Spark; same outputs,
    run.json included.

    Raises
    ------
    ValueError
        For a configuration error, as :meth:`Job.plan`.
    """
    clock = RunClock()
    return complete_job(job, plan_job(job), clock, None)
