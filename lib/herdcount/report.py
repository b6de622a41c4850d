"""One self-contained HTML report of a survey's extract, training and count runs.

    herdcount report --extract OUT --run RUN [--run RUN2] --count COUNT [--count COUNT2]
                               [--truth TRUTH [--points TRUTH_POINTS]] --out report.html

Every picture is embedded as a PNG data URI and the page needs no network access. The
sections: the survey, extraction quality, training, counting (scores, the points' precision,
recall and F1 with ``--points``, survey totals with their intervals), failure diagnosis
(the photos with the largest count errors, each with what the model saw overlaid and its
points beside the true ones) and lineage.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from herdcount import storage
from herdcount.config import Config, config_from_dict
from herdcount.imaging import decode_rgb
from herdcount.kaggle import id_key
from herdcount.modelrun import ModelRun
from herdcount.records import RunRecord
from herdcount.runinfo import read_run
from herdcount.score import (
    PhotoPoints,
    column_rmse,
    interval_coverage,
    read_counts,
    read_points_csv,
    read_points_truth,
    score_point_sets,
)

SECTIONS = (
    ("survey", "Survey"),
    ("extraction", "Extraction quality"),
    ("training", "Training"),
    ("counting", "Counting"),
    ("diagnosis", "Failure diagnosis"),
    ("lineage", "Lineage"),
)


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


def load_inputs(
    extract: str, runs: list[str], counts: list[str], truth: str | None, points: str | None = None
) -> Inputs:
    """Read every folder's run file (the extract's and each count's run.json, each training
    run's model.json), which also checks that each holds a finished run, the scheme, and the
    true points of ``points`` (a truth folder or a CSV, see :func:`herdcount.score.read_points_truth`).

    Raises
    ------
    ValueError
        If a folder lacks its run's marker file (run.json, model.json), the truth file does
        not exist, ``points`` is given without ``truth``, or the true points do not read.
    """
    extract_run = _read_run(extract)
    models = [ModelRun.read(r) for r in runs]
    count_runs = [_read_run(c) for c in counts]
    if truth and not storage.exists(truth):
        raise ValueError(f"truth file {truth!r} does not exist")
    if points and not truth:
        raise ValueError("--points needs --truth: the true counts name the photos the points belong to")
    scheme = extract_run.config.get("scheme", extract_run.config)
    config = config_from_dict(scheme)
    truth_points = None
    if points:
        _, ids, _ = read_counts(truth)
        truth_points = read_points_truth(points, config.class_names, ids=set(ids))
    return Inputs(
        extract, list(runs), list(counts), truth, config, extract_run, models, count_runs, truth_points
    )


def _read_run(folder: str) -> RunRecord:
    run = read_run(folder)
    if run is None:
        raise ValueError(f"{folder} has no run.json; expected a finished run")
    return run


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


# --- sections ------------------------------------------------------------------------------


def survey_section(inp: Inputs) -> str:
    rows = read_rows(storage.join(inp.extract, "extract_report.csv"))
    names = inp.config.class_names
    by_status = {s: [r["train_id"] for r in rows if r["status"] == s] for s in ("ok", "skipped", "error")}
    tests = sum(run.totals.get("photos", 0) for run in inp.count_runs[:1])
    found = [sum(int(r[f"found_{n}"] or 0) for r in rows if r["status"] == "ok") for n in names]
    expected = [sum(int(r[f"expected_{n}"] or 0) for r in rows if r[f"expected_{n}"]) for n in names]
    swatch = '<span class="swatch" style="background: rgb{}"></span>'
    classes = "".join(
        f"<li>{swatch.format(tuple(rgb))} {html.escape(c.name)}</li>"
        for c, rgb in zip(inp.config.classes, inp.config.colours)
    )
    failed = [f"{r['train_id']}: {r['message']}" for r in rows if r["status"] == "error"]
    return (
        f"<p>{len(rows)} training photos ({len(by_status['ok'])} extracted), {tests} test photos counted. "
        f"Data: <code>{html.escape(str(inp.extract_run.inputs.get('data')))}</code></p>"
        f"<ul class='classes'>{classes}</ul>"
        + table(["", *names], [["dots in train.csv", *expected], ["dots found", *found]])
        + f"<p>Mismatched (skipped): {html.escape(', '.join(by_status['skipped']) or 'none')}</p>"
        + f"<p>Failed: {html.escape('; '.join(failed) or 'none')}</p>"
    )


def extraction_section(inp: Inputs, *, crops: int = 3) -> str:
    rows = read_rows(storage.join(inp.extract, "extract_report.csv"))
    names = inp.config.class_names
    body, marked = [], set()
    for n, r in enumerate(sorted(rows, key=lambda r: id_key(r["train_id"]))):
        if r["agrees"] == "false":
            marked.add(n)
        counts = (f"{r[f'found_{c}']} / {r[f'expected_{c}']}" for c in names)
        body.append([r["train_id"], r["status"], *counts, r["agrees"], r.get("diagnosis", "")])
    parts = [
        measured_dots_html(inp),
        f"<p>Found / expected (train.csv) per photo; {len(marked)} photos disagree (highlighted).</p>",
        table(["train_id", "status", *names, "agrees", "diagnosis"], body, marked=marked),
    ]
    data = inp.extract_run.inputs.get("data", "")
    metas = [
        read_json(storage.join(inp.extract, "metadata", f"{r['train_id']}.json"))
        for r in rows
        if r["status"] == "ok"
    ]
    metas.sort(key=lambda m: -sum(m.get("counts", [])))
    for meta in metas[:crops]:
        path = storage.join(data, "Train", meta["filename"])
        if not data or not storage.exists(path):
            inp.cannot_read(path, "not found (was DATA moved since the extract run?)")
            continue
        parts.append(_dot_crop(path, meta, inp.config))
    return "".join(parts)


def measured_dots_html(inp: Inputs) -> str:
    """The dot footprint and each class's dot colour as measured, beside the scheme's colours."""
    measured = inp.extract_run.totals.get("measured_dots")
    if not measured:
        return "<p>This extract run measured no dots (an older run).</p>"
    swatch = '<span class="swatch" style="background: rgb{}"></span>'
    rows = []
    for spec in inp.config.classes:
        got = (measured.get("colours") or {}).get(spec.name)
        if got is None:
            rows.append([html.escape(spec.name), swatch.format(tuple(spec.dot_rgb)), "none found", "", 0])
            continue
        rows.append(
            [
                html.escape(spec.name),
                swatch.format(tuple(spec.dot_rgb)) + f" {list(spec.dot_rgb)}",
                swatch.format(tuple(got["rgb"])) + f" {got['rgb']}",
                f"{got['std']}",
                got["pixels"],
            ]
        )
    size = (
        f"one dot paints {measured['footprint_px']} px (radius {measured['radius_px']} px), median over photos"
        if measured.get("footprint_px") is not None
        else "too few dots to measure their size"
    )
    header = ["class", "scheme dot_rgb", "measured rgb", "spread (std)", "pixels"]
    return f"<p>Dots as the annotators drew them: {size}.</p>" + table(header, rows, raw=True)


def _dot_crop(path: str, meta: dict[str, Any], config: Config, size: tuple[int, int] = (360, 520)) -> str:
    image = decode_rgb(storage.read_bytes(path), path)
    points = [
        (y, x, k) for k, name in enumerate(config.class_names) for x, y in meta[config.annotation_key][name]
    ]
    centre = np.median([(r, c) for r, c, _ in points], axis=0) if points else np.array(image.shape[:2]) / 2
    top = int(np.clip(centre[0] - size[0] / 2, 0, max(0, image.shape[0] - size[0])))
    left = int(np.clip(centre[1] - size[1] / 2, 0, max(0, image.shape[1] - size[1])))
    crop = image[top : top + size[0], left : left + size[1]]
    inside = [(r - top, c - left, k) for r, c, k in points]
    drawn = draw_dots(crop, inside, list(config.colours))
    caption = f"Train/{meta['filename']}: {len(points)} dots found, drawn in their class colours"
    return f"<figure>{img(png_of(drawn), caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def training_section(inp: Inputs) -> str:
    parts = []
    for run, info in zip(inp.runs, inp.models):
        weights = _weights(run)
        sizes = dict(storage.file_stats(run))
        size_mb = sizes["model.keras"] / 1e6 if "model.keras" in sizes else None
        flops = info.flops_per_megapixel
        metrics = {k: v for k, v in info.metrics.items() if isinstance(v, (int, float))}
        parts.append(f"<h3>{html.escape(info.kind)} model: <code>{html.escape(str(run))}</code></h3>")
        parts.append(
            table(
                ["weights", "model.keras MB", "GFLOP per megapixel", "epochs", *metrics],
                [
                    [
                        weights,
                        size_mb,
                        flops / 1e9 if flops else "n/a (Dense layers)",
                        info.epochs_run,
                        *metrics.values(),
                    ]
                ],
            )
        )
        for name in ("curves.png", "confusion.png", "validation_counts.png"):
            if name in sizes:
                picture = img(storage.read_bytes(storage.join(run, name)), f"{storage.basename(run)}: {name}")
                parts.append(f"<figure>{picture}<figcaption>{html.escape(name)}</figcaption></figure>")
    return "".join(parts) or "<p>No training runs given.</p>"


def _weights(run: str) -> int | None:
    try:
        import keras
    except ImportError:  # counting installs need no Keras; the report then omits weights
        return None
    try:
        path = storage.local_copy(storage.join(run, "model.keras"))
        return int(keras.models.load_model(path, compile=False).count_params())
    except (OSError, ValueError):
        return None


def counting_section(inp: Inputs, scored: list[dict[str, Any]]) -> str:
    from herdcount.plots import plot_counts

    names = inp.config.class_names
    parts, table_rows = [], []
    for s in scored:
        seconds = [float(r["cpu_s"]) for r in read_rows(storage.join(s["path"], "counts.csv"))]
        per_photo = float(np.mean(seconds)) if seconds else None
        if s["truth"] is not None:
            table_rows.append([s["label"], *s["rmse"], float(np.mean(s["rmse"])), per_photo])
            parts.append(
                f"<figure>{img(plot_counts(s['truth'], s['predicted'], names), s['label'] + ': predicted against true')}"
                f"<figcaption>{html.escape(s['label'])}: predicted (unrounded) against true counts per photo"
                "</figcaption></figure>"
            )
        else:
            table_rows.append([s["label"], *s["predicted"].sum(axis=0), None, per_photo])
    if scored and scored[0]["truth"] is not None:
        zero = column_rmse(scored[0]["truth"], np.zeros_like(scored[0]["truth"]))
        table_rows.append(["all zeros", *zero, float(zero.mean()), None])
        header = ["model", *(f"RMSE {n}" for n in names), "mean RMSE", "CPU-s per photo"]
    else:
        header = ["model", *(f"total {n}" for n in names), "", "CPU-s per photo"]
    extra = [points_html(inp, s) + totals_html(inp, s) + unique_html(s) + review_html(s) for s in scored]
    return table(header, table_rows) + "".join(parts) + "".join(extra)


def unique_html(s: dict[str, Any]) -> str:
    """Where the count chained the unique stage (``count --unique``): its totals beside the
    summed ones, and the flight's footprints."""
    folder = storage.join(s["path"], "unique")
    if not storage.exists(storage.join(folder, "unique_totals.csv")):
        return ""
    rows = read_rows(storage.join(folder, "unique_totals.csv"))
    body = table(
        ["class", "animals", "low", "high", "sightings"],
        [[r["class"], r["total"], r["low"], r["high"], r["sightings"]] for r in rows],
    )
    picture = storage.join(folder, "flight.png")
    shown = (
        img(storage.read_bytes(picture), "frame footprints of the flight") if storage.exists(picture) else ""
    )
    return (
        f"<h3>Each animal once: {html.escape(s['label'])}</h3><p>Sightings linked across overlapping "
        "frames (herdcount unique): each animal counted once.</p>" + body + shown
    )


