"""Annotation files as labels: the four formats, their bad rows, and the extract job on them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from herdcount.annotated import LabelSource
from herdcount.annotations import (
    Animal,
    box_cells,
    detect_format,
    group_of,
    image_id,
    parse_boxes_csv,
    parse_coco,
    parse_points_csv,
    parse_yolo_labels,
    place,
    read_annotations,
    read_class_list,
    resize_cells,
)
from herdcount.config import load_config
from herdcount.extract import ExtractJob
from herdcount.extracted import split_photos
from herdcount.imaging import encode_jpeg
from herdcount.runner import run_in_process
from herdcount.scale import working_scale
from herdcount.synth import EXPORTS, write_survey


def test_boxes_csv_rows_become_centres_and_sizes_with_bad_rows_named_by_line():
    text = (
        "a/tile-1.jpg,10,20,30,60,cow,SRC1\n"  # extra column allowed
        "tile-2.jpg,,,,,\n"  # an image without animals
        "tile-1.jpg,5,5,4,9,pup\n"  # inverted box
        "tile-1.jpg,1,2,x,4,pup\n"  # not a number
        "tile-1.jpg,1,2\n"  # too few columns
        "tile-3.png,0,0,8,4,bull\n"
    )
    got = parse_boxes_csv(text, "boxes.csv")
    assert got.animals["a/tile-1.jpg"] == [Animal("a/tile-1.jpg", "cow", 40.0, 20.0, 40.0, 20.0, 1)]
    assert got.animals["tile-2.jpg"] == []
    assert got.animals["tile-3.png"] == [Animal("tile-3.png", "bull", 2.0, 4.0, 4.0, 8.0, 6)]
    assert got.classes == ["cow", "bull"]
    assert [(e.line, e.file) for e in got.errors] == [(3, "boxes.csv"), (4, "boxes.csv"), (5, "boxes.csv")]
    assert "empty or inverted" in got.errors[0].reason and str(got.errors[2]).startswith("boxes.csv:5: ")


def test_points_csv_reads_its_header_a_group_column_and_empty_images():
    text = "image,x,y,class,group\np1.jpg,10.5,3,pup,flightA\np2.jpg,,,,flightB\np1.jpg,oops,3,pup,flightA\n"
    got = parse_points_csv(text, "points.csv")
    assert got.animals == {"p1.jpg": [Animal("p1.jpg", "pup", 3.0, 10.5, line=2)], "p2.jpg": []}
    assert got.groups == {"p1.jpg": "flightA", "p2.jpg": "flightB"}
    assert [e.line for e in got.errors] == [4]
    with pytest.raises(ValueError, match=r"points.csv:1: .* no class column"):
        parse_points_csv("image,x,y\n", "points.csv")


def test_coco_boxes_and_keypoints_with_unknown_ids_rejected():
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "categories": [{"id": 7, "name": "pup"}, {"id": 3, "name": "cow"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 40]},
            {"id": 2, "image_id": 1, "category_id": 7, "keypoints": [0, 0, 0, 5, 6, 2]},
            {"id": 3, "image_id": 9, "category_id": 7, "bbox": [1, 1, 1, 1]},
            {"id": 4, "image_id": 1, "category_id": 8, "bbox": [1, 1, 1, 1]},
            {"id": 5, "image_id": 1, "category_id": 7, "bbox": [1, 1, 0, 1]},
        ],
    }
    got = parse_coco(json.dumps(coco), "coco.json")
    # Categories in id order are the class list.
    assert got.classes == ["cow", "pup"]
    assert got.animals["a.jpg"] == [
        Animal("a.jpg", "cow", 40.0, 25.0, 40.0, 30.0, 1),
        Animal("a.jpg", "pup", 6.0, 5.0, line=2),
    ]
    assert got.animals["b.jpg"] == []
    assert [e.line for e in got.errors] == [3, 4, 5]
    assert "image_id 9" in got.errors[0].reason and "category_id 8" in got.errors[1].reason
    with pytest.raises(ValueError, match="not COCO JSON"):
        parse_coco("[1, 2]", "x.json")


def test_yolo_boxes_and_oriented_boxes_are_fractions_placed_by_image_size():
    text = "1 0.5 0.25 0.1 0.2\n0 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3\n5 0.5 0.5 0.1 0.1\n1 0.5 0.5\n"
    got = parse_yolo_labels(text, "img", ["cow", "pup"], "labels/img.txt")
    assert [e.line for e in got.errors] == [3, 4]
    placed, errors = place(got.animals["img"], (200, 400), ["cow", "pup"])
    assert errors == []
    np.testing.assert_allclose(placed.points, [[50, 200], [40, 80]])
    np.testing.assert_array_equal(placed.classes, [1, 0])
    np.testing.assert_allclose(placed.sizes, [[40, 40], [40, 80]])


def test_place_rejects_boxes_outside_and_unknown_classes_and_masks_ignored_ones():
    animals = [
        Animal("t", "cow", 10, 10, 10, 10, 1),
        Animal("t", "cow", 10, 99, 10, 10, 2),  # reaches 4 px past the right edge
        Animal("t", "walrus", 50, 50, 4, 4, 3),
        Animal("t", "other", 40, 20, 16, 8, 4),
        Animal("t", "other", 20, 60, line=5),  # an ignored point: a square of point_size
    ]
    placed, errors = place(
        animals, (64, 100), ["cow"], ignore=("other",), file="f.csv", point_size={"other": 10}
    )
    np.testing.assert_allclose(placed.points, [[10, 10]])
    np.testing.assert_allclose(placed.ignored, [[32, 16, 48, 24], [15, 55, 25, 65]])
    assert [(e.line, e.file) for e in errors] == [(2, "f.csv"), (3, "f.csv")]
    assert "outside t (100x64)" in errors[0].reason and "'walrus' is not in" in errors[1].reason
    cells = box_cells(placed.ignored, (64, 100), block=8)
    assert cells.shape == (8, 13)
    assert cells[4:6, 2:3].all() and cells[1:4, 6:9].all() and cells.sum() == 2 + 9


def test_resize_cells_follows_the_photo():
    masked = np.zeros((8, 8), bool)
    masked[2:4, 4:8] = True
    half = resize_cells(masked, (32, 32), block=8)
    np.testing.assert_array_equal(half, [[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert resize_cells(masked, (64, 64), block=8).tolist() == masked.tolist()


def test_format_detection_class_lists_ids_and_groups(tmp_path):
    (tmp_path / "b.csv").write_text("x.jpg,1,2,3,4,cow\n")
    (tmp_path / "p.csv").write_text("image,x,y,class\n")
    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "odd.txt").write_text("just words\n")
    assert [detect_format(str(tmp_path / n)) for n in ("b.csv", "p.csv", "c.json")] == [
        "boxes",
        "points",
        "coco",
    ]
    assert detect_format(str(tmp_path)) == "yolo"
    with pytest.raises(ValueError, match="cannot tell the annotation format"):
        detect_format(str(tmp_path / "odd.txt"))
    with pytest.raises(ValueError, match="does not exist"):
        read_annotations(str(tmp_path / "missing.csv"))
    (tmp_path / "classes.csv").write_text("pup,2\nbull,0\ncow,1\n")
    assert read_class_list(str(tmp_path / "classes.csv")) == ["bull", "cow", "pup"]
    assert image_id("dir/4MSL0119-100_png.rf.a15f.jpg") == "4MSL0119-100_png.rf.a15f"
    assert group_of("4MSL0119-100_png.rf.a15f.jpg", r"^([^-]+)-") == "4MSL0119"
    assert group_of("nogroup.jpg", r"^([^-]+)-") is None
    with pytest.raises(ValueError, match="not a regular expression"):
        group_of("x", "(")


def test_working_scale_shrinks_large_animals_to_half_the_field():
    assert working_scale([136.0, 106.0, 56.0], 144) == 0.53
    assert working_scale([None, None], 144) == 1.0
    assert working_scale([40.0, None], 144) == 1.0
    with pytest.raises(ValueError, match="positive"):
        working_scale([0.0], 144)


def test_group_split_never_shares_a_group():
    ids = [f"{g}-{n}" for g in "ABCDEFGHIJ" for n in range(4)]
    groups = {i: i.split("-")[0] for i in ids}
    train, val = split_photos(ids, val_fraction=0.2, seed=1, groups=groups)
    assert {groups[i] for i in train}.isdisjoint({groups[i] for i in val})
    assert len(val) == 8 and sorted(train + val) == sorted(ids)
    assert split_photos(ids, val_fraction=0.2, seed=1, groups=groups) == (train, val)
    # Without groups, photos are held out one by one, as before.
    assert split_photos(ids, val_fraction=0.2, seed=1) == split_photos(
        ids, val_fraction=0.2, seed=1, groups={}
    )
    with pytest.raises(ValueError, match="2 groups are too few"):
        split_photos(ids[:8], groups=groups)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, config):
    """A survey whose training photos' animals are also written in every format."""
    data = tmp_path_factory.mktemp("exported") / "data"
    write_survey(
        data,
        n_train=4,
        n_test=0,
        seed=21,
        config=config,
        width=640,
        height=480,
        density=40,
        n_mismatched=1,
        export=tuple(EXPORTS),
    )
    return data


