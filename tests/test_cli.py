"""The command line (herdcount.cli), training's settings and the pictures (herdcount.plots), in process."""

from __future__ import annotations

import argparse
import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from herdcount import cli, plots
from herdcount.count import CountJob
from herdcount.models.settings import check_settings, parse_args
from herdcount.options import add_options, from_args, option

ROOT = Path(__file__).resolve().parents[1]


def test_reference_in_docs_is_what_the_parsers_say():
    # docs/cli.md is generated (make docs): a help text changed without it fails here.
    assert (ROOT / "docs" / "cli.md").read_text() == cli.reference()


def test_every_verb_has_help_naming_the_command_not_a_script():
    for verb in cli.VERBS:
        text = cli.verb_help(verb)
        assert text.startswith(f"usage: herdcount {verb} "), verb
        for stale in ("models/train.py", "python -m", "python models/"):
            assert stale not in text, f"herdcount {verb} --help names {stale!r}"


def test_verb_help_wraps_at_the_columns_asked():
    narrow, wide = cli.verb_help("count", columns=60), cli.verb_help("count", columns=140)
    assert max(map(len, narrow.splitlines())) <= 60
    assert max(map(len, wide.splitlines())) > 60
    assert len(narrow.splitlines()) > len(wide.splitlines())


def test_verb_help_rejects_an_unknown_verb():
    with pytest.raises(ValueError, match="'countt'"):
        cli.verb_help("countt")


def test_main_answers_help_and_refuses_unknown_verbs(capsys):
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {verb} " in listed for verb in cli.VERBS)
    assert cli.main([]) == 2
    assert cli.main(["countt"]) == 2
    assert "unknown verb 'countt'" in capsys.readouterr().err


def test_a_bad_option_is_exit_2_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["count", "--model", "RUN", "--out", "OUT", "--tile", "many"])
    assert stop.value.code == 2
    assert "--tile" in capsys.readouterr().err


def test_training_settings_resolve_each_kinds_defaults():
    density = parse_args(["--kind", "density", "--extract", "E", "--data", "D", "--out", "R"])
    classifier = parse_args(["--kind", "classifier", "--extract", "E", "--data", "D", "--out", "R"])
    assert (density.epochs, density.learning_rate) == (30, 1e-3)
    assert (classifier.epochs, classifier.learning_rate) == (15, 5e-4)
    assert density.density.width == 16 and density.density.head == "joint"
    wide = parse_args(["--kind", "density", "--extract", "E", "--out", "R", "--width", "40", "--data", "D"])
    assert wide.density.width == 40 and wide.epochs == 30


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--width", "0"], "--width must be positive, got 0"),
        (["--val-photos-per-epoch", "0"], "--val-photos-per-epoch must be positive, got 0"),
        (["--input-scale", "1.5"], "--input-scale must be in [0, 1]"),
        (["--weight-average", "1"], "--weight-average must be in [0, 1), got 1.0"),
        (["--tile-size", "100"], "--tile-size must be a multiple of 8 of at least 64, got 100"),
        (
            ["--min-scale", "1.2", "--max-scale", "0.8"],
            "need 0 < --min-scale <= --max-scale, got 1.2 and 0.8",
        ),
    ],
)
def test_settings_that_cannot_work_name_the_option_and_value(tmp_path, options, named):
    settings = parse_args(
        [
            "--kind",
            "density",
            "--extract",
            str(tmp_path),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "r"),
        ]
        + options
    )
    with pytest.raises(ValueError) as error:
        check_settings(settings)
    assert named in str(error.value)


def test_a_malformed_pair_is_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(["--kind", "scale", "--extract", "E", "--out", "R", "--zoom-range", "2"])
    assert stop.value.code == 2
    assert "expected LO,HI (two numbers), got '2'" in capsys.readouterr().err


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_curves_draw_one_panel_per_quantity_and_write_the_file(tmp_path):
    one = _png(plots.plot_curves({"loss": [3.0, 2.0, 1.5], "val_loss": [3.5, 2.5, 2.0]}))
    history = {"loss": [3.0, 2.0], "val_loss": [3.5, 2.5], "val_rmse": [2.0, 1.0], "val_rmse_pup": [3.0, 1.5]}
    path = tmp_path / "curves.png"
    data = plots.plot_curves(history, path)
    three = _png(data)
    assert path.read_bytes() == data
    # loss and rmse: two panels side by side, the per-class curve inside rmse's.
    assert 1.7 < three.width / one.width < 2.3
    assert abs(three.height - one.height) < 20


def test_confusion_matrix_grows_with_the_classes_and_shades_by_share():
    small = _png(plots.plot_confusion(np.array([[5, 0], [1, 4]]), ["a", "b"]))
    large = _png(plots.plot_confusion(np.eye(5, dtype=int) * 7, list("abcde")))
    assert large.width > small.width and large.height > small.height
    pixels = np.asarray(large.convert("RGB")).reshape(-1, 3)
    # A diagonal of whole rows is the darkest blue of the map: present, and mostly white elsewhere.
    dark = (pixels[:, 2] > 80) & (pixels[:, 0] < 40)
    assert dark.mean() > 0.05


