"""One typed configuration object, loaded once at a job's entry point.

The class scheme (names in submission column order, dot colours, body sizes) and the
extraction settings live in one YAML file such as ``conf/sealions.yaml``. Loading is
strict: an unknown key anywhere stops the run with a message naming the key, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from herdcount import storage

RGB = tuple[int, int, int]

#: The sea lion scheme shipped with the package (the checkout's conf/, as herdcount.conf).
DEFAULT_SCHEME = "sealions"


def packaged_dir() -> str | None:
    """The folder of herdcount.conf on disk, or None when the package is imported from a zip."""
    folder = resources.files("herdcount.conf")
    return str(folder) if isinstance(folder, Path) and folder.is_dir() else None


def packaged_text(name: str) -> str | None:
    """The text of a file shipped in herdcount.conf (``sealions.yaml``), or None if there is
    none. Read as a resource, so it works from an installed package and from a zip."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        return None
    resource = resources.files("herdcount.conf") / name
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


#: Class colours of pictures where a scheme has no dot colours (Tableau's first six).
PALETTE: tuple[RGB, ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
)


@dataclass(frozen=True)
class ClassSpec:
    """One animal class: its name, the colour of its dots (None where labels come from
    annotation files, not dotted copies) and its typical body length in pixels (measured
    from annotated boxes, or given; the synthetic survey generator draws from it) and body
    colour."""

    name: str
    dot_rgb: RGB | None = None
    length_px: tuple[int, int] = (40, 60)
    body_rgb: RGB = (120, 100, 85)


@dataclass(frozen=True)
class DotParams:
    """Knobs of :func:`herdcount.dots.find_dots`; see its docstring.

    ``dot_radius``, ``diff_threshold`` and ``pixel_threshold`` may be ``auto`` (None):
    measured in each pair, the default, rather than assumed.
    """

    diff_threshold: int | None = None
    pixel_threshold: int | None = None
    colour_tolerance: float = 60.0
    min_coverage: float = 0.45
    dot_radius: float | None = None
    black_level: int = 30
    block: int = 8

    def __post_init__(self) -> None:
        for name, kind in (("diff_threshold", int), ("pixel_threshold", int), ("dot_radius", float)):
            value = getattr(self, name)
            if value == "auto" or value is None:
                object.__setattr__(self, name, None)
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"dots.{name} must be 'auto' or a positive number, got {value!r}")
            elif kind is int and value != int(value):
                raise ValueError(f"dots.{name} must be 'auto' or a positive integer, got {value!r}")
            else:
                object.__setattr__(self, name, kind(value))