def extract_labels(data: Path, out: Path, fmt: str, **more) -> dict:
    source = LabelSource(str(data / "Train"), str(data / "annotations" / EXPORTS[fmt]), **more)
    run_in_process(ExtractJob(str(data / "Train"), str(out), source=source))
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "metadata").glob("*.json"))}


def test_every_format_reads_the_same_animals_as_the_truth(tmp_path, exported, config):
    results = {fmt: extract_labels(exported, tmp_path / fmt, fmt) for fmt in EXPORTS}
    truth_dir = exported.parent / "data_truth" / "train"
    kept = [p.stem for p in truth_dir.glob("*.json") if not json.loads(p.read_text())["mismatched"]]
    assert sorted(results["boxes"]) == sorted(kept) and len(kept) == 3
    key = "animals"  # a scheme made from the file's classes
    for photo in kept:
        truth = json.loads((truth_dir / f"{photo}.json").read_text())
        everyone = sum(
            len(truth[config.annotation_key][n]) + len(truth["hidden"][n]) for n in config.class_names
        )
        counts = {fmt: results[fmt][photo]["counts"] for fmt in EXPORTS}
        assert all(sum(c) == everyone for c in counts.values()), counts
        reference = results["boxes"][photo][key]
        for fmt in ("points", "coco", "yolo"):
            mine = results[fmt][photo][key]
            for klass, points in reference.items():
                # YOLO's six decimals of a fraction move a centre by well under a pixel.
                np.testing.assert_allclose(sorted(mine[klass]), sorted(points), atol=1)
    # Boxes measure each class's size: the exporter's boxes are the class's middle length.
    run = json.loads((tmp_path / "boxes" / "run.json").read_text())
    sizes = run["totals"]["sizes"]
    assert sizes["adult_females"]["length_px"] == pytest.approx(np.mean(config.classes[2].length_px), abs=0.6)
    assert {c["name"] for c in run["config"]["classes"]} <= set(config.class_names)
    assert all(c["dot_rgb"] is None for c in run["config"]["classes"])


