"""Keras model builders: the seed patch classifier and the fully convolutional density model.

Both are Functional models of built-in layers only, so ``model.keras`` loads anywhere
(the count job's executors included) without this module.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from herdcount import storage
from herdcount.kinds import CLASSIFIER, DENSITY, SCALE
from herdcount.modelrun import MODEL_KERAS, VERSION, ModelRun
from herdcount.models.settings import HEADS
from herdcount.predictors import tflite_files


def make_classifier_model(
    input_shape: tuple[int, int, int] = (64, 64, 3), num_classes: int = 6, *, dropout_rate: float = 0.5
) -> keras.Model:
    """The seed's patch classifier: three conv blocks, two dense layers, softmax.

    Parameters
    ----------
    input_shape : tuple, optional
        ``(height, width, 3)`` of the uint8 RGB patches.
    num_classes : int, optional
        The animal classes and the background class.
    dropout_rate : float, optional
        Dropout after each of the two dense layers.

    Returns
    -------
    keras.Model
        Uncompiled; outputs class probabilities ``(N, num_classes)``.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    inputs = keras.Input(shape=input_shape, name="patch")
    # A Rescaling layer, not a Lambda: it serialises as configuration, not as code.
    x = layers.Rescaling(1 / 255, offset=-0.5, name="rescale")(inputs)
    for n, filters in enumerate((32, 64, 128), start=1):
        x = layers.Conv2D(filters, 3, activation="relu", name=f"conv{n}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{n}")(x)
    x = layers.Flatten(name="flatten")(x)
    for n in (1, 2):
        x = layers.Dense(512, activation="relu", name=f"dense{n}")(x)
        x = layers.Dropout(dropout_rate, name=f"dropout{n}")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="patch_classifier")


