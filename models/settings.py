"""The settings of a training run and its command line, without TensorFlow.

``herdcount train --help`` and a bad option answer at once: the trainer
(:mod:`herdcount.models.train`) imports TensorFlow, which takes seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass

from herdcount import storage
from herdcount.annotated import labelled_run
from herdcount.kinds import KINDS, kind_of
from herdcount.options import add_options, from_args, option, option_names

#: The density model's output heads (see :func:`herdcount.models.builders.make_density_model`).
HEADS = ("joint", "split")
#: Which epoch's weights a run keeps (``--keep``).
KEEPS = ("best", "last")

_DESCRIPTION = """Train a patch classifier or a density count model from an extract job's output.

    herdcount train --kind density --extract OUT --data DATA --out RUN [--epochs N] [--seed S]
    herdcount train --kind classifier --extract OUT --data DATA --out RUN

A plain Keras 3 / TensorFlow program on one machine (not a Spark job); it uses a GPU
when TensorFlow sees one. RUN receives model.keras, model.json, history.csv, curves.png,
validation pictures and run.json. With MLFLOW_TRACKING_URI set, the run is also logged
to MLflow (pip install herdcount[tracking]). A default of 0 means the kind's default."""


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and every option's default."""


@dataclass(frozen=True)
class DensitySettings:
    """What only the density model's training uses: its size, its sampler and targets."""

    tile_size: int = option(256, help="training tile side in pixels")
    steps_per_epoch: int = option(200, help="batches per epoch")
    #: Share of tiles placed at random rather than on dots of a sampled class.
    empty_share: float = option(0.5, help="share of tiles placed at random")
    #: Narrow: animals' sizes tell classes apart, and a survey flown at another altitude is
    #: brought back to this one by ``count --scale``.
    min_scale: float = option(0.85, help="smallest resize of training tiles")
    max_scale: float = option(1.15, help="largest resize of training tiles")
    scale_sigma: float = option(
        0.25, help="spread of the log of the resize factor (0: uniform over the range)"
    )
    sigma: float = option(1.0, help="Gaussian of each dot, in output cells")
    count_weight: float = option(1.0, help="weight of the tile count loss")
    centre_weight: float = option(
        0.0,
        help="weight of a second head's loss, trained beside the density map to mark each animal's "
        "centre cell (focal loss on a heatmap); it teaches the shared layers where each animal is, "
        "and the exported model keeps the density map only (0: no such head)",
    )
    class_balance: float = option(
        0.5,
        help="exponent of the inverse share of a class's dots weighing its loss (0: off, 1: dots weigh alike)",
    )
    width: int = option(16, help="channels of the model at 1/4 resolution")
    depth: int = option(4, help="convolutions at 1/8 resolution")
    head: str = option(
        "joint",
        choices=list(HEADS),
        help="output: a density map per class (joint), or one map of animals times each cell's class "
        "shares (split: classes compete for each animal)",
    )
    inference_tile: int = option(1024, help="tile of whole-photo validation")
    val_photos_per_epoch: int = option(
        16, help="held-out photos counted after each epoch (a fixed sample; all of them at the end)"
    )
    #: Polyak averaging, once per step.
    weight_average: float = option(
        0.0, help="momentum of the running average of the weights validated and kept (0: the last weights)"
    )
    input_scale: float = option(
        0.0,
        help="resize factor the model works at (0: shrink until the longest class, as the extract measured "
        "its boxes, spans half the receptive field; 1 where no sizes were measured)",
    )
    int8: bool = option(
        True,
        flag="--no-int8",
        help="export no int8 model (by default one is written and checked against float on the held-out "
        "photos; count --precision auto uses it where the check passed)",
    )

    def check(self) -> None:
        """Reject settings that cannot work.

        Raises
        ------
        ValueError
            Naming the option and its value.
        """
        for name in ("steps_per_epoch", "width", "depth", "val_photos_per_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.tile_size % 8 or self.tile_size < 64:
            raise ValueError(f"--tile-size must be a multiple of 8 of at least 64, got {self.tile_size}")
        if self.inference_tile % 8 or self.inference_tile < 8:
            raise ValueError(f"--inference-tile must be a positive multiple of 8, got {self.inference_tile}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(
                f"need 0 < --min-scale <= --max-scale, got {self.min_scale} and {self.max_scale}"
            )
        if self.head not in HEADS:
            raise ValueError(f"--head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if not 0 <= self.input_scale <= 1:
            raise ValueError(
                f"--input-scale must be in [0, 1] (0: from the animals' sizes), got {self.input_scale}"
            )
        if not 0 <= self.weight_average < 1:
            raise ValueError(f"--weight-average must be in [0, 1), got {self.weight_average}")
        if not 0 <= self.class_balance <= 1:
            raise ValueError(f"--class-balance must be in [0, 1], got {self.class_balance}")
        if self.centre_weight < 0:
            raise ValueError(f"--centre-weight must be >= 0, got {self.centre_weight}")
        if not 0 <= self.empty_share <= 1:
            raise ValueError(f"--empty-share must be in [0, 1], got {self.empty_share}")


def _pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from None
    return low, high


@dataclass(frozen=True)
class ScaleSettings:
    """What only the scale model's training uses (see :mod:`herdcount.scale`)."""

    tile_size: int = option(256, flag="--scale-tile", metavar="SCALE_TILE", help="tile side in pixels")
    steps_per_epoch: int = option(100, flag="--scale-steps", metavar="SCALE_STEPS", help="batches per epoch")
    width: int = option(8, flag="--scale-width", help="channels of the first stage")
    #: The altitudes it can tell apart.
    zoom_range: tuple[float, float] = option(
        (0.5, 2.0),
        type=_pair,
        metavar="LO,HI",
        help="ground scales the tiles are shown at (1: the training photos' altitude)",
    )

    def check(self) -> None:
        """Reject settings that cannot work.

        Raises
        ------
        ValueError
            Naming the option and its value.
        """
        if self.tile_size < 32:
            raise ValueError(f"--scale-tile must be at least 32, got {self.tile_size}")
        if self.steps_per_epoch < 1 or self.width < 1:
            raise ValueError(
                f"--scale-steps and --scale-width must be positive, got {self.steps_per_epoch}, {self.width}"
            )
        low, high = self.zoom_range
        if not 0 < low < 1 < high:
            raise ValueError(f"--zoom-range must hold 1 inside it, got {low},{high}")


@dataclass(frozen=True)
class TrainSettings:
    """Everything a training run was asked to do; saved in run.json.

    The options of every kind are fields here; those of one kind are a settings object of
    their own (:class:`DensitySettings`), which a classifier run ignores. The fields are the
    command line (:func:`parse_args`), grouped as the help shows them.
    """

    kind: str = option(choices=list(KINDS), help="what to train")
    extract: str | None = option(
        required=False,
        metavar="OUT",
        help="output folder of herdcount extract (or give --annotations: extracted into RUN/extract)",
    )
    data: str | None = option(
        required=False,
        metavar="DATA",
        help="dataset root (dotted pairs) or images folder (annotations) OUT came from (default: as the "
        "extract run recorded it)",
    )
    out: str = option(metavar="RUN", help="folder for the model and its reports")
    scheme: str | None = option(
        None,
        help="class scheme: a YAML file or a packaged scheme (default: the one the extract run recorded)",
    )
    epochs: int = option(0, help="most epochs (default 30 density, 15 classifier)")
    seed: int = option(0, help="seed of the split, the sampling and the weights")
    batch_size: int = option(0, help="default 16 tiles or 64 patches")
    learning_rate: float = option(0.0, help="Adam's (default 1e-3 density, 5e-4 classifier)")
    val_fraction: float = option(0.2, help="share of photos held out")
    split: str = option(
        "group",
        choices=["group", "photo"],
        help="hold out whole groups (source photos, as the extract recorded them) or photos one by one",
    )
    #: As many as the density model's epochs by default: its held-out RMSE swings between
    #: epochs, and runs stopped after 6 counted fresh surveys worse (docs/results.md).
    patience: int = option(30, help="epochs without improvement before stopping")
    keep: str = option(
        "best",
        choices=list(KEEPS),
        help="weights kept: the epoch's that scored the held-out sample best, or the last epoch's "
        "(the end of the learning-rate schedule, whatever a small sample says of earlier epochs)",
    )
    threads: int = option(0, help="TensorFlow threads (default: every usable core)")
    overwrite: bool = option(False, help="replace a finished run in RUN")
    windows: str | None = option(
        None,
        help="windows to stream (a herdcount windows output; default EXTRACT/windows, else cut into RUN/windows)",
    )
    init: str | None = option(
        None,
        metavar="RUN",
        help="start from RUN's weights (a finished run of the same kind and size): every layer copied, the "
        "output columns of classes both have copied and the others fresh",
    )
    init_rate: float = option(0.1, help="share of the learning rate the copied layers train at")
    annotations: str | None = option(
        None,
        metavar="FILE",
        help="train on an annotation file over the images of --data (e.g. herdcount review --export's "
        "corrections.csv) instead of an extract: extracted into RUN/extract first",
    )
    classes: str | None = option(
        None,
        metavar="FILE",
        help="class order of --annotations: a classes CSV (name,id) or a name a line (default: the --init "
        "run's, else the file's)",
    )
    density: DensitySettings = DensitySettings()
    scale: ScaleSettings = ScaleSettings()

    def params(self) -> dict[str, object]:
        """Flat ``name: value`` pairs for a tracker; a density or scale run's own ones as
        ``density.name`` or ``scale.name``."""
        # The fields that hold one kind's own settings are named after their kind.
        own = {f.name for f in dataclasses.fields(self) if dataclasses.is_dataclass(f.default)}
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in own}
        if self.kind in own:
            flat.update(
                {f"{self.kind}.{k}": v for k, v in dataclasses.asdict(getattr(self, self.kind)).items()}
            )
        return flat

    def resolved(self) -> TrainSettings:
        """The settings with each kind's defaults filled in."""
        kind = kind_of(self.kind)
        return dataclasses.replace(
            self,
            epochs=self.epochs or kind.default_epochs,
            batch_size=self.batch_size or kind.default_batch_size,
            learning_rate=self.learning_rate or kind.default_learning_rate,
            threads=self.threads or len(os.sched_getaffinity(0)),
        )


def parse_args(argv: list[str] | None = None) -> TrainSettings:
    """The settings of ``herdcount train ARGS``; the options are the settings' fields."""
    p = argparse.ArgumentParser(prog="herdcount train", description=_DESCRIPTION, formatter_class=_Formatter)
    names = option_names(TrainSettings)
    transfer = names.index("init")
    add_options(p, TrainSettings, only=names[:transfer])
    add_options(
        p.add_argument_group("transfer (a survey with few annotated photos)"),
        TrainSettings,
        only=names[transfer:],
    )
    add_options(p.add_argument_group("density model"), DensitySettings)
    add_options(
        p.add_argument_group("scale model (--kind scale, for herdcount count --scale auto)"),
        ScaleSettings,
        prefix="scale_",
    )
    args = p.parse_args(argv)
    settings = from_args(
        TrainSettings,
        args,
        density=from_args(DensitySettings, args),
        scale=from_args(ScaleSettings, args, prefix="scale_"),
    )
    return settings.resolved()


def check_sources(s: TrainSettings) -> None:
    """Reject a run without its one source of labels: an extract, or an annotation file."""
    if bool(s.extract) == bool(s.annotations):
        raise ValueError("give either --extract OUT or --annotations FILE (with --data, the images' folder)")
    if s.annotations and not s.data:
        raise ValueError("--annotations needs --data DIR: the folder of the annotated images")
    if s.classes and not s.annotations:
        raise ValueError("--classes orders the classes of --annotations; give --annotations FILE")


def check_settings(s: TrainSettings) -> None:
    """Reject settings that cannot work, before anything is read."""
    if kind_of(s.kind).trains_on_photos and not s.data:
        raise ValueError(
            f"--kind {s.kind} needs --data DATA (no extract run.json records it): it trains on the photos themselves"
        )
    for name in ("epochs", "batch_size", "patience"):
        if getattr(s, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(s, name)}")
    if s.keep not in KEEPS:
        raise ValueError(f"--keep must be best or last, got {s.keep!r}")
    s.density.check()
    s.scale.check()
    if not 0 < s.init_rate <= 1:
        raise ValueError(f"--init-rate must be in (0, 1], got {s.init_rate}")
    if s.init and kind_of(s.kind).output_layer is None:
        startable = " and ".join(k.name for k in KINDS.values() if k.output_layer)
        raise ValueError(f"--init works for {startable} runs, not --kind {s.kind}")
    if not s.overwrite and any(
        storage.exists(storage.join(s.out, name)) for name in ("model.keras", "model.json")
    ):
        raise ValueError(
            f"RUN {s.out!r} already holds a trained model; choose another --out or pass --overwrite"
        )
    for path in (s.extract, s.data, s.out, s.scheme, s.windows):
        if path:
            storage.check_bucket(path)
    if s.data and not labelled_run(s.extract) and not storage.is_dir(storage.join(s.data, "Train")):
        raise ValueError(
            f"DATA {s.data!r} has no Train/ folder; expected the dataset root OUT was extracted from"
        )
