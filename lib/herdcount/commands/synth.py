"""``herdcount synth``: the command line of :mod:`herdcount.synth`."""

from __future__ import annotations

import argparse
import sys

from herdcount import synth as _library
from herdcount.cli import HelpFormatter
from herdcount.config import load_config
from herdcount.options import add_options, from_args, option_names
from herdcount.synth import SynthSettings, write_survey
from herdcount.synth_flight import FlightPlan, write_flight
from herdcount.synth_scenes import AnnotationStyle

#: The options of SynthSettings from this one on go in the flight's group of the help.
_FLIGHT = "flight"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``herdcount synth OUT --train N --test M --seed S``."""
    parser = argparse.ArgumentParser(
        prog="herdcount synth", description=_library.__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    names = option_names(SynthSettings)
    flight = names.index(_FLIGHT)
    add_options(parser, SynthSettings, only=names[:flight])
    add_options(
        parser.add_argument_group("a survey flight of overlapping frames (for herdcount unique)"),
        SynthSettings,
        only=names[flight:],
    )
    add_options(
        parser.add_argument_group("annotation style (how the annotators drew, how photos were saved)"),
        AnnotationStyle,
    )
    args = parser.parse_args(argv)
    settings = from_args(SynthSettings, args)
    try:
        config = load_config(settings.scheme)
        truth = write_survey(
            settings.out,
            n_train=settings.train,
            n_test=settings.test,
            seed=settings.seed,
            config=config,
            width=settings.width,
            height=settings.height,
            density=settings.density,
            n_mismatched=settings.mismatched,
            style=from_args(AnnotationStyle, args),
            test_scale=settings.test_scale,
            realism=settings.realism,
            mosaic=settings.mosaic,
            export=settings.export,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.flight:
        lines, frames = settings.flight
        try:
            plan = FlightPlan(
                lines,
                frames,
                forward=settings.overlap[0],
                side=settings.overlap[1],
                height=settings.height or 1100,
                width=settings.width or 1600,
                rotation=settings.rotation,
                movement=settings.movement,
                perspective=settings.perspective,
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        ids = write_flight(settings.out, truth, plan, config, seed=settings.seed, density=settings.density)
        print(f"flight of {len(ids)} frames written to {settings.out}/Flight")
    print(f"survey written to {settings.out}; ground truth in {truth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
