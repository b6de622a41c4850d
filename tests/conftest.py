"""Shared fixtures: the scheme, small synthetic surveys, and a real ``spark-submit``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.extract import ExtractJob
from herdcount.runner import run_in_process
from herdcount.spark import find_java_home
from herdcount.synth import write_survey

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def config():
    return load_config(DEFAULT_SCHEME)


@pytest.fixture(scope="session")
def survey(tmp_path_factory, config):
    """A small survey with dense colonies and masks: 6 pairs of 900x700, one mismatched."""
    data = tmp_path_factory.mktemp("survey") / "data"
    write_survey(
        data,
        n_train=6,
        n_test=2,
        seed=11,
        config=config,
        width=900,
        height=700,
        density=60,
        n_mismatched=1,
        mask_share=0.5,
    )
    return data


@pytest.fixture(scope="session")
def extracted(tmp_path_factory, survey, config):
    """The shared survey's extract output, made with the extract library (no Spark needed here)."""
    out = tmp_path_factory.mktemp("extracted") / "out"
    run_in_process(ExtractJob(survey, out, config=config))
    return out


def spark_env(**extra: str) -> dict[str, str]:
    """This process's environment for Spark commands of this venv: its bin/ first on PATH,
    its python for the workers, a Java home when the machine has no java; plus ``extra``."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYSPARK_PYTHON": sys.executable,
    }
    java_home = find_java_home()
    if java_home:
        env["JAVA_HOME"] = java_home
    return {**env, **extra}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Whether the test being set up is marked slow: ``make test-fast`` (``-m "not slow"``)
#: promises no spark-submit, and :func:`spark_submit` holds it to that.
_TIER = {"slow": True}


def pytest_configure(config: pytest.Config) -> None:
    # The tests' Spark jobs last seconds: the JVM's optimising compiler and parallel collector
    # spend more CPU than they save there, and CI's two cores are shared by two test workers.
    # spark-submit (and PySpark's in-process launch, which runs it) reads this silently.
    os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The files of accuracy sweeps hold the longest tests: first in the order, so that when
    # make test spreads whole files over workers (pytest-xdist), none of them starts last.
    first = {item.path for item in items if item.get_closest_marker("accuracy")}
    items.sort(key=lambda item: item.path not in first)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before the item's fixtures: a module fixture that runs spark-submit is judged by the
    # test that first asks for it.
    _TIER["slow"] = item.get_closest_marker("slow") is not None


def spark_submit(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``spark-submit`` of this venv on ``args`` from the repository root (slow tests only)."""
    if not _TIER["slow"]:
        raise AssertionError("spark-submit in a test not marked slow: make test-fast runs no spark-submit")
    cmd = [str(BIN / "spark-submit"), "--master", "local[2]", *args]
    return subprocess.run(cmd, cwd=ROOT, env=spark_env(), capture_output=True, text=True, timeout=timeout)


def patches_at(image, stride: int, patch: int = 64):
    """Every ``patch``-sided patch at ``stride`` offsets covering an image (edge-padded),
    one by one, as ``(rows, cols, patch, patch, 3)``: what the seed classified."""
    n = [-(-(side - patch) // stride) + 1 for side in image.shape[:2]]
    pad = [(0, (k - 1) * stride + patch - side) for k, side in zip(n, image.shape[:2])]
    padded = np.pad(image, [*pad, (0, 0)], mode="edge")
    return np.stack(
        [
            padded[r * stride : r * stride + patch, c * stride : c * stride + patch]
            for r in range(n[0])
            for c in range(n[1])
        ]
    ).reshape(n[0], n[1], patch, patch, 3)


def find_chromium() -> str:
    """Debian's chromium, installed with apt-get when missing and possible; else skip."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "chromium is not installed and cannot be: not root or no apt-get (apt-get install chromium)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        ["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, text=True, timeout=900
    )
    if done.returncode or not shutil.which("chromium"):
        pytest.skip(f"chromium could not be installed with apt-get: {done.stderr[-500:]}")
    return shutil.which("chromium")
