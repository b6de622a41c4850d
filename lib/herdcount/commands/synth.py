"""``herdcount synth``: the command line of :mod:`herdcount.synth`."""

from __future__ import annotations

import argparse
import sys

from herdcount import synth as _library
from herdcount.cli import HelpFormatter
from herdcount.config import DEFAULT_SCHEME, load_config
from herdcount.synth import EXPORTS, write_survey
from herdcount.synth_flight import FlightPlan, write_flight
from herdcount.synth_scenes import AnnotationStyle


def main(argv: list[str] | None = None) -> int:
    """Command line: ``herdcount synth OUT --train N --test M --seed S``."""
    parser = argparse.ArgumentParser(
        prog="herdcount synth", description=_library.__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("out", help="dataset root to write (Kaggle layout)")
    parser.add_argument("--train", type=int, default=8, help="training pairs (default 8)")
    parser.add_argument("--test", type=int, default=4, help="test photos (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--width", type=int, help="photo width; default: Kaggle's 4992 or 5616")
    parser.add_argument("--height", type=int, help="photo height; default: Kaggle's 3328 or 3744")
    parser.add_argument("--density", type=float, default=10.0, help="animals per megapixel (default 10)")
    parser.add_argument("--mismatched", type=int, help="mismatched pairs (default: one in 12)")
    parser.add_argument(
        "--scheme",
        default=DEFAULT_SCHEME,
        help="class scheme: a YAML file or a packaged scheme (default: %(default)s)",
    )
    default = AnnotationStyle()
    parser.add_argument(
        "--test-scale",
        type=_range(float),
        metavar="S|LO,HI",
        help="ground scale of each test photo against the training photos, log-uniform per photo "
        "(0.5: flown twice as high; default 1)",
    )
    parser.add_argument(
        "--realism",
        type=int,
        choices=(0, 1),
        default=0,
        help="1: scenes of rock with cracks, wet patches, sand and surf, animals with heads and "
        "flippers, wet or dry, one sun per photo, gulls, kelp and pup-sized rocks (default 0)",
    )
    parser.add_argument(
        "--mosaic",
        nargs="?",
        const="ground",
        choices=("ground", "laid"),
        help="also write the test photos as one georeferenced orthomosaic, OUT/Mosaic/survey.tif (a tiled "
        "GeoTIFF in UTM 10N, 3 cm pixels), its truth in map coordinates in <out>_truth/mosaic_points.csv: "
        "'ground' (the default) cuts the photos from one continuous stretch of ground, 'laid' lays "
        "independent scenes edge to edge",
    )
    parser.add_argument(
        "--export",
        action="append",
        default=[],
        choices=sorted(EXPORTS),
        help="also write the training photos' animals as an annotation file of this format in "
        "OUT/annotations (repeatable), for herdcount extract --images OUT/Train --annotations FILE",
    )
    flight = parser.add_argument_group("a survey flight of overlapping frames (for herdcount unique)")
    flight.add_argument(
        "--flight",
        type=_grid,
        metavar="LINESxFRAMES",
        help="also fly serpentine lines over one continuous ground: OUT/Flight/<id>.jpg, "
        "OUT/flight_order.csv, and the sightings with their animals in the truth's flight.csv",
    )
    flight.add_argument(
        "--overlap",
        type=_range(float),
        default=(0.6, 0.3),
        metavar="FORWARD,SIDE",
        help="overlap of consecutive frames and of neighbouring lines (default 0.6,0.3)",
    )
    flight.add_argument(
        "--rotation", type=float, default=5.0, help="largest rotation of a frame, degrees (default 5)"
    )
    flight.add_argument(
        "--movement",
        type=float,
        default=0.0,
        help="largest step of an animal between frames, in body lengths (default 0: they keep still)",
    )
    style = parser.add_argument_group("annotation style (how the annotators drew, how photos were saved)")
    style.add_argument(
        "--dot-radius",
        type=_range(float),
        default=default.radius,
        metavar="R|LO,HI",
        help=f"dot radius in px, drawn per dot (default {default.radius[0]},{default.radius[1]})",
    )
    style.add_argument(
        "--dot-drift",
        type=int,
        default=default.drift,
        metavar="N",
        help=f"per-dot colour drift, +-N per channel (default {default.drift})",
    )
    style.add_argument(
        "--jpeg-quality",
        type=_range(int),
        default=default.quality,
        metavar="Q|LO,HI",
        help=f"JPEG quality, drawn per copy (default {default.quality[0]},{default.quality[1]})",
    )
    style.add_argument(
        "--dark-share",
        type=float,
        default=default.dark_share,
        metavar="P",
        help="share of dark (wet or shadowed) animals (default 0)",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.scheme)
        look = AnnotationStyle(args.dot_radius, args.dot_drift, args.jpeg_quality, args.dark_share)
        truth = write_survey(
            args.out,
            n_train=args.train,
            n_test=args.test,
            seed=args.seed,
            config=config,
            width=args.width,
            height=args.height,
            density=args.density,
            n_mismatched=args.mismatched,
            style=look,
            test_scale=args.test_scale,
            realism=args.realism,
            mosaic=args.mosaic,
            export=tuple(args.export),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.flight:
        lines, frames = args.flight
        try:
            plan = FlightPlan(
                lines,
                frames,
                forward=args.overlap[0],
                side=args.overlap[1],
                height=args.height or 1100,
                width=args.width or 1600,
                rotation=args.rotation,
                movement=args.movement,
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        ids = write_flight(args.out, truth, plan, config, seed=args.seed, density=args.density)
        print(f"flight of {len(ids)} frames written to {args.out}/Flight")
    print(f"survey written to {args.out}; ground truth in {truth}")
    return 0


def _range(kind: type):
    """argparse type of ``V`` (a range of one value) or ``LO,HI``."""

    def parse(text: str) -> tuple:
        parts = [kind(p) for p in text.split(",")]
        if len(parts) == 1:
            parts *= 2
        if len(parts) != 2 or parts[0] > parts[1]:
            raise argparse.ArgumentTypeError(f"expected V or LO,HI with LO <= HI, got {text!r}")
        return tuple(parts)

    return parse


def _grid(text: str) -> tuple[int, int]:
    try:
        lines, frames = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LINESxFRAMES such as 2x5, got {text!r}") from None
    return lines, frames


if __name__ == "__main__":
    sys.exit(main())