def make_density_model(
    num_classes: int,
    *,
    width: int = 16,
    depth: int = 4,
    output_activation: str = "relu",
    head: str = "joint",
) -> keras.Model:
    """A fully convolutional density model of output stride 8: RGB tile to one map per class.

    The stem is a 4x4 convolution of stride 4, a 3x3 one, and a 2x2 one of stride 2 (so
    output cell ``(i, j)`` covers input pixels ``8i..8i+7, 8j..8j+7``, with no padding
    offsets), followed by ``depth`` 3x3 convolutions at 1/8 resolution with growing
    dilation, which give a receptive field (144 px at the defaults) larger than the
    biggest animals at little cost: about 1.6 GFLOP per megapixel at the defaults. Each
    convolution is batch-normalised. With the default ReLU output, empty ground sums to
    exactly zero over a whole photo.

    Parameters
    ----------
    num_classes : int
        Density maps to output, one per animal class.
    width : int, optional
        Channels at 1/4 resolution; twice as many at 1/8.
    depth : int, optional
        Convolutions at 1/8 resolution.
    output_activation : str, optional
        Of the output layer; ReLU gives exact zeros over empty ground.
    head : str, optional
        ``joint``: one density map per class. ``split``: one density map of animals of any
        class times each cell's class shares (a softmax): every animal teaches the count,
        and classes that differ mostly by size compete for each animal instead of each
        class map learning alone where its animals are.

    Returns
    -------
    keras.Model
        Uncompiled; input ``(N, H, W, 3)`` uint8 with H and W multiples of 8, output
        ``(N, H / 8, W / 8, num_classes)`` of densities (animals per cell).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be positive, got width={width}, depth={depth}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    inputs = keras.Input(shape=(None, None, 3), name="tile")
    x = layers.Rescaling(1 / 255, offset=-0.5, name="rescale")(inputs)
    x = _conv_bn_relu(x, layers.Conv2D(width, 4, strides=4, use_bias=False, name="stem4"))
    x = _conv_bn_relu(x, layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv4"))
    x = _conv_bn_relu(x, layers.Conv2D(2 * width, 2, strides=2, use_bias=False, name="stem8"))
    for n in range(depth):
        dilation = 2 ** (n % 3) if n < depth - 1 else 1
        x = _conv_bn_relu(
            x,
            layers.Conv2D(
                2 * width, 3, padding="same", dilation_rate=dilation, use_bias=False, name=f"conv8_{n + 1}"
            ),
        )
    if head == "split":
        x = _split_head(x, num_classes, output_activation)
    else:
        x = _density_head(x, num_classes, output_activation, "density")
    # Densities peak near 0.15 per cell; the layers work on 100 times that, where weights
    # and gradients are of order one, and this layer brings the output back to counts.
    outputs = layers.Rescaling(0.01, name="density")(x)
    return keras.Model(inputs, outputs, name="density_counter")


def with_centre_head(density_model: keras.Model) -> keras.Model:
    """The density model with a second head for training: per class, the chance that each
    output cell holds an animal's centre (a sigmoid heatmap, as CenterNet's).

    The head reads the features the density head reads and is trained beside it
    (:class:`DensityLoss` with ``centre_weight``): the shared layers must then tell where
    each animal is, not only how much density a region holds. The returned model shares
    every layer with ``density_model``, so training it trains that one, which is what is
    saved and exported (counting never runs the head).

    Returns
    -------
    keras.Model
        Output ``(N, H / 8, W / 8, 2 * num_classes)``: the density maps, then the heatmaps.
    """
    head = (
        "animals_x100" if "animals_x100" in {layer.name for layer in density_model.layers} else "density_x100"
    )
    features = density_model.get_layer(head).input
    classes = density_model.output.shape[-1]
    # A start near 0.01: nearly every cell is background, and a start at 0.5 spends the
    # first steps pulling all of them down (CenterNet's prior).
    centres = layers.Conv2D(
        classes, 1, activation="sigmoid", bias_initializer=keras.initializers.Constant(-4.6), name="centres"
    )(features)
    outputs = layers.Concatenate(name="density_and_centres")([density_model.output, centres])
    return keras.Model(density_model.input, outputs, name="density_with_centres")


def _density_head(x, channels: int, activation: str, name: str):
    # A positive start keeps every class's output alive while the count loss first pulls
    # the empty ground down; a ReLU channel that is dark everywhere never learns again.
    relu = activation == "relu"
    x = layers.Conv2D(
        channels,
        1,
        activation=None if relu else activation,
        bias_initializer=keras.initializers.Constant(0.5),
        name=f"{name}_x100",
    )(x)
    if relu:
        # One bad step can still push a class's channel below zero everywhere (a rare class,
        # seen in few batches, lost for good at epoch 2 of a 30-epoch run): in training the
        # gradient keeps a small slope below zero, so the loss can bring it back.
        x = RecoverableReLU(name=f"{name}_relu")(x)
    return x


def _split_head(x, num_classes: int, activation: str):
    animals = _density_head(x, 1, activation, "animals")
    shares = layers.Conv2D(num_classes, 1, name="class_logits")(x)
    shares = layers.Softmax(axis=-1, name="class_shares")(shares)
    return layers.Multiply(name="density_x100")([animals, shares])


@keras.saving.register_keras_serializable(package="herdcount")
class RecoverableReLU(layers.Layer):
    """A ReLU whose gradient, in training, keeps ``slope`` below zero, so that a channel
    pushed below zero everywhere still learns where the loss wants it higher.

    The values are the ReLU's in training too (the gradient alone is leaky, as a
    straight-through estimator's): a leaky output would let negative cells cancel positive
    ones in a tile's count during training, which inference then clips, counting high.

    Parameters
    ----------
    slope : float, optional
        Gradient below zero in training.
    """

    def __init__(self, slope: float = 0.05, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 < slope < 1:
            raise ValueError(f"slope must be in (0, 1), got {slope}")
        self.slope = slope

    def call(self, inputs, training=None):
        relu = keras.ops.relu(inputs)
        if not training:
            return relu
        below = keras.ops.minimum(inputs, 0.0)
        # Zero in value, ``slope`` in gradient below zero.
        return relu + self.slope * (below - keras.ops.stop_gradient(below))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "slope": self.slope}


def _conv_bn_relu(x, conv: layers.Layer):
    # Batch normalisation keeps the small network trainable from scratch at a high rate.
    # Momentum 0.9, not 0.99: a short run must leave moving statistics that match the data.
    x = layers.BatchNormalization(momentum=0.9, name=f"{conv.name}_bn")(conv(x))
    return layers.ReLU(name=f"{conv.name}_relu")(x)


def _walk(model: keras.Model):
    """Each layer of a Functional model in order, with the output stride and receptive field
    (pixels) of its output; where several inputs meet (a head that multiplies two maps), the
    widest field. Strides of meeting inputs must agree."""
    seen: dict[int, tuple[int, int]] = {}
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            seen[id(layer.output)] = (1, 1)
            continue
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        known = [seen[id(t)] for t in inputs if id(t) in seen]
        if not known:
            raise ValueError(f"layer {layer.name!r} of model {model.name!r} has no input from the model")
        strides = {k[0] for k in known}
        if len(strides) > 1:
            raise ValueError(f"layer {layer.name!r} joins maps of strides {sorted(strides)}")
        stride, field = strides.pop(), max(k[1] for k in known)
        if isinstance(layer, (layers.Conv2D, layers.SeparableConv2D, layers.MaxPooling2D)):
            kernel = layer.pool_size[0] if isinstance(layer, layers.MaxPooling2D) else layer.kernel_size[0]
            dilation = getattr(layer, "dilation_rate", (1,))[0]
            field += (kernel - 1) * dilation * stride
            stride *= layer.strides[0]
        seen[id(layer.output)] = (stride, field)
        yield layer, stride, field


def geometry(model: keras.Model) -> dict[str, int]:
    """``output_stride`` and ``receptive_field`` (pixels) of a fully convolutional model."""
    # The last layer's output is the model's.
    steps = list(_walk(model))
    _, stride, field = steps[-1] if steps else (None, 1, 1)
    return {"output_stride": stride, "receptive_field": field}


def flops_per_megapixel(model: keras.Model) -> float:
    """Multiply-adds times two per million input pixels of a fully convolutional model.

    Counts convolutions only (biases and activations are a rounding error).
    """
    total = 0.0
    for layer, stride, _ in _walk(model):
        if isinstance(layer, layers.Dense):
            raise ValueError(
                f"layer {layer.name!r} is Dense: FLOPs per megapixel need a fully convolutional model"
            )
        if isinstance(layer, (layers.Conv2D, layers.SeparableConv2D)):
            cells = 1e6 / stride**2
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            if isinstance(layer, layers.SeparableConv2D):
                total += 2 * cells * (kh * kw * cin + cin * layer.filters)
            else:
                total += 2 * cells * kh * kw * cin * layer.filters
    return total


def describe_density_model(model: keras.Model) -> dict[str, float]:
    """What counting needs to know of a density model: ``output_stride``,
    ``receptive_field``, the tiling ``margin`` (half the receptive field, rounded up to
    the stride, so every kept output cell sees its whole field) and ``flops_per_megapixel``."""
    geo = geometry(model)
    stride = geo["output_stride"]
    margin = math.ceil(geo["receptive_field"] / 2 / stride) * stride
    return {**geo, "margin": margin, "flops_per_megapixel": flops_per_megapixel(model)}


def inference_model(model: keras.Model) -> keras.Model:
    """``model`` with every :class:`RecoverableReLU` replaced by Keras's own ReLU of the same
    name, sharing its weights: the same values at inference, and built-in layers only, so
    the saved model loads without herdcount's code (the training-time gradient is all that
    differs). A model without such layers is returned as it is."""
    if not any(isinstance(layer, RecoverableReLU) for layer in model.layers):
        return model

    def plain(layer: layers.Layer) -> layers.Layer:
        if isinstance(layer, RecoverableReLU):
            return layers.ReLU(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=plain)
    copy.set_weights(model.get_weights())
    return copy


def save_model_run(run: str | Path, model: keras.Model, description: ModelRun | dict[str, Any]) -> ModelRun:
    """Write ``model.keras``, the LiteRT exports of its kind for the count job's executors
    (``herdcount.predictors.tflite_files``) and then ``model.json`` into RUN, each
    atomically; model.json last, as the mark of a finished run that the count job looks for.
    Both are of the :func:`inference_model`, so model.keras loads without herdcount's code.

    ``description`` is the run's :class:`~herdcount.modelrun.ModelRun`, or model.json's
    content as a dict (checked the same way). Returns the run as written.

    Raises
    ------
    ValueError
        If the description is not a complete model's (see ``ModelRun.from_description``).
    """
    if isinstance(description, ModelRun):
        description = description.description()
    described = ModelRun.from_description(str(run), {**description, "version": VERSION})
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    temp = run / f".model-{os.getpid()}.keras"
    model = inference_model(model)
    model.save(temp)
    os.replace(temp, run / MODEL_KERAS)
    files, extra = tflite_files(model, described.model_kind)
    for name, data in files.items():
        storage.write_bytes_atomic(run / name, data)
    described = described.replace(**extra)
    described.write()
    return described


@keras.saving.register_keras_serializable(package="herdcount")
class DensityLoss(keras.losses.Loss):
    """Masked pixel error of density maps plus the absolute error of each tile's counts.

    ``y_true`` holds the target maps and, as its last channel, the loss weight of each
    cell (0 over masked areas, whose animals were never dotted). The count term is
    absolute, not squared, so that a faint false density over empty ground (which a whole
    photo sums over tens of thousands of cells) is pushed to zero as firmly as a strong one.

    With ``centre_weight`` (a model of :func:`with_centre_head`), ``y_pred`` holds the
    heatmaps after the density maps and ``y_true`` their targets (:func:`centre_target`)
    after the density targets, before the weight; the heatmaps add CenterNet's focal loss
    (each centre cell pulled to 1, every other cell to 0 with less force near a centre),
    summed over the unmasked cells and divided by the tile's centres.

    Parameters
    ----------
    count_weight : float, optional
        Weight of the count term; 0 leaves the pixel term only.
    pixel_scale : float, optional
        Factor applied to densities before squaring their error.
    class_weights : sequence of float or None, optional
        Factor of each class's error (both terms); None: 1 for every class.
    centre_weight : float, optional
        Weight of the heatmaps' focal loss; 0: the model has no heatmaps.
    """

    def __init__(
        self,
        count_weight: float = 1.0,
        pixel_scale: float = 100.0,
        class_weights: list[float] | None = None,
        centre_weight: float = 0.0,
        name: str = "density_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.count_weight = count_weight
        self.pixel_scale = pixel_scale
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.centre_weight = float(centre_weight)

    def call(self, y_true, y_pred):
        weight = y_true[..., -1:]
        if self.centre_weight:
            classes = y_pred.shape[-1] // 2
            focal = centre_focal_loss(y_true[..., classes:-1], y_pred[..., classes:], weight)
            y_true, y_pred = y_true[..., :classes], y_pred[..., :classes]
        else:
            y_true = y_true[..., :-1]
        error = (y_pred - y_true) * weight
        if self.class_weights is not None:
            error = error * keras.ops.convert_to_tensor(self.class_weights, dtype=error.dtype)
        pixel = keras.ops.mean(keras.ops.square(error * self.pixel_scale), axis=(1, 2, 3))
        counts = keras.ops.sum(error, axis=(1, 2))
        loss = pixel + self.count_weight * keras.ops.mean(keras.ops.abs(counts), axis=-1)
        return loss + self.centre_weight * focal if self.centre_weight else loss

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "count_weight": self.count_weight,
            "pixel_scale": self.pixel_scale,
            "class_weights": self.class_weights,
            "centre_weight": self.centre_weight,
        }


def centre_focal_loss(target, heat, weight):
    """CenterNet's focal loss of heatmaps per tile: ``target`` 1 at centre cells (and a
    Gaussian below 1 around them), ``heat`` the predicted chances, ``weight`` 0 over masked
    cells; summed over cells and classes, divided by the tile's centres (at least 1)."""
    heat = keras.ops.clip(heat, 1e-4, 1 - 1e-4)
    centre = keras.ops.cast(target >= 1.0, heat.dtype)
    found = -keras.ops.log(heat) * keras.ops.square(1 - heat) * centre
    # Cells near a centre are pushed down less: the heatmap may spread a little around it.
    missed = -keras.ops.log(1 - heat) * keras.ops.square(heat) * keras.ops.power(1 - target, 4) * (1 - centre)
    centres = keras.ops.maximum(keras.ops.sum(centre * weight, axis=(1, 2, 3)), 1.0)
    return keras.ops.sum((found + missed) * weight, axis=(1, 2, 3)) / centres


