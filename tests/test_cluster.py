"""A real standalone Spark cluster on 127.0.0.1 (one master, two one-core workers started with
spark-class), and faults: an executor killed mid-job, the driver killed and the job run again."""

import csv
import io
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import keras
import pytest
from conftest import BIN, ROOT, free_port, spark_env, spark_submit

from herdcount.models.builders import describe_density_model, make_density_model, save_model_run
from herdcount.synth import write_survey

pytestmark = pytest.mark.slow
PHOTOS = 12


def cluster_env(tmp: Path) -> dict[str, str]:
    from pyspark.find_spark_home import _find_spark_home

    # Scratch and temporary folders under the test's folder: the executors and the driver
    # that the tests kill never clean up their blockmgr-* and spark-* folders.
    (tmp / "java-tmp").mkdir(parents=True, exist_ok=True)
    return spark_env(
        SPARK_HOME=_find_spark_home(),
        SPARK_WORKER_DIR=str(tmp / "work"),
        SPARK_LOG_DIR=str(tmp / "logs"),
        SPARK_LOCAL_DIRS=str(tmp / "scratch"),
        SPARK_SUBMIT_OPTS=f"-Djava.io.tmpdir={tmp / 'java-tmp'}",
        SPARK_LOCAL_IP="127.0.0.1",
    )


def alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as r:
            return sum(w["state"] == "ALIVE" for w in json.load(r)["workers"])
    except OSError:
        return 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One master and two workers of one core each, from the venv's pyspark."""
    tmp = tmp_path_factory.mktemp("cluster")
    env = cluster_env(tmp)
    spark_class = str(Path(env["SPARK_HOME"]) / "bin" / "spark-class")
    port, ui = free_port(), free_port()
    logs = open(tmp / "cluster.log", "w")
    procs = [
        subprocess.Popen(
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui),
            ],
            env=env,
            stdout=logs,
            stderr=logs,
        )
    ]
    for n in range(2):
        procs.append(
            subprocess.Popen(
                [
                    spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    "--cores",
                    "1",
                    "--memory",
                    "3g",
                    "--webui-port",
                    str(free_port()),
                    "--work-dir",
                    str(tmp / f"work{n}"),
                    f"spark://127.0.0.1:{port}",
                ],
                env=env,
                stdout=logs,
                stderr=logs,
            )
        )
    deadline = time.monotonic() + 120
    while alive_workers(ui) < 2:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            pytest.fail(f"the cluster did not start: {(tmp / 'cluster.log').read_text()[-3000:]}")
        time.sleep(1)
    yield {"master": f"spark://127.0.0.1:{port}", "ui": ui, "tmp": tmp}
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=60)
    logs.close()


@pytest.fixture(scope="module")
def work(tmp_path_factory, config):
    """Twelve test photos, an untrained density model of the default architecture (its counts
    are arbitrary but fixed) and the undisturbed local[2] run to compare with."""
    root = tmp_path_factory.mktemp("cluster-work")
    write_survey(root / "data", n_train=0, n_test=PHOTOS, seed=12, config=config, width=1200, height=900)
    keras.utils.set_random_seed(1)
    model = make_density_model(len(config.classes))
    save_model_run(
        root / "run",
        model,
        {"kind": "density", "class_names": config.class_names, **describe_density_model(model)},
    )
    package = subprocess.run(["make", "package"], cwd=ROOT, capture_output=True, text=True)
    assert package.returncode == 0, package.stdout + package.stderr
    proc = spark_submit(
        "jobs/count.py",
        "--data",
        str(root / "data"),
        "--model",
        str(root / "run"),
        "--out",
        str(root / "local"),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return root


def counts_of(out: Path) -> dict[str, list[str]]:
    rows = list(csv.reader(io.StringIO((out / "counts.csv").read_text())))
    return {row[0]: row[1:6] for row in rows[1:]}


def assert_same_results(out: Path, reference: Path) -> None:
    submission = (out / "submission.csv").read_text()
    assert submission == (reference / "submission.csv").read_text()
    ids = [line.split(",")[0] for line in submission.splitlines()[1:]]
    assert ids == [str(i) for i in range(PHOTOS)]  # every id exactly once, in order
    assert counts_of(out) == counts_of(reference)
    assert (out / "errors.csv").read_text() == "test_id,file,reason\n"


def cluster_submit(cluster, work, out: Path) -> list[str]:
    return [
        str(BIN / "spark-submit"),
        "--master",
        cluster["master"],
        "--py-files",
        str(ROOT / "dist" / "herdcount.zip"),
        "--conf",
        "spark.executor.memory=1g",
        str(ROOT / "jobs" / "count.py"),
        "--data",
        str(work / "data"),
        "--model",
        str(work / "run"),
        "--out",
        str(out),
    ]


def test_the_cluster_gives_the_same_submission_as_local_mode(cluster, work, tmp_path):
    env = cluster_env(tmp_path)
    proc = subprocess.run(
        cluster_submit(cluster, work, tmp_path / "out"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert_same_results(tmp_path / "out", work / "local")
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["spark"]["spark.master"] == cluster["master"]
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "photos").glob("*.json")]
    assert len({r["pid"] for r in records}) == 2, "both workers counted photos"


def executor_pids(cluster) -> list[int]:
    """Executor JVMs of this cluster: their working folders lie under its work dirs."""
    done = subprocess.run(["pgrep", "-f", "CoarseGrainedExecutorBackend"], capture_output=True, text=True)
    pids = []
    for pid in map(int, done.stdout.split()):
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(str(cluster["tmp"])):
                pids.append(pid)
        except OSError:
            continue
    return pids


def test_an_executor_killed_mid_job_loses_and_duplicates_nothing(cluster, work, tmp_path):
    out = tmp_path / "out"
    job = subprocess.Popen(
        cluster_submit(cluster, work, out),
        cwd=ROOT,
        env=cluster_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline, killed = time.monotonic() + 300, None
    while killed is None and time.monotonic() < deadline and job.poll() is None:
        if len(list((out / "photos").glob("*.json"))) >= 1 and executor_pids(cluster):
            killed = executor_pids(cluster)[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    output, _ = job.communicate(timeout=600)
    assert killed is not None, "the job ended before an executor could be killed"
    assert job.returncode == 0, output[-3000:]
    assert len(list((out / "photos").glob("*.json"))) == PHOTOS
    assert_same_results(out, work / "local")


def test_a_killed_driver_resumes_and_ends_with_the_undisturbed_outputs(work, tmp_path):
    out = tmp_path / "out"
    env = cluster_env(tmp_path)
    cmd = [
        str(BIN / "spark-submit"),
        "--master",
        "local[1]",
        str(ROOT / "jobs" / "count.py"),
        "--data",
        str(work / "data"),
        "--model",
        str(work / "run"),
        "--out",
        str(out),
    ]
    job = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while (
        len(list((out / "photos").glob("*.json"))) < 2 and time.monotonic() < deadline and job.poll() is None
    ):
        time.sleep(0.1)
    os.killpg(job.pid, signal.SIGKILL)  # the driver, its JVM and its Python workers
    job.wait(timeout=60)
    done_before = len(list((out / "photos").glob("*.json")))
    assert 2 <= done_before < PHOTOS and not (out / "submission.csv").exists()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"{PHOTOS} counted ({done_before} resumed)" in again.stdout
    assert_same_results(out, work / "local")
