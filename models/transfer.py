"""Start a model from another run's weights (``herdcount train --init RUN``).

Most surveys have a few annotated photos, not 900: a new colony, another species. A model
trained on a large survey (generated or real) already knows rock, surf and what an animal's
outline looks like; fine-tuning it on the few photos of the new survey asks them only for
what differs.

:func:`init_from_run` copies, layer by layer and by name, every layer of the source model
into the new one (batch-norm statistics included). The output layer's columns are matched
by class name: a class both schemes have keeps its weights, a new class starts from the
builder's fresh initialisation, so the same code serves a survey of the same classes and
one of other classes. :class:`LayerRateAdam` then trains the copied layers at a fraction of
the learning rate and the re-initialised ones at the full rate: what the source learned is
adjusted, not overwritten, while the new output columns learn quickly.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from herdcount import storage
from herdcount.kinds import KINDS, kind_of
from herdcount.modelrun import MODEL_KERAS, ModelRun


@dataclass(frozen=True)
class Reused:
    """What :func:`init_from_run` copied.

    Attributes
    ----------
    run : str
        The source run.
    layers : list of str
        Layers copied whole (trained at the reduced learning rate).
    classes : list of str
        Output classes whose column was copied; the other columns start fresh.
    fresh_classes : list of str
        Output classes the source did not have.
    """

    run: str
    layers: list[str]
    classes: list[str]
    fresh_classes: list[str]

    @property
    def output_reused(self) -> bool:
        """Whether the output layer was copied whole (the same classes in both)."""
        return not self.fresh_classes


def init_from_run(model: keras.Model, run: str, kind: str, class_names: list[str]) -> Reused:
    """Copy a finished run's weights into ``model`` (see the module's docstring).

    Parameters
    ----------
    model : keras.Model
        A freshly built model of ``kind`` whose outputs are ``class_names``.
    run : str
        A finished training run (``model.keras`` and ``model.json``) of the same kind.
    kind : str
        ``density`` or ``classifier``.
    class_names : list of str
        The new model's output columns, in order.

    Returns
    -------
    Reused

    Raises
    ------
    ValueError
        If ``run`` is not a finished run of ``kind``, or a layer of the same name has
        other shapes there (another ``--width``/``--depth``), naming the layer and shapes.
    """
    output = kind_of(kind).output_layer
    if output is None:
        startable = [k.name for k in KINDS.values() if k.output_layer]
        raise ValueError(f"--init works for {' and '.join(startable)} models, not {kind!r}")
    try:
        info = ModelRun.read(run)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--init {run!r} is not a finished training run: {exc}") from None
    if info.kind != kind:
        raise ValueError(f"--init {run!r} is a {info.kind} run; this run trains a {kind} model")
    path = storage.local_copy(info.file(MODEL_KERAS))
    source = keras.models.load_model(path, compile=False)
    source_names = list(info.class_names)
    copied: list[str] = []
    for layer in model.layers:
        if not layer.weights or layer.name == output:
            continue
        try:
            theirs = source.get_layer(layer.name)
        except ValueError:
            continue  # a layer the source has not: it keeps its fresh weights
        mine = layer.get_weights()
        got = theirs.get_weights()
        shapes, their_shapes = [w.shape for w in mine], [w.shape for w in got]
        if shapes != their_shapes:
            raise ValueError(
                f"--init {run!r}: layer {layer.name!r} has weights of shapes {their_shapes} there and "
                f"{shapes} here; train with the source run's --width and --depth"
            )
        layer.set_weights(got)
        copied.append(layer.name)
    shared = [name for name in class_names if name in source_names]
    out_layer = model.get_layer(output)
    weights = out_layer.get_weights()
    their = source.get_layer(output).get_weights()
    if [w.shape[:-1] for w in weights] != [w.shape[:-1] for w in their]:
        raise ValueError(
            f"--init {run!r}: output layer {output!r} has weights of shapes {[w.shape for w in their]} "
            f"there and {[w.shape for w in weights]} here; train with the source run's --width and --depth"
        )
    for name in shared:
        mine_at, their_at = class_names.index(name), source_names.index(name)
        for w, t in zip(weights, their):
            w[..., mine_at] = t[..., their_at]
    out_layer.set_weights(weights)
    fresh = [name for name in class_names if name not in source_names]
    if not fresh and len(source_names) == len(class_names):
        copied.append(output)
    return Reused(run=str(run), layers=copied, classes=shared, fresh_classes=fresh)


@keras.saving.register_keras_serializable(package="herdcount")
class LayerRateAdam(keras.optimizers.Adam):
    """Adam with a reduced learning rate for the variables of some layers.

    Parameters
    ----------
    slow_layers : list of str
        Names of the layers whose variables step at ``slow_factor`` times the rate.
    slow_factor : float, optional
        Their share of the learning rate.
    **kwargs
        Adam's arguments.
    """

    def __init__(self, slow_layers: list[str] = (), slow_factor: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 < slow_factor <= 1:
            raise ValueError(f"slow_factor must be in (0, 1], got {slow_factor}")
        self.slow_layers = list(slow_layers)
        self.slow_factor = float(slow_factor)
        self._slow = set(self.slow_layers)

    def build(self, variables) -> None:
        super().build(variables)
        # Inside a compiled step the variables are the backend's, without Keras paths: the
        # slow ones are known by their index, fixed here.
        self._slow_index = {i for i, v in enumerate(variables) if _layer_of(v.path) in self._slow}

    def update_step(self, gradient, variable, learning_rate):
        if self._get_variable_index(variable) in self._slow_index:
            learning_rate = learning_rate * self.slow_factor
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "slow_layers": self.slow_layers, "slow_factor": self.slow_factor}


def _layer_of(path: str) -> str:
    """The layer of a variable's path (``[<model>/]<layer>/<name>``)."""
    parts = path.split("/")
    return parts[-2] if len(parts) > 1 else ""
