"""The kinds of model herdcount trains and counts with: one class per kind, and the only
place a kind is named.

A kind says what its model.json needs, which LiteRT exports the count job's executors run,
how a photo is counted with it and drawn in the report, and which module trains it
(imported only by ``herdcount train``, since it imports TensorFlow). Code elsewhere asks a
kind what it can do (:attr:`ModelKind.counts_animals`, :attr:`ModelKind.counts_rasters`, ...)
instead of comparing names. Adding a kind is a class here and its trainer module.

No TensorFlow here: the functions take the loaded model's ``predict`` callables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from herdcount.config import Config
    from herdcount.locate import Points
    from herdcount.predictors import LoadedModel


class ModelKind:
    """What every kind answers; the defaults are those of a model that counts no animals."""

    #: The kind's name in model.json and on the command line.
    name: ClassVar[str] = ""
    #: model.json fields (besides kind and class_names) that counting with it needs.
    needs: ClassVar[tuple[str, ...]] = ()
    #: LiteRT files training exports beside model.keras.
    exports: ClassVar[tuple[str, ...]] = ("model.tflite",)
    #: Whether the count job counts animals with it (else it is a helper, as the scale model).
    counts_animals: ClassVar[bool] = False
    #: Whether georeferenced rasters can be counted with it, chunk by chunk.
    counts_rasters: ClassVar[bool] = False
    #: Whether ``count --stride`` applies: the model also has a fully convolutional form
    #: (``maps.tflite``) that scores patches at any stride.
    takes_stride: ClassVar[bool] = False
    #: Whether training reads the photos themselves (``--data``), not thumbnails alone.
    trains_on_photos: ClassVar[bool] = True
    #: The output layer ``train --init`` leaves out when the classes differ; None: no --init.
    output_layer: ClassVar[str | None] = None
    #: Training defaults where the command line leaves 0.
    default_epochs: ClassVar[int] = 30
    default_batch_size: ClassVar[int] = 32
    default_learning_rate: ClassVar[float] = 1e-3
    #: The module with ``prepare``, ``train`` and ``summary`` (imports TensorFlow).
    trainer: ClassVar[str] = ""

    def class_names(self, config: Config) -> list[str]:
        """The outputs a model of this kind trained with ``config`` has, in order."""
        return list(config.class_names)

    def check_stride(self, run: Any, stride: int | None) -> int | None:
        """``count --stride`` checked against ``run`` (a :class:`herdcount.modelrun.ModelRun`).

        Raises
        ------
        ValueError
            If a stride is given to a kind that takes none.
        """
        if stride is not None:
            raise ValueError(f"--stride is for classifier models; {self.name} models count every pixel")
        return None

    def count_image(
        self,
        image: np.ndarray,
        model: LoadedModel,
        *,
        num_classes: int,
        tile: int,
        batch_size: int,
        stride: int | None,
    ) -> tuple[np.ndarray, Points]:
        """Unrounded counts per animal class in one decoded photo, and a point per counted animal."""
        raise ValueError(f"a {self.name} model counts no animals")

    def overlay(
        self, image: np.ndarray, model: LoadedModel, config: Config
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """The report's view of the model on a photo: RGB and alpha per cell, and the cell's side."""
        raise ValueError(f"a {self.name} model has no overlay")


def rounded(counts: np.ndarray) -> np.ndarray:
    """Counts as submission.csv has them, from the 4 decimals photos/<id>.json keeps: the
    points of a photo agree with its row."""
    return np.rint(np.maximum(np.round(counts, 4), 0)).astype(np.int64)


class DensityKind(ModelKind):
    """A fully convolutional density model: one map per class whose sum is the count."""

    name = "density"
    needs = ("output_stride", "margin")
    counts_animals = True
    counts_rasters = True
    output_layer = "density_x100"
    default_batch_size = 16
    trainer = "herdcount.models.train_density"

    def count_image(self, image, model, *, num_classes, tile, batch_size, stride):
        """The sum of each class map over the whole photo, computed in tiles of ``tile``
        pixels with the model's margin (:func:`herdcount.tiling.density_map`); points from the
        map's peaks, as many per class as the rounded count
        (:func:`herdcount.locate.density_points`)."""
        from herdcount.locate import density_points
        from herdcount.tiling import density_map

        step, margin = model.run.output_stride, model.run.margin
        tile = max(step, tile // step * step)
        density = density_map(
            image, model.predict, stride=step, tile=tile, margin=margin, batch_size=batch_size
        )
        counts = density.sum(axis=(0, 1), dtype=np.float64)
        return counts, density_points(density, stride=step, counts=rounded(counts))

    def overlay(self, image, model, config):
        """The summed density map: warmer is more animals."""
        from herdcount.tiling import density_map

        step = model.run.output_stride
        heat = density_map(image, model.predict, stride=step, tile=1024, margin=model.run.margin).sum(axis=-1)
        heat = np.clip(heat / max(float(heat.max()), 1e-6), 0, 1)
        colour = np.stack([heat * 255, heat * 64, np.zeros_like(heat)], axis=-1)
        return colour, 0.75 * heat[..., None], step


class ClassifierKind(ModelKind):
    """A patch classifier: each patch's class, the background class last."""

    name = "classifier"
    needs = ("patch_size",)
    exports = ("model.tflite", "maps.tflite")
    counts_animals = True
    takes_stride = True
    trains_on_photos = False
    output_layer = "classes"
    default_epochs = 15
    default_batch_size = 64
    default_learning_rate = 5e-4
    trainer = "herdcount.models.train_classifier"

    def class_names(self, config):
        return [*config.class_names, config.background_class]

    def check_stride(self, run, stride):
        """The patch stride: the patch size, or a multiple of 8 below it (8 is the
        classifier's native stride: three 2x2 poolings).

        Raises
        ------
        ValueError
            If the stride is neither.
        """
        patch = run.patch_size
        stride = patch if stride is None else stride
        if stride != patch and not (0 < stride < patch and stride % 8 == 0):
            raise ValueError(
                f"stride must be {patch} (the patch size) or a multiple of 8 below it, got {stride}"
            )
        return stride

    def count_image(self, image, model, *, num_classes, tile, batch_size, stride):
        """Patches per class (:func:`herdcount.tiling.class_counts`): at the patch stride the
        seed's non-overlapping tiles, below it every patch from the fully convolutional
        form; points at the centres of patches won by an animal class
        (:func:`herdcount.locate.patch_points`)."""
        from herdcount.locate import patch_points
        from herdcount.tiling import class_counts, patch_scores, tile_scores

        patch = model.run.patch_size
        stride = stride or patch
        if stride == patch:
            scores = tile_scores(image, model.predict, patch=patch, batch_size=256)
        else:
            scores = patch_scores(
                image,
                model.predict_maps,
                patch=patch,
                stride=stride,
                step=model.map_stride,
                tile=tile,
                batch_size=batch_size,
            )
        counts = class_counts(scores, num_classes, weight=(stride / patch) ** 2)
        points = patch_points(
            scores, num_classes, patch=patch, stride=stride, counts=rounded(counts), shape=image.shape[:2]
        )
        return counts, points

    def overlay(self, image, model, config):
        """Each tile in the colour of its winning class; background tiles clear."""
        from herdcount.tiling import tile_scores

        patch = model.run.patch_size
        winners = tile_scores(image, model.predict, patch=patch).argmax(axis=-1)
        palette = np.array([*config.colours, (0, 0, 0)], float)
        return palette[winners], np.where(winners < len(config.classes), 0.45, 0.0)[..., None], patch


class ScaleKind(ModelKind):
    """A scale model: reads a photo's ground scale for ``count --scale auto``."""

    name = "scale"
    needs = ("tile_size",)
    trainer = "herdcount.models.train_scale"


#: Every kind by name, in the order the command line lists them.
KINDS: dict[str, ModelKind] = {k.name: k for k in (ClassifierKind(), DensityKind(), ScaleKind())}
DENSITY, CLASSIFIER, SCALE = KINDS["density"], KINDS["classifier"], KINDS["scale"]


def kind_of(name: Any, *, where: str = "") -> ModelKind:
    """The kind called ``name``.

    Raises
    ------
    ValueError
        Naming the unknown kind (and ``where`` it was read, if given).
    """
    if isinstance(name, str) and name in KINDS:
        return KINDS[name]
    prefix = f"{where}: " if where else ""
    raise ValueError(f"{prefix}kind {name!r} is not one of {list(KINDS)}")
