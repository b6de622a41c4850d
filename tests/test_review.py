"""Review in the browser: the event database, the photo order and export, the real server
(uvicorn, SQLite in WAL mode) over HTTP, and Debian's chromium driving the page."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import find_chromium, free_port

from herdcount.annotations import read_annotations, read_class_list
from herdcount.count_inputs import read_calibration
from herdcount.imaging import decode_rgb, encode_jpeg
from herdcount.review import export_review, make_review, order_photos, read_count
from herdcount.review_app import TILE, cut_tile, max_zoom
from herdcount.review_store import ReviewStore, StaleEdit

CLASSES = ["bull", "cow", "pup"]
FULL = (3328, 4992)
JSON = {"Content-Type": "application/json"}
VIEW = {"width": 1200, "height": 800}


def write_count(
    root: Path, sizes: dict[str, tuple[int, int]], points: dict[str, list], seed: int = 0
) -> Path:
    """A count job's output folder (run.json, counts.csv, points.csv) over photos written
    into ``root/images``: textured JPEGs of the given (rows, cols)."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    for photo, (rows, cols) in sizes.items():
        small = rng.integers(40, 200, (rows // 16 + 1, cols // 16 + 1, 3), dtype=np.uint8)
        image = np.repeat(np.repeat(small, 16, axis=0), 16, axis=1)[:rows, :cols]
        (images / f"{photo}.jpg").write_bytes(encode_jpeg(np.ascontiguousarray(image), quality=80))
    out = root / "count"
    out.mkdir()
    run = {
        "job": "count",
        "config": {"settings": {"class_names": CLASSES, "model": None}, "scheme": None},
        "inputs": {"images": str(images)},
    }
    (out / "run.json").write_text(json.dumps(run))
    with open(out / "counts.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["test_id", *CLASSES, "width", "height", "scale"])
        for photo, (rows, cols) in sizes.items():
            n = [sum(p[0] == c for p in points.get(photo, [])) for c in CLASSES]
            w.writerow([photo, *n, cols, rows, 1.0])
    with open(out / "points.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["test_id", "class", "x", "y", "score"])
        for photo, found in points.items():
            for cls, row, col, score in found:
                w.writerow([photo, cls, col, row, score])
    return out


@pytest.fixture
def small_count(tmp_path):
    sizes = {f"p{k}": (300, 400) for k in range(6)}
    points = {
        "p0": [("cow", 100.0, 120.0, 0.9), ("pup", 150.0, 200.0, 0.6), ("bull", 50.0, 60.0, 0.8)],
        "p1": [("cow", 10.0, 10.0, 0.95)],
        "p3": [("pup", 200.0, 300.0, 0.2), ("pup", 210.0, 310.0, 0.25)],
    }
    return write_count(tmp_path, sizes, points)


# --- the database ---------------------------------------------------------------------------


def test_events_replay_into_the_photos_points_with_who_and_before_after(small_count):
    store = make_review(str(small_count), sample=2, seed=1)
    state = store.state("p0")
    assert [(p.id, p.cls, p.row, p.col) for p in state.points] == [
        (0, "cow", 100.0, 120.0),
        (1, "pup", 150.0, 200.0),
        (2, "bull", 50.0, 60.0),
    ]
    cow = {"class": "cow", "row": 100.0, "col": 120.0}
    store.edit("p0", "ann", "add", cls="pup", row=20.5, col=30.25)
    store.edit("p0", "ann", "move", point=0, seen=cow, row=101.0, col=125.0)
    store.edit("p0", "bob", "relabel", point=2, seen={"class": "bull", "row": 50, "col": 60}, cls="cow")
    store.edit("p0", "bob", "delete", point=1, seen={"class": "pup", "row": 150, "col": 200})
    state = store.edit("p0", "bob", "done")
    assert [(p.id, p.cls, p.row, p.col, p.source) for p in state.points] == [
        (0, "cow", 101.0, 125.0, "model"),
        (2, "cow", 50.0, 60.0, "model"),
        (3, "pup", 20.5, 30.2, "reviewer"),
    ]
    assert state.counts(CLASSES) == {"bull": 0, "cow": 2, "pup": 1}
    assert state.done_by == "bob" and state.reviewers == ["ann", "bob"] and state.events == 5
    history = store.history("p0")
    assert [(h["reviewer"], h["action"], h["point"]) for h in history] == [
        ("ann", "add", 3),
        ("ann", "move", 0),
        ("bob", "relabel", 2),
        ("bob", "delete", 1),
        ("bob", "done", None),
    ]
    assert history[1]["before"]["col"] == 120.0 and history[1]["after"]["col"] == 125.0
    assert history[3]["after"] is None and history[4]["after"] == {"done": True}
    # The list's counts, with and without events, are the replayed states' counts.
    for listed in store.photos():
        state = store.state(listed["id"])
        assert listed["counts"] == state.counts(CLASSES) and listed["events"] == state.events
        assert (listed["done_by"], listed["reviewers"]) == (state.done_by, state.reviewers)
    # A reopened store (another process) derives the same state from the file.
    assert ReviewStore(store.path).state("p0") == store.state("p0")


def test_undo_takes_back_the_reviewers_own_changes_in_reverse_and_is_kept(small_count):
    store = make_review(str(small_count), sample=0)
    store.edit("p1", "ann", "add", cls="bull", row=5, col=6)
    store.edit("p1", "ann", "move", point=0, seen={"class": "cow", "row": 10, "col": 10}, row=20, col=30)
    store.edit("p1", "bob", "add", cls="pup", row=7, col=8)
    state = store.undo("p1", "ann")
    assert {p.id: (p.row, p.col) for p in state.points}[0] == (10.0, 10.0)
    state = store.undo("p1", "ann")
    assert sorted(p.id for p in state.points) == [0, 2]  # ann's add gone, bob's kept
    with pytest.raises(ValueError, match="'ann' has nothing to undo"):
        store.undo("p1", "ann")
    assert [h["action"] for h in store.history("p1")][-2:] == ["undo move", "undo add"]
    # Undo of a point someone else has changed since is refused, with the fresh state.
    store.edit("p1", "ann", "relabel", point=0, seen={"class": "cow", "row": 10, "col": 10}, cls="pup")
    store.edit("p1", "bob", "move", point=0, seen={"class": "pup", "row": 10, "col": 10}, row=11, col=11)
    with pytest.raises(StaleEdit, match="changed by someone else") as refused:
        store.undo("p1", "ann")
    assert {p.id: p.cls for p in refused.value.state.points}[0] == "pup"


def test_a_stale_edit_is_refused_with_the_fresh_state_and_nothing_is_lost(small_count):
    store = make_review(str(small_count), sample=0)
    seen_by_both = {"class": "pup", "row": 200.0, "col": 300.0}
    store.edit("p3", "ann", "move", point=0, seen=seen_by_both, row=220, col=330)
    before = store.state("p3").events
    with pytest.raises(StaleEdit, match="changed since you saw it") as refused:
        store.edit("p3", "bob", "relabel", point=0, seen=seen_by_both, cls="cow")
    assert {p.id: (p.row, p.col) for p in refused.value.state.points}[0] == (220.0, 330.0)
    assert store.state("p3").events == before
    # Bob retries on the fresh state; both changes hold.
    store.edit("p3", "bob", "relabel", point=0, seen={"class": "pup", "row": 220, "col": 330}, cls="cow")
    store.edit("p3", "ann", "delete", point=1, seen={"class": "pup", "row": 210, "col": 310})
    with pytest.raises(StaleEdit, match="someone deleted it"):
        store.edit("p3", "bob", "move", point=1, seen={"class": "pup", "row": 210, "col": 310}, row=1, col=1)
    assert [(p.id, p.cls, p.row, p.col) for p in store.state("p3").points] == [(0, "cow", 220.0, 330.0)]


@pytest.mark.parametrize(
    ("photo", "kwargs", "error", "match"),
    [
        ("nope", {"action": "add", "cls": "cow", "row": 1, "col": 1}, KeyError, "unknown photo 'nope'"),
        ("p0", {"action": "add", "cls": "walrus", "row": 1, "col": 1}, ValueError, "unknown class 'walrus'"),
        (
            "p0",
            {"action": "add", "cls": "cow", "row": 300, "col": 1},
            ValueError,
            r"outside photo p0 \(300 rows",
        ),
        ("p0", {"action": "add", "cls": "cow", "row": -1, "col": 1}, ValueError, "outside photo"),
        ("p0", {"action": "add", "cls": "cow", "row": "x", "col": 1}, ValueError, "must be numbers"),
        ("p0", {"action": "fly"}, ValueError, "unknown action 'fly'"),
        ("p0", {"action": "delete", "point": "0"}, ValueError, "needs the point's id"),
        ("p0", {"action": "delete", "point": 0, "seen": {"row": 1}}, ValueError, "needs class, row and col"),
    ],
)
def test_bad_edits_are_refused_and_write_nothing(small_count, photo, kwargs, error, match):
    store = make_review(str(small_count), sample=0)
    with pytest.raises(error, match=match):
        store.edit(photo, "ann", **kwargs)
    with pytest.raises(ValueError, match="reviewer's name"):
        store.edit("p0", " ", "done")
    assert sum(p["events"] for p in store.photos()) == 0


def test_the_order_is_a_seeded_sample_then_the_photos_most_in_need(small_count):
    count = read_count(str(small_count))
    photos = sorted(count.counts)
    first = order_photos(photos, count, sample=2, seed=7)
    assert first == order_photos(photos, count, sample=2, seed=7)
    draws = {tuple(p for p, *_ in order_photos(photos, count, sample=2, seed=s)[:2]) for s in range(10)}
    assert len(draws) > 3
    assert [s for _, s, _ in first] == [True, True, False, False, False, False]
    assert sorted(p for p, *_ in first) == photos
    # The rest by counted total plus unsure points: p3 (2 counted + 2 unsure), p0 (3 + 0), p1 (1 + 0).
    rest = [p for p, s, _ in order_photos(photos, count, sample=0)]
    assert rest[:3] == ["p3", "p0", "p1"]
    # A photo counted outside the model's training scale range comes first.
    outside = replace(count, scales={**count.scales, "p5": 3.0}, training_range=(0.5, 2))
    ranked = order_photos(photos, outside, sample=0)
    assert ranked[0][0] == "p5" and "outside training 0.5-2" in ranked[0][2]
    with pytest.raises(ValueError, match="sample must be >= 0 photos, got -1"):
        order_photos(photos, count, sample=-1)


def test_export_writes_done_photos_as_annotations_and_the_samples_counts_as_calibration(small_count):
    store = make_review(str(small_count), sample=3, seed=0)
    sampled = [p["id"] for p in store.photos() if p["sampled"]]
    for photo in sampled[:2]:
        store.edit(photo, "ann", "add", cls="bull", row=42, col=24)
        store.edit(photo, "ann", "done")
    store.edit("p4" if "p4" not in sampled else "p5", "ann", "done")  # done, not sampled, no animals
    done = export_review(store)
    assert (done.photos, done.sampled_done, done.sampled) == (3, 2, 3)
    read = read_annotations(done.points, "points")
    states = {store.state(p).file: store.state(p) for p in store.photo_ids()}
    assert sorted(read.animals) == sorted(s.file for s in states.values() if s.done_by)
    for file, animals in read.animals.items():
        shown = sorted((p.cls, p.col, p.row) for p in states[file].points)
        assert sorted((a.klass, round(a.col, 1), round(a.row, 1)) for a in animals) == shown
    assert read_class_list(str(Path(done.points).with_name("classes.csv"))) == CLASSES
    truth = read_calibration(done.calibration, set(store.photo_ids()), CLASSES)
    assert set(truth) == set(sampled[:2])
    for photo, counts in truth.items():
        assert list(counts) == list(store.state(photo).counts(CLASSES).values())
    # The review is made once: its sample and order do not change on reopening.
    assert [p["id"] for p in make_review(str(small_count), sample=5, seed=9).photos()] == store.photo_ids()


def test_a_count_without_its_photos_or_record_is_refused_naming_the_file(small_count, tmp_path):
    (small_count.parent / "images" / "p2.jpg").unlink()
    with pytest.raises(ValueError, match=r"counted photos missing from the folder: \['p2'\]"):
        make_review(str(small_count))
    with pytest.raises(ValueError, match=r"run\.json does not exist"):
        make_review(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="needs a local folder"):
        make_review("s3://bucket/count")


def test_tiles_cut_the_photo_at_each_zoom_level():
    image = np.random.default_rng(0).integers(0, 255, (700, 1000, 3), dtype=np.uint8)
    top = max_zoom(1000, 700)
    assert top == 2
    assert np.array_equal(cut_tile(image, top, 1, 2, top=top)[:188, :], image[512:700, 256:512])
    assert (cut_tile(image, top, 1, 2, top=top)[188:] == 24).all()  # padded below the photo
    whole = cut_tile(image, 0, 0, 0, top=top)
    assert whole.shape == (TILE, TILE, 3) and (whole[:175, :250] != 24).any() and (whole[180:] == 24).all()
    assert abs(float(whole[:175, :250].mean()) - float(image.mean())) < 2
    assert cut_tile(image, top, 4, 0, top=top) is None and cut_tile(image, 3, 0, 0, top=top) is None


# --- the server -----------------------------------------------------------------------------


class Server:
    """``herdcount review --count OUT`` in its own process, on a free port."""

    def __init__(self, count: Path, host: str = "127.0.0.1", sample: int = 2):
        self.count, self.host, self.sample = count, host, sample
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.printed = ""

    def start(self) -> Server:
        cmd = [sys.executable, "-m", "herdcount.commands.review", "--count", str(self.count)]
        cmd += ["--host", self.host, "--port", str(self.port), "--sample", str(self.sample)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        while not any("review: open" in line for line in lines):
            line = self.proc.stdout.readline()
            assert line, "the server stopped: " + "".join(lines)
            lines.append(line)
        self.printed = "".join(lines)
        for _ in range(100):
            try:
                requests.get(self.url + "/static/review.css", timeout=1, cookies=self.cookies())
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError("the server did not answer")

    @property
    def token(self) -> str | None:
        return self.printed.split("?token=")[1].split()[0] if "?token=" in self.printed else None

    def cookies(self) -> dict:
        return {"herdcount_review": self.token} if self.token else {}

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def server(small_count):
    s = Server(small_count).start()
    yield s
    s.kill()


def post(server: Server, photo: str, body: dict, verb: str = "edits", **kw) -> requests.Response:
    return requests.post(f"{server.url}/api/photos/{photo}/{verb}", json=body, timeout=10, **kw)


def test_the_server_binds_loopback_and_refuses_bad_requests_writing_nothing(server):
    assert "review: open http://127.0.0.1:" in server.printed and "token" not in server.printed
    ok = post(server, "p0", {"reviewer": "ann", "action": "add", "class": "cow", "row": 5, "col": 6})
    assert ok.status_code == 200 and ok.json()["counts"] == {"bull": 1, "cow": 2, "pup": 1}
    bad = [
        (post(server, "nope", {"reviewer": "ann", "action": "done"}), 404, "unknown photo"),
        (
            post(server, "p0", {"reviewer": "ann", "action": "add", "class": "cow", "row": 5, "col": 400}),
            400,
            "outside",
        ),
        (
            post(server, "p0", {"reviewer": "ann", "action": "add", "class": "seal", "row": 5, "col": 6}),
            400,
            "class",
        ),
        (post(server, "p0", {"reviewer": "", "action": "done"}), 400, "reviewer's name"),
        (post(server, "p0", {"reviewer": "ann"}, verb="upload"), 404, "no such action"),
        (requests.post(f"{server.url}/api/photos/p0/edits", files={"f": b"x"}, timeout=5), 415, "uploads"),
        (
            requests.post(f"{server.url}/api/photos/p0/edits", data="{", timeout=5, headers=JSON),
            400,
            "not JSON",
        ),
        (post(server, "p0", {"reviewer": "ann", "action": "done", "pad": "x" * 20000}), 413, "at most"),
        (requests.get(f"{server.url}/tiles/p0/9/0/0.jpg", timeout=5), 404, "no tile"),
    ]
    for answer, status, words in bad:
        assert answer.status_code == status and words in answer.json()["error"], (
            answer.status_code,
            answer.text,
        )
    listed = requests.get(f"{server.url}/api/photos", timeout=5).json()["photos"]
    assert sum(p["events"] for p in listed) == 1
    tile = requests.get(f"{server.url}/tiles/p0/1/0/0.jpg", timeout=5)
    assert tile.headers["content-type"] == "image/jpeg" and decode_rgb(tile.content).shape == (TILE, TILE, 3)
    assert (server.count / "review" / "tiles" / "p0" / "1" / "0_0.jpg").is_file()


def test_serving_others_demands_the_printed_token_on_every_request(small_count):
    s = Server(small_count, host="127.0.0.2").start()
    try:
        assert s.token and len(s.token) >= 24 and "printed only this once" in s.printed
        body = {"reviewer": "eve", "action": "done"}
        for kw in (
            {},
            {"cookies": {"herdcount_review": "wrong"}},
            {"headers": {"Authorization": "Bearer wrong"}},
        ):
            assert post(s, "p0", body, **kw).status_code == 401
            assert requests.get(f"{s.url}/api/photos/p0", timeout=5, **kw).status_code == 401
            assert requests.get(f"{s.url}/tiles/p0/0/0/0.jpg", timeout=5, **kw).status_code == 401
        assert requests.get(f"{s.url}/api/photos?token=nope", timeout=5).status_code == 401
        first = requests.get(f"{s.url}/?token={s.token}", timeout=5)
        assert first.status_code == 200 and "SameSite=Strict" in first.headers["set-cookie"]
        assert post(s, "p0", body, headers={"Authorization": f"Bearer {s.token}"}).status_code == 200
        assert post(s, "p1", body, cookies=s.cookies()).status_code == 200
        events = requests.get(f"{s.url}/api/photos", timeout=5, cookies=s.cookies()).json()["photos"]
        assert sorted(p["id"] for p in events if p["events"]) == ["p0", "p1"]
    finally:
        s.kill()


def test_a_killed_server_loses_no_acknowledged_change(small_count):
    s = Server(small_count).start()
    acknowledged = []
    try:
        for k in range(20):
            answer = post(
                s, "p2", {"reviewer": "ann", "action": "add", "class": "pup", "row": k, "col": 2 * k}
            )
            assert answer.status_code == 200
            acknowledged.append((float(k), float(2 * k)))
    finally:
        s.kill()
    assert s.proc.returncode == -signal.SIGKILL
    again = Server(small_count).start()
    try:
        state = requests.get(f"{again.url}/api/photos/p2", timeout=5).json()
        assert [(p["row"], p["col"]) for p in state["points"]] == acknowledged
        assert state["events"] == 20
    finally:
        again.kill()


# --- the browser ----------------------------------------------------------------------------


@pytest.fixture
def full_size(tmp_path):
    """One full-size 4992 x 3328 photo with five model points, and a small one."""
    points = {
        "big": [("cow", 1000.0, 1500.0, 0.9), ("pup", 1040.0, 1600.0, 0.4), ("bull", 2000.0, 3000.0, 0.8)]
        + [("cow", 2500.0, 4000.0, 0.7), ("pup", 300.0, 400.0, 0.6)],
        "small": [("cow", 100.0, 100.0, 0.9)],
    }
    count = write_count(tmp_path, {"big": FULL, "small": (600, 800)}, points)
    s = Server(count, sample=1).start()
    yield s
    s.kill()


@pytest.fixture
def browser():
    """Debian's chromium driven by Playwright, closed after the test."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=find_chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


def drag(page, start: tuple[float, float], dx: float, dy: float, steps: int = 6) -> None:
    """Press at ``start``, move by ``(dx, dy)`` screen pixels and release."""
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + dx, start[1] + dy, steps=steps)
    page.mouse.up()


def markers(page) -> list[tuple[int, str, float, float]]:
    return [
        tuple(m)
        for m in page.evaluate(
            "[...document.querySelectorAll('.leaflet-marker-icon')].map(e => "
            "[Number(e.dataset.id), e.dataset.class, Number(e.dataset.row), Number(e.dataset.col)])"
        )
    ]


def centre(page, point: int) -> tuple[float, float]:
    box = page.locator(f".leaflet-marker-icon[data-id='{point}']").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def api_points(server: Server, photo: str) -> list[tuple[int, str, float, float]]:
    state = requests.get(f"{server.url}/api/photos/{photo}", timeout=5).json()
    return [(p["id"], p["class"], p["row"], p["col"]) for p in state["points"]]


def open_photo(browser, server: Server, reviewer: str, photo: str = "big"):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{server.url}/photo/{photo}")
    page.wait_for_selector(".leaflet-marker-icon")
    page.fill("#reviewer", reviewer)
    page.press("#reviewer", "Enter")
    page.wait_for_function("document.querySelectorAll('.leaflet-tile-loaded').length > 0")
    return page, errors


def wait_events(page, n: int) -> None:
    page.wait_for_function(f"document.body.dataset.events === '{n}'", timeout=10_000)


@pytest.mark.slow
def test_chromium_adds_moves_relabels_and_deletes_points_on_a_full_size_photo(full_size, browser):
    page, errors = open_photo(browser.new_context(viewport=VIEW), full_size, "ann")
    assert sorted(m[:2] for m in markers(page)) == [
        (0, "cow"),
        (1, "pup"),
        (2, "bull"),
        (3, "cow"),
        (4, "pup"),
    ]
    # Scores are drawn beside the points once the view is close enough to read them.
    score = page.locator(".leaflet-marker-icon[data-id='0'] .score")
    assert score.inner_text() == "0.90" and not score.is_visible()
    for _ in range(3):
        page.locator(".leaflet-control-zoom-in").click()
        page.wait_for_timeout(300)
    assert page.locator(".leaflet-marker-icon .score").first.is_visible()
    for _ in range(3):
        page.locator(".leaflet-control-zoom-out").click()
        page.wait_for_timeout(300)
    # Add: choose pup with its key, click the map.
    box = page.locator("#map").bounding_box()
    at = (box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
    page.keyboard.press("3")
    page.mouse.click(*at)
    wait_events(page, 1)
    added = [m for m in markers(page) if m[0] == 5]
    assert added and added[0][1] == "pup"
    assert np.allclose(centre(page, 5), at, atol=2)
    # Move: drag point 2.
    start = centre(page, 2)
    drag(page, start, 40, 25, steps=8)
    wait_events(page, 2)
    moved = {m[0]: m for m in markers(page)}[2]
    assert (
        moved[2] > 2000
        and moved[3] > 3000
        and np.allclose(centre(page, 2), (start[0] + 40, start[1] + 25), atol=3)
    )
    # Relabel point 0 (select, key), delete point 4 (select, Delete), nudge point 3 with an arrow.
    page.locator(".leaflet-marker-icon[data-id='0']").click()
    page.keyboard.press("3")
    wait_events(page, 3)
    page.locator(".leaflet-marker-icon[data-id='4']").click()
    page.keyboard.press("Delete")
    wait_events(page, 4)
    page.locator(".leaflet-marker-icon[data-id='3']").click()
    page.keyboard.press("Shift+ArrowRight")
    wait_events(page, 5)
    assert page.locator("button.cls[data-class='pup'] .n").inner_text() == "3"
    shown = sorted(markers(page))
    assert [(i, c) for i, c, *_ in shown] == [(0, "pup"), (1, "pup"), (2, "bull"), (3, "cow"), (5, "pup")]
    assert {i: col for i, _, _, col in shown}[3] == 4010.0
    # Undo the nudge with its key; then reload: the browser shows what the database holds.
    page.keyboard.press("z")
    wait_events(page, 6)
    page.reload()
    page.wait_for_selector(".leaflet-marker-icon[data-id='5']")
    assert sorted(markers(page)) == sorted(api_points(full_size, "big"))
    assert {i: col for i, _, _, col in markers(page)}[3] == 4000.0
    assert np.allclose(centre(page, 5), at, atol=2)  # same view after reload: the same place
    assert errors == []


@pytest.mark.slow
def test_two_reviewers_on_one_photo_lose_nothing_and_the_stale_one_is_told(full_size, browser):
    ann, _ = open_photo(browser.new_context(viewport=VIEW), full_size, "ann")
    bob, _ = open_photo(browser.new_context(viewport=VIEW), full_size, "bob")
    start = centre(ann, 0)
    drag(ann, start, 30, 0)
    wait_events(ann, 1)
    moved = {m[0]: m for m in markers(ann)}[0]
    # Bob still sees point 0 where it was; his relabel is refused and he is shown ann's move.
    bob.locator(".leaflet-marker-icon[data-id='0']").click()
    bob.keyboard.press("1")
    bob.wait_for_function(
        "document.getElementById('message').textContent.includes('changed since you saw it')"
    )
    assert {m[0]: m for m in markers(bob)}[0] == moved
    bob.keyboard.press("1")  # again, on the fresh state
    wait_events(bob, 2)
    # Meanwhile ann adds; bob's next add lands beside it, neither lost.
    box = ann.locator("#map").bounding_box()
    ann.mouse.click(box["x"] + 100, box["y"] + 100)
    wait_events(ann, 3)
    bob.mouse.click(box["x"] + 200, box["y"] + 120)
    wait_events(bob, 4)
    final = api_points(full_size, "big")
    assert {i: (c, r, col) for i, c, r, col in final}[0] == ("bull", moved[2], moved[3])
    assert sorted(i for i, *_ in final) == [0, 1, 2, 3, 4, 5, 6]
    ann.reload()
    ann.wait_for_selector(".leaflet-marker-icon[data-id='6']")
    assert sorted(markers(ann)) == sorted(final)
    listed = requests.get(f"{full_size.url}/api/photos", timeout=5).json()["photos"]
    assert {p["id"]: p["reviewers"] for p in listed}["big"] == ["ann", "bob"]


@pytest.mark.slow
def test_the_export_holds_exactly_what_the_browser_shows(full_size, browser):
    page, errors = open_photo(browser.new_context(viewport=VIEW), full_size, "ann")
    box = page.locator("#map").bounding_box()
    for k, key in enumerate(["1", "2", "3"]):
        page.keyboard.press(key)
        page.mouse.click(box["x"] + 300 + 90 * k, box["y"] + 200 + 40 * k)
    wait_events(page, 3)
    page.locator(".leaflet-marker-icon[data-id='1']").click()
    page.keyboard.press("x")
    page.keyboard.press("d")
    wait_events(page, 5)
    assert "done by ann" in page.locator("#state").inner_text()
    page.goto(f"{full_size.url}/")
    row = page.locator("tr[data-photo='big']")
    assert "done by ann" in row.inner_text() and "ann" in row.locator("td").nth(-2).inner_text()
    page.goto(f"{full_size.url}/photo/big")
    page.wait_for_selector(".leaflet-marker-icon[data-id='7']")
    shown = sorted((c, round(col, 1), round(r, 1)) for _, c, r, col in markers(page))
    assert errors == []
    done = export_review(ReviewStore(full_size.count / "review" / "review.sqlite"))
    read = read_annotations(done.points, "points")
    assert list(read.animals) == ["big.jpg"]
    assert sorted((a.klass, round(a.col, 1), round(a.row, 1)) for a in read.animals["big.jpg"]) == shown
    assert len(shown) == 5 - 1 + 3


def test_the_command_refuses_what_it_cannot_review_naming_it(small_count, tmp_path, capsys):
    from herdcount.commands import review as review_command

    assert review_command.main(["--export", str(tmp_path)]) == 2
    assert f"no review database at {tmp_path / 'review' / 'review.sqlite'}" in capsys.readouterr().err
    assert review_command.main(["--count", "s3://bucket/count"]) == 2
    assert "needs a local folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        review_command.main(["--count", str(small_count), "--export", str(small_count)])
    make_review(str(small_count), sample=2)
    assert review_command.main(["--export", str(small_count)]) == 0
    printed = capsys.readouterr().out
    assert "0 photos done, 0 animals" in printed and "a calibration needs 2" in printed
    assert (small_count / "review" / "corrections.csv").read_text() == "image,x,y,class\n"


@pytest.mark.slow
def test_chromium_without_the_token_is_refused_and_a_bad_edit_from_the_page_writes_nothing(tmp_path, browser):
    count = write_count(tmp_path, {"big": FULL}, {"big": [("cow", 1000.0, 1500.0, 0.9)]})
    server = Server(count, host="127.0.0.2", sample=1).start()
    try:
        page = browser.new_context(viewport=VIEW).new_page()
        assert page.goto(f"{server.url}/photo/big").status == 401
        assert page.goto(f"{server.url}/photo/big?token=wrong").status == 401
        assert page.goto(f"{server.url}/photo/big?token={server.token}").status == 200
        page.wait_for_selector(".leaflet-marker-icon")
        page.wait_for_function("document.querySelectorAll('.leaflet-tile-loaded').length > 0")
        # The page's own requests carry the cookie; a forged bad edit from it is refused.
        refused = page.evaluate(
            """async () => {
                const post = (body) => fetch('/api/photos/big/edits', {method: 'POST',
                    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
                const answers = [
                    await post({reviewer: 'eve', action: 'add', class: 'walrus', row: 5, col: 5}),
                    await post({reviewer: 'eve', action: 'add', class: 'cow', row: 5, col: 99999}),
                    await post({reviewer: 'eve', action: 'delete', point: 0,
                                seen: {class: 'cow', row: 1, col: 1}}),
                    await fetch('/api/photos/nope/edits', {method: 'POST',
                        headers: {'Content-Type': 'application/json'},
                        body: JSON.stringify({reviewer: 'eve', action: 'done'})}),
                ];
                return answers.map((a) => a.status);
            }"""
        )
        assert refused == [400, 400, 409, 404]
        state = page.evaluate("fetch('/api/photos/big').then((a) => a.json())")
        assert state["events"] == 0 and [p["id"] for p in state["points"]] == [0]
    finally:
        server.kill()