def test_bad_rows_and_photos_are_reported_and_cost_nothing_else(tmp_path, exported):
    images = tmp_path / "images"
    images.mkdir()
    for n in (0, 1, 2):
        (images / f"{n}.jpg").write_bytes((exported / "Train" / f"{n}.jpg").read_bytes())
    (images / "broken.jpg").write_bytes(b"not a jpeg at all")
    (images / "extra.jpg").write_bytes(encode_jpeg(np.zeros((64, 64, 3), np.uint8)))
    rows = [
        "0.jpg,10,10,50,50,cow,A",
        "0.jpg,600,10,700,50,cow,A",  # outside the 640 px photo
        "1.jpg,10,10,50,50,walrus,A",  # unknown class: masked, reported
        "1.jpg,20,20,60,70,other,A",  # ignored: masked, not reported
        "2.jpg,10,10,50,oops,cow,B",  # malformed
        "2.jpg,100,100,140,150,pup,B",
        "gone.jpg,10,10,50,50,cow,C",  # no such image
        "broken.jpg,10,10,50,50,cow,C",
    ]
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "classes.csv").write_text("cow,0\npup,1\n")
    source = LabelSource(
        str(images),
        str(tmp_path / "a.csv"),
        classes=str(tmp_path / "classes.csv"),
        ignore=("other",),
        group_pattern=r"^(\d)",
    )
    out = tmp_path / "out"
    record = run_in_process(ExtractJob(str(images), str(out), source=source))
    assert record.totals["failed"] == 2 and record.totals["done"] == 3
    report = {r["train_id"]: r for r in csv.DictReader((out / "extract_report.csv").open())}
    assert (
        report["gone"]["status"] == "error"
        and "gone.jpg is missing from --images" in report["gone"]["message"]
    )
    assert report["broken"]["status"] == "error" and "broken.jpg" in report["broken"]["message"]
    errors = [r["error"] for r in csv.DictReader((out / "annotation_errors.csv").open())]
    assert len(errors) == 3
    assert any(e.startswith(f"{tmp_path / 'a.csv'}:5: ") for e in errors)
    assert any(":2: box (600,10)-(700,50) lies outside 0.jpg (640x480)" in e for e in errors)
    assert any(":3: class 'walrus'" in e for e in errors)
    meta = {n: json.loads((out / "metadata" / f"{n}.json").read_text()) for n in ("0", "1", "2")}
    assert meta["0"]["counts"] == [1, 0] and meta["2"]["counts"] == [0, 1] and meta["1"]["counts"] == [0, 0]
    assert meta["1"]["ignored"] == [[20.0, 20.0, 70.0, 60.0], [10.0, 10.0, 50.0, 50.0]]
    assert meta["1"]["masked_fraction"] > 0 and meta["0"]["group"] == "0"
    assert meta["2"]["sizes"] == {"cow": [], "pup": [[50.0, 40.0]]}
    assert record.totals["images_without_annotations"] == 1 and record.totals["annotation_rows_rejected"] == 3
    # A rerun resumes: nothing is extracted again and the rejected rows are still reported.
    again = run_in_process(ExtractJob(str(images), str(out), source=source))
    assert again.totals["resumed"] == 3 and again.totals["annotation_rows_rejected"] == 3


def test_a_scheme_names_the_columns_else_the_file_does(tmp_path, exported, config):
    # Without a scheme, COCO's categories give the classes and their order.
    coco = extract_labels(exported, tmp_path / "own", "coco")
    assert list(next(iter(coco.values()))["animals"]) == config.class_names
    source = LabelSource(str(exported / "Train"), str(exported / "annotations" / "coco.json"))
    out = tmp_path / "with-scheme"
    record = run_in_process(ExtractJob(str(exported / "Train"), str(out), scheme="sealions", source=source))
    assert [c["name"] for c in record.config["classes"]] == config.class_names
    # The sea lion scheme's key and columns: training and counting see the usual survey.
    first = json.loads(next((out / "metadata").glob("*.json")).read_text())
    assert list(first[config.annotation_key]) == config.class_names
    loaded = load_config("sealions")
    assert loaded.dot_colours == config.dot_colours
