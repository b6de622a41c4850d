"""S3 paths for real: the jobs and the training module against moto's S3 server on 127.0.0.1,
through real Spark executors, compared byte for byte with the same runs on local files."""

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, spark_submit
from test_count_job import colour_density_model
from test_count_mosaic import counted, mosaic  # noqa: F401 (a fixture)

from herdcount import mosaic as rasters
from herdcount import storage
from herdcount.commands import report as report_command
from herdcount.commands import train
from herdcount.count import CountJob
from herdcount.count_inputs import plan_count
from herdcount.count_outputs import write_outputs
from herdcount.count_tasks import CountSettings
from herdcount.count_worker import count_photo, read_item
from herdcount.manifest import read_manifest
from herdcount.models.builders import save_model_run
from herdcount.runner import run_in_process
from herdcount.spark import build_session, run_tasks
from herdcount.synth import truth_dir

pytestmark = pytest.mark.slow
SECRET = "s3cr3t-never-logged-0xC0FFEE"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server in a thread on 127.0.0.1, and the standard AWS variables pointing at
    it (Spark's Python workers inherit them through spark-submit's environment)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "herdcount-test",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    storage._CLIENTS.clear()
    storage.client().create_bucket(Bucket="herd")
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    storage._CLIENTS.clear()
    server.stop()


def upload(local: Path, prefix: str) -> None:
    storage.upload_tree(local, prefix)


def s3_files(prefix: str) -> dict[str, bytes]:
    bucket, key = storage.split_s3(prefix)
    found = {}
    for page in storage.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key + "/"):
        for item in page.get("Contents", []):
            found[item["Key"][len(key) + 1 :]] = storage.read_bytes(f"s3://{bucket}/{item['Key']}")
    return found