def make_scale_model(*, width: int = 8, depth: int = 5) -> keras.Model:
    """A model of a tile's ground scale: RGB tile to the log of its scale against the
    training photos and the logit of "an animal is in this tile".

    ``depth`` stages of a 3x3 convolution of stride 2 and a 3x3 one (channels ``width``,
    doubling to ``8 * width``), each batch-normalised, then the mean and the maximum of the
    last features over the tile (an animal's size shows wherever it lies), a dense layer
    and the two outputs. Five stages see 190 px: an adult sea lion's length at twice the
    training scale.

    Parameters
    ----------
    width : int, optional
        Channels of the first stage.
    depth : int, optional
        Stages of stride 2.

    Returns
    -------
    keras.Model
        Uncompiled; input ``(N, H, W, 3)`` uint8 tiles of any size, output ``(N, 2)``.
    """
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be positive, got width={width}, depth={depth}")
    inputs = keras.Input(shape=(None, None, 3), name="tile")
    x = layers.Rescaling(1 / 255, offset=-0.5, name="rescale")(inputs)
    for n in range(depth):
        channels = width * 2 ** min(n, 3)
        x = _conv_bn_relu(
            x, layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False, name=f"down{n + 1}")
        )
        x = _conv_bn_relu(x, layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"conv{n + 1}"))
    pooled = layers.Concatenate(name="pooled")(
        [layers.GlobalAveragePooling2D(name="mean")(x), layers.GlobalMaxPooling2D(name="max")(x)]
    )
    x = layers.Dense(4 * width, activation="relu", name="hidden")(pooled)
    outputs = layers.Dense(2, name="log_scale_and_animal")(x)
    return keras.Model(inputs, outputs, name="scale_reader")


