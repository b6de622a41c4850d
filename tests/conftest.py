"""Shared fixtures: the scheme, small synthetic surveys, and a real ``spark-submit``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.extract import extract_in_process
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
    write_survey(data, n_train=6, n_test=2, seed=11, config=config, width=900, height=700,
                 density=60, n_mismatched=1, mask_share=0.5)  # fmt: skip
    return data


@pytest.fixture(scope="session")
def extracted(tmp_path_factory, survey, config):
    """The shared survey's extract output, made with the extract library (no Spark needed here)."""
    out = tmp_path_factory.mktemp("extracted") / "out"
    extract_in_process(survey, out, config)
    return out


def spark_submit(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``spark-submit`` of this venv on ``args`` from the repository root."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = sys.executable
    java_home = find_java_home()
    if java_home:
        env["JAVA_HOME"] = java_home
    cmd = [str(BIN / "spark-submit"), "--master", "local[2]", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
