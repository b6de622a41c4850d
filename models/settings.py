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

#: The density model's output heads (see :func:`herdcount.models.builders.make_density_model`).
HEADS = ("joint", "split")

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

    #: Side in pixels of the training tiles, and batches of them per epoch.
    tile_size: int = 256
    steps_per_epoch: int = 200
    #: Share of tiles placed at random rather than on dots of a sampled class.
    empty_share: float = 0.5
    #: Resize range of the training tiles, and the spread of the log of the factor
    #: (0: uniform over the range). Narrow: animals' sizes tell classes apart, and a
    #: survey flown at another altitude is brought back to this one by ``count --scale``.
    min_scale: float = 0.85
    max_scale: float = 1.15
    scale_sigma: float = 0.25
    #: Gaussian of each dot in output cells, and the weight of the tile count loss.
    sigma: float = 1.0
    count_weight: float = 1.0
    #: Exponent of the inverse share of each class's dots in the training photos that
    #: weighs its error in the loss (0: every class alike; 1: each class's dots weigh alike).
    class_balance: float = 0.5
    #: Channels at 1/4 resolution and convolutions at 1/8, and the output head (``joint``:
    #: a map per class; ``split``: animals of any class times class shares).
    width: int = 16
    depth: int = 4
    head: str = "joint"
    #: Tile of the whole-photo validation, and at most how many held-out photos are counted
    #: after each epoch (all of them at the end).
    inference_tile: int = 1024
    val_photos_per_epoch: int = 16
    #: Momentum of the running average of the weights that validation counts with and the
    #: run keeps (Polyak averaging, once per step); 0: the last step's weights.
    weight_average: float = 0.0
    #: Resize factor the model works at (photos shrunk by it in training and counting);
    #: 0: from the animals' measured sizes (see :func:`herdcount.scale.working_scale`).
    input_scale: float = 0.0
    #: Also export the model in int8 and check it against float on the held-out photos.
    int8: bool = True

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
        if not 0 <= self.empty_share <= 1:
            raise ValueError(f"--empty-share must be in [0, 1], got {self.empty_share}")


@dataclass(frozen=True)
class ScaleSettings:
    """What only the scale model's training uses (see :mod:`herdcount.scale`)."""

    #: Side of its tiles, and batches of them per epoch.
    tile_size: int = 256
    steps_per_epoch: int = 100
    #: Ground scales its tiles are shown at: the altitudes it can tell apart.
    min_zoom: float = 0.5
    max_zoom: float = 2.0
    #: Channels of its first stage.
    width: int = 8

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
        if not 0 < self.min_zoom < 1 < self.max_zoom:
            raise ValueError(f"--zoom-range must hold 1 inside it, got {self.min_zoom},{self.max_zoom}")


