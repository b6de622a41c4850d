"""Trained models as ``predict`` callables, loaded once per Python worker.

A Spark Python worker is reused for many tasks, so a model loaded here stays in
:data:`_MODELS` for every photo that worker counts. The cache lives in this module, not
in a job script: cloudpickle copies a ``__main__`` global into every task, so a cache
there would start empty each time. TensorFlow is imported inside the functions, never
at import time, so the driver can pickle code that refers to this module cheaply.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from herdcount import storage
from herdcount.kinds import ModelKind
from herdcount.modelrun import ModelRun
from herdcount.runinfo import verbose
from herdcount.tiling import Predict

#: Loaded models of this process, by the absolute path of model.keras.
_MODELS: dict[str, LoadedModel] = {}
#: How often this process loaded each model file: 1 when the cache works.
LOADS: Counter[str] = Counter()


@dataclass
class LoadedModel:
    """A model run ready to count: its description and its predict callables."""

    run: ModelRun
    #: The Keras model itself (None when the LiteRT interpreter runs the export).
    model: Any
    #: Batch of patches to class scores (classifier) or density maps (density model).
    predict: Predict
    #: The classifier applied fully convolutionally: patches to score maps (None otherwise).
    predict_maps: Predict | None = None
    #: Output stride of ``predict_maps``.
    map_stride: int = 0
    threads: tuple[int, int] = (0, 0)
    #: ``litert`` (the TensorFlow Lite export) or ``keras``.
    runtime: str = "keras"


#: The environment setting that keeps TensorFlow's C++ start-up notices out of the logs
#: (warnings and errors still show): they would fill every executor's log and hide
#: training's progress. The one place herdcount sets TensorFlow's log level.
QUIET_TENSORFLOW = ("TF_CPP_MIN_LOG_LEVEL", "2")


def quiet_tensorflow() -> None:
    """Apply :data:`QUIET_TENSORFLOW`; call before TensorFlow is imported."""
    os.environ.setdefault(*QUIET_TENSORFLOW)


#: The C++ notices TensorFlow writes to the process's stderr as it is imported, past its log
#: level (absl logging is not set up yet then): two lines, twice, before training's first
#: word. Kept from the user's log by :func:`tensorflow_notices_filtered`.
START_UP_NOTICES = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
)


@contextlib.contextmanager
def tensorflow_notices_filtered(notices: tuple[str, ...] = START_UP_NOTICES):
    """Hold back the lines of ``notices`` that anything in the block writes to stderr.

    TensorFlow's C++ code writes to file descriptor 2 itself, so the descriptor is pointed
    at a temporary file for the block; on leaving, every other line is written to stderr
    as it came (a warning or an error while importing stays in the log).
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not any(n in line for n in notices)))
            sys.stderr.flush()


def set_threads(threads: int, inter: int | None = None) -> tuple[int, int]:
    """Give TensorFlow ``threads`` intra-op threads and ``inter`` (default: as many)
    inter-op threads in this process; return the values in force (TensorFlow fixes them at
    its first operation, so a later call keeps the pools it has). The one place herdcount
    sets TensorFlow's threads."""
    quiet_tensorflow()
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads if inter is None else inter)
    except RuntimeError:
        pass  # already initialised by an earlier task of this worker
    return (
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    )


