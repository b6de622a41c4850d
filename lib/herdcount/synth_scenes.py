"""The scenes of a synthetic survey: ground, animals in colonies with their shadows, the
annotators' dots and masks, photo pairs. Pure numpy and Pillow; :mod:`herdcount.synth` writes
them as a survey.

Rules a reader of the truth may need: an animal is hidden (not dotted, not counted) when
a masked pixel lies within ``MASK_MARGIN`` pixels of its centre; a pup sometimes lies on
its mother so that their two dots touch.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from herdcount import realism as realistic
from herdcount.config import Config
from herdcount.imaging import encode_jpeg
from herdcount.options import option

MASK_MARGIN = 24


SUN = np.array([0.55, 0.35])  # shadow offset per unit of body length, (row, col)


def value_range(kind: type) -> Callable[[str], tuple]:
    """argparse type of ``V`` (a range of one value) or ``LO,HI``."""

    def parse(text: str) -> tuple:
        parts = [kind(p) for p in text.split(",")]
        if len(parts) == 1:
            parts *= 2
        if len(parts) != 2 or parts[0] > parts[1]:
            raise argparse.ArgumentTypeError(f"expected V or LO,HI with LO <= HI, got {text!r}")
        return tuple(parts)

    return parse


@dataclass(frozen=True)
class AnnotationStyle:
    """How a survey's annotators drew their dots, and how its photos were saved.

    Attributes
    ----------
    radius : (float, float)
        Range of the dot radius in pixels, drawn per dot.
    drift : int
        Each dot's colour is the scheme's plus up to this much per channel, drawn per dot.
    quality : (int, int)
        Range of the JPEG quality, drawn per copy: plain and dotted are compressed apart.
    dark_share : float
        Share of animals that are dark (wet or in a shadow), 0.4-0.6 times their body colour.
    """

    radius: tuple[float, float] = option(
        (2.7, 3.3),
        flag="--dot-radius",
        type=value_range(float),
        metavar="R|LO,HI",
        help="dot radius in px, drawn per dot (default 2.7,3.3)",
    )
    drift: int = option(8, flag="--dot-drift", metavar="N", help="per-dot colour drift, +-N per channel")
    quality: tuple[int, int] = option(
        (85, 95),
        flag="--jpeg-quality",
        type=value_range(int),
        metavar="Q|LO,HI",
        help="JPEG quality, drawn per copy (default 85,95)",
    )
    dark_share: float = option(0.0, metavar="P", help="share of dark (wet or shadowed) animals")

    def __post_init__(self) -> None:
        lo, hi = self.radius
        if not 1.0 <= lo <= hi <= 12.0:
            raise ValueError(f"dot radius must be a range within 1..12 px, got {self.radius}")
        if not 0 <= self.drift <= 60:
            raise ValueError(f"dot colour drift must be in 0..60, got {self.drift}")
        lo, hi = self.quality
        if not 30 <= lo <= hi <= 100:
            raise ValueError(f"JPEG quality must be a range within 30..100, got {self.quality}")
        if not 0.0 <= self.dark_share <= 1.0:
            raise ValueError(f"dark_share must be in 0..1, got {self.dark_share}")

    @property
    def max_radius(self) -> float:
        """The largest dot radius drawn."""
        return self.radius[1]


@dataclass(frozen=True)
class Animal:
    """One animal of a scene; ``row, col`` is its centre, where its dot goes."""

    row: float
    col: float
    klass: int
    length: float
    angle: float
    #: Realistic scenes only (:mod:`herdcount.realism`): the neck's bend, and a wet animal.
    bend: float = 0.0
    wet: bool = False


def make_background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured shoreline: an (H, W, 3) float32 image in 0..255 and its (H, W) water mask.

    Large-scale structure comes from upsampled coarse noise so that a
    16 MP scene costs well under a second.
    """

    def field(step: int) -> np.ndarray:
        coarse = rng.standard_normal((max(2, height // step), max(2, width // step)))
        img = Image.fromarray(coarse.astype(np.float32), mode="F")
        return np.asarray(img.resize((width, height), Image.BICUBIC), dtype=np.float32)

    shore = field(640)
    water = shore < np.quantile(shore, rng.uniform(0.1, 0.4))
    texture = field(24) * 14 + field(6) * 9
    texture += rng.normal(0, 5, size=(height, width)).astype(np.float32)
    rock = np.array(rng.uniform([105, 100, 92], [150, 140, 125]), dtype=np.float32)
    sea = np.array(rng.uniform([30, 60, 75], [50, 85, 105]), dtype=np.float32)
    img = np.where(water[..., None], sea, rock) + np.where(water, 0.35, 1.0)[..., None] * texture[..., None]
    return img, water


def place_animals(
    rng: np.random.Generator,
    water: np.ndarray,
    config: Config,
    density: float,
    style: AnnotationStyle = AnnotationStyle(),
    realism: int = 0,
) -> list[Animal]:
    """Animals in colonies on the rock, touching and overlapping but never stacked.

    Parameters
    ----------
    water : (H, W) bool array
        Where the scene is water; animals lie on rock.
    density : float
        Mean animals per megapixel over photos that have animals.
    style : AnnotationStyle
        Its largest dot radius keeps dots inside the photo and a pup's dot off its mother's.
    realism : int
        1: animals of :mod:`herdcount.realism` (head, flippers, a pose), facing any way.
    """
    height, width = water.shape
    if rng.random() < 0.1:
        return []
    lengths = np.array([c.length_px for c in config.classes], dtype=float)
    shares = np.array([_share(c.name, len(config.classes)) for c in config.classes])
    shares /= shares.sum()
    total = rng.poisson(density * height * width / 1e6)
    n_colonies = 1 + rng.poisson(height * width / 4e6)
    centres = np.column_stack([rng.uniform(0, height, n_colonies), rng.uniform(0, width, n_colonies)])
    radius = style.max_radius
    animals: list[Animal] = []
    for _ in range(total * 4):
        if len(animals) >= total:
            break
        k = int(rng.choice(len(shares), p=shares))
        length = rng.uniform(*lengths[k])
        mother = _mother(animals, config) if config.classes[k].name == "pups" else None
        if mother is not None and rng.random() < 0.6:
            # Pups lie beside, sometimes on, their mothers.
            # Beside her, their two dots touching; or half on her.
            reach = rng.choice(
                [rng.uniform(2 * radius + 0.5, 2 * radius + 2), rng.uniform(0.35, 0.7) * mother.length],
                p=[0.15, 0.85],
            )
            turn = rng.uniform(0, 2 * math.pi)
            row, col = mother.row + reach * math.sin(turn), mother.col + reach * math.cos(turn)
        else:
            centre = centres[rng.integers(n_colonies)]
            spread = 0.8 * lengths.mean() * math.sqrt(max(total / n_colonies, 1.0))
            row, col = rng.normal(centre, spread)
        if not (radius + 1 <= row < height - radius - 1 and radius + 1 <= col < width - radius - 1):
            continue
        if realism:
            new = Animal(row, col, k, length, rng.uniform(0, 2 * math.pi), **realistic.pose(rng))
        else:
            new = Animal(row, col, k, length, rng.uniform(0, math.pi))
        if water[int(row), int(col)] or not _free(animals, new, mother, radius, realism):
            continue
        animals.append(new)
    return animals


def _share(name: str, n_classes: int) -> float:
    kaggle = {
        "adult_males": 0.06,
        "subadult_males": 0.05,
        "adult_females": 0.42,
        "juveniles": 0.2,
        "pups": 0.27,
    }
    return kaggle.get(name, 1.0 / n_classes)


def _mother(animals: list[Animal], config: Config) -> Animal | None:
    females = [a for a in animals if config.classes[a.klass].name == "adult_females"]
    return females[-1] if females else None


def _free(
    animals: list[Animal], new: Animal, mother: Animal | None, dot_radius: float, realism: int = 0
) -> bool:
    """Whether a new animal fits: not stacked on another, and no animal's centre (where
    its dot goes) under another's outline, since annotators dot the visible body."""
    covers = realistic.covers if realism else _covers
    for a in animals:
        gap = math.hypot(a.row - new.row, a.col - new.col)
        if a is mother:
            # A pup tucked against its mother is drawn under her; their dots may touch.
            if gap < 2 * dot_radius + 0.4:
                return False
        elif (
            gap < 0.42 * (a.length + new.length) / 2
            or covers(a, new.row, new.col)
            or covers(new, a.row, a.col)
        ):
            return False
    return True


def _parts(a: Animal) -> list[tuple[float, float, float, float]]:
    """Body and head of an animal as ellipses ``(row, col, semi-major axis, aspect)``; the
    one description of its shape, used both to draw it and to keep dots visible."""
    reach = a.length * 0.42
    head_row, head_col = a.row + math.sin(a.angle) * reach, a.col + math.cos(a.angle) * reach
    return [(a.row, a.col, a.length / 2, 0.42), (head_row, head_col, a.length * 0.32 / 2, 0.8)]


def _axes(angle: float, dr, dc):
    """Offsets from an ellipse's centre turned into (along, across) its long axis."""
    return dc * math.cos(angle) + dr * math.sin(angle), -dc * math.sin(angle) + dr * math.cos(angle)


def _covers(a: Animal, row: float, col: float) -> bool:
    """Whether the point lies on the body or head of ``a`` (with a 3 px rim)."""
    for r0, c0, semi, aspect in _parts(a):
        along, across = _axes(a.angle, row - r0, col - c0)
        if (along / (semi + 3)) ** 2 + (across / (semi * aspect + 3)) ** 2 <= 1:
            return True
    return False


def paint_animals(
    img: np.ndarray,
    animals: list[Animal],
    config: Config,
    rng: np.random.Generator,
    *,
    dark_share: float = 0.0,
) -> None:
    """Draw shadows, then bodies with heads and shading, in place on a float image.

    Pups are drawn first, tucked against their mothers: an annotator dots the visible
    body of each animal, so no mother's centre may be hidden under her pup. A share
    ``dark_share`` of the animals is wet or shadowed: 0.4-0.6 times its body colour.
    """
    animals = sorted(animals, key=lambda a: config.classes[a.klass].name != "pups")
    for a in animals:
        row, col, semi, aspect = _parts(a)[0]
        shift = SUN * a.length * 0.25
        _blend_ellipse(img, row + shift[0], col + shift[1], semi, aspect, a.angle, colour=None)
    for a in animals:
        body = np.array(config.classes[a.klass].body_rgb, np.float32) * rng.uniform(0.88, 1.12)
        # Drawn only when asked for, so that the default survey keeps its random stream.
        if dark_share and rng.random() < dark_share:
            body *= rng.uniform(0.4, 0.6)
        for (row, col, semi, aspect), colour in zip(_parts(a), (body, body * 0.9)):
            _blend_ellipse(img, row, col, semi, aspect, a.angle, colour=colour)


def _blend_ellipse(img, r0: float, c0: float, semi: float, aspect: float, angle: float, *, colour) -> None:
    """Blend a shaded ellipse of ``colour`` into ``img``; with no colour, darken (a shadow)."""
    realistic.blend_ellipse(
        img, r0, c0, semi, aspect, angle, colour=colour, darken=0.45, light=1.15, shading=0.35
    )


def make_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Black areas of a dotted copy: one or two irregular polygons, as an (H, W) bool array."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(1, 3)):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.15, 0.35) * min(height, width)
        turns = np.sort(rng.uniform(0, 2 * math.pi, rng.integers(7, 12)))
        reach = radius * rng.uniform(0.6, 1.0, len(turns))
        draw.polygon([(cx + r * math.cos(t), cy + r * math.sin(t)) for r, t in zip(reach, turns)], fill=255)
    return np.asarray(canvas) > 0


def paint_dots(
    img: np.ndarray,
    animals: list[Animal],
    config: Config,
    rng: np.random.Generator,
    style: AnnotationStyle = AnnotationStyle(),
) -> list[tuple[float, float, int]]:
    """Paint one anti-aliased dot per animal in place; returns the dots as (row, col, class)."""
    dots = []
    edge = style.max_radius
    for a in animals:
        row = a.row + rng.uniform(-1.5, 1.5)
        col = a.col + rng.uniform(-1.5, 1.5)
        row = min(max(row, edge), img.shape[0] - 1 - edge)
        col = min(max(col, edge), img.shape[1] - 1 - edge)
        drift = rng.integers(-style.drift, style.drift + 1, 3)
        colour = np.clip(np.array(config.classes[a.klass].dot_rgb) + drift, 0, 255)
        radius = rng.uniform(*style.radius)
        top, left = max(int(row - radius - 2), 0), max(int(col - radius - 2), 0)
        bottom = min(int(row + radius) + 3, img.shape[0])
        right = min(int(col + radius) + 3, img.shape[1])
        rr, cc = np.mgrid[top:bottom, left:right]
        cover = np.clip(radius + 0.5 - np.hypot(rr - row, cc - col), 0, 1)[..., None]
        patch = img[top:bottom, left:right]
        patch += cover * (colour - patch)
        dots.append((row, col, a.klass))
    return dots


def make_pair(
    rng: np.random.Generator,
    height: int,
    width: int,
    config: Config,
    *,
    density: float,
    masked: bool,
    mismatched: bool,
    style: AnnotationStyle = AnnotationStyle(),
    realism: int = 0,
) -> dict:
    """One training pair: JPEG bytes of both copies and the truth of the dotted copy."""
    scene, animals = make_scene(rng, height, width, config, density=density, style=style, realism=realism)
    dotted = scene.copy()
    hidden: list[Animal] = []
    if mismatched:
        # The dotted copy shows another stretch of shore, as in Kaggle's mismatched pairs.
        dotted, other = make_scene(rng, height, width, config, density=density, style=style, realism=realism)
        visible = other
    elif masked:
        mask = make_mask(rng, height, width)
        m = MASK_MARGIN
        near = [
            mask[
                max(int(a.row) - m, 0) : int(a.row) + m + 1, max(int(a.col) - m, 0) : int(a.col) + m + 1
            ].any()
            for a in animals
        ]
        visible = [a for a, h in zip(animals, near) if not h]
        hidden = [a for a, h in zip(animals, near) if h]
        dotted[mask] = 0.0
    else:
        visible = animals
    dots = paint_dots(dotted, visible, config, rng, style)
    low, high = style.quality
    return {
        "plain": encode_jpeg(scene, rng.integers(low, high + 1)),
        "dotted": encode_jpeg(dotted, rng.integers(low, high + 1)),
        "dots": dots,
        "hidden": [(a.row, a.col, a.klass) for a in hidden],
        "scene_animals": [(a.row, a.col, a.klass) for a in animals],
    }


def make_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    config: Config,
    *,
    density: float,
    style: AnnotationStyle = AnnotationStyle(),
    realism: int = 0,
) -> tuple[np.ndarray, list[Animal]]:
    """A scene as a float image in 0..255 and its animals: ground, animals placed in
    colonies, and (``realism`` 1, :mod:`herdcount.realism`) one sun, clutter, and animals
    with heads and flippers, wet or dry."""
    if realism not in (0, 1):
        raise ValueError(f"realism must be 0 or 1, got {realism}")
    if not realism:
        scene, water = make_background(rng, height, width)
        animals = place_animals(rng, water, config, density, style)
        paint_animals(scene, animals, config, rng, dark_share=style.dark_share)
        return scene, animals
    scene, water = realistic.make_ground(rng, height, width)
    animals = place_animals(rng, water, config, density, style, realism)
    sun = realistic.sun_direction(rng)
    realistic.add_clutter(scene, water, animals, rng, sun)
    realistic.paint_animals(scene, animals, config, rng, sun)
    return scene, animals


def make_test_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    config: Config,
    *,
    density: float,
    style: AnnotationStyle = AnnotationStyle(),
    scale: float = 1.0,
    realism: int = 0,
) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """A test scene as a uint8 array and its animals ``(row, col, class)``, photographed at
    ground ``scale`` relative to the training photos (0.5: flown twice as high).

    The scene is made at the training altitude over the ground the photo covers,
    ``(height / scale, width / scale)`` pixels, then resampled to ``(height, width)``:
    animals, shadows, textures and colony spreads shrink or grow together, and a photo
    flown higher holds more animals.
    """
    if not 0.2 <= scale <= 5.0:
        raise ValueError(f"test scale must be in 0.2..5, got {scale}")
    ground_h, ground_w = max(1, round(height / scale)), max(1, round(width / scale))
    scene, animals = make_scene(
        rng, ground_h, ground_w, config, density=density, style=style, realism=realism
    )
    pixels = np.clip(scene, 0, 255).astype(np.uint8)  # as encode_jpeg converts: surveys stay the same
    points = [(a.row, a.col, a.klass) for a in animals]
    if (ground_h, ground_w) == (height, width):
        return pixels, points
    image = Image.fromarray(pixels).resize((width, height), Image.LANCZOS)
    fr, fc = height / ground_h, width / ground_w
    # Pixel centres map through the resampling as (x + 0.5) * factor - 0.5.
    return np.asarray(image), [((r + 0.5) * fr - 0.5, (c + 0.5) * fc - 0.5, k) for r, c, k in points]
