"""Scenes that look more like survey photos than ellipses on blurred noise (``synth --realism 1``).

What a real NOAA-style photo shows and the plain generator does not, drawn here:

- **ground**: rock in several tones with texture at four scales, cracks, wet (dark) patches,
  sand, and surf where rock meets water;
- **animals** of a body, a head on a neck that bends, two fore and two hind flippers, each
  animal wet (dark, with a sheen along its back) or dry (lighter), in any orientation;
- **shadows** of every part cast in one sun direction per photo;
- **clutter** that is not an animal: gulls, strands of kelp, and rocks the size and colour of
  a pup.

The truth stays exact: an animal's outline (:func:`outline`) is the one description of its
shape, used to place animals (no animal's centre, where its dot goes, lies under another's
outline) and to draw them; clutter never covers an animal's centre, and rocks and kelp lie
under the animals. Pure numpy and Pillow, floats in 0..255 as :mod:`herdcount.synth` uses.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

if TYPE_CHECKING:
    from herdcount.config import Config
    from herdcount.synth_scenes import Animal

#: An ellipse: centre row, centre col, semi-major axis, aspect (minor / major), angle.
Part = tuple[float, float, float, float, float]

#: Share of animals that are wet (dark, with a sheen).
WET_SHARE = 0.35


def outline(a: Animal) -> list[Part]:
    """Body, head, fore and hind flippers of an animal, as ellipses (body first)."""
    length, angle, bend = a.length, a.angle, a.bend
    along = np.array([math.sin(angle), math.cos(angle)])  # (row, col) of the body's axis
    across = np.array([math.cos(angle), -math.sin(angle)])
    centre = np.array([a.row, a.col])
    parts: list[Part] = [(a.row, a.col, 0.46 * length, 0.40, angle)]
    neck = centre + 0.34 * length * along
    turn = angle + bend
    head = neck + 0.13 * length * np.array([math.sin(turn), math.cos(turn)])
    parts.append((head[0], head[1], 0.13 * length, 0.72, turn))
    for side in (-1, 1):
        fore = centre + 0.10 * length * along + side * 0.19 * length * across
        parts.append((fore[0], fore[1], 0.11 * length, 0.34, angle - side * (math.pi / 2 - 0.7)))
        hind = centre - 0.47 * length * along + side * 0.05 * length * across
        parts.append((hind[0], hind[1], 0.08 * length, 0.42, angle + math.pi + side * 0.35))
    return parts


def covers(a: Animal, row: float, col: float, rim: float = 3.0) -> bool:
    """Whether the point lies on any part of ``a``'s outline (with a ``rim`` in pixels)."""
    for r0, c0, semi, aspect, angle in outline(a):
        dr, dc = row - r0, col - c0
        u = dc * math.cos(angle) + dr * math.sin(angle)
        v = -dc * math.sin(angle) + dr * math.cos(angle)
        if (u / (semi + rim)) ** 2 + (v / (semi * aspect + rim)) ** 2 <= 1:
            return True
    return False


def sun_direction(rng: np.random.Generator) -> np.ndarray:
    """One sun per photo: the shadow offset per unit of body length, ``(row, col)``."""
    turn = rng.uniform(0, 2 * math.pi)
    return rng.uniform(0.2, 0.45) * np.array([math.sin(turn), math.cos(turn)])


