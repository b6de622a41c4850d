"""Image-set management end to end: manifest (incremental), cleaning flags, curated splits, lineage."""

import csv
import io
import json
import shutil
from collections import Counter

import numpy as np
import pytest
from conftest import spark_submit
from PIL import Image, ImageFilter

from herdcount import storage
from herdcount.commands import lineage, split
from herdcount.manifest import describe_bytes, hamming, layout_fields, layout_pattern, read_manifest
from herdcount.synth_scenes import make_background

pytestmark = pytest.mark.slow
LAYOUT = "{location}/{contributor}_{date}/{label}/{file}"


def photo(seed: int, size=(480, 360), *, dark=False, blur=False) -> Image.Image:
    image, _ = make_background(np.random.default_rng(seed), size[1], size[0])
    # Bright specks: what a camera trap's subject adds to the ground.
    rng = np.random.default_rng(seed + 1000)
    for r, c in rng.integers(0, min(size) - 20, (12, 2)):
        image[r : r + 14, c : c + 20] = rng.uniform(170, 240, 3)
    if dark:
        image = image * 0.04
    img = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(6)) if blur else img


def save(img: Image.Image, path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """A camera-survey collection with every kind of problem the cleaner must flag."""
    root = tmp_path_factory.mktemp("collection") / "photos"
    n = 0
    for location in ("north", "south"):
        for contributor in ("ann_20240301", "bob_20240302", "cy_20240303"):
            for label in ("seal", "gull"):
                for _ in range(3):
                    n += 1
                    exif = Image.Exif()
                    exif[0x0110] = "SurveyCam X1"  # Model
                    exif[0x0132] = f"2024:03:0{n % 9 + 1} 10:00:00"  # DateTime
                    save(
                        photo(n),
                        root / location / contributor / label / f"img{n:03}.jpg",
                        quality=90,
                        exif=exif,
                    )
    # A rare label, kept aside by the splitter as unknown.
    save(photo(200), root / "north" / "ann_20240301" / "walrus" / "img200.jpg")
    seal = root / "north" / "ann_20240301" / "seal"
    shutil.copy(seal / "img001.jpg", root / "south" / "cy_20240303" / "seal" / "copy_of_001.jpg")
    with Image.open(seal / "img002.jpg") as img:
        save(img.resize((400, 300)), root / "south" / "bob_20240302" / "seal" / "resized_002.jpg", quality=70)
    raw = (seal / "img003.jpg").read_bytes()
    (seal / "truncated.jpg").write_bytes(raw[: len(raw) // 3])
    (seal / "notes.txt").write_text("field notes, not a photo")
    save(photo(7), seal / "animated.gif")
    (seal / "raw0001.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    save(photo(300), root / "unsorted.jpg")  # does not fit the layout: no label
    save(photo(301, dark=True), root / "south" / "ann_20240301" / "gull" / "night.jpg")
    save(photo(302, blur=True), root / "south" / "ann_20240301" / "gull" / "shaky.jpg")
    snapshot = storage.walk_files(root)
    yield root
    assert storage.walk_files(root) == snapshot, "the originals were touched"


@pytest.fixture(scope="module")
def manifest(collection, tmp_path_factory):
    out = tmp_path_factory.mktemp("manifest") / "out"
    proc = spark_submit("jobs/manifest.py", "--data", str(collection), "--out", str(out), "--layout", LAYOUT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {
        "out": out,
        "proc": proc,
        "rows": {r["path"]: r for r in read_manifest(str(out / "manifest.parquet"))},
    }


def test_every_file_gets_one_row_with_its_status_and_fields(manifest, collection):
    rows = manifest["rows"]
    files = sorted(p.relative_to(collection).as_posix() for p in collection.rglob("*") if p.is_file())
    assert sorted(rows) == files
    assert {p for p, r in rows.items() if r["status"] == "unreadable"} == {
        "north/ann_20240301/seal/truncated.jpg",
        "north/ann_20240301/seal/notes.txt",
    }
    assert {p for p, r in rows.items() if r["status"] == "unsupported"} == {
        "north/ann_20240301/seal/animated.gif",
        "north/ann_20240301/seal/raw0001.heic",
    }
    first = rows["north/ann_20240301/seal/img001.jpg"]
    assert (first["location"], first["contributor"], first["date"], first["label"]) == (
        "north",
        "ann",
        "20240301",
        "seal",
    )
    assert (first["width"], first["height"], first["mode"], first["format"]) == (480, 360, "RGB", "JPEG")
    assert first["camera_model"] == "SurveyCam X1" and first["captured_at"].startswith("2024:03:0")
    assert rows["unsorted.jpg"]["label"] == "" and rows["unsorted.jpg"]["status"] == "ok"
    with Image.open(io.BytesIO(first["thumbnail"])) as thumb:
        assert max(thumb.size) == 96
    csv_rows = list(csv.DictReader(io.StringIO((manifest["out"] / "manifest.csv").read_text())))
    assert [r["path"] for r in csv_rows] == files


def test_quality_measures_and_hashes_tell_photos_apart(manifest):
    rows = manifest["rows"]
    seal = "north/ann_20240301/seal/"
    ok = [r for r in rows.values() if r["status"] == "ok"]
    night, shaky = rows["south/ann_20240301/gull/night.jpg"], rows["south/ann_20240301/gull/shaky.jpg"]
    assert night["brightness"] < 15 and night["dark_share"] > 0.5
    assert shaky["sharpness"] < 0.05 * np.median([r["sharpness"] for r in ok])
    assert (
        hamming(rows[seal + "img002.jpg"]["phash"], rows["south/bob_20240302/seal/resized_002.jpg"]["phash"])
        <= 4
    )
    assert hamming(rows[seal + "img001.jpg"]["phash"], rows[seal + "img002.jpg"]["phash"]) > 16
    assert rows[seal + "img001.jpg"]["md5"] == rows["south/cy_20240303/seal/copy_of_001.jpg"]["md5"]


def test_a_rerun_reads_nothing_unchanged_and_only_what_was_added(manifest, collection, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(manifest["out"], out)
    again = spark_submit("jobs/manifest.py", "--data", str(collection), "--out", str(out), "--layout", LAYOUT)
    assert again.returncode == 0, again.stdout[-2000:]
    first = json.loads((manifest["out"] / "run.json").read_text())
    second = json.loads((out / "run.json").read_text())
    assert second["totals"]["read"] == 0 and second["totals"]["reused"] == len(manifest["rows"])
    assert second["inputs"]["fingerprint"] == first["inputs"]["fingerprint"]
    assert "SparkContext" not in again.stderr  # nothing to read: no Spark at all
    grown = tmp_path / "grown"
    shutil.copytree(collection, grown)
    save(photo(400), grown / "north" / "bob_20240302" / "gull" / "new.jpg")
    shutil.copytree(manifest["out"], tmp_path / "out2")
    third = spark_submit(
        "jobs/manifest.py", "--data", str(grown), "--out", str(tmp_path / "out2"), "--layout", LAYOUT
    )
    assert third.returncode == 0, third.stdout[-2000:]
    totals = json.loads((tmp_path / "out2" / "run.json").read_text())["totals"]
    # copytree keeps modification times, so only the new photo is read.
    assert totals["read"] == 1 and totals["files"] == len(manifest["rows"]) + 1


def test_describe_bytes_never_raises_and_names_the_problem():
    assert describe_bytes(b"", "empty.jpg")["status"] == "unreadable"
    assert "not an image" in describe_bytes(b"hello", "a.jpg")["detail"]
    buf = io.BytesIO()
    photo(1).save(buf, format="BMP")
    assert describe_bytes(buf.getvalue(), "a.bmp")["detail"] == "BMP images are not read"


def test_layouts_parse_folder_names_and_reject_bad_fields():
    pattern = layout_pattern(LAYOUT)
    assert layout_fields("s/x_2024/seal/a.jpg", pattern) == {
        "location": "s",
        "contributor": "x",
        "date": "2024",
        "label": "seal",
        "file": "a.jpg",
    }
    assert set(layout_fields("a.jpg", pattern).values()) == {""}
    with pytest.raises(ValueError, match="field 'label' must be a unique identifier"):
        layout_pattern("{label}/{label}")


@pytest.fixture(scope="module")
def cleaned(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "out"
    proc = spark_submit("jobs/clean.py", "--manifest", str(manifest["out"]), "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def read_csv(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_clean_flags_each_problem_and_nothing_else(cleaned, manifest):
    flags = {(r["path"], r["flag"]): r["detail"] for r in read_csv(cleaned / "flags.csv")}
    seal = "north/ann_20240301/seal/"
    assert set(flags) == {
        ("south/cy_20240303/seal/copy_of_001.jpg", "duplicate"),
        ("south/bob_20240302/seal/resized_002.jpg", "near_duplicate"),
        (seal + "truncated.jpg", "unreadable"),
        (seal + "notes.txt", "unreadable"),
        (seal + "animated.gif", "unsupported"),
        (seal + "raw0001.heic", "unsupported"),
        ("unsorted.jpg", "missing_label"),
        ("south/ann_20240301/gull/night.jpg", "dark"),
        ("south/ann_20240301/gull/shaky.jpg", "blurred"),
    }
    assert flags[("south/cy_20240303/seal/copy_of_001.jpg", "duplicate")] == f"same bytes as {seal}img001.jpg"
    assert flags[("south/bob_20240302/seal/resized_002.jpg", "near_duplicate")].startswith(
        f"looks like {seal}img002.jpg"
    )
    keep = [r["path"] for r in read_csv(cleaned / "keep.csv")]
    ok = [p for p, r in manifest["rows"].items() if r["status"] == "ok"]
    assert keep == sorted(set(ok) - {p for p, _ in flags})
    assert {r["label"]: int(r["photos"]) for r in read_csv(cleaned / "balance.csv")} == {
        "gull": 18,
        "seal": 18,
        "walrus": 1,
    }
    page = (cleaned / "report.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 5  # the readable, supported flagged photos
    assert 'id="balance"' in page and "data:image/png;base64," in page


def test_split_keeps_groups_whole_stratifies_and_holds_out_rare_labels(cleaned, manifest, tmp_path, capsys):
    args = [
        "--manifest",
        str(manifest["out"]),
        "--keep",
        str(cleaned / "keep.csv"),
        "--by",
        "label",
        "--group",
        "contributor",
        "--seed",
        "3",
        "--fractions",
        "0.34,0.33,0.33",
    ]
    assert split.main([*args, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert split.main([*args, "--out", str(tmp_path / "b")]) == 0
    parts = {name: read_csv(tmp_path / "a" / f"{name}.csv") for name in ("train", "val", "test", "holdout")}
    for name in parts:
        assert (tmp_path / "a" / f"{name}.csv").read_text() == (tmp_path / "b" / f"{name}.csv").read_text()
    assert [r["label"] for r in parts["holdout"]] == ["walrus"]
    groups = {name: {r["group"] for r in rows} for name, rows in parts.items() if name != "holdout"}
    assert sorted(g for gs in groups.values() for g in gs) == ["ann", "bob", "cy"]  # each in one split only
    for name in ("train", "val", "test"):
        labels = Counter(r["label"] for r in parts[name])
        assert labels["gull"] > 0 and labels["seal"] > 0, (name, labels)
    assert "gull" in printed and "seal" in printed and "walrus" in printed


def test_lineage_follows_runs_back_to_the_source_photos(cleaned, manifest, collection, tmp_path, capsys):
    assert (
        split.main(["--manifest", str(manifest["out"]), "--out", str(tmp_path / "split"), "--seed", "1"]) == 0
    )
    capsys.readouterr()
    assert lineage.main([str(tmp_path / "split" / "train.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    fingerprint = json.loads((manifest["out"] / "run.json").read_text())["inputs"]["fingerprint"]
    assert lines[1].split()[:2] == ["split", str(tmp_path / "split")] and fingerprint in lines[1]
    assert lines[2].split()[:2] == ["manifest", str(manifest["out"])]
    assert lines[3].split() == ["source", str(collection)]
    assert lineage.main([str(tmp_path)]) == 2
    assert "is not an output of herdcount" in capsys.readouterr().err
