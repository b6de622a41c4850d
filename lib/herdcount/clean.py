"""Flag the problems of a photo collection from its manifest: duplicates, near-duplicates,
unreadable and unsupported files, missing labels, dark and blurred photos.

Works on the manifest's rows alone (hashes and measures were taken by the manifest job), so
no photo is read again. Originals are never moved or deleted: the outputs are lists.
"""

from __future__ import annotations

import base64
import dataclasses
import html
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from herdcount import storage
from herdcount.manifest import OK, UNREADABLE, UNSUPPORTED, hamming, read_manifest
from herdcount.options import option
from herdcount.runinfo import read_run
from herdcount.runner import Job, Outcome

FLAGS = ("duplicate", "near_duplicate", "unreadable", "unsupported", "missing_label", "dark", "blurred")


@dataclass(frozen=True)
class CleanSettings:
    """Thresholds of :func:`flag_rows`.

    ``near_duplicate_bits``: perceptual hashes at most this many bits apart (of 64) are the
    same picture; resized or recompressed copies land 0-4 bits apart, different photos
    about 32. A photo is dark when its mean brightness lies more than ``dark_mads`` robust
    standard deviations (1.4826 median absolute deviations) *and* at least ``dark_levels``
    grey levels below the collection's median; blurred when its sharpness lies more than
    ``blur_mads`` robust standard deviations (on a log scale) *and* a factor ``blur_ratio``
    below the median. The second condition keeps a uniform collection, whose deviations are
    tiny, from flagging ordinary variation (a lower JPEG quality, a slightly softer lens).
    Dark photos are not judged for blur.
    """

    near_duplicate_bits: int = option(
        6, help="perceptual hashes at most this many bits apart are one picture (default: %(default)s)"
    )
    dark_mads: float = option(
        3.5,
        help="robust deviations below the median brightness that make a photo dark (default: %(default)s)",
    )
    blur_mads: float = option(
        3.5,
        help="robust deviations below the median log sharpness that make it blurred (default: %(default)s)",
    )
    dark_levels: float = option(
        40.0, help="and at least this many grey levels below it (default: %(default)s)"
    )
    blur_ratio: float = option(
        4.0, help="and at least this many times less sharp than the median (default: %(default)s)"
    )
    label_field: str = option("label", help="layout field of the label")

    def __post_init__(self) -> None:
        if not 0 <= self.near_duplicate_bits < 32:
            raise ValueError(f"--near-duplicate-bits must be in 0..31, got {self.near_duplicate_bits}")
        if self.dark_mads <= 0 or self.blur_mads <= 0:
            raise ValueError(
                f"--dark-mads and --blur-mads must be positive, got {self.dark_mads}, {self.blur_mads}"
            )


def flag_rows(
    rows: list[dict[str, Any]], settings: CleanSettings = CleanSettings()
) -> list[tuple[str, str, str]]:
    """``(path, flag, detail)`` for each problem found, in path order then flag order."""
    rows = sorted(rows, key=lambda r: r["path"])
    flags: list[tuple[str, str, str]] = []
    for r in rows:
        if r["status"] in (UNREADABLE, UNSUPPORTED):
            flags.append((r["path"], r["status"], r.get("detail") or ""))
    duplicates = _duplicates(rows)
    flags += [(path, "duplicate", f"same bytes as {kept}") for path, kept in duplicates.items()]
    ok = [r for r in rows if r["status"] == OK and r["path"] not in duplicates]
    for path, (kept, bits) in _near_duplicates(ok, settings.near_duplicate_bits).items():
        flags.append((path, "near_duplicate", f"looks like {kept} ({bits} bits apart)"))
    if ok and settings.label_field in ok[0]:
        flags += [
            (r["path"], "missing_label", "the layout gives no label")
            for r in ok
            if not r[settings.label_field]
        ]
    dark = _outliers(ok, "brightness", settings.dark_mads, settings.dark_levels, "dark", log=False)
    # A dark photo has little detail to be sharp with: judged dark, not also blurred.
    lit = [r for r in ok if r["path"] not in {path for path, _, _ in dark}]
    flags += dark + _outliers(
        lit, "sharpness", settings.blur_mads, np.log(settings.blur_ratio), "blurred", log=True
    )
    order = {name: n for n, name in enumerate(FLAGS)}
    return sorted(flags, key=lambda f: (f[0], order[f[1]]))


def _duplicates(rows: list[dict[str, Any]]) -> dict[str, str]:
    first: dict[str, str] = {}
    copies = {}
    for r in rows:
        if r["status"] == OK or r["status"] == UNSUPPORTED:
            kept = first.setdefault(r["md5"], r["path"])
            if kept != r["path"]:
                copies[r["path"]] = kept
    return copies


def _near_duplicates(rows: list[dict[str, Any]], bits: int) -> dict[str, tuple[str, int]]:
    """Photos whose hash is within ``bits`` of an earlier photo's. Candidates share one of
    eight 8-bit bands of the hash, which every pair within 7 bits does (pigeonhole), so
    the search is about linear, not quadratic."""
    bands: dict[tuple[int, str], list[int]] = defaultdict(list)
    for n, r in enumerate(rows):
        for b in range(8):
            bands[(b, r["phash"][2 * b : 2 * b + 2])].append(n)
    parent = list(range(len(rows)))

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for members in bands.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if root(a) != root(b) and hamming(rows[a]["phash"], rows[b]["phash"]) <= bits:
                    parent[max(root(a), root(b))] = min(root(a), root(b))
    found = {}
    for n, r in enumerate(rows):
        kept = root(n)
        if kept != n:
            found[r["path"]] = (rows[kept]["path"], hamming(rows[kept]["phash"], r["phash"]))
    return found


