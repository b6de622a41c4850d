"""The report's sections on count runs: scores, points, survey totals, the unique stage,
photos to review, and the photos with the largest errors with the model's view overlaid."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from PIL import Image

from herdcount import storage
from herdcount.config import Config
from herdcount.imaging import decode_rgb
from herdcount.report_page import Inputs, draw_dots, img, png_of, read_rows, table
from herdcount.score import (
    PhotoPoints,
    column_rmse,
    interval_coverage,
    read_counts,
    read_points_csv,
    score_point_sets,
)


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