@keras.saving.register_keras_serializable(package="herdcount")
class ScaleLoss(keras.losses.Loss):
    """Binary cross-entropy of "an animal is in the tile" plus, on tiles that hold one,
    ``scale_weight`` times the absolute error of the log scale.

    ``y_true`` is ``(log scale, animal 0/1)``. Tiles without an animal teach nothing about
    scale: bare rock, sand and surf look alike from any altitude, and the count job pools
    only the tiles judged to hold an animal.
    """

    def __init__(self, scale_weight: float = 4.0, name: str = "scale_loss", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.scale_weight = scale_weight

    def call(self, y_true, y_pred):
        animal = y_true[:, 1]
        judged = keras.ops.binary_crossentropy(animal, y_pred[:, 1], from_logits=True)
        return judged + self.scale_weight * animal * keras.ops.abs(y_pred[:, 0] - y_true[:, 0])

    def get_config(self) -> dict:
        return {**super().get_config(), "scale_weight": self.scale_weight}


@keras.saving.register_keras_serializable(package="herdcount")
def scale_error(y_true, y_pred):
    """Mean absolute error of the log scale over the tiles that hold an animal (0.1: 10 %)."""
    animal = y_true[:, 1]
    error = keras.ops.abs(y_pred[:, 0] - y_true[:, 0]) * animal
    return keras.ops.sum(error) / keras.ops.maximum(keras.ops.sum(animal), 1.0)


def balance_weights(counts: np.ndarray, exponent: float) -> list[float]:
    """Loss weights per class from its number of dots in the training photos.

    Each class weighs ``share ** -exponent``, scaled so that the dots' mean weight is 1 (the
    loss keeps its size); a class without dots counts as one dot.

    Parameters
    ----------
    counts : (K,) array_like
        Dots of each class.
    exponent : float
        0 gives every class 1; 1 makes each class's dots weigh as much in total.

    Returns
    -------
    list of float
    """
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    if counts.ndim != 1:
        raise ValueError(f"counts must be one number per class, got shape {counts.shape}")
    if not 0 <= exponent <= 1:
        raise ValueError(f"exponent must be in [0, 1], got {exponent}")
    share = counts / counts.sum()
    weights = share**-exponent
    return (weights / (share * weights).sum()).tolist()


@keras.saving.register_keras_serializable(package="herdcount")
def tile_count_error(y_true, y_pred, classes: int | None = None):
    """Mean absolute error of the per-class counts of each tile, outside masked cells; of
    the first ``classes`` maps where more follow (see :func:`density_count_error`)."""
    weight = y_true[..., -1:]
    error = keras.ops.sum((y_pred[..., :classes] - y_true[..., : classes or -1]) * weight, axis=(1, 2))
    return keras.ops.mean(keras.ops.abs(error), axis=-1)


def density_count_error(classes: int):
    """:func:`tile_count_error` of the density maps of a model of :func:`with_centre_head`."""

    def tile_count_error_of_density(y_true, y_pred):
        return tile_count_error(y_true, y_pred, classes)

    tile_count_error_of_density.__name__ = "tile_count_error"
    return tile_count_error_of_density


def write_untrained_runs(folder: str | Path, config: Any) -> dict[str, Path]:
    """Untrained density, classifier and scale runs of ``config``'s classes, in the format of
    a training run, under ``folder``: what benchmarks of counting speed need.

    Returns
    -------
    dict
        ``{"density": folder/density, "classifier": folder/classifier, "scale": folder/scale}``.
    """
    folder = Path(folder)
    names = config.class_names
    density = make_density_model(len(names))
    description = {
        "kind": DENSITY.name,
        "class_names": names,
        "input_scale": 1.0,
        **describe_density_model(density),
    }
    save_model_run(folder / DENSITY.name, density, description)
    size = config.thumbnail_size
    classifier = make_classifier_model((size, size, 3), len(names) + 1)
    description = {"kind": CLASSIFIER.name, "patch_size": size, "class_names": CLASSIFIER.class_names(config)}
    save_model_run(folder / CLASSIFIER.name, classifier, description)
    reader = make_scale_model()
    # Zero output weights: it reads scale 1 in every tile, so a photo is counted at its own size.
    last = reader.get_layer("log_scale_and_animal")
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    save_model_run(folder / SCALE.name, reader, {"kind": SCALE.name, "class_names": names, "tile_size": 256})
    return {kind: folder / kind for kind in (DENSITY.name, CLASSIFIER.name, SCALE.name)}
