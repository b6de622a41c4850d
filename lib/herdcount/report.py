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

import html
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from herdcount import storage
from herdcount.config import Config, config_from_dict
from herdcount.imaging import decode_rgb
from herdcount.kaggle import id_key
from herdcount.modelrun import ModelRun
from herdcount.options import option
from herdcount.records import RunRecord
from herdcount.report_counts import counting_section, diagnosis_section, score_counts
from herdcount.report_page import Inputs, draw_dots, img, png_of, read_json, read_rows, table
from herdcount.runinfo import read_run
from herdcount.score import read_counts, read_points_truth

SECTIONS = (
    ("survey", "Survey"),
    ("extraction", "Extraction quality"),
    ("training", "Training"),
    ("counting", "Counting"),
    ("diagnosis", "Failure diagnosis"),
    ("lineage", "Lineage"),
)


@dataclass(frozen=True, kw_only=True)
class ReportSettings:
    """What ``herdcount report`` is asked to show."""

    extract: str = option(help="output folder of the extract job")
    run: tuple[str, ...] = option((), repeat=True, help="a training run (repeatable)")
    count: tuple[str, ...] = option((), repeat=True, help="output folder of the count job (repeatable)")
    truth: str | None = option(None, help="true counts CSV (test_id and the class columns)")
    points: str | None = option(
        None,
        metavar="TRUTH_POINTS",
        help="true points (the generator's truth folder or a CSV of test_id,class,x,y): score the count "
        "runs' points and draw them beside the truth",
    )
    out: str = option(help="the HTML file to write")


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