def review_html(s: dict[str, Any], *, first: int = 10) -> str:
    """The photos of a count most in need of a look (:func:`herdcount.review.order_photos`),
    as the review server that ``herdcount review`` starts names them (``/photo/<id>``: the
    report itself links to nothing outside the file)."""
    from herdcount.review import order_photos, read_count

    try:
        found = read_count(s["path"])
    except ValueError as exc:
        return f"<p>Review: {html.escape(str(exc))}</p>"
    ranked = order_photos(sorted(found.counts), found, sample=0)[:first]
    items = "".join(
        f"<li><code>/photo/{html.escape(p)}</code>: {html.escape(why)}</li>" for p, _, why in ranked
    )
    command = html.escape(f"herdcount review --count {s['path']}")
    return (
        f"<h3>Review these: {html.escape(s['label'])}</h3><p>Start the review with <code>{command}</code>; "
        "it asks for a random calibration sample first, then these, the photos most in need of a look "
        f"(most animals counted, most unsure points):</p><ol class='review'>{items}</ol>"
    )


def counted_ids(count: str) -> set[str]:
    """The photos a count run counted (its counts.csv; failed photos are not there)."""
    return {r["test_id"] for r in read_rows(storage.join(count, "counts.csv"))}


def found_points(inp: Inputs, count: str) -> PhotoPoints | None:
    """A count run's points.csv per photo; None for a run written before points were."""
    path = storage.join(count, "points.csv")
    if not storage.exists(path):
        return None
    return read_points_csv(path, inp.config.class_names)


