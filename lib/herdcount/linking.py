"""Sightings in overlapping frames joined into animals: each animal counted once.

Pure numpy/scipy. A *sighting* is one point of one frame (its ``(x, y)`` in the frame's
pixels and its class). For each registered pair of frames (:mod:`herdcount.register`) the
first frame's sightings are mapped into the second and matched one to one with its
sightings of the same class within a radius set by the animal's size
(:func:`match_pair`, the Hungarian matching of ``score --points``). The matches are then
joined into animals with a union-find (:func:`join_animals`) that never puts two sightings
of one frame into one animal: an animal is in a frame once. The animal's class is the
majority of its sightings'.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from herdcount.points import match_points
from herdcount.register import map_points

#: Matching radius, in pixels, of a class whose animals' size is unknown.
DEFAULT_RADIUS = 20.0


@dataclass(frozen=True)
class Sightings:
    """The sightings of one frame.

    Attributes
    ----------
    frame : str
        The frame's id.
    xy : (N, 2) float64 array
        Positions ``(x, y)`` in the frame's pixels.
    classes : (N,) array of str
        Each sighting's class.
    """

    frame: str
    xy: NDArray[np.float64]
    classes: NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.xy)


def sighting_radii(sightings: Sightings, radii: dict[str, float]) -> NDArray[np.float64]:
    """Each sighting's matching radius: its class's in ``radii``, else :data:`DEFAULT_RADIUS`."""
    return np.array([radii.get(str(c), DEFAULT_RADIUS) for c in sightings.classes], np.float64)


def match_pair(
    a: Sightings,
    b: Sightings,
    matrix: NDArray[np.float64],
    radii: dict[str, float],
    *,
    shape_b: tuple[int, int] | None = None,
) -> list[tuple[int, int, float]]:
    """Sightings of ``a`` and ``b`` that are one animal: ``(i in a, j in b, distance)``.

    ``a``'s sightings are mapped into ``b`` by ``matrix`` and matched one to one, class by
    class, within ``radii[class]`` pixels (of ``b``). With ``shape_b`` (``(rows, cols)``),
    sightings that map farther than their radius outside ``b`` are left unmatched at once.
    """
    if not len(a) or not len(b):
        return []
    mapped = map_points(matrix, a.xy)
    inside = np.ones(len(a), bool)
    if shape_b is not None:
        # An animal at b's edge may map a little outside it (the transform's error, its own
        # step): within its matching radius of the frame it may still be the one b sees.
        reach = sighting_radii(a, radii)
        inside = (mapped[:, 0] >= -reach) & (mapped[:, 0] <= shape_b[1] + reach)
        inside &= (mapped[:, 1] >= -reach) & (mapped[:, 1] <= shape_b[0] + reach)
    out = []
    for name in sorted(set(a.classes.tolist()) & set(b.classes.tolist())):
        ia = np.flatnonzero((a.classes == name) & inside)
        ib = np.flatnonzero(b.classes == name)
        if not len(ia) or not len(ib):
            continue
        # match_points takes (row, col); the distance is the same either way round.
        pairs = match_points(mapped[ia][:, ::-1], b.xy[ib][:, ::-1], radius=radii.get(name, DEFAULT_RADIUS))
        for i, j in pairs:
            out.append((int(ia[i]), int(ib[j]), float(np.hypot(*(mapped[ia[i]] - b.xy[ib[j]])))))
    return out


def join_animals(
    frames: list[Sightings], matches: list[tuple[int, int, int, int, float]]
) -> tuple[NDArray[np.int64], int]:
    """Animal ids for every sighting, from matches between frames.

    Parameters
    ----------
    frames : list of Sightings
        Every frame, in order; a sighting is ``(frame index, index in the frame)``.
    matches : list of (frame_a, i, frame_b, j, distance)
        Pairs of sightings judged one animal.

    Returns
    -------
    ids : (total sightings,) int64 array
        The animal of each sighting, frames concatenated in order; animals numbered from 0
        in order of their first sighting.
    refused : int
        Matches left out because they would have put two sightings of one frame in one
        animal (the closest matches are joined first).
    """
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])]).astype(int)
    total = int(offsets[-1])
    parent = np.arange(total)
    members: dict[int, set[int]] = {}  # root -> frames it holds a sighting of
    frame_of = np.repeat(np.arange(len(frames)), [len(f) for f in frames])

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = int(parent[n])
        return n

    refused = 0
    for fa, i, fb, j, _ in sorted(matches, key=lambda m: m[4]):
        ra, rb = root(int(offsets[fa] + i)), root(int(offsets[fb] + j))
        if ra == rb:
            continue
        seen_a = members.get(ra, {int(frame_of[ra])})
        seen_b = members.get(rb, {int(frame_of[rb])})
        if seen_a & seen_b:
            refused += 1
            continue
        parent[rb] = ra
        members[ra] = seen_a | seen_b
        members.pop(rb, None)
    roots = np.array([root(n) for n in range(total)], dtype=np.int64)
    _, first, ids = np.unique(roots, return_index=True, return_inverse=True)
    # Renumbered in order of first sighting.
    order = np.argsort(np.argsort(first))
    return order[ids].astype(np.int64), refused


def animal_classes(ids: NDArray[np.int64], classes: NDArray[np.str_]) -> list[str]:
    """Each animal's class: the most frequent among its sightings (ties: the first seen)."""
    votes: dict[int, Counter] = {}
    for animal, name in zip(ids.tolist(), classes.tolist()):
        votes.setdefault(animal, Counter())[name] += 1
    return [votes[a].most_common(1)[0][0] for a in range(len(votes))]