@dataclass(frozen=True)
class TrainSettings:
    """Everything a training run was asked to do; saved in run.json.

    The options of every kind are fields here; those of one kind are a settings object of
    their own (:class:`DensitySettings`), which a classifier run ignores.
    """

    kind: str
    extract: str
    data: str | None
    out: str
    #: None: the scheme the extract run recorded.
    scheme: str | None = None
    epochs: int = 0  # 0: the kind's default
    seed: int = 0
    batch_size: int = 0  # 0: the kind's default
    learning_rate: float = 0.0  # 0: the kind's default
    val_fraction: float = 0.2
    #: ``group``: hold out whole groups (source photos, flights) where the extract recorded
    #: them; ``photo``: photos one by one.
    split: str = "group"
    #: Epochs without improvement before stopping. As many as the density model's epochs by
    #: default: its held-out RMSE swings between epochs, and runs stopped after 6 counted fresh
    #: surveys worse (README, "Model size and training seeds").
    patience: int = 30
    threads: int = 0  # 0: every core this process may use
    overwrite: bool = False
    #: The windows training streams (a folder of herdcount windows); by default
    #: EXTRACT/windows, else cut from DATA into RUN/windows first.
    windows: str | None = None
    #: A finished run of the same kind to start from (transfer), and the share of the
    #: learning rate its copied layers train at.
    init: str | None = None
    init_rate: float = 0.1
    #: An annotation file over the images of ``data`` (``--extract`` left out): extracted
    #: into RUN/extract first, its classes ordered by ``classes`` (a file), else the init
    #: run's, else the file's own.
    annotations: str | None = None
    classes: str | None = None
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
    defaults, density, scale = TrainSettings("", "", None, ""), DensitySettings(), ScaleSettings()
    p = argparse.ArgumentParser(prog="herdcount train", description=_DESCRIPTION, formatter_class=_Formatter)
    p.add_argument("--kind", required=True, choices=list(KINDS), help="what to train")
    p.add_argument(
        "--extract",
        metavar="OUT",
        help="output folder of herdcount extract (or give --annotations: extracted into RUN/extract)",
    )
    p.add_argument(
        "--data",
        metavar="DATA",
        help="dataset root (dotted pairs) or images folder (annotations) OUT came from (default: as the "
        "extract run recorded it)",
    )
    p.add_argument("--out", required=True, metavar="RUN", help="folder for the model and its reports")
    p.add_argument(
        "--scheme",
        default=None,
        help="class scheme: a YAML file or a packaged scheme (default: the one the extract run recorded)",
    )
    p.add_argument("--epochs", type=int, default=0, help="most epochs (default 30 density, 15 classifier)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the sampling and the weights")
    p.add_argument("--batch-size", type=int, default=0, help="default 16 tiles or 64 patches")
    p.add_argument(
        "--learning-rate", type=float, default=0.0, help="Adam's (default 1e-3 density, 5e-4 classifier)"
    )
    p.add_argument(
        "--val-fraction", type=float, default=defaults.val_fraction, help="share of photos held out"
    )
    p.add_argument(
        "--split",
        choices=("group", "photo"),
        default=defaults.split,
        help="hold out whole groups (source photos, as the extract recorded them) or photos one by one",
    )
    p.add_argument(
        "--patience", type=int, default=defaults.patience, help="epochs without improvement before stopping"
    )
    p.add_argument("--threads", type=int, default=0, help="TensorFlow threads (default: every usable core)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in RUN")
    p.add_argument(
        "--windows",
        default=None,
        help="windows to stream (a herdcount windows output; default EXTRACT/windows, else cut into RUN/windows)",
    )
    g = p.add_argument_group("transfer (a survey with few annotated photos)")
    g.add_argument(
        "--init",
        metavar="RUN",
        help="start from RUN's weights (a finished run of the same kind and size): every layer copied, the "
        "output columns of classes both have copied and the others fresh",
    )
    g.add_argument(
        "--init-rate",
        type=float,
        default=defaults.init_rate,
        help="share of the learning rate the copied layers train at",
    )
    g.add_argument(
        "--annotations",
        metavar="FILE",
        help="train on an annotation file over the images of --data (e.g. herdcount review --export's "
        "corrections.csv) instead of an extract: extracted into RUN/extract first",
    )
    g.add_argument(
        "--classes",
        metavar="FILE",
        help="class order of --annotations: a classes CSV (name,id) or a name a line (default: the --init "
        "run's, else the file's)",
    )
    g = p.add_argument_group("density model")
    g.add_argument("--tile-size", type=int, default=density.tile_size, help="training tile side in pixels")
    g.add_argument("--steps-per-epoch", type=int, default=density.steps_per_epoch, help="batches per epoch")
    g.add_argument(
        "--empty-share", type=float, default=density.empty_share, help="share of tiles placed at random"
    )
    g.add_argument(
        "--min-scale", type=float, default=density.min_scale, help="smallest resize of training tiles"
    )
    g.add_argument(
        "--max-scale", type=float, default=density.max_scale, help="largest resize of training tiles"
    )
    g.add_argument("--sigma", type=float, default=density.sigma, help="Gaussian of each dot, in output cells")
    g.add_argument("--width", type=int, default=density.width, help="channels of the model at 1/4 resolution")
    g.add_argument("--depth", type=int, default=density.depth, help="convolutions at 1/8 resolution")
    g.add_argument(
        "--head",
        choices=HEADS,
        default=density.head,
        help="output: a density map per class (joint), or one map of animals times each cell's class "
        "shares (split: classes compete for each animal)",
    )
    g.add_argument(
        "--count-weight", type=float, default=density.count_weight, help="weight of the tile count loss"
    )
    g.add_argument(
        "--class-balance",
        type=float,
        default=density.class_balance,
        help="exponent of the inverse share of a class's dots weighing its loss (0: off, 1: dots weigh alike)",
    )
    g.add_argument(
        "--scale-sigma",
        type=float,
        default=density.scale_sigma,
        help="spread of the log of the resize factor (0: uniform over the range)",
    )
    g.add_argument(
        "--inference-tile", type=int, default=density.inference_tile, help="tile of whole-photo validation"
    )
    g.add_argument(
        "--weight-average",
        type=float,
        default=density.weight_average,
        help="momentum of the running average of the weights validated and kept (0: the last weights)",
    )
    g.add_argument(
        "--input-scale",
        type=float,
        default=density.input_scale,
        help="resize factor the model works at (0: shrink until the longest class, as the extract measured "
        "its boxes, spans half the receptive field; 1 where no sizes were measured)",
    )
    g.add_argument(
        "--no-int8",
        dest="int8",
        action="store_false",
        help="export no int8 model (by default one is written and checked against float on the held-out "
        "photos; count --precision auto uses it where the check passed)",
    )
    g.add_argument(
        "--val-photos-per-epoch",
        type=int,
        default=density.val_photos_per_epoch,
        help="held-out photos counted after each epoch (a fixed sample; all of them at the end)",
    )
    g = p.add_argument_group("scale model (--kind scale, for herdcount count --scale auto)")
    g.add_argument("--scale-tile", type=int, default=scale.tile_size, help="tile side in pixels")
    g.add_argument("--scale-steps", type=int, default=scale.steps_per_epoch, help="batches per epoch")
    g.add_argument("--scale-width", type=int, default=scale.width, help="channels of the first stage")
    g.add_argument(
        "--zoom-range",
        type=_pair,
        default=(scale.min_zoom, scale.max_zoom),
        metavar="LO,HI",
        help="ground scales the tiles are shown at (1: the training photos' altitude)",
    )
    args = p.parse_args(argv)
    own = {f.name for f in dataclasses.fields(TrainSettings) if dataclasses.is_dataclass(f.default)}
    common = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSettings) if f.name not in own}
    kind = DensitySettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DensitySettings)})
    reader = ScaleSettings(
        tile_size=args.scale_tile,
        steps_per_epoch=args.scale_steps,
        min_zoom=args.zoom_range[0],
        max_zoom=args.zoom_range[1],
        width=args.scale_width,
    )
    return TrainSettings(**common, density=kind, scale=reader).resolved()


def _pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from None
    return low, high


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
