"""The report's building blocks: the runs it covers, and HTML tables and embedded pictures."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from herdcount import storage
from herdcount.config import Config
from herdcount.modelrun import ModelRun
from herdcount.records import RunRecord
from herdcount.score import PhotoPoints


@dataclass
class Inputs:
    """The runs a report covers, read from their folders."""

    extract: str
    runs: list[str]
    counts: list[str]
    truth: str | None
    config: Config
    extract_run: RunRecord
    #: model.json of each training run and run.json of each count run, read once.
    models: list[ModelRun]
    count_runs: list[RunRecord]
    #: The true points of the truth's photos (``--points``), read once.
    truth_points: PhotoPoints | None = None
    #: Photos a picture needed that could not be read, with why: said loudly, never skipped quietly.
    unreadable: list[str] = field(default_factory=list)

    def cannot_read(self, path: str, why: str) -> None:
        """Note (and say on stderr) a photo that a picture needed but could not be read."""
        self.unreadable.append(f"{path}: {why}")
        print(f"report: warning: cannot read {path}: {why}", file=sys.stderr)


def read_json(path: str) -> dict[str, Any]:
    """A JSON file or object, or an empty dict when it does not exist."""
    return json.loads(storage.read_text(path)) if storage.exists(path) else {}


def read_rows(path: str) -> list[dict[str, str]]:
    """The rows of a CSV file or object with a header; empty when it does not exist."""
    if not storage.exists(path):
        return []
    return list(csv.DictReader(io.StringIO(storage.read_text(path), newline="")))


# --- HTML pieces ---------------------------------------------------------------------------


def img(png: bytes, alt: str, *, width: int | None = None) -> str:
    """An ``<img>`` with the PNG embedded as a data URI."""
    size = f' width="{width}"' if width else ""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{data}">'


def table(
    header: list[str], rows: list[list[Any]], *, marked: set[int] = frozenset(), raw: bool = False
) -> str:
    """An HTML table; rows whose index is in ``marked`` get the class ``marked``. With
    ``raw``, cells are HTML already (escaped by the caller)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    cell = _fmt if raw else (lambda v: html.escape(_fmt(v)))
    body = []
    for n, row in enumerate(rows):
        cls = ' class="marked"' if n in marked else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def png_of(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB array."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def draw_dots(
    image: np.ndarray,
    points: list[tuple[float, float, int]],
    colours: list[tuple[int, int, int]],
    *,
    radius: int = 9,
) -> np.ndarray:
    """A copy of ``image`` with a ring of its class colour around each ``(row, col, class)``."""
    canvas = Image.fromarray(image)
    pen = ImageDraw.Draw(canvas)
    for row, col, k in points:
        pen.ellipse(
            (col - radius, row - radius, col + radius, row + radius), outline=tuple(colours[k]), width=3
        )
    return np.asarray(canvas)