def points_html(inp: Inputs, s: dict[str, Any]) -> str:
    """Per-class precision, recall and F1 of a count run's points matched to the truth's."""
    found = found_points(inp, s["path"])
    label = html.escape(s["label"])
    if found is None:
        return f"<p>{label}: no points.csv (counted before herdcount wrote points).</p>"
    if inp.truth_points is None:
        return (
            f"<p>{label}: {sum(len(k) for _, k in found.values())} points; give --points to score them.</p>"
        )
    names = inp.config.class_names
    radius = 20.0
    scores, missing = score_point_sets(
        found, inp.truth_points, counted_ids(s["path"]), len(names), radius=radius
    )
    rows = [
        [
            name,
            scores.precision[k],
            scores.recall[k],
            scores.f1[k],
            int(scores.found[k]),
            int(scores.truth[k]),
        ]
        for k, name in enumerate(names)
    ]
    rows.append(["mean", scores.precision.mean(), scores.recall.mean(), scores.f1.mean(), None, None])
    note = (
        f" {len(missing)} photos of the truth were not counted (their animals count as missed): "
        f"{html.escape(', '.join(missing[:20]))}."
        if missing
        else ""
    )
    return (
        f"<h3>{label}: points matched one to one within {radius:g} px</h3><p>Hungarian matching per class "
        f"and photo (<code>herdcount score --points</code> gives the same table).{note}</p>"
        + table(["class", "precision", "recall", "F1", "found", "true"], rows)
    )