def _field(rng: np.random.Generator, height: int, width: int, step: int) -> np.ndarray:
    coarse = rng.standard_normal((max(2, height // step), max(2, width // step)))
    img = Image.fromarray(coarse.astype(np.float32), mode="F")
    return np.asarray(img.resize((width, height), Image.BICUBIC), dtype=np.float32)


def make_ground(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rock, cracks, wet patches, sand, water and surf: an (H, W, 3) float32 image and its
    (H, W) water mask."""
    shore = _field(rng, height, width, 640)
    level = np.quantile(shore, rng.uniform(0.1, 0.35))
    water = shore < level
    # Rock is grey with a warm or cool cast, not a saturated colour.
    tones = np.array(
        [rng.uniform(90, 145) + rng.uniform(-1, 1.5) * np.array([7, 2, -7]) for _ in range(2)],
        dtype=np.float32,
    )
    mix = 1 / (1 + np.exp(-1.5 * _field(rng, height, width, 300)))
    rock = tones[0] + mix[..., None] * (tones[1] - tones[0])
    texture = (
        _field(rng, height, width, 160) * 14
        + _field(rng, height, width, 40) * 10
        + _field(rng, height, width, 10) * 7
        + rng.normal(0, 4, size=(height, width)).astype(np.float32)
    )
    img = rock + texture[..., None]
    # Sand: a smooth region of fine, light grain.
    sand = np.clip(1.5 * (_field(rng, height, width, 500) - 1.0), 0, 1)[..., None]
    grain = rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)
    img += sand * (np.array(rng.uniform([175, 160, 130], [205, 190, 160]), np.float32) + grain - img)
    # Wet rock: darker, a little bluer, with soft edges.
    wet = np.clip(2.0 * (_field(rng, height, width, 200) - 0.9), 0, 1)[..., None]
    img *= 1 - wet * np.array([0.42, 0.38, 0.32], np.float32)
    img *= 1 - 0.5 * _cracks(rng, height, width)[..., None]
    # Water, and surf along its edge: white foam in streaks.
    sea = np.array(rng.uniform([30, 60, 75], [50, 85, 105]), dtype=np.float32)
    ripple = _field(rng, height, width, 24) * 5
    img = np.where(water[..., None], sea + ripple[..., None], img)
    depth = np.clip((level - shore) / max(float(np.std(shore)), 1e-6), 0, None)
    foam = np.clip(1 - depth / 0.12, 0, 1) * (_field(rng, height, width, 8) > 0.2)
    img += (water * foam)[..., None] * (np.array([232, 236, 238], np.float32) - img)
    return img, water


def _cracks(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Dark lines of random walks over the rock, as an (H, W) float mask in 0..1."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.poisson(6 * height * width / 1e6) + 1):
        point = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        heading = rng.uniform(0, 2 * math.pi)
        line = [tuple(point)]
        for _ in range(rng.integers(8, 40)):
            heading += rng.normal(0, 0.45)
            point = point + rng.uniform(5, 14) * np.array([math.cos(heading), math.sin(heading)])
            line.append(tuple(point))
        draw.line(line, fill=int(rng.integers(120, 256)), width=int(rng.integers(1, 4)))
    blurred = canvas.filter(ImageFilter.GaussianBlur(0.8))
    return np.asarray(blurred, dtype=np.float32) / 255


def pose(rng: np.random.Generator) -> dict[str, float | bool]:
    """An animal's bend of the neck and whether it is wet."""
    return {"bend": float(rng.uniform(-0.7, 0.7)), "wet": bool(rng.random() < WET_SHARE)}


def paint_animals(
    img: np.ndarray, animals: list[Animal], config: Config, rng: np.random.Generator, sun: np.ndarray
) -> None:
    """Draw every part's shadow in the sun direction, then each animal's parts (pups first,
    tucked under their mothers), wet ones dark with a sheen along the back, dry ones lighter."""
    animals = sorted(animals, key=lambda a: config.classes[a.klass].name != "pups")
    for a in animals:
        shift = sun * a.length
        for r0, c0, semi, aspect, angle in outline(a):
            blend_ellipse(img, r0 + shift[0], c0 + shift[1], semi, aspect, angle, colour=None)
    for a in animals:
        body = np.array(config.classes[a.klass].body_rgb, np.float32) * rng.uniform(0.9, 1.1)
        if a.wet:
            body = body * rng.uniform(0.45, 0.62)
        else:  # dry fur: lighter and greyer
            body = body * rng.uniform(1.0, 1.1) + 6
            body = 0.8 * body + 0.2 * body.mean()
        flipper = body * 0.8
        parts = outline(a)
        for part in parts[2:]:
            blend_ellipse(img, *part, colour=flipper)
        blend_ellipse(img, *parts[0], colour=body)
        blend_ellipse(img, *parts[1], colour=body * 0.92)
        if a.wet:
            r0, c0, semi, _, angle = parts[0]
            blend_ellipse(
                img, r0, c0, semi * 0.7, 0.12, angle, colour=np.minimum(body * 1.9 + 25, 255), strength=0.5
            )


def add_clutter(
    img: np.ndarray, water: np.ndarray, animals: list[Animal], rng: np.random.Generator, sun: np.ndarray
) -> list[tuple[str, float, float]]:
    """Rocks the size and colour of a pup and strands of kelp under the animals' places, gulls
    anywhere but on an animal's centre; returns ``(kind, row, col)`` of each.

    Call before drawing the animals: rocks and kelp are then under them, and gulls, drawn
    here too, are kept off every animal's outline.
    """
    height, width = water.shape
    area = height * width / 1e6
    drawn = []
    for _ in range(rng.poisson(4 * area)):
        row, col = rng.uniform(0, height), rng.uniform(0, width)
        if water[int(row), int(col)]:
            continue
        size, angle = rng.uniform(18, 32), rng.uniform(0, math.pi)
        grey = rng.uniform(45, 85)
        tone = np.array([grey + 6, grey, grey - 6], np.float32)  # a pup's size and colour
        blend_ellipse(img, row + sun[0] * size, col + sun[1] * size, size / 2, 0.7, angle, colour=None)
        blend_ellipse(img, row, col, size / 2, rng.uniform(0.55, 0.85), angle, colour=tone)
        drawn.append(("rock", row, col))
    for _ in range(rng.poisson(2 * area)):
        row, col = rng.uniform(0, height), rng.uniform(0, width)
        heading, tone = (
            rng.uniform(0, 2 * math.pi),
            np.array(rng.uniform([55, 50, 20], [85, 75, 35]), np.float32),
        )
        for _ in range(rng.integers(8, 20)):
            heading += rng.normal(0, 0.35)
            row, col = row + 5 * math.sin(heading), col + 5 * math.cos(heading)
            blend_ellipse(img, row, col, 4.0, 0.5, heading, colour=tone)
        drawn.append(("kelp", row, col))
    for _ in range(rng.poisson(5 * area)):
        row, col = rng.uniform(10, height - 10), rng.uniform(10, width - 10)
        if any(math.hypot(a.row - row, a.col - col) < a.length for a in animals):
            continue  # gulls keep clear of the animals, and so of every dot
        angle, span = rng.uniform(0, math.pi), rng.uniform(7, 11)
        blend_ellipse(img, row + 6 * sun[0], col + 6 * sun[1], span, 0.3, angle, colour=None)
        blend_ellipse(img, row, col, span, 0.22, angle, colour=np.array([120, 120, 125], np.float32))
        blend_ellipse(
            img,
            row,
            col,
            span * 0.45,
            0.55,
            angle + math.pi / 2,
            colour=np.array([236, 236, 232], np.float32),
        )
        drawn.append(("gull", row, col))
    return drawn


def blend_ellipse(
    img: np.ndarray,
    r0: float,
    c0: float,
    semi: float,
    aspect: float,
    angle: float,
    *,
    colour: np.ndarray | None,
    darken: float = 0.5,
    light: float = 1.12,
    shading: float = 0.3,
    strength: float = 1.0,
) -> None:
    """Blend an anti-aliased ellipse of ``colour`` into ``img`` in place, lit ``light`` along
    its axis and ``shading`` less at its sides; with no colour, darken by up to ``darken``
    (a shadow). ``strength`` below 1 blends it only partly (a sheen)."""
    half = semi + 2
    top, left = max(int(r0 - half), 0), max(int(c0 - half), 0)
    bottom, right = min(int(r0 + half) + 2, img.shape[0]), min(int(c0 + half) + 2, img.shape[1])
    if bottom <= top or right <= left:
        return
    rr, cc = np.mgrid[top:bottom, left:right].astype(np.float32)
    dr, dc = rr - r0, cc - c0
    along = dc * math.cos(angle) + dr * math.sin(angle)
    across = -dc * math.sin(angle) + dr * math.cos(angle)
    minor = max(semi * aspect, 0.5)
    d = np.sqrt((along / semi) ** 2 + (across / minor) ** 2)
    inside = np.clip((1 - d) * semi, 0, 1)[..., None]  # anti-aliased edge, about 1 px wide
    if strength != 1.0:
        inside = inside * strength
    patch = img[top:bottom, left:right]
    if colour is None:
        patch *= 1 - darken * inside
    else:
        shade = (light - shading * np.clip(np.abs(across) / minor, 0, 1))[..., None]
        patch += inside * (colour * shade - patch)