def load_model(run: str | Path, *, threads: int = 1, precision: str = "float") -> LoadedModel:
    """The model of a training run, loaded on first use in this process and cached.

    Runs that hold the TensorFlow Lite export (``model.tflite``, and ``maps.tflite`` for
    classifiers; see :func:`tflite_files`) are run by the LiteRT interpreter: it starts in
    a tenth of a second where TensorFlow takes seconds, and its XNNPACK kernels count a
    photo about three times faster, with the same results to float rounding. Other runs
    are run by Keras.

    Parameters
    ----------
    run : str or Path
        A finished run of ``herdcount train`` (model.json and model.keras).
    threads : int, optional
        Threads of the interpreter (or TensorFlow's intra- and inter-op threads), set
        before its first operation.
    precision : str, optional
        ``float``, or ``int8`` for the full-integer export (:data:`INT8`), which must exist.
    """
    path = storage.join(run, "model.keras")
    # Keyed by path alone: this runs for every photo, and a stat (or an S3 HEAD request) per
    # photo buys nothing, since a job's model is fixed when it starts (OUT/settings.json).
    key = model_key(run, precision)
    if key in _MODELS:
        return _MODELS[key]
    described = ModelRun.read(run)
    kind = described.model_kind
    names = list(kind.exports)
    if precision == "int8":
        names[0] = INT8
    lite = [described.file(name) for name in names]
    if all(storage.exists(name) for name in lite) and (
        not kind.takes_stride or described.map_stride is not None
    ):
        predictors = [_lite_predictor(storage.read_bytes(name), threads) for name in lite]
        scales = (described.int8 or {}).get("count_scale") if precision == "int8" else None
        if scales:
            from herdcount.precision import scaled

            # The int8 export's steady share off float per class, measured when it was made.
            predictors[0] = scaled(predictors[0], [scales[n] for n in described.class_names])
        runtime = "litert" if precision == "float" else f"litert-{precision}"
        loaded = LoadedModel(described, None, predictors[0], threads=(threads, threads), runtime=runtime)
        if kind.takes_stride:
            loaded.predict_maps, loaded.map_stride = predictors[1], int(described.map_stride)
    else:
        try:
            import keras
        except ImportError:
            raise ValueError(
                f"{run} has no TensorFlow Lite export (model.tflite) and Keras is not installed: "
                "pip install 'herdcount[train]' to count with Keras, or train the run again"
            ) from None
        in_force = set_threads(threads)

        model = keras.models.load_model(storage.local_copy(path), compile=False)
        loaded = LoadedModel(described, model, _predictor(model), threads=in_force, runtime="keras")
        if kind.takes_stride:
            maps = fully_convolutional(model)
            loaded.predict_maps, loaded.map_stride = _predictor(maps), native_stride(model)
    _MODELS[key] = loaded
    LOADS[key] += 1
    # PySpark's daemon runs gc.collect() after every task of a reused worker; with a model
    # (and TensorFlow) loaded, a full collection walks millions of objects (0.17 s with
    # TensorFlow, as long as counting a small photo). Those objects live as long as the
    # worker: move them out of the collector's sight.
    gc.freeze()
    return loaded


def model_key(run: str | Path, precision: str = "float") -> str:
    """The key of a run's loaded model in this process's cache (and in :data:`LOADS`)."""
    key = storage.absolute(storage.join(run, "model.keras"))
    return key if precision == "float" else f"{key}#{precision}"


def _predictor(model: Any) -> Predict:
    import numpy as np

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model(batch, training=False))

    return predict


