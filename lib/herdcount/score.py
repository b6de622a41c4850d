"""Score a Kaggle-style submission: RMSE per class and averaged over classes.

    python -m herdcount.score SUBMISSION TRUTH

TRUTH is a CSV of true counts with the same header (``test_id`` and the class columns),
such as the synthetic survey's ``<data>_truth/test_counts.csv``. The all-zeros baseline is
printed beside the submission's score.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from herdcount import storage


def read_counts(path: str | Path, *, header: list[str] | None = None) -> tuple[list[str], list[str], NDArray]:
    """``(header, ids, counts)`` of a counts CSV; ``counts`` is ``(len(ids), len(header) - 1)``.

    Raises
    ------
    ValueError
        If the header differs from ``header`` (when given), or a row has a duplicate id, the
        wrong number of fields, or a value that is not a non-negative number; the message
        names the file and line.
    """
    rows = list(csv.reader(io.StringIO(storage.read_text(path), newline="")))
    if not rows:
        raise ValueError(f"{path}: empty file; expected a header line")
    found = [c.strip() for c in rows[0]]
    if header is not None and found != header:
        raise ValueError(f"{path}: header is {','.join(found)!r}; expected {','.join(header)!r}")
    ids, values, seen = [], [], set()
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(found):
            raise ValueError(f"{path}, line {line}: {len(row)} fields; expected {len(found)}")
        key = row[0].strip()
        if key in seen:
            raise ValueError(f"{path}, line {line}: id {key!r} appears twice")
        seen.add(key)
        try:
            numbers = [float(v) for v in row[1:]]
        except ValueError:
            raise ValueError(f"{path}, line {line}: non-numeric value in {row[1:]}") from None
        if any(not math.isfinite(v) or v < 0 for v in numbers):
            raise ValueError(f"{path}, line {line}: counts must be non-negative numbers, got {row[1:]}")
        ids.append(key)
        values.append(numbers)
    return found, ids, np.array(values, dtype=float).reshape(len(ids), len(found) - 1)


def column_rmse(truth: ArrayLike, predicted: ArrayLike) -> NDArray[np.float64]:
    """RMSE of each column over rows: Kaggle's metric per class, before averaging over classes."""
    return np.sqrt(np.mean((np.asarray(predicted, float) - np.asarray(truth, float)) ** 2, axis=0))


def score(submission: str | Path, truth: str | Path) -> dict[str, object]:
    """RMSE per class, its mean over classes, and the same for predicting zero everywhere.

    Raises
    ------
    ValueError
        If the submission's header differs from the truth's, or its ids are not exactly
        the truth's ids (missing, duplicate or extra ids are named).
    """
    header, truth_ids, true = read_counts(truth)
    _, ids, predicted = read_counts(submission, header=header)
    missing = sorted(set(truth_ids) - set(ids))
    extra = sorted(set(ids) - set(truth_ids))
    if missing or extra:
        raise ValueError(f"{submission}: ids differ from {truth}: missing {missing[:10]}, extra {extra[:10]}")
    order = {key: n for n, key in enumerate(ids)}
    predicted = predicted[[order[key] for key in truth_ids]]
    rmse, zero = column_rmse(true, predicted), column_rmse(true, np.zeros_like(true))
    classes = header[1:]
    return {
        "photos": len(truth_ids),
        "rmse": dict(zip(classes, rmse.tolist())),
        "mean_rmse": float(rmse.mean()),
        "zero_rmse": dict(zip(classes, zero.tolist())),
        "zero_mean_rmse": float(zero.mean()),
    }


def format_score(result: dict[str, object]) -> str:
    """The printed table: one line per class, then the mean, for the submission and all zeros."""
    lines = [f"{'class':<16}{'RMSE':>10}{'all zeros':>12}"]
    for name, value in result["rmse"].items():
        lines.append(f"{name:<16}{value:>10.4f}{result['zero_rmse'][name]:>12.4f}")
    lines.append(f"{'mean':<16}{result['mean_rmse']:>10.4f}{result['zero_mean_rmse']:>12.4f}")
    lines.append(f"{result['photos']} photos")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("submission", help="submission CSV: test_id and the class columns")
    parser.add_argument("truth", help="true counts CSV with the same header")
    args = parser.parse_args(argv)
    try:
        print(format_score(score(args.submission, args.truth)))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
