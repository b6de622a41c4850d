"""Measure how a survey's annotators drew their dots, to write a scheme for a new survey.

``herdcount dotstyle DATA [--pairs 4] [--scheme conf/sealions.yaml]``

reads a few pairs of ``DATA/Train`` and ``DATA/TrainDotted`` (spread over the listing),
finds their dots with the scheme's colours and prints what it measured: the painted area
and radius of one dot, the change threshold set by the pairs' JPEG noise, and each class's
colour as drawn (mean and spread of the fully painted pixels), beside the scheme's
``dot_rgb`` and ready to paste into a scheme file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from herdcount import storage
from herdcount.config import DEFAULT_SCHEME, Config
from herdcount.dot_colours import ColourStats
from herdcount.dots import find_dots
from herdcount.imaging import PhotoError, decode_rgb
from herdcount.options import option
from herdcount.points import PointScores, score_points


@dataclass(frozen=True)
class DotStyle:
    """What the dots of a few pairs looked like.

    Attributes
    ----------
    pairs : list of str
        Train ids measured.
    footprints : list of float
        Each pair's painted area per dot in pixels (pairs with too few dots left out).
    thresholds : list of int
        Each pair's change threshold from its JPEG noise.
    colours : ColourStats
        Fully painted pixels per class, pooled over the pairs.
    dots : (K,) int array
        Dots found per class.
    """

    pairs: list[str]
    footprints: list[float]
    thresholds: list[int]
    colours: ColourStats
    dots: np.ndarray

    @property
    def footprint(self) -> float | None:
        """Median painted area per dot over the pairs."""
        return float(np.median(self.footprints)) if self.footprints else None

    @property
    def radius(self) -> float | None:
        """Radius of a disc of the median footprint."""
        return None if self.footprint is None else float(np.sqrt(self.footprint / np.pi))


@dataclass(frozen=True)
class DotstyleSettings:
    """What ``herdcount dotstyle`` is asked to measure."""

    data: str = option(flag="data", help="dataset root in the Kaggle layout (Train/, TrainDotted/)")
    pairs: int = option(4, help="pairs to measure (default 4)")
    scheme: str = option(
        DEFAULT_SCHEME, help="class scheme: a YAML file or a packaged scheme (default: %(default)s)"
    )


def measure_pairs(data: str, config: Config, *, pairs: int = 4) -> DotStyle:
    """Find the dots of up to ``pairs`` pairs of ``data`` (spread over its listing) and pool them.

    Raises
    ------
    ValueError
        If ``data`` has no pairs in ``Train/`` and ``TrainDotted/``.
    """
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    names = {n for n, _ in storage.file_stats(storage.join(data, "TrainDotted"))}
    both = sorted(
        (
            n
            for n, _ in storage.file_stats(storage.join(data, "Train"))
            if n in names and n.lower().endswith(".jpg")
        ),
        key=lambda n: (len(n), n),
    )
    if not both:
        raise ValueError(f"DATA {data!r} has no pairs: expected Train/<id>.jpg with TrainDotted/<id>.jpg")
    picked = [both[i] for i in np.linspace(0, len(both) - 1, min(pairs, len(both))).round().astype(int)]
    footprints, thresholds, ids = [], [], []
    colours = ColourStats.empty(len(config.classes))
    dots = np.zeros(len(config.classes), dtype=np.int64)
    params = dict(vars(config.dots))
    for name in dict.fromkeys(picked):
        try:
            plain = decode_rgb(storage.read_bytes(storage.join(data, "Train", name)), f"Train/{name}")
            dotted = decode_rgb(
                storage.read_bytes(storage.join(data, "TrainDotted", name)), f"TrainDotted/{name}"
            )
        except PhotoError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        if plain.shape != dotted.shape:
            print(f"skipped: Train/{name} and TrainDotted/{name} differ in size", file=sys.stderr)
            continue
        found = find_dots(plain, dotted, config.dot_colours, **params)
        ids.append(name.rsplit(".", 1)[0])
        thresholds.append(found.threshold)
        if found.footprint is not None:
            footprints.append(found.footprint)
        colours = colours + found.colours
        dots += found.counts(len(config.classes))
    return DotStyle(ids, footprints, thresholds, colours, dots)


def score_against_truth(data: str, truth: str, config: Config, *, radius: float = 3.0) -> PointScores:
    """Find the dots of every pair of a generated survey and match them to its truth.

    ``truth`` is the generator's truth folder (:func:`herdcount.synth.truth_dir`); dots
    match one to one, class by class, within ``radius`` pixels.
    """
    from herdcount.synth import read_truth_dots

    params = dict(vars(config.dots))
    total = PointScores(*(np.zeros(len(config.classes), dtype=np.int64) for _ in range(3)))
    for name, _ in storage.file_stats(storage.join(data, "Train")):
        if not name.endswith(".jpg"):
            continue
        plain = decode_rgb(storage.read_bytes(storage.join(data, "Train", name)), f"Train/{name}")
        dotted = decode_rgb(
            storage.read_bytes(storage.join(data, "TrainDotted", name)), f"TrainDotted/{name}"
        )
        found = find_dots(plain, dotted, config.dot_colours, **params)
        points, classes = read_truth_dots(truth, "train", name[: -len(".jpg")], config)
        n = len(config.classes)
        total = total + score_points(found.coords, found.classes, points, classes, n, radius=radius)
    return total


def format_style(style: DotStyle, config: Config) -> str:
    """The lines :func:`main` prints: footprint, thresholds, and a colour table with YAML."""
    lines = [f"pairs measured: {', '.join(style.pairs) or 'none'}"]
    if style.footprint is None:
        lines.append("dot footprint: too few dots to measure")
    else:
        low, high = min(style.footprints), max(style.footprints)
        lines.append(
            f"dot footprint: {style.footprint:.1f} px painted (radius {style.radius:.2f} px); "
            f"per pair {low:.1f}-{high:.1f}"
        )
    lines.append(f"change threshold from JPEG noise: {', '.join(map(str, style.thresholds))}")
    lines.append(f"{'class':<16} {'dots':>5}  {'scheme dot_rgb':<16} {'measured rgb':<16} spread (std)")
    mean, std = style.colours.mean, style.colours.std
    for k, spec in enumerate(config.classes):
        if style.colours.pixels[k] == 0:
            lines.append(f"{spec.name:<16} {style.dots[k]:>5}  {list(spec.dot_rgb)!s:<16} {'-':<16} -")
            continue
        rgb = np.round(mean[k]).astype(int).tolist()
        lines.append(
            f"{spec.name:<16} {style.dots[k]:>5}  {list(spec.dot_rgb)!s:<16} {rgb!s:<16} {np.round(std[k], 1).tolist()}"
        )
    lines.append("as a scheme's classes (dot_rgb as measured):")
    for k, spec in enumerate(config.classes):
        rgb = list(spec.dot_rgb) if style.colours.pixels[k] == 0 else np.round(mean[k]).astype(int).tolist()
        lines.append(f"  - {{name: {spec.name}, dot_rgb: {rgb}}}")
    return "\n".join(lines)