def _lite_predictor(content: bytes, threads: int) -> Predict:
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=threads)
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]
    allocated: list[tuple[int, ...]] = [()]

    def predict(batch: np.ndarray) -> np.ndarray:
        # The export takes any batch and tile size; the interpreter plans its memory for
        # one shape at a time, and the tiles of a photo share one.
        if batch.shape != allocated[0]:
            interpreter.resize_tensor_input(source, batch.shape)
            interpreter.allocate_tensors()
            allocated[0] = batch.shape
        interpreter.set_tensor(source, np.asarray(batch, dtype=np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(target).copy()

    return predict


def tflite_files(model: Any, kind: ModelKind) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The TensorFlow Lite export of a trained model, for the count job's executors, and
    what model.json must add for it.

    Density models give ``model.tflite``; classifiers ``model.tflite`` (patches) and
    ``maps.tflite`` (the fully convolutional form, see :func:`fully_convolutional`), plus
    ``map_stride``. Inputs keep any batch, height and width. Imports TensorFlow.
    """
    quiet_tensorflow()
    import tensorflow as tf

    def export(keras_model: Any) -> bytes:
        # The export lists every traced tensor on stdout (dozens of lines per model).
        with contextlib.nullcontext() if verbose() else contextlib.redirect_stdout(io.StringIO()):
            return tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()

    files = {"model.tflite": export(model)}
    extra: dict[str, Any] = {}
    if kind.takes_stride:
        files["maps.tflite"] = export(fully_convolutional(model))
        extra["map_stride"] = native_stride(model)
    return files, extra


#: The full-integer export beside model.tflite (density models).
INT8 = "model.int8.tflite"


def quantized_tflite(model: Any, samples: Any) -> bytes:
    """The model's full-integer (int8) LiteRT export, calibrated on ``samples`` (an iterable
    of float32 input batches, e.g. training tiles); inputs and outputs stay float32, and any
    batch, height and width. Imports TensorFlow."""
    quiet_tensorflow()
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.asarray(batch, np.float32)] for batch in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.nullcontext() if verbose() else contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def lite_predictor(content: bytes, threads: int = 1) -> Predict:
    """A LiteRT interpreter of ``content`` as a ``predict`` callable."""
    return _lite_predictor(content, threads)


def native_stride(classifier: Any) -> int:
    """The product of the strides of a classifier's convolutions and poolings: the step
    between patches that its fully convolutional form evaluates."""
    step = 1
    for layer in classifier.layers:
        strides = getattr(layer, "strides", None)
        if strides is not None and type(layer).__name__ in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
            if strides[0] != strides[1]:
                raise ValueError(f"layer {layer.name!r} has unequal strides {strides}")
            step *= int(strides[0])
    return step


def fully_convolutional(classifier: Any) -> Any:
    """The classifier with its Dense layers applied as convolutions.

    The first Dense layer after ``Flatten`` becomes a convolution whose kernel covers the
    whole flattened feature map (same weights, reshaped); later Dense layers become 1x1
    convolutions; Dropout is dropped (it is the identity at inference). On a larger input
    the result scores every patch of the original size at steps of
    :func:`native_stride`, sharing the convolution work between overlapping patches:
    output cell ``(i, j)`` is the class scores of the patch whose top-left pixel is
    ``(i * step, j * step)``.

    Parameters
    ----------
    classifier : keras.Model
        A chain of Rescaling, Conv2D, pooling, Flatten, Dense and Dropout layers, as
        built by ``make_classifier_model``.

    Returns
    -------
    keras.Model
        Input ``(N, H, W, 3)``; output ``(N, (H - p) // step + 1, (W - p) // step + 1, C)``
        for patches of side ``p``.

    Raises
    ------
    ValueError
        If the model holds a layer that has no convolutional form here.
    """
    import keras
    import numpy as np
    from keras import layers

    inputs = keras.Input(shape=(None, None, classifier.input_shape[-1]), name="photo")
    x, flat_shape, transfers = inputs, None, []
    for layer in classifier.layers[1:]:
        kind = type(layer).__name__
        if kind in ("Rescaling", "Conv2D", "MaxPooling2D", "AveragePooling2D", "Activation", "ReLU"):
            clone = type(layer).from_config(layer.get_config())
            x = clone(x)
            transfers.append((clone, layer.get_weights()))
        elif kind == "Dropout":
            continue
        elif kind == "Flatten":
            flat_shape = tuple(layer.input.shape[1:])
        elif kind == "Dense":
            kernel, bias = layer.get_weights()
            size = flat_shape[:2] if flat_shape else (1, 1)
            kernel = kernel.reshape(*size, -1, kernel.shape[-1])
            flat_shape = None
            conv = layers.Conv2D(kernel.shape[-1], size, name=f"{layer.name}_conv")
            x = conv(x)
            transfers.append((conv, [kernel, bias]))
            activation = layer.get_config()["activation"]
            if activation == "softmax":
                x = layers.Softmax(axis=-1, name=f"{layer.name}_softmax")(x)
            elif activation != "linear":
                x = layers.Activation(activation, name=f"{layer.name}_activation")(x)
        else:
            raise ValueError(f"layer {layer.name!r} of type {kind} has no fully convolutional form here")
    model = keras.Model(inputs, x, name=f"{classifier.name}_fully_convolutional")
    for layer, weights in transfers:
        layer.set_weights([np.asarray(w) for w in weights])
    return model


def clear_cache() -> None:
    """Forget the loaded models of this process (tests use it)."""
    _MODELS.clear()
    LOADS.clear()
