"""The job runner and the typed records every job shares."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import ClassVar

import pytest

from herdcount.count_tasks import PhotoResult
from herdcount.extract import PairResult
from herdcount.imaging import PhotoError, decode_rgb
from herdcount.manifest import FileRecord, FileTask, describe_file
from herdcount.records import RunRecord, Status, TaskError
from herdcount.runinfo import read_run
from herdcount.runner import CONFIG_ERROR, Job, Outcome, SparkOptions, run_in_process, run_job


@dataclass
class SquareJob(Job[list[int], int, tuple[int, Status]]):
    """A job small enough to see the runner's part: squares of numbers, negatives fail."""

    name: ClassVar[str] = "square"
    out: str
    numbers: list[int]
    items_per_task: int = 2

    def plan(self) -> list[int]:
        if not self.numbers:
            raise ValueError("numbers must not be empty, got []")
        return self.numbers

    def items(self, plan: list[int]) -> list[int]:
        return plan

    def announce(self, plan: list[int]) -> str:
        return f"{len(plan)} numbers to square"

    def worker(self, plan, task_cpus):
        return lambda item: (item * item, Status.OK) if item >= 0 else (0, Status.ERROR)

    def finish(self, plan, results, work_s) -> Outcome:
        failed = sum(status == Status.ERROR for _, status in results)
        total = sum(value for value, _ in results)
        return Outcome(
            config={"numbers": plan},
            inputs={"count": len(plan)},
            totals={"sum": total, "failed": failed},
            summary=f"sum of squares {total}",
            exit_code=3 if failed else 0,
        )


@dataclass
class ReadSquareJob(SquareJob):
    """Squares whose numbers are read ahead: a read fails on negatives, and the worker checks
    that another thread read its number."""

    def reader(self, plan):
        # Nested functions travel to Spark's workers by value (this module is not on their path).
        def read_number(item: int) -> tuple[int, int]:
            if item < 0:
                raise ValueError(f"cannot read {item}")
            return item, threading.get_ident()

        return read_number

    def worker(self, plan, task_cpus):
        def square_read(item: int, read) -> tuple[int, Status]:
            try:
                number, thread = read.get()
            except ValueError:
                return 0, Status.ERROR
            if number != item or thread == threading.get_ident():
                return -1, Status.OK  # spoils the sum: read in place or a wrong item
            return number * number, Status.OK

        return square_read


@pytest.mark.slow
@pytest.mark.parametrize("spark", [None, SparkOptions(master="local[2]")], ids=["in-process", "spark"])
def test_a_job_with_a_reader_reads_each_next_item_in_a_thread_and_errors_stay_with_theirs(tmp_path, spark):
    job = ReadSquareJob(str(tmp_path), [1, 2, -3, 4, 5, 6, 7], items_per_task=3)
    assert run_job(job, spark=spark) == 3
    assert read_run(tmp_path).totals == {"sum": 131, "failed": 1}


def test_the_runner_plans_works_finishes_and_records_the_run(tmp_path):
    outcome = run_in_process(SquareJob(str(tmp_path), [1, 2, 3]))
    assert outcome.totals == {"sum": 14, "failed": 0} and outcome.exit_code == 0
    run = read_run(tmp_path)
    assert run.job == "square" and run.totals["sum"] == 14 and run.config == {"numbers": [1, 2, 3]}
    assert run.spark is None and run.times["wall_s"] >= 0 and "numpy" in run.versions


def test_a_configuration_error_exits_2_before_any_work(tmp_path, capsys):
    assert run_job(SquareJob(str(tmp_path), []), spark=None) == CONFIG_ERROR
    assert "square: error: numbers must not be empty, got []" in capsys.readouterr().err
    assert not (tmp_path / "run.json").exists()


def test_a_failed_item_gives_the_jobs_exit_code_after_the_summary(tmp_path, capsys):
    # On Spark the same runner is exercised by every job's tests (extract, count, manifest,
    # windows through spark-submit); here in-process, for the runner's own part.
    job = SquareJob(str(tmp_path), [1, -2, 3, 4, 5])
    assert run_job(job, spark=None) == 3
    said = capsys.readouterr()
    assert "square: 5 numbers to square" in said.err and "sum of squares 51" in said.out
    assert read_run(tmp_path).totals == {"sum": 51, "failed": 1}


def test_a_run_record_reads_back_what_was_written_and_refuses_unknown_keys():
    run = RunRecord(
        job="count", config={"a": 1}, inputs={}, totals={"n": 2}, times={}, model={"kind": "density"}
    )
    assert RunRecord.from_json(run.to_json()) == run
    assert "spark" not in json.loads(run.to_json())
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        RunRecord.from_dict({"job": "count", "colour": "red"})


def test_statuses_are_written_as_their_plain_values():
    assert json.dumps({"status": Status.SKIPPED}) == '{"status": "skipped"}'
    assert Status("unreadable") is Status.UNREADABLE and Status.OK == "ok"


def test_an_error_names_the_file_and_the_reason():
    assert str(TaskError("7", "TrainDotted/7.jpg", "is missing")) == "TrainDotted/7.jpg is missing"
    assert str(TaskError("8", "Test/8.jpg", "empty file")) == "Test/8.jpg: empty file"
    with pytest.raises(PhotoError) as caught:
        decode_rgb(b"", "Test/8.jpg")
    assert (caught.value.file, caught.value.reason, str(caught.value)) == (
        "Test/8.jpg",
        "empty file",
        "Test/8.jpg: empty file",
    )


def test_task_results_read_back_what_was_written():
    pair = PairResult("3", Status.ERROR, error=TaskError("3", "Train/3.jpg", "empty file"), cpu_s=0.5)
    assert PairResult.from_dict(json.loads(json.dumps(pair.to_dict()))) == pair
    assert pair.message == "Train/3.jpg: empty file"
    photo = PhotoResult(
        "12", Status.OK, "Test/12.jpg", counts=[1.5, 0.0], width=40, height=30, threads=[1, 1]
    )
    record = json.loads(json.dumps(photo.to_dict()))
    assert "resumed" not in record and PhotoResult.from_dict(record) == photo
    assert PhotoResult.from_dict(record, resumed=True).resumed
    with pytest.raises(ValueError, match="unknown keys"):
        PhotoResult.from_dict({**record, "colour": "red"})


def test_a_file_record_is_a_manifest_row(tmp_path):
    (tmp_path / "notes.jpg").write_text("not a photo")
    record = describe_file(FileTask("notes.jpg", 11, "v1"), str(tmp_path))
    assert record.status == Status.UNREADABLE and record.error.file == "notes.jpg"
    row = record.to_row()
    assert row["status"] == "unreadable" and type(row["status"]) is str
    assert FileRecord.from_row({**row, "label": "extra column"}) == FileRecord(
        **{**row, "status": record.status}
    )
