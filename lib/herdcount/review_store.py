"""The review's state: one SQLite database in WAL mode, in which every change is an event.

The model's points of each photo are written once, when the review is made. A reviewer's
change (add, move, relabel or delete a point, mark a photo done or not, undo) is appended as an
event that says who, when, and the point before and after; the photo's current points are the
model's points with its events replayed in order. Nothing is updated in place, so two reviewers
never overwrite each other: an edit names the point as its reviewer saw it, and where the point
has changed since (``StaleEdit``), the edit is refused with the photo's fresh state.

Every write is one ``BEGIN IMMEDIATE`` transaction committed with ``synchronous=FULL`` before
the server answers, so an acknowledged change survives a killed server.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
ACTIONS = ("add", "move", "relabel", "delete", "done", "reopen")
# Positions are compared at this precision: a browser's floats round-trip through JSON.
_PLACES = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE photos (
    id TEXT PRIMARY KEY, file TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    rank INTEGER NOT NULL, sampled INTEGER NOT NULL, reason TEXT NOT NULL, counts TEXT NOT NULL
);
CREATE TABLE model_points (
    photo TEXT NOT NULL REFERENCES photos(id), point INTEGER NOT NULL, class TEXT NOT NULL,
    row REAL NOT NULL, col REAL NOT NULL, score REAL, PRIMARY KEY (photo, point)
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, photo TEXT NOT NULL REFERENCES photos(id),
    reviewer TEXT NOT NULL, at REAL NOT NULL, action TEXT NOT NULL, point INTEGER,
    before TEXT, after TEXT, undoes INTEGER REFERENCES events(seq)
);
CREATE INDEX events_photo ON events (photo, seq);
"""


@dataclass(frozen=True)
class Point:
    """One animal on a photo: ``(row, col)`` in the photo's full-size pixels."""

    id: int
    cls: str
    row: float
    col: float
    score: float | None = None
    source: str = "model"

    def key(self) -> tuple[str, float, float]:
        """What an edit must have seen of the point: class and position."""
        return (self.cls, round(self.row, _PLACES), round(self.col, _PLACES))

    def record(self) -> dict:
        return {
            "id": self.id,
            "class": self.cls,
            "row": round(self.row, _PLACES),
            "col": round(self.col, _PLACES),
            "score": self.score,
            "source": self.source,
        }


@dataclass(frozen=True)
class PhotoEntry:
    """A photo as the review is made: its file, size, model points and place in the order."""

    id: str
    file: str
    width: int
    height: int
    points: list[Point]
    counts: dict[str, float] = field(default_factory=dict)
    rank: int = 0
    sampled: bool = False
    reason: str = ""


@dataclass(frozen=True)
class PhotoState:
    """A photo's current points and review state, as derived from its events."""

    id: str
    file: str
    width: int
    height: int
    points: list[Point]
    done_by: str | None
    reviewers: list[str]
    events: int
    sampled: bool
    undoable: dict[str, int]

    def counts(self, classes: Sequence[str]) -> dict[str, int]:
        return {c: sum(p.cls == c for p in self.points) for c in classes}

    def record(self, classes: Sequence[str]) -> dict:
        return {
            "id": self.id,
            "file": self.file,
            "width": self.width,
            "height": self.height,
            "points": [p.record() for p in self.points],
            "counts": self.counts(classes),
            "done_by": self.done_by,
            "reviewers": self.reviewers,
            "events": self.events,
            "sampled": self.sampled,
        }


class StaleEdit(Exception):
    """An edit made on a state of the photo that another change has since replaced."""

    def __init__(self, message: str, state: PhotoState):
        super().__init__(message)
        self.state = state