def local_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def counts_without_timing(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    keep = [i for i, name in enumerate(rows[0]) if name != "cpu_s"]
    return [[row[i] for i in keep] for row in rows]


@pytest.fixture(scope="module")
def jobs_on_both(s3, survey, config, tmp_path_factory):
    """The extract and count jobs once on local files and once on S3, same inputs."""
    root = tmp_path_factory.mktemp("s3-vs-local")
    model = root / "run"
    save_model_run(
        model,
        colour_density_model(),
        {
            "kind": "density",
            "class_names": config.class_names,
            "output_stride": 8,
            "receptive_field": 8,
            "margin": 8,
        },
    )
    upload(survey, "s3://herd/data")
    upload(model, "s3://herd/run")
    procs = {}
    for where, data, out, run, count in (
        ("local", str(survey), str(root / "extract"), str(model), str(root / "count")),
        ("s3", "s3://herd/data", "s3://herd/extract", "s3://herd/run", "s3://herd/count"),
    ):
        extract = spark_submit("jobs/extract.py", "--data", data, "--out", out)
        assert extract.returncode == 0, extract.stdout[-2000:] + extract.stderr[-2000:]
        counting = spark_submit("jobs/count.py", "--data", data, "--model", run, "--out", count)
        assert counting.returncode == 0, counting.stdout[-2000:] + counting.stderr[-2000:]
        procs[where] = (extract, counting)
    return {"root": root, "procs": procs}


def test_extract_on_s3_writes_the_same_bytes_as_on_local_files(jobs_on_both):
    local = local_files(jobs_on_both["root"] / "extract")
    remote = s3_files("s3://herd/extract")
    assert set(remote) == set(local)
    assert len([k for k in local if k.startswith("thumbnails/")]) > 100
    for name in local:
        if name != "run.json":  # times differ
            assert remote[name] == local[name], name
    run = json.loads(remote["run.json"])
    assert run["inputs"]["data"] == "s3://herd/data"
    assert run["inputs"]["fingerprint"] == json.loads(local["run.json"])["inputs"]["fingerprint"]


def test_count_on_s3_gives_the_same_submission_as_on_local_files(jobs_on_both):
    local = local_files(jobs_on_both["root"] / "count")
    remote = s3_files("s3://herd/count")
    assert set(remote) == set(local)
    for name in ("submission.csv", "errors.csv", "settings.json"):
        if name == "settings.json":  # names the model where it lies
            assert json.loads(remote[name])["model_sha256"] == json.loads(local[name])["model_sha256"]
        else:
            assert remote[name] == local[name], name
    assert counts_without_timing(remote["counts.csv"].decode()) == counts_without_timing(
        local["counts.csv"].decode()
    )
    assert json.loads(remote["run.json"])["model"]["run"] == "s3://herd/run"


def test_credentials_never_reach_logs_or_run_json(jobs_on_both):
    for extract, counting in jobs_on_both["procs"].values():
        for proc in (extract, counting):
            assert SECRET not in proc.stdout + proc.stderr
    for prefix in ("s3://herd/extract", "s3://herd/count"):
        assert SECRET.encode() not in s3_files(prefix)["run.json"]


def test_training_module_reads_and_writes_s3(jobs_on_both, survey, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    args = [
        "--kind",
        "classifier",
        "--extract",
        "s3://herd/extract",
        "--data",
        "s3://herd/data",
        "--out",
        "s3://herd/run-classifier",
        "--epochs",
        "1",
        "--batch-size",
        "32",
    ]
    assert train.main(args) == 0
    # The run was built in a local folder, uploaded, and the local folder removed.
    assert not list((tmp_path / "tmp").glob("herdcount-run-*"))
    files = s3_files("s3://herd/run-classifier")
    assert {"model.keras", "model.json", "run.json", "history.csv", "curves.png", "confusion.csv"} <= set(
        files
    )
    described = json.loads(files["model.json"])
    assert described["training_data"]["extract"] == "s3://herd/extract"
    assert json.loads(files["run.json"])["inputs"]["extract"] == "s3://herd/extract"
    # The count job reads the model straight from S3 on its executors.
    proc = spark_submit(
        "jobs/count.py",
        "--data",
        "s3://herd/data",
        "--model",
        "s3://herd/run-classifier",
        "--out",
        str(tmp_path / "count"),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "count" / "submission.csv").read_text().startswith("test_id,adult_males")


def test_report_reads_its_runs_and_photos_from_s3(jobs_on_both, survey, tmp_path):
    root, truth = jobs_on_both["root"], truth_dir(survey) / "test_counts.csv"
    pages = {}
    for where, extract, run, count in (
        ("local", str(root / "extract"), str(root / "run"), str(root / "count")),
        ("s3", "s3://herd/extract", "s3://herd/run", "s3://herd/count"),
    ):
        args = [
            "--extract",
            extract,
            "--run",
            run,
            "--count",
            count,
            "--truth",
            str(truth),
            "--out",
            str(tmp_path / f"{where}.html"),
        ]
        assert report_command.main(args) == 0
        pages[where] = (tmp_path / f"{where}.html").read_text()
    # The same pictures in the same order: dot crops of the training photos, the failure
    # diagnosis overlays of test photos and the scatter plots, each read from S3 there.
    pictures = {
        where: re.findall(r'src="data:image/png;base64,([^"]+)"', page) for where, page in pages.items()
    }
    assert len(pictures["local"]) >= 6
    assert pictures["s3"] == pictures["local"]
    assert "s3://herd/count" in pages["s3"] and "No photo could be shown" not in pages["s3"]


@pytest.mark.parametrize("job", ["extract", "count"])
def test_a_missing_bucket_stops_the_job_before_spark(s3, survey, job, capsys, monkeypatch):
    # In process (a configuration error): the command spark-submit runs, stopped in its plan;
    # starting Spark at all fails the test.
    from pyspark import SparkContext

    from herdcount.commands import count, extract

    def no_spark(*args, **kwargs):
        raise AssertionError("Spark was started for a job its plan should have stopped")

    monkeypatch.setattr(SparkContext, "_ensure_initialized", no_spark)
    if job == "extract":
        code = extract.main(["--data", "s3://no-such-bucket/data", "--out", "s3://herd/x"])
    else:
        args = ["--data", str(survey), "--model", "s3://herd/run", "--out", "s3://no-such-bucket/out"]
        code = count.main(args)
    printed = capsys.readouterr()
    assert code == 2
    assert (
        "S3 bucket 'no-such-bucket' does not exist (endpoint http://127.0.0.1:" in printed.out + printed.err
    )


def test_an_object_deleted_between_listing_and_reading_is_an_error_row(jobs_on_both, s3, survey, config):
    upload(survey / "Test", "s3://herd/gone/Test")
    plan = plan_count("s3://herd/gone/Test", "s3://herd/gone-out")
    assert [t.photo_id for t in plan.tasks] == ["0", "1"]
    storage.client().delete_object(Bucket="herd", Key="gone/Test/1.jpg")
    settings = CountSettings(out="s3://herd/gone-out", model="s3://herd/run", kind="density", num_classes=5)
    spark = build_session("herdcount-test-s3-deleted", None)
    try:
        for key, value in s3.items():
            spark.sparkContext.environment[key] = value  # Python workers' environment
        # Both photos in one task, the second read while the first is counted: the read
        # fails, and its photo gets the error row.
        results = run_tasks(
            spark,
            lambda task, read: count_photo(task, settings, read),
            plan.tasks,
            label="count",
            items_per_task=2,
            read=lambda task: read_item(task, settings),
        )
    finally:
        spark.stop()
    write_outputs(plan, results, config)
    errors = list(csv.reader(io.StringIO(storage.read_text("s3://herd/gone-out/errors.csv"))))
    assert errors == [["test_id", "file", "reason"], ["1", "Test/1.jpg", "missing (deleted after listing?)"]]
    submission = storage.read_text("s3://herd/gone-out/submission.csv").splitlines()
    assert [line.split(",")[0] for line in submission[1:]] == ["0", "1"]
    assert submission[2] == "1,0,0,0,0,0"


def test_manifest_of_an_s3_collection_equals_the_local_one(s3, survey, tmp_path):
    upload(survey, "s3://herd/collection")
    local = spark_submit("jobs/manifest.py", "--data", str(survey), "--out", str(tmp_path / "local"))
    remote = spark_submit("jobs/manifest.py", "--data", "s3://herd/collection", "--out", "s3://herd/manifest")
    assert local.returncode == 0 and remote.returncode == 0, remote.stdout[-2000:] + remote.stderr[-2000:]
    mine = read_manifest(str(tmp_path / "local" / "manifest.parquet"))
    theirs = read_manifest("s3://herd/manifest/manifest.parquet")
    assert len(mine) == len(theirs) > 10
    for a, b in zip(mine, theirs):  # the version is an mtime locally and an ETag on S3
        assert {k: v for k, v in a.items() if k != "version"} == {
            k: v for k, v in b.items() if k != "version"
        }
    run = json.loads(storage.read_text("s3://herd/manifest/run.json"))
    assert (
        run["inputs"]["fingerprint"]
        == json.loads((tmp_path / "local" / "run.json").read_text())["inputs"]["fingerprint"]
    )
    again = spark_submit("jobs/manifest.py", "--data", "s3://herd/collection", "--out", "s3://herd/manifest")
    assert again.returncode == 0 and "0 read" in again.stdout


def test_windows_cut_from_and_into_s3_are_the_local_ones(s3, survey, extracted, config, tmp_path):
    from herdcount.models.shard_reader import read_index
    from herdcount.runner import run_in_process
    from herdcount.shards import WindowsJob
    from herdcount.windows import WindowSettings

    settings = WindowSettings(size=256, step=192, photos_per_shard=3)
    upload(survey, "s3://herd/win/data")
    upload(extracted, "s3://herd/win/extract")
    remote = run_in_process(
        WindowsJob("s3://herd/win/extract", "s3://herd/win/data", "s3://herd/win/out", settings=settings)
    )
    local = run_in_process(
        WindowsJob(str(extracted), str(survey), str(tmp_path / "out"), settings=settings, config=config)
    )
    assert remote.totals["windows"] == local.totals["windows"] and remote.totals["photos"] == 5
    files = s3_files("s3://herd/win/out/shards")
    ours = {p.name: p.read_bytes() for p in (tmp_path / "out" / "shards").glob("*.tfrecord")}
    assert {k: v for k, v in files.items() if k.endswith(".tfrecord")} == ours
    shards = read_index("s3://herd/win/out", config)
    assert sorted(shards.windows["grid"]) == sorted(read_index(str(tmp_path / "out"), config).windows["grid"])


def test_a_mosaic_on_s3_counts_chunk_by_chunk_from_ranged_reads(s3, mosaic, config, monkeypatch):  # noqa: F811
    """The raster's chunks read through ranged GETs: the same counts as from the local file."""
    upload(mosaic["mixed"], "s3://herd/mosaic/images")
    upload(mosaic["run"], "s3://herd/mosaic/run")
    readers = []
    opened = storage.open_ranged

    def recording(path, mode="rb"):
        reader = opened(path, mode)
        readers.append(reader.raw)
        return reader

    monkeypatch.setattr(storage, "open_ranged", recording)
    outs = {}
    for where, images, run, out in (
        ("local", str(mosaic["mixed"]), str(mosaic["run"]), str(mosaic["root"] / "s3-ref")),
        ("s3", "s3://herd/mosaic/images", "s3://herd/mosaic/run", "s3://herd/mosaic/out"),
    ):
        outcome = run_in_process(CountJob(images=images, out=out, model=run, chunk=256))
        assert outcome.exit_code == 0, outcome.summary
        outs[where] = out
    remote = csv.DictReader(io.StringIO(storage.read_text("s3://herd/mosaic/out/counts.csv")))
    local = counted(Path(outs["local"]), config)
    for row in remote:
        np.testing.assert_allclose(
            [float(row[n]) for n in config.class_names], local[row["test_id"]], atol=1e-4
        )
    assert "survey" in local
    # The header, then one reader per chunk of 256 px.
    assert len([r for r in readers if r.fetched > 0]) >= 1 + 15
    record = json.loads(storage.read_text("s3://herd/mosaic/out/photos/survey.json"))
    assert record["chunks"] == 15 and record["crs"] == "EPSG:32610"
    info = rasters.raster_info("s3://herd/mosaic/images/survey.tif")
    assert (info.height, info.width, info.crs) == (600, 1260, "EPSG:32610")


def test_a_chunk_of_an_s3_raster_fetches_only_its_blocks(s3, tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (2048, 2048, 3), dtype=np.uint8)
    valid = np.ones((2048, 2048), bool)
    valid[:300, :300] = False
    transform = (0.05, 0.0, 600000.0, 0.0, -0.05, 5000000.0)
    rasters.write_geotiff(tmp_path / "big.tif", rgb, valid, transform=transform, crs="EPSG:32633", block=256)
    storage.write_bytes_atomic("s3://herd/rasters/big.tif", (tmp_path / "big.tif").read_bytes())
    readers = []
    opened = storage.open_ranged
    monkeypatch.setattr(
        storage, "open_ranged", lambda path, mode="rb": readers.append(opened(path, mode)) or readers[-1]
    )
    info = rasters.raster_info("s3://herd/rasters/big.tif")
    assert info == rasters.raster_info(tmp_path / "big.tif")
    chunk = rasters.plan_chunks(2048, 2048, chunk=256, margin=16, stride=8)[9]  # rows and columns 256-512
    got, mask = rasters.read_chunk("s3://herd/rasters/big.tif", chunk, info)
    want, want_mask = rasters.read_chunk(tmp_path / "big.tif", chunk, info)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(mask, want_mask)
    assert not mask[:60, :60].any() and mask[60:].all() and mask[:, 60:].all()  # nodata to 300
    size = (tmp_path / "big.tif").stat().st_size
    # 288 px read across 3 x 3 blocks of 256 (of 64), and the header: a fraction of the object.
    assert readers[-1].raw.fetched < 0.2 * size
