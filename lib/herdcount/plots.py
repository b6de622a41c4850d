"""Pictures people look at: training curves, confusion matrices, predicted against true counts.

Each function returns the PNG bytes and also writes them to ``path`` when one is given.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: runs on machines without a display
import matplotlib.pyplot as plt
import numpy as np

from herdcount import storage


def figure_png(fig, path: str | Path | None = None, *, dpi: int = 110) -> bytes:
    """PNG bytes of a matplotlib figure (closed afterwards), written to ``path`` if given."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    if path is not None:
        storage.write_bytes_atomic(path, buf.getvalue())
    return buf.getvalue()


def plot_curves(history: dict[str, list[float]], path: str | Path | None = None) -> bytes:
    """One panel per quantity, training and validation per epoch."""
    # Per-class validation curves (val_rmse_<class>) share their quantity's panel.
    parts = {k: p for k in history for p in history if k.startswith(f"{p}_") and p.startswith("val_")}
    names = [k for k in history if not k.startswith("val_") and k != "learning_rate"]
    names += [k[4:] for k in history if k.startswith("val_") and k[4:] not in history and k not in parts]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for key, label in ((name, "training"), (f"val_{name}", "validation")):
            if key in history:
                epochs = np.arange(1, len(history[key]) + 1)
                ax.plot(epochs, history[key], marker="o", markersize=3, label=label)
        for key, whole in parts.items():
            if whole == f"val_{name}":
                epochs = np.arange(1, len(history[key]) + 1)
                ax.plot(epochs, history[key], linewidth=0.8, alpha=0.7, label=key[len(whole) + 1 :])
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return figure_png(fig, path)


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: str | Path | None = None) -> bytes:
    """Confusion matrix, rows true and columns predicted, shaded by row share."""
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(class_names) + 2.5, 1.0 * len(class_names) + 2))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    return figure_png(fig, path)


def plot_counts(
    true: np.ndarray, predicted: np.ndarray, class_names: list[str], path: str | Path | None = None
) -> bytes:
    """Predicted against true counts per photo, one panel per class."""
    fig, axes = plt.subplots(1, len(class_names), figsize=(3.2 * len(class_names), 3.3), squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[0], class_names)):
        top = max(float(true[:, k].max(initial=0)), float(predicted[:, k].max(initial=0)), 1.0) * 1.1
        ax.plot([0, top], [0, top], color="grey", lw=1)
        ax.scatter(true[:, k], predicted[:, k], s=14)
        ax.set_title(name)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
    return figure_png(fig, path)


def plot_balance(counts: dict[str, int], path: str | Path | None = None) -> bytes:
    """Photos kept per label, as bars (an empty label shows as "(none)")."""
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(counts) + 2), 3.2))
    ax.bar([k or "(none)" for k in counts], list(counts.values()), color="#4a7ab5")
    ax.set_ylabel("photos kept")
    ax.set_title("balance per label")
    return figure_png(fig, path)


def plot_totals(
    totals: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    class_names: list[str],
    truth: np.ndarray | None = None,
    *,
    title: str = "",
    path: str | Path | None = None,
) -> bytes:
    """Survey totals per class as bars with their intervals as error bars, and the true
    totals as black marks where given (NaN ends: no error bar)."""
    totals, low, high = (np.asarray(a, np.float64) for a in (totals, low, high))
    fig, ax = plt.subplots(figsize=(1.4 * len(class_names) + 2.0, 3.4))
    at = np.arange(len(class_names))
    ax.bar(at, totals, color="#7aa6c2", label="total")
    known = ~(np.isnan(low) | np.isnan(high))
    if known.any():
        below, above = np.maximum(totals - low, 0), np.maximum(high - totals, 0)
        ax.errorbar(
            at[known],
            totals[known],
            yerr=[below[known], above[known]],
            fmt="none",
            ecolor="#333",
            capsize=6,
            label="interval",
        )
    if truth is not None:
        ax.scatter(
            at, np.asarray(truth, np.float64), marker="_", s=600, color="black", zorder=3, label="truth"
        )
    ax.set_xticks(at, class_names, rotation=20)
    ax.set_ylabel("animals")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return figure_png(fig, path)


def plot_footprints(outlines: dict[str, np.ndarray], path: str | Path | None = None) -> bytes:
    """Frames' footprints (closed outlines of ``(x, y)`` points, one per frame) with their names."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, xy in outlines.items():
        ax.plot(xy[:, 0], xy[:, 1], lw=1)
        centre = xy[:4].mean(axis=0)
        ax.text(centre[0], centre[1], name, fontsize=7, ha="center", va="center")
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_title("frame footprints, chained from registrations")
    return figure_png(fig, path)
