"""Command-line options declared once, on the settings dataclass that uses them.

A field made with :func:`option` carries its help text (and flag, type, metavar, choices);
:func:`add_options` builds the parser's arguments from those fields, with their defaults,
and :func:`from_args` makes the dataclass from the parsed namespace. So an option's name,
default and help live in one place, the job takes its settings as they are, and the CLI
reference (``herdcount.cli.reference``) is generated from the same fields.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Collection
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    *,
    help: str,
    type: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    choices: list[Any] | None = None,
    flag: str | None = None,
    required: bool | None = None,
    repeat: bool = False,
    const: Any = None,
) -> Any:
    """A dataclass field that is also a command-line option.

    Parameters
    ----------
    default : optional
        The field's default; without one the option is required.
    help : str
        The option's help text (argparse's ``%(default)s`` works).
    type : callable, optional
        argparse's ``type``; by default the default's own type (int, float, str). A bool
        field is a flag (``store_true``).
    metavar, choices : optional
        As argparse has them.
    flag : str, optional
        The option's name where it is not ``--`` and the field's name with dashes. A bool
        field that defaults to True needs one (``--no-...``): the flag turns it off.
    required : bool, optional
        Whether the command line must give it; by default, whether the field has no
        default. ``False`` on a field without a default: the option defaults to None, and
        the settings' own check decides (one of two sources given, say).
    repeat : bool, optional
        The option may be given several times; the field holds a tuple of the values (its
        default should be ``()``).

    const : optional
        The value of the option given without one (argparse's ``nargs="?"``).

    A ``flag`` without leading dashes is a positional argument.
    """
    meta = {"help": help, "type": type, "metavar": metavar, "choices": choices, "flag": flag}
    meta["required"] = default is _MISSING if required is None else required
    meta["repeat"], meta["const"] = repeat, const
    return dataclasses.field(default=default, metadata={"option": meta})


def _flag(f: dataclasses.Field) -> str:
    return f.metadata["option"]["flag"] or "--" + f.name.replace("_", "-")


def option_names(cls: type) -> list[str]:
    """The names of ``cls``'s :func:`option` fields, in declared order (to split them into
    help groups with ``add_options(..., only=...)``)."""
    return [f.name for f in dataclasses.fields(cls) if "option" in f.metadata]


def add_options(
    parser: argparse.ArgumentParser | Any, cls: type, *, prefix: str = "", only: Collection[str] | None = None
) -> None:
    """Add an argument to ``parser`` (or an argument group) for each :func:`option` field of
    ``cls``, in the order the fields are declared. ``prefix`` goes before each field's name
    in the parsed namespace, where two settings classes of one command share field names;
    ``only`` names the fields to add, where the help shows them in several groups."""
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("option")
        if meta is None or (only is not None and f.name not in only):
            continue
        flag = _flag(f)
        kwargs: dict[str, Any] = {"help": meta["help"]}
        if not flag.startswith("-"):
            # argparse names a positional argument's value by its flag.
            if prefix or flag != f.name:
                raise ValueError(f"positional option {f.name!r} must be named as its field, without a prefix")
        else:
            kwargs["dest"] = prefix + f.name
            if meta["repeat"]:
                kwargs["action"], kwargs["default"] = "append", None
            elif meta["required"]:
                kwargs["required"] = True
            else:
                kwargs["default"] = None if f.default is _MISSING else f.default
        if isinstance(f.default, bool):
            if f.default and not meta["flag"]:
                raise ValueError(f"option {f.name!r} defaults to True: give it a flag that turns it off")
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            kind = meta["type"] or (type(f.default) if isinstance(f.default, (int, float)) else None)
            if kind is not None:
                kwargs["type"] = kind
            for key in ("metavar", "choices", "const"):
                if meta[key] is not None:
                    kwargs[key] = meta[key]
            if meta["const"] is not None:
                kwargs["nargs"] = "?"
        parser.add_argument(_flag(f), **kwargs)


def from_args(cls: type[T], args: argparse.Namespace, *, prefix: str = "", **values: Any) -> T:
    """``cls`` made from the parsed options of its :func:`option` fields (named with
    ``prefix`` in ``args``, as :func:`add_options` put them), and ``values`` for the fields
    the command line does not give as they are."""
    given = {
        f.name: _value(f, getattr(args, prefix + f.name))
        for f in dataclasses.fields(cls)
        if "option" in f.metadata and f.name not in values
    }
    return cls(**given, **values)


def _value(f: dataclasses.Field, parsed: Any) -> Any:
    if f.metadata["option"]["repeat"]:
        return tuple(parsed or ())
    return parsed