def test_totals_draw_with_and_without_truth_or_intervals(tmp_path):
    names = ["bull", "cow", "pup"]
    plain = plots.plot_totals(np.array([10.0, 50, 90]), np.full(3, np.nan), np.full(3, np.nan), names)
    marked = plots.plot_totals(
        np.array([10.0, 50, 90]),
        np.array([8.0, 45, 80]),
        np.array([12.0, 55, 100]),
        names,
        np.array([9, 52, 95]),
    )
    assert _png(plain).size[0] > 100 and _png(plain).height == _png(marked).height
    # The truth's marks and the error bars are drawn: pixels differ, not only the metadata.
    a, b = (np.asarray(_png(x).convert("L")) for x in (plain, marked))
    w = min(a.shape[1], b.shape[1])
    assert (np.abs(a[:, :w].astype(int) - b[:, :w]) > 60).mean() > 0.001


@dataclasses.dataclass(frozen=True)
class _Knobs:
    name: str = option(help="a name")
    size: int = option(4, help="a size (default: %(default)s)")
    ratio: float = option(0.5, metavar="R", help="a ratio")
    loud: bool = option(False, help="a flag")
    kind: str = option("a", choices=["a", "b"], help="a choice")
    hidden: str = "not an option"


def test_options_are_declared_once_on_the_dataclass(capsys):
    parser = argparse.ArgumentParser(prog="knobs")
    add_options(parser, _Knobs)
    knobs = from_args(_Knobs, parser.parse_args(["--name", "x", "--size", "7", "--loud"]), hidden="given")
    assert knobs == _Knobs(name="x", size=7, ratio=0.5, loud=True, kind="a", hidden="given")
    assert "  --ratio R     a ratio" in parser.format_help() and "--hidden" not in parser.format_help()
    for bad in (["--size", "7"], ["--name", "x", "--size", "many"], ["--name", "x", "--kind", "c"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    assert "--name" in capsys.readouterr().err


@dataclasses.dataclass(frozen=True)
class _Pair:
    source: str | None = option(required=False, help="one of two sources")
    width: int = option(8, flag="--pair-width", help="width")
    colour: bool = option(True, flag="--no-colour", help="turn colour off")


@dataclasses.dataclass(frozen=True)
class _Second:
    width: int = option(5, flag="--second-width", help="its own width")
    colour: bool = option(False, help="not offered here")


def test_options_shared_by_two_settings_keep_apart_and_a_true_flag_turns_off():
    parser = argparse.ArgumentParser(prog="pairs")
    add_options(parser, _Pair)
    add_options(parser.add_argument_group("second"), _Second, prefix="second_", only=["width"])
    args = parser.parse_args(["--pair-width", "3", "--no-colour", "--second-width", "4"])
    assert from_args(_Pair, args) == _Pair(source=None, width=3, colour=False)
    assert from_args(_Second, args, prefix="second_", colour=True) == _Second(width=4, colour=True)
    assert "--colour" not in parser.format_help()
    assert from_args(_Pair, parser.parse_args([])) == _Pair(source=None, width=8, colour=True)

    @dataclasses.dataclass
    class _Wrong:
        on: bool = option(True, help="no way to turn it off")

    with pytest.raises(ValueError, match="'on' defaults to True"):
        add_options(argparse.ArgumentParser(), _Wrong)


@dataclasses.dataclass(frozen=True)
class _Listed:
    photo: str = option(flag="photo", help="a positional argument")
    run: tuple[str, ...] = option((), repeat=True, help="repeatable")


def test_a_positional_and_a_repeated_option_fill_their_fields():
    parser = argparse.ArgumentParser(prog="listed")
    add_options(parser, _Listed)
    assert from_args(_Listed, parser.parse_args(["p.jpg", "--run", "a", "--run", "b"])) == _Listed(
        "p.jpg", ("a", "b")
    )
    assert from_args(_Listed, parser.parse_args(["p.jpg"])) == _Listed("p.jpg", ())
    with pytest.raises(ValueError, match="positional option 'photo'"):
        add_options(argparse.ArgumentParser(), _Listed, prefix="x_")


def test_each_training_option_is_a_field_of_the_settings_it_sets():
    from herdcount.models.settings import DensitySettings, ScaleSettings, TrainSettings

    text = cli.verb_help("train", columns=200)
    for cls in (TrainSettings, DensitySettings, ScaleSettings):
        for f in dataclasses.fields(cls):
            if "option" in f.metadata:
                flag = f.metadata["option"]["flag"] or "--" + f.name.replace("_", "-")
                assert len(re.findall(rf"^\s+{flag}\s", text, flags=re.M)) == 1, flag
    given = parse_args(
        ["--kind", "scale", "--extract", "E", "--out", "R", "--scale-width", "4", "--width", "40"]
        + ["--zoom-range", "0.4,3", "--no-int8", "--init", "R0"]
    )
    assert (given.scale.width, given.density.width, given.scale.zoom_range) == (4, 40, (0.4, 3.0))
    assert (given.density.int8, given.init, given.data, given.scale.tile_size) == (False, "R0", None, 256)


def test_the_count_command_offers_each_option_of_the_job_once():
    text = cli.verb_help("count", columns=200)
    for f in dataclasses.fields(CountJob):
        if "option" in f.metadata:
            flag = "--" + f.name.replace("_", "-")
            assert len(re.findall(rf"^\s+{flag}\b", text, flags=re.M)) == 1, flag


def test_clean_thresholds_that_cannot_work_are_exit_2_naming_the_option(tmp_path, capsys):
    from herdcount.commands import clean

    code = clean.main(
        ["--manifest", str(tmp_path), "--out", str(tmp_path / "o"), "--near-duplicate-bits", "40"]
    )
    assert code == 2
    assert "--near-duplicate-bits must be in 0..31, got 40" in capsys.readouterr().err