class ReviewStore:
    """The review database at ``path`` (made by :meth:`create`).

    Each call opens its own connection, so one store serves a threaded web server.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"no review database at {self.path} (herdcount review --count OUT makes it)"
            )
        with self._connect() as db:
            meta = dict(db.execute("SELECT key, value FROM meta"))
        if int(meta.get("schema", 0)) != SCHEMA_VERSION:
            raise ValueError(
                f"{self.path}: review schema {meta.get('schema')!r}; this herdcount reads {SCHEMA_VERSION}"
            )
        self.classes: list[str] = json.loads(meta["classes"])
        self.meta = meta

    @classmethod
    def create(
        cls, path: str | Path, photos: Iterable[PhotoEntry], classes: Sequence[str], meta: dict[str, str]
    ) -> ReviewStore:
        """Write a new database of ``photos`` and their model points (atomically: a database is
        complete or absent)."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists: the review is already made (delete it to start again)")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        db = sqlite3.connect(partial)
        try:
            db.executescript(_SCHEMA)
            all_meta = {**meta, "schema": str(SCHEMA_VERSION), "classes": json.dumps(list(classes))}
            db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(all_meta.items()))
            for p in photos:
                db.execute(
                    "INSERT INTO photos VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (p.id, p.file, p.width, p.height, p.rank, int(p.sampled), p.reason, json.dumps(p.counts)),
                )
                db.executemany(
                    "INSERT INTO model_points VALUES (?, ?, ?, ?, ?, ?)",
                    [(p.id, q.id, q.cls, q.row, q.col, q.score) for q in p.points],
                )
            db.commit()
        finally:
            db.close()
        partial.replace(path)
        return cls(path)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    def photo_ids(self) -> list[str]:
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT id FROM photos ORDER BY rank")]

    def photos(self) -> list[dict]:
        """Every photo in review order: its counts now (and the model's), whether it is in the
        calibration sample, who reviewed it and whether it is done."""
        with self._connect() as db:
            rows = db.execute("SELECT id, rank, sampled, reason, counts FROM photos ORDER BY rank").fetchall()
            # Events are replayed only where there are any: a survey's other photos are their
            # model points as they are, counted in one query.
            edited = {r[0] for r in db.execute("SELECT DISTINCT photo FROM events")}
            model: dict[str, dict[str, int]] = {}
            for pid, cls, n in db.execute(
                "SELECT photo, class, COUNT(*) FROM model_points GROUP BY photo, class"
            ):
                model.setdefault(pid, {})[cls] = n
            out = []
            for pid, rank, sampled, reason, counts in rows:
                if pid in edited:
                    state = self._state(db, pid)
                    now, done_by, reviewers, events = (
                        state.counts(self.classes),
                        state.done_by,
                        state.reviewers,
                        state.events,
                    )
                else:
                    now = {c: model.get(pid, {}).get(c, 0) for c in self.classes}
                    done_by, reviewers, events = None, [], 0
                out.append(
                    {
                        "id": pid,
                        "rank": rank,
                        "sampled": bool(sampled),
                        "reason": reason,
                        "model_counts": json.loads(counts),
                        "counts": now,
                        "done_by": done_by,
                        "reviewers": reviewers,
                        "events": events,
                    }
                )
        return out

    def photo(self, photo: str) -> tuple[str, int, int]:
        """The photo's file, width and height, without its points. Raises ``KeyError`` naming
        an unknown photo."""
        with self._connect() as db:
            row = db.execute("SELECT file, width, height FROM photos WHERE id = ?", (photo,)).fetchone()
        if row is None:
            raise KeyError(f"unknown photo {photo!r}")
        return row

    def state(self, photo: str) -> PhotoState:
        """The photo's current state. Raises ``KeyError`` naming an unknown photo."""
        with self._connect() as db:
            return self._state(db, photo)

    def _state(self, db: sqlite3.Connection, photo: str) -> PhotoState:
        row = db.execute("SELECT file, width, height, sampled FROM photos WHERE id = ?", (photo,)).fetchone()
        if row is None:
            raise KeyError(f"unknown photo {photo!r}")
        points = {
            pid: Point(pid, c, r, q, s)
            for pid, c, r, q, s in db.execute(
                "SELECT point, class, row, col, score FROM model_points WHERE photo = ? ORDER BY point",
                (photo,),
            )
        }
        done_by = None
        reviewers: list[str] = []
        events = db.execute(
            "SELECT seq, reviewer, action, point, after, undoes FROM events WHERE photo = ? ORDER BY seq",
            (photo,),
        ).fetchall()
        undone = {u for *_, u in events if u is not None}
        for _seq, reviewer, _action, point, after, _undoes in events:
            if reviewer not in reviewers:
                reviewers.append(reviewer)
            value = json.loads(after) if after is not None else None
            if point is None:
                done_by = reviewer if value and value.get("done") else None
            elif value is None:
                points.pop(point, None)
            else:
                old = points.get(point)
                source = old.source if old is not None else "reviewer"
                points[point] = Point(
                    point, value["class"], value["row"], value["col"], value.get("score"), source
                )
        undoable = {r: _previous_undoable(events, r, undone) for r in reviewers}
        return PhotoState(
            id=photo,
            file=row[0],
            width=row[1],
            height=row[2],
            points=sorted(points.values(), key=lambda p: p.id),
            done_by=done_by,
            reviewers=reviewers,
            events=len(events),
            sampled=bool(row[3]),
            undoable={r: s for r, s in undoable.items() if s is not None},
        )

    def edit(
        self,
        photo: str,
        reviewer: str,
        action: str,
        *,
        point: int | None = None,
        seen: dict | None = None,
        cls: str | None = None,
        row: float | None = None,
        col: float | None = None,
    ) -> PhotoState:
        """Apply one reviewer's change and return the photo's new state.

        Parameters
        ----------
        action : str
            One of :data:`ACTIONS`.
        point : int, optional
            The point moved, relabelled or deleted.
        seen : dict, optional
            The point as the reviewer saw it (``class``, ``row``, ``col``): where it has
            changed since, the edit is refused with :class:`StaleEdit`.
        cls, row, col
            The new class (add, relabel) and position (add, move), in full-size pixels.

        Raises
        ------
        KeyError
            An unknown photo or point.
        ValueError
            An unknown action or class, a position outside the photo, no reviewer.
        StaleEdit
            The point changed since the reviewer saw it.
        """
        reviewer = (reviewer or "").strip()
        if not reviewer or len(reviewer) > 64:
            raise ValueError(f"a reviewer's name of 1 to 64 characters is needed, got {reviewer!r}")
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                state = self._state(db, photo)
                before, after, target = self._change(db, state, action, point, seen, cls, row, col)
                db.execute(
                    "INSERT INTO events (photo, reviewer, at, action, point, before, after) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (photo, reviewer, time.time(), action, target, _dump(before), _dump(after)),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return self._state(db, photo)

    def _change(self, db, state: PhotoState, action, point, seen, cls, row, col):
        """``(before, after, point id)`` of an edit, checked against the photo's state."""
        if action in ("done", "reopen"):
            return {"done": state.done_by is not None}, {"done": action == "done"}, None
        if action in ("add", "relabel"):
            self._check_class(cls)
        if action in ("add", "move"):
            row, col = self._check_position(state, row, col)
        if action == "add":
            last = db.execute("SELECT MAX(point) FROM model_points WHERE photo = ?", (state.id,)).fetchone()[
                0
            ]
            added = db.execute("SELECT MAX(point) FROM events WHERE photo = ?", (state.id,)).fetchone()[0]
            new = max(-1 if last is None else last, -1 if added is None else added) + 1
            return None, {"class": cls, "row": row, "col": col, "score": None}, new
        current = {p.id: p for p in state.points}
        if not isinstance(point, int) or isinstance(point, bool):
            raise ValueError(f"{action} needs the point's id, got {point!r}")
        old = current.get(point)
        if old is None:
            raise StaleEdit(f"point {point} is no longer on photo {state.id}: someone deleted it", state)
        if seen is None or _seen_key(seen) != old.key():
            raise StaleEdit(
                f"point {point} on photo {state.id} changed since you saw it "
                f"(now {old.cls} at row {old.row:.1f}, col {old.col:.1f}); your {action} was not applied",
                state,
            )
        before = {"class": old.cls, "row": old.row, "col": old.col, "score": old.score}
        if action == "delete":
            return before, None, point
        if action == "move":
            return before, {**before, "row": row, "col": col}, point
        return before, {**before, "class": cls}, point

    def undo(self, photo: str, reviewer: str) -> PhotoState:
        """Take back the reviewer's last change on the photo that is not yet taken back.

        Raises ``ValueError`` when there is none, and :class:`StaleEdit` when another change
        has since touched the same point."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                state = self._state(db, photo)
                seq = state.undoable.get(reviewer)
                if seq is None:
                    raise ValueError(f"{reviewer!r} has nothing to undo on photo {photo!r}")
                action, point, before, after = db.execute(
                    "SELECT action, point, before, after FROM events WHERE seq = ?", (seq,)
                ).fetchone()
                if point is not None:
                    now = {p.id: p for p in state.points}.get(point)
                    then = json.loads(after) if after else None
                    if (now.key() if now else None) != (_seen_key(then) if then else None):
                        raise StaleEdit(
                            f"point {point} on photo {photo} was changed by someone else since your {action}; "
                            "undo refused",
                            state,
                        )
                db.execute(
                    "INSERT INTO events (photo, reviewer, at, action, point, before, after, undoes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (photo, reviewer, time.time(), f"undo {action}", point, after, before, seq),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return self._state(db, photo)

    def history(self, photo: str) -> list[dict]:
        """The photo's events, oldest first."""
        with self._connect() as db:
            self._state(db, photo)
            rows = db.execute(
                "SELECT seq, reviewer, at, action, point, before, after, undoes FROM events WHERE photo = ? "
                "ORDER BY seq",
                (photo,),
            ).fetchall()
        keys = ("seq", "reviewer", "at", "action", "point", "before", "after", "undoes")
        return [{**dict(zip(keys, r)), "before": _load(r[5]), "after": _load(r[6])} for r in rows]

    def _check_class(self, cls: object) -> None:
        if cls not in self.classes:
            raise ValueError(f"unknown class {cls!r}; expected one of {', '.join(self.classes)}")

    @staticmethod
    def _check_position(state: PhotoState, row: object, col: object) -> tuple[float, float]:
        try:
            r, c = float(row), float(col)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"row and col must be numbers, got {row!r}, {col!r}") from None
        if not (np.isfinite(r) and np.isfinite(c) and 0 <= r < state.height and 0 <= c < state.width):
            raise ValueError(
                f"(row {r:g}, col {c:g}) is outside photo {state.id} ({state.height} rows x {state.width} cols)"
            )
        return round(r, _PLACES), round(c, _PLACES)


def _previous_undoable(events: list, reviewer: str, undone: set[int]) -> int | None:
    """The reviewer's latest edit that is neither an undo nor undone."""
    for seq, who, _, _, _, undoes in reversed(events):
        if who == reviewer and undoes is None and seq not in undone:
            return seq
    return None


def _seen_key(seen: dict) -> tuple[str, float, float]:
    try:
        return (str(seen["class"]), round(float(seen["row"]), _PLACES), round(float(seen["col"]), _PLACES))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"the point as seen needs class, row and col, got {seen!r}") from None


def _dump(value: dict | None) -> str | None:
    return None if value is None else json.dumps(value)


def _load(text: str | None) -> dict | None:
    return None if text is None else json.loads(text)