def totals_html(inp: Inputs, s: dict[str, Any]) -> str:
    """A count run's survey totals with their intervals, as a table and a bar chart, beside
    the true totals of the photos it counted when the truth is given."""
    from herdcount.plots import plot_totals

    path = storage.join(s["path"], "totals.csv")
    rows = read_rows(path)
    if not rows:
        return ""
    names = inp.config.class_names
    by_class = {r["class"]: r for r in rows}
    label = html.escape(s["label"])
    value = lambda r, k: float(r[k]) if r.get(k, "") != "" else float("nan")  # noqa: E731
    total, low, high = (np.array([value(by_class[n], k) for n in names]) for k in ("total", "low", "high"))
    true = None
    if s["truth"] is not None:
        counted = counted_ids(s["path"])
        keep = [n for n, i in enumerate(s["ids"]) if i in counted]
        true = s["truth"][keep].sum(axis=0)
        judged = interval_coverage(path, dict(zip(names, true.tolist())))
        body = [
            [
                r["class"],
                r["total"],
                r["low"],
                r["high"],
                r["truth"],
                "no interval" if np.isnan(r["low"]) else "yes" if r["inside"] else "no",
                r["width"],
            ]
            for r in judged
        ]
        header = ["class", "total", "low", "high", "truth", "inside", "width / total"]
    else:
        body = [[n, t, lo, hi] for n, t, lo, hi in zip(names, total, low, high)]
        header = ["class", "total", "low", "high"]
    level = s["run"].totals.get("interval_level", 0.9)
    chart = plot_totals(total, low, high, names, true, title=f"{s['label']}: survey totals")
    intervals = (
        f"with their {100 * level:g} % intervals"
        if not np.isnan(low).all()
        else "without intervals (the model's run measured no errors on held-out photos)"
    )
    caption = f"{s['label']}: survey totals per class {intervals}" + (
        ", the truth as black marks" if true is not None else ""
    )
    return (
        f"<h3>{label}: survey totals</h3>"
        + table(header, body)
        + f"<figure>{img(chart, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def score_counts(inp: Inputs) -> list[dict[str, Any]]:
    """Per count run: label, unrounded predictions, truth and RMSE (Kaggle: from the rounded submission)."""
    truth = None
    if inp.truth is not None:
        _, truth_ids, true = read_counts(inp.truth)
        truth = dict(zip(truth_ids, true))
    scored = []
    for count, run in zip(inp.counts, inp.count_runs):
        rows = {r["test_id"]: r for r in read_rows(storage.join(count, "counts.csv"))}
        _, sub_ids, submitted = read_counts(storage.join(count, "submission.csv"))
        ids = [i for i in sub_ids if truth is None or i in truth]
        predicted = np.array(
            [[float(rows[i][n]) if i in rows else 0.0 for n in inp.config.class_names] for i in ids]
        )
        rounded = dict(zip(sub_ids, submitted))
        entry = {
            "path": count,
            "label": f"{(run.model or {}).get('kind', '?')} ({storage.basename(count)})",
            "ids": ids,
            "predicted": predicted.reshape(len(ids), -1),
            "truth": None,
            "run": run,
        }
        if truth is not None:
            entry["truth"] = np.array([truth[i] for i in ids]).reshape(len(ids), -1)
            entry["rmse"] = column_rmse(entry["truth"], np.array([rounded[i] for i in ids])).tolist()
        scored.append(entry)
    return scored


def diagnosis_section(inp: Inputs, scored: list[dict[str, Any]], *, worst: int = 3) -> str:
    if not scored or scored[0]["truth"] is None:
        return "<p>Give --truth to rank photos by their count errors.</p>"
    parts = []
    for s in scored:
        error = np.abs(s["predicted"] - s["truth"]).sum(axis=1)
        images = s["run"].inputs.get("images", "")
        model = (s["run"].model or {}).get("run")
        if images and not storage.is_dir(images):
            inp.cannot_read(images, "the count run's photo folder is not found (was it moved?)")
            images = ""
        by_id = (
            {name.rsplit(".", 1)[0]: name for name in reversed(storage.list_files(images))} if images else {}
        )
        for n in np.argsort(-error, kind="stable")[:worst]:
            photo_id = s["ids"][n]
            if photo_id not in by_id or model is None:
                continue
            path = storage.join(images, by_id[photo_id])
            true, pred = s["truth"][n], s["predicted"][n]
            caption = (
                f"{s['label']}, {by_id[photo_id]}: absolute error {error[n]:.1f}; true "
                f"{true.astype(int).tolist()}, predicted {np.round(pred, 1).tolist()}"
            )
            found = (found_points(inp, s["path"]) or {}).get(photo_id)
            truth = None if inp.truth_points is None else inp.truth_points.get(photo_id)
            if found is not None:
                caption += "; left: the model's view and its points, right: the true points"
            png = overlay(path, model, inp.config, found=found, truth=truth)
            parts.append(
                f"<figure>{img(png, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    return "".join(parts) or "<p>No photo could be shown.</p>"


def overlay(
    path: str,
    run: str,
    config: Config,
    *,
    width: int = 800,
    found: tuple[np.ndarray, np.ndarray] | None = None,
    truth: tuple[np.ndarray, np.ndarray] | None = None,
) -> bytes:
    """The photo with the model's view of it overlaid: the summed density map of a density
    model (warmer is more animals), or the class of each tile of a classifier (its dot colour).

    With ``found`` points (``(row, col)`` coordinates and classes, from the count run's
    points.csv), each is a ring of its class colour, and the photo is shown again on the
    right with the ``truth`` points (or none, where there is no truth) at the same size."""
    from herdcount.predictors import load_model

    model = load_model(run)
    image = decode_rgb(storage.read_bytes(path), path)
    colour, alpha, stride = model.run.model_kind.overlay(image, model, config)
    cells = np.kron(np.concatenate([colour, alpha * 255], axis=-1), np.ones((stride, stride, 1)))
    cells = cells[: image.shape[0], : image.shape[1]]
    mixed = image * (1 - cells[..., 3:] / 255) + cells[..., :3] * (cells[..., 3:] / 255)
    shown = mixed.astype(np.uint8)
    if found is None:
        return png_of(_fit(shown, width))
    colours = list(config.colours)
    panels = []
    for picture, points in ((shown, found), (image, truth)):
        # Side by side, each half as wide again as a lone overlay: the rings need the pixels.
        small = _fit(picture, 3 * width // 4)
        f = small.shape[1] / picture.shape[1]
        marks = (
            []
            if points is None
            else [((r + 0.5) * f - 0.5, (c + 0.5) * f - 0.5, int(k)) for (r, c), k in zip(*points)]
        )
        panels.append(draw_dots(small, marks, colours, radius=5))
    gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
    return png_of(np.concatenate([panels[0], gap, panels[1]], axis=1))


def _fit(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` shrunk to ``width`` columns (never enlarged)."""
    scale = min(1.0, width / image.shape[1])
    if scale >= 1:
        return image
    return np.asarray(Image.fromarray(image).resize((width, round(image.shape[0] * scale))))


def lineage_section(inp: Inputs) -> str:
    rows = []
    ex = inp.extract_run
    rows.append(
        [
            "extract",
            str(inp.extract),
            ex.inputs.get("data"),
            ex.inputs.get("fingerprint"),
            ex.times.get("started_at"),
            ex.times.get("wall_s"),
        ]
    )
    for run, info in zip(inp.runs, inp.models):
        # A model saved without a training run (model.json alone) has no times to show.
        trained = read_run(run)
        times = trained.times if trained is not None else {}
        data = info.training_data
        rows.append(
            [
                f"train ({info.kind})",
                str(run),
                data.get("extract"),
                data.get("fingerprint"),
                times.get("started_at"),
                times.get("wall_s"),
            ]
        )
    for count, rj in zip(inp.counts, inp.count_runs):
        model = rj.model or {}
        rows.append(
            [
                f"count ({model.get('kind')})",
                str(count),
                model.get("run"),
                rj.inputs.get("fingerprint"),
                rj.times.get("started_at"),
                rj.times.get("wall_s"),
            ]
        )
    return "<p>Each stage, what fed it, the fingerprint of its inputs and when it ran.</p>" + table(
        ["stage", "output", "input", "input fingerprint", "started (UTC)", "wall s"], rows
    )


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
.warning { background: #fff3cd; border: 1px solid #e0b100; padding: 0.5em 1em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; }
tr.marked td { background: #fdd; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; max-width: 800px; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #444; vertical-align: middle; }
ul.classes { list-style: none; padding: 0; display: flex; gap: 1.5em; }
nav a { margin-right: 1em; }
"""


def build_report(inp: Inputs) -> str:
    """The report's HTML."""
    scored = score_counts(inp)
    bodies = {
        "survey": survey_section(inp),
        "extraction": extraction_section(inp),
        "training": training_section(inp),
        "counting": counting_section(inp, scored),
        "diagnosis": diagnosis_section(inp, scored),
        "lineage": lineage_section(inp),
    }
    nav = "".join(f'<a href="#{key}">{title}</a>' for key, title in SECTIONS)
    if inp.unreadable:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in inp.unreadable)
        nav += (
            f'<div class="warning"><b>{len(inp.unreadable)} pictures are missing:</b><ul>{items}</ul></div>'
        )
    sections = "".join(
        f'<section id="{key}"><h2>{title}</h2>{bodies[key]}</section>' for key, title in SECTIONS
    )
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>herdcount report</title>'
        f"<style>{_STYLE}</style></head><body><h1>herdcount report</h1><p>Made {made}.</p>"
        f"<nav>{nav}</nav>{sections}</body></html>"
    )
