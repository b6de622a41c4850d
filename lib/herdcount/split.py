"""Stratified train, validation and test lists that keep every group within one split.

    herdcount split --manifest OUT [--keep CLEAN/keep.csv] --out SPLIT --by label
                              [--group contributor] --seed S [--fractions 0.7,0.15,0.15] [--min-photos 5]

Groups (for instance one contributor's photos, or ``contributor,date`` for one day) are
placed whole, largest first, each into the split where it brings the photos per label
closest to the target fractions. Labels with fewer than ``--min-photos`` photos are set
aside as a hold-out set of unknowns. Deterministic for a seed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from herdcount.options import option

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, kw_only=True)
class SplitSettings:
    """What ``herdcount split`` is asked to do; its run.json records them as they are."""

    manifest: str = option(help="output folder of herdcount manifest")
    keep: str | None = option(None, help="keep.csv of herdcount clean: only these photos are split")
    out: str = option(help="output folder")
    by: str = option("label", help="the layout field to stratify by (default: %(default)s)")
    group: str = option("", help="comma-separated layout fields whose photos stay together")
    seed: int = option(0, help="seed of the split")
    fractions: str = option("0.7,0.15,0.15", help="train,val,test (default: %(default)s)")
    min_photos: int = option(5, help="labels with fewer photos are held out as unknowns")


def assign_groups(
    items: list[tuple[str, str, str]], fractions: tuple[float, float, float], *, seed: int = 0
) -> dict[str, str]:
    """The split of each group, from ``(path, label, group)`` items.

    Groups go largest first (ties in a seeded random order), each to the split whose
    squared distance from its per-label targets grows least.

    Raises
    ------
    ValueError
        If the fractions are not three non-negative numbers summing to 1.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    labels = sorted({label for _, label, _ in items})
    index = {label: n for n, label in enumerate(labels)}
    sizes: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(labels)))
    for _, label, group in items:
        sizes[group][index[label]] += 1
    total = sum(sizes.values())
    target = np.outer(fractions, total)
    filled = np.zeros_like(target)
    groups = sorted(sizes)
    order = np.random.default_rng(seed).permutation(len(groups))
    ranked = sorted((groups[n] for n in order), key=lambda g: -sizes[g].sum())
    placed = {}
    for group in ranked:
        growth = [
            ((filled[s] + sizes[group] - target[s]) ** 2 - (filled[s] - target[s]) ** 2).sum()
            for s in range(3)
        ]
        best = int(np.argmin(growth))
        filled[best] += sizes[group]
        placed[group] = SPLITS[best]
    return placed


def split_rows(
    rows: list[dict[str, Any]], *, by: str, group: list[str], fractions, seed: int, min_photos: int
) -> dict[str, list[tuple[str, str, str]]]:
    """``{split: [(path, label, group), ...]}`` with a ``holdout`` split of rare labels."""
    labelled = [r for r in rows if r.get(by)]
    counts = Counter(r[by] for r in labelled)
    items = [
        (r["path"], r[by], "/".join(str(r.get(g, "")) for g in group) if group else r["path"])
        for r in labelled
    ]
    common = [i for i in items if counts[i[1]] >= min_photos]
    placed = assign_groups(common, fractions, seed=seed)
    result: dict[str, list[tuple[str, str, str]]] = {s: [] for s in (*SPLITS, "holdout")}
    for item in items:
        result[placed[item[2]] if counts[item[1]] >= min_photos else "holdout"].append(item)
    return {k: sorted(v) for k, v in result.items()}


def proportions(result: dict[str, list[tuple[str, str, str]]]) -> str:
    """A table of photos per label and split, with each split's share."""
    labels = sorted({label for items in result.values() for _, label, _ in items})
    lines = [f"{'label':<16}" + "".join(f"{s:>10}" for s in result) + f"{'shares':>24}"]
    for label in labels:
        n = [sum(1 for _, lab, _ in result[s] if lab == label) for s in result]
        shares = " / ".join(f"{k / max(sum(n[:3]), 1):.2f}" for k in n[:3])
        lines.append(f"{label:<16}" + "".join(f"{k:>10}" for k in n) + f"{shares:>24}")
    return "\n".join(lines)