def _outliers(rows: list[dict[str, Any]], column: str, mads: float, gap: float, flag: str, *, log: bool):
    if len(rows) < 5:
        return []
    values = np.array([r[column] for r in rows], dtype=float)
    values = np.log(values + 1e-3) if log else values
    median = np.median(values)
    scale = 1.4826 * np.median(np.abs(values - median)) or 1e-9
    limit = median - max(mads * scale, gap)
    shown = (lambda v: f"{np.exp(v):.3g}") if log else (lambda v: f"{v:.1f}")
    return [
        (r["path"], flag, f"{column} {shown(v)} below {shown(limit)} (median {shown(median)})")
        for r, v in zip(rows, values)
        if v < limit
    ]


def keep_paths(rows: list[dict[str, Any]], flags: list[tuple[str, str, str]]) -> list[str]:
    """Paths of the readable, supported photos that carry no flag, in path order."""
    flagged = {path for path, _, _ in flags}
    return sorted(r["path"] for r in rows if r["status"] == OK and r["path"] not in flagged)


def balance(rows: list[dict[str, Any]], keep: list[str], label_field: str = "label") -> dict[str, int]:
    """Kept photos per label, labels sorted."""
    kept = set(keep)
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["path"] in kept:
            counts[r.get(label_field) or ""] += 1
    return dict(sorted(counts.items()))


def report_html(rows: list[dict[str, Any]], flags: list[tuple[str, str, str]], counts: dict[str, int]) -> str:
    """A self-contained page: flagged photos as thumbnails grouped by flag, and the balance."""
    from herdcount.plots import plot_balance

    thumbs = {r["path"]: r.get("thumbnail") for r in rows}
    parts = []
    for flag in FLAGS:
        hits = [(p, d) for p, f, d in flags if f == flag]
        parts.append(f'<section id="{flag}"><h2>{flag} ({len(hits)})</h2>')
        for path, detail in hits:
            thumb = thumbs.get(path)
            picture = (
                f'<img alt="{html.escape(path)}" src="data:image/jpeg;base64,{base64.b64encode(thumb).decode()}">'
                if thumb
                else '<div class="none">no picture</div>'
            )
            parts.append(
                f"<figure>{picture}<figcaption>{html.escape(path)}<br>{html.escape(detail)}</figcaption></figure>"
            )
        parts.append("</section>")
    chart = base64.b64encode(plot_balance(counts)).decode()
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px}"
        "figure{display:inline-block;margin:.4em;width:180px;vertical-align:top}"
        "figcaption{font-size:.75em;word-break:break-all}.none{width:96px;height:72px;background:#eee}"
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>herdcount cleaning report</title>'
        f"<style>{style}</style></head><body><h1>Cleaning report</h1>"
        f'<section id="balance"><h2>Balance</h2><img alt="photos per label" src="data:image/png;base64,{chart}">'
        f"</section>{''.join(parts)}</body></html>"
    )


@dataclass
class CleanPlan:
    """The manifest's rows and the thresholds to judge them by."""

    rows: list[dict[str, Any]]
    settings: CleanSettings
    fingerprint: str | None


@dataclass
class CleanJob(Job[CleanPlan, Any, Any]):
    """The clean job: all its work is on the manifest's rows, on the driver; no photo is read.

    Parameters
    ----------
    manifest, out : str
        The manifest job's output folder and this job's.
    settings : CleanSettings
        The thresholds.
    """

    name: ClassVar[str] = "clean"
    manifest: str
    out: str
    settings: CleanSettings = field(default_factory=CleanSettings)

    def paths(self) -> list[str | None]:
        return [self.manifest, self.out]

    def plan(self) -> CleanPlan:
        settings = self.settings
        manifest_file = storage.join(self.manifest, "manifest.parquet")
        if not storage.exists(manifest_file):
            raise ValueError(
                f"{self.manifest} has no manifest.parquet; expected the output of herdcount manifest"
            )
        manifest_run = read_run(self.manifest)
        fingerprint = manifest_run.inputs.get("fingerprint") if manifest_run else None
        return CleanPlan(read_manifest(manifest_file), settings, fingerprint)

    def items(self, plan: CleanPlan) -> list[Any]:
        return []

    def finish(self, plan: CleanPlan, results: list[Any], work_s: float) -> Outcome:
        rows, settings = plan.rows, plan.settings
        flags = flag_rows(rows, settings)
        keep = keep_paths(rows, flags)
        counts = balance(rows, keep, settings.label_field)
        out = self.out
        storage.write_csv_atomic(storage.join(out, "flags.csv"), ["path", "flag", "detail"], flags)
        storage.write_csv_atomic(storage.join(out, "keep.csv"), ["path"], [[p] for p in keep])
        storage.write_csv_atomic(storage.join(out, "balance.csv"), ["label", "photos"], counts.items())
        storage.write_text_atomic(storage.join(out, "report.html"), report_html(rows, flags, counts))
        by_flag = {f: sum(1 for _, g, _ in flags if g == f) for f in dict.fromkeys(g for _, g, _ in flags)}
        summary = (
            f"files: {len(rows)}, kept: {len(keep)}; flags: "
            + ", ".join(f"{k} {v}" for k, v in by_flag.items())
            + f"\noutputs: {storage.join(out, 'flags.csv')}, keep.csv, balance.csv, report.html"
        )
        return Outcome(
            config={"manifest": self.manifest, "out": self.out, **dataclasses.asdict(self.settings)},
            inputs={"manifest": storage.absolute(self.manifest), "fingerprint": plan.fingerprint},
            totals={"files": len(rows), "kept": len(keep), "flags": by_flag},
            summary=summary,
        )
