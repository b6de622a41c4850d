"""Reading the next item while one is worked on: order, overlap, bound, errors, CPU clocks."""

import threading
import time

import numpy as np
import pytest
import simplejpeg

from herdcount.readahead import read_ahead, read_now, work_items


def test_the_next_item_is_read_while_one_is_worked_on_and_never_two_ahead():
    events, lock = [], threading.Lock()
    started = {i: threading.Event() for i in range(6)}

    def log(what):
        with lock:
            events.append(what)

    def read(i):
        log(("read", i))
        started[i].set()
        return i * 10

    def work(i, done):
        log(("work", i))
        # Item i + 1 is read while item i is worked on: its read starts before this returns.
        if i + 1 < 5:
            assert started[i + 1].wait(5), f"item {i + 1} was not read while item {i} was worked on"
        time.sleep(0.02)
        log(("done", i))
        return done.get() + 1

    assert list(work_items(work, range(5), read)) == [1, 11, 21, 31, 41]
    for i in range(3):
        # Item i + 2 is read only after item i is finished: one item ahead at most.
        assert events.index(("read", i + 2)) > events.index(("done", i))
    assert [e for e in events if e[0] == "work"] == [("work", i) for i in range(5)]


def test_a_failed_read_reaches_its_own_item_and_no_other():
    def read(i):
        if i == 1:
            raise ValueError(f"item {i} is corrupt")
        return i

    results = []
    for item, done in read_ahead(range(3), read):
        try:
            results.append((item, done.get()))
        except ValueError as exc:
            results.append((item, str(exc)))
    assert results == [(0, 0), (1, "item 1 is corrupt"), (2, 2)]
    assert list(read_ahead([], read)) == []


def test_without_a_reader_the_worker_gets_the_item_alone():
    assert list(work_items(lambda i: i * 2, [1, 2, 3])) == [2, 4, 6]


@pytest.fixture(scope="module")
def jpeg():
    rng = np.random.default_rng(0)
    return simplejpeg.encode_jpeg(rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8), quality=90)


def test_a_read_is_timed_on_its_thread_and_the_work_clock_leaves_it_out(jpeg):
    def read(_):
        for _ in range(6):
            simplejpeg.decode_jpeg(jpeg)  # releases the GIL, as photo decoding does
        return None

    alone = read_now(read, 0).cpu_s
    assert alone > 0.05
    seen = []
    for _, done in read_ahead(range(2), read):
        # While the next item decodes beside it, this worker only waits: its clock stays
        # still though the process's runs.
        work, process = done.work_clock(), time.process_time()
        time.sleep(alone * 2)
        seen.append((done.work_clock() - work, time.process_time() - process, done.cpu_s))
    worked, process, read_cpu = seen[0]
    assert process > alone / 2  # the next decode ran beside the first item's work
    assert worked < alone / 4
    assert read_cpu == pytest.approx(alone, rel=0.5)
