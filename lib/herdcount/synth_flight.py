"""A synthetic survey flight: overlapping frames cut from one continuous ground.

The camera flies serpentine lines over one scene of :func:`herdcount.synth_scenes.make_test_scene`
(ground, colonies, shadows running on across frames), taking frames with the chosen forward
and side overlap. Each frame has its own small rotation, scale and position error and its
own exposure, as a handheld or drone camera gives. The truth names the animal of every
sighting, so the unique stage's linking can be judged pair by pair.

Written under OUT: ``Flight/<id>.jpg`` (ids in flight order) and ``flight_order.csv``
(``test_id,order``); beside OUT in ``OUT_truth/``: ``flight.csv`` (``test_id,class,x,y,animal_id``:
every animal in every frame, ``(x, y)`` in the frame's pixels) and ``flight_animals.csv``
(``animal_id,class,frames``). With ``movement`` the animals walk between shots: each takes a
step in a random direction of up to that share of its body length before every frame, and
every frame is painted anew from the bare ground with the animals where they are then.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from herdcount.config import Config
from herdcount.imaging import encode_jpeg
from herdcount.storage import write_bytes_atomic, write_text_atomic
from herdcount.synth_scenes import Animal, make_background, make_test_scene, paint_animals, place_animals


@dataclass(frozen=True)
class FlightPlan:
    """How the camera flies.

    Attributes
    ----------
    lines, frames_per_line : int
        Serpentine lines and the frames taken along each.
    forward, side : float
        Overlap of consecutive frames along a line, and of neighbouring lines (0..0.9).
    height, width : int
        Frame size in pixels.
    rotation : float
        Largest rotation of a frame against the line's direction, degrees.
    exposure : float
        Largest change of a frame's brightness, as a share (0.1: 0.9-1.1 times).
    jitter : float
        Largest position error of a frame, as a share of its size.
    movement : float
        Largest step of an animal between consecutive frames, as a share of its body length
        (0: the animals keep still and one scene is painted once).
    perspective : float
        Largest shift of a frame's corner off its place, as a share of the frame's size: a
        camera tilted off the vertical (0: straight down).
    """

    lines: int = 2
    frames_per_line: int = 5
    forward: float = 0.6
    side: float = 0.3
    height: int = 600
    width: int = 800
    rotation: float = 5.0
    exposure: float = 0.1
    jitter: float = 0.03
    movement: float = 0.0
    perspective: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.perspective <= 0.1:
            raise ValueError(f"perspective must be in 0..0.1 of the frame's size, got {self.perspective}")
        if not 0 <= self.movement <= 2:
            raise ValueError(f"movement must be in 0..2 body lengths per frame, got {self.movement}")
        if self.lines < 1 or self.frames_per_line < 1:
            raise ValueError(f"a flight needs lines and frames, got {self.lines}x{self.frames_per_line}")
        for name in ("forward", "side"):
            if not 0 <= getattr(self, name) <= 0.9:
                raise ValueError(f"{name} overlap must be in 0..0.9, got {getattr(self, name)}")


def fly(
    rng: np.random.Generator, plan: FlightPlan, config: Config, *, density: float
) -> list[tuple[np.ndarray, list[tuple[float, float, int, int]]]]:
    """The frames of a flight in order, each with its animals ``(x, y, class, animal_id)``."""
    from skimage.transform import ProjectiveTransform, SimilarityTransform, warp

    dx, dy = plan.width * (1 - plan.forward), plan.height * (1 - plan.side)
    pad = int(0.15 * max(plan.height, plan.width))
    ground_w = int(plan.width + (plan.frames_per_line - 1) * dx + 2 * pad)
    ground_h = int(plan.height + (plan.lines - 1) * dy + 2 * pad)
    if plan.movement:
        ground, water = make_background(rng, ground_h, ground_w)
        walkers = place_animals(rng, water, config, density)
        classes = [a.klass for a in walkers]
    else:
        scene, still = make_test_scene(rng, ground_h, ground_w, config, density=density)
        ground_xy = np.array([(c, r) for r, c, _ in still], np.float64).reshape(-1, 2)
        classes = [k for _, _, k in still]
    frames = []
    for line in range(plan.lines):
        steps = range(plan.frames_per_line)
        for i in steps if line % 2 == 0 else reversed(steps):
            centre = np.array([pad + plan.width / 2 + i * dx, pad + plan.height / 2 + line * dy])
            centre += rng.uniform(-plan.jitter, plan.jitter, 2) * [plan.width, plan.height]
            angle = np.deg2rad(rng.uniform(-plan.rotation, plan.rotation))
            scale = rng.uniform(0.97, 1.03)
            # ground (x, y) -> frame (x, y): about the frame's centre.
            to_frame = (
                SimilarityTransform(translation=-centre)
                + SimilarityTransform(rotation=angle, scale=scale)
                + SimilarityTransform(translation=(plan.width / 2, plan.height / 2))
            )
            if plan.perspective:
                corners = np.array(
                    [[0, 0], [plan.width, 0], [plan.width, plan.height], [0, plan.height]], float
                )
                shift = rng.uniform(-plan.perspective, plan.perspective, (4, 2)) * [plan.width, plan.height]
                tilt = ProjectiveTransform.from_estimate(corners, corners + shift)
                to_frame = ProjectiveTransform(tilt.params @ to_frame.params)
            if plan.movement:
                walkers = [_step(rng, a, plan.movement, ground_h, ground_w) for a in walkers]
                scene = ground.copy()
                paint_animals(scene, walkers, config, rng)
                scene = np.clip(scene, 0, 255).astype(np.uint8)
                ground_xy = np.array([(a.col, a.row) for a in walkers], np.float64).reshape(-1, 2)
            image = warp(
                scene, to_frame.inverse, output_shape=(plan.height, plan.width), order=1, preserve_range=True
            )
            image = np.clip(image * rng.uniform(1 - plan.exposure, 1 + plan.exposure), 0, 255).astype(
                np.uint8
            )
            xy = to_frame(ground_xy) if len(ground_xy) else ground_xy
            inside = (xy[:, 0] >= 0) & (xy[:, 0] < plan.width) & (xy[:, 1] >= 0) & (xy[:, 1] < plan.height)
            seen = [(float(xy[n, 0]), float(xy[n, 1]), classes[n], n) for n in np.flatnonzero(inside)]
            frames.append((image, seen))
    return frames


def _step(rng: np.random.Generator, a: Animal, movement: float, height: int, width: int) -> Animal:
    """The animal after one step of up to ``movement`` body lengths, kept on the ground."""
    heading = rng.uniform(0, 2 * np.pi)
    reach = rng.uniform(0, movement) * a.length
    row = float(np.clip(a.row + reach * np.sin(heading), 0, height - 1))
    col = float(np.clip(a.col + reach * np.cos(heading), 0, width - 1))
    return dataclasses.replace(a, row=row, col=col, angle=a.angle + rng.uniform(-0.3, 0.3))


def write_flight(
    out: str | Path,
    truth: str | Path,
    plan: FlightPlan,
    config: Config,
    *,
    seed: int = 0,
    density: float = 10.0,
) -> list[str]:
    """Write a flight (see the module); returns the frame ids in order."""
    out, truth = Path(out), Path(truth)
    frames = fly(np.random.default_rng(seed), plan, config, density=density)
    names = config.class_names
    ids, rows, frames_of = [], [], {}
    for n, (image, seen) in enumerate(frames):
        frame = f"f{n:03d}"
        ids.append(frame)
        write_bytes_atomic(out / "Flight" / f"{frame}.jpg", encode_jpeg(image, 92))
        for x, y, k, animal in seen:
            rows.append([frame, names[k], round(x, 2), round(y, 2), animal])
            frames_of.setdefault(animal, [names[k], 0])[1] += 1

    def table(header: list[str], body: list[list]) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body)
        return buffer.getvalue()

    write_text_atomic(
        out / "flight_order.csv", table(["test_id", "order"], [[f, n] for n, f in enumerate(ids)])
    )
    write_text_atomic(truth / "flight.csv", table(["test_id", "class", "x", "y", "animal_id"], rows))
    write_text_atomic(
        truth / "flight_animals.csv",
        table(["animal_id", "class", "frames"], [[a, *v] for a, v in sorted(frames_of.items())]),
    )
    return ids
