"""Work on items one after another while the next item is read in a background thread.

A job whose work per item is reading (file or S3 bytes, JPEG decoding) and then computing
(inference) gives the runner a reader beside its worker: while item ``i`` is worked on,
item ``i + 1`` is read. Reading releases the GIL (libjpeg-turbo, sockets), so the two
overlap on a task's cores and the wait for S3 is hidden behind inference. At most one
item is read ahead, so a task holds at most two items' data at any time.

CPU time stays attributable: a read is timed by its thread's own clock, and
:func:`work_clock` gives the worker a clock of the process's CPU without the reading
thread's, so a photo's record counts its decode once and its inference once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

ItemT = TypeVar("ItemT")
ReadT = TypeVar("ReadT")
ResultT = TypeVar("ResultT")

#: A clock of CPU seconds.
Clock = Callable[[], float]


@dataclass(frozen=True)
class Read(Generic[ReadT]):
    """What reading one item gave: its value or the exception it raised, and its CPU time.

    Attributes
    ----------
    value : object
        What the reader returned (None when it raised).
    error : BaseException or None
        What the reader raised; :meth:`get` raises it again in the worker, whose error
        handling then words it as for an item read in place.
    cpu_s : float
        CPU seconds of the read, on the reading thread's clock.
    work_clock : callable
        CPU seconds of the process without the reading thread's (see :func:`work_clock`).
    """

    value: ReadT | None
    error: BaseException | None
    cpu_s: float
    work_clock: Clock = time.process_time

    def get(self) -> ReadT:
        """The value, or raise what the reader raised."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def read_now(read: Callable[[ItemT], ReadT], item: ItemT) -> Read[ReadT]:
    """Read one item in this thread (no overlap): what a worker does when it is given no
    read-ahead."""
    return _timed(read, item, time.process_time)


def read_ahead(items: Iterable[ItemT], read: Callable[[ItemT], ReadT]) -> Iterator[tuple[ItemT, Read[ReadT]]]:
    """Each item with what reading it gave, the next item read while this one is used.

    Parameters
    ----------
    items : iterable
        The items, in the order they are worked on.
    read : callable
        Reads one item; may raise, the error travels in :class:`Read`.

    Yields
    ------
    (item, Read)
        In the order of ``items``; the reading of the next item has started when one is
        yielded, and no other.
    """
    iterator = iter(items)
    first = next(iterator, _END)
    if first is _END:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="herdcount-read") as pool:
        clock = work_clock(pool.submit(threading.get_ident).result())
        pending = (first, pool.submit(_timed, read, first, clock))
        for item in iterator:
            current, future = pending
            done = future.result()
            pending = (item, pool.submit(_timed, read, item, clock))
            yield current, done
            del done
        current, future = pending
        yield current, future.result()


def work_items(
    work: Callable[..., ResultT], items: Iterable[ItemT], read: Callable[[ItemT], Any] | None = None
) -> Iterator[ResultT]:
    """``work(item)`` for each item, or with ``read``, ``work(item, Read)`` with each next item
    read ahead (:func:`read_ahead`): one Spark partition's, or one process's, items."""
    if read is None:
        for item in items:
            yield work(item)
        return
    for item, done in read_ahead(items, read):
        result = work(item, done)
        # Let go of this item's data before the next is waited for: two items at most.
        del done
        yield result


def work_clock(reader: int) -> Clock:
    """A clock of this process's CPU seconds without those of the thread ``reader`` (a
    thread ident): the worker's own, while that thread reads beside it. Where a thread's
    clock cannot be read (not Linux), the process's clock, which then also holds the reads
    that overlapped."""
    try:
        reader_clock = time.pthread_getcpuclockid(reader)
    except (AttributeError, OSError):
        return time.process_time
    return lambda: time.process_time() - time.clock_gettime(reader_clock)


def _timed(read: Callable[[ItemT], ReadT], item: ItemT, clock: Clock) -> Read[ReadT]:
    started = time.thread_time()
    try:
        value, error = read(item), None
    except Exception as exc:  # handed to the worker, which turns it into an error record
        value, error = None, exc
    return Read(value, error, time.thread_time() - started, clock)


_END: Any = object()