@dataclass(frozen=True)
class Config:
    """The resolved configuration of a run: the class scheme and extraction settings."""

    classes: tuple[ClassSpec, ...]
    annotation_key: str = "sea-lions"
    background_class: str = "background"
    thumbnail_size: int = 64
    offsets: tuple[int, ...] = (-1, 0, 1)
    backgrounds_per_photo: int = 20
    background_min_distance: int = 40
    jpeg_quality: int = 95
    seed: int = 0
    dots: DotParams = field(default_factory=DotParams)

    def __post_init__(self) -> None:
        names = [c.name for c in self.classes]
        if not names:
            raise ValueError("the scheme names no classes; expected a list under 'classes'")
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {names}")
        for name in [*names, self.background_class]:
            if not name or "-" in name or "/" in name:
                raise ValueError(f"class name {name!r} must be non-empty without '-' or '/'")
        if self.background_class in names:
            raise ValueError(f"background_class {self.background_class!r} is also an animal class")
        for c in self.classes:
            for what in ("dot_rgb", "body_rgb"):
                rgb = getattr(c, what)
                if rgb is None and what == "dot_rgb":
                    continue
                if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                    raise ValueError(f"{c.name}.{what} must be three values in 0..255, got {rgb}")
        if self.thumbnail_size < 8:
            raise ValueError(f"thumbnail_size must be at least 8, got {self.thumbnail_size}")
        if not self.offsets:
            raise ValueError("offsets must name at least one shift, e.g. [0]")
        if self.backgrounds_per_photo < 0:
            raise ValueError(f"backgrounds_per_photo must be >= 0, got {self.backgrounds_per_photo}")

    @property
    def class_names(self) -> list[str]:
        """Class names in submission column order."""
        return [c.name for c in self.classes]

    @property
    def colours(self) -> list[RGB]:
        """A colour per class for pictures: its dots' colour, else one of a fixed palette."""
        return [c.dot_rgb or PALETTE[k % len(PALETTE)] for k, c in enumerate(self.classes)]

    @property
    def dot_colours(self) -> list[RGB]:
        """Dot colours, in the order of :attr:`class_names`."""
        return [c.dot_rgb for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data, as written to run.json."""
        return dataclasses.asdict(self)


def load_config(path: str | Path, **overrides: Any) -> Config:
    """Read a scheme YAML file into a :class:`Config`, rejecting unknown keys.

    Parameters
    ----------
    path : str or Path
        The YAML file, e.g. ``conf/sealions.yaml``, an ``s3://`` URI, or the name of a scheme
        shipped with the package (``sealions``).
    **overrides
        Top-level keys that replace those of the file (e.g. ``seed=3``).

    Raises
    ------
    ValueError
        If the file is missing, is not a mapping, names an unknown key or holds a bad value.
    """
    text = packaged_text(f"{path}.yaml") if isinstance(path, str) and "/" not in path else None
    if text is None:
        if not storage.exists(path):
            raise ValueError(
                f"scheme file {str(path)!r} does not exist (nor is it a packaged scheme: sealions)"
            )
        text = storage.read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    data.update(overrides)
    try:
        return config_from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def resolve_scheme(given: str | Path | None, recorded: dict[str, Any] | None, source: str) -> Config:
    """The scheme a stage runs with: the one the data it reads was made with, or ``given``.

    A scheme is given once (to synth or extract) and flows with the data: each output
    records the scheme it was made with, and the next stage reads it from there.

    Parameters
    ----------
    given : str, Path or None
        ``--scheme`` as typed (a file or a packaged scheme's name), or None.
    recorded : dict or None
        The scheme recorded by the stage before (as in run.json or DATA/scheme.yaml).
    source : str
        What recorded it, for messages (``"DATA/scheme.yaml"``, ``"the extract run OUT"``).

    Raises
    ------
    ValueError
        If ``given`` contradicts ``recorded`` (other classes, colours or annotation key).
    """
    known = config_from_dict(recorded) if recorded is not None else None
    if given is None:
        return known if known is not None else load_config(DEFAULT_SCHEME)
    config = load_config(given)
    if known is not None and _identity(config) != _identity(known):
        raise ValueError(
            f"--scheme {str(given)!r} has classes {config.class_names} (dots {config.dot_colours}), but "
            f"{source} was made with {known.class_names} (dots {known.dot_colours}); leave --scheme out "
            "to use the recorded scheme"
        )
    return config


def _identity(config: Config) -> tuple:
    """What must agree between stages: classes, their dot colours and the annotation key."""
    return (
        tuple(config.class_names),
        tuple(None if c is None else tuple(c) for c in config.dot_colours),
        config.annotation_key,
        config.background_class,
    )


def scheme_yaml(config: Config) -> str:
    """The configuration as scheme YAML (what synth writes to DATA/scheme.yaml)."""
    return yaml.safe_dump(json.loads(json.dumps(config.to_dict())), sort_keys=False)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from plain data (as read from YAML or run.json)."""
    return _build(Config, data, "")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'configuration'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown key {where}{unknown[0]!r}; known keys here are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, f"{where}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{where or 'configuration'}: {exc}") from exc


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (typing.Union, types.UnionType):
        # Optional tuples (a class's dot colour) are read as tuples; other unions (``auto``
        # or a number) are checked by their dataclass.
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or len(args) != 1 or typing.get_origin(args[0]) is not tuple:
            return value
        return _coerce(args[0], value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    return value
