"""Survey totals with intervals, from a model's measured errors on its held-out photos.

Pure numpy. Training writes ``RUN/validation_counts.csv`` (true and predicted counts of each
held-out photo, :class:`ValidationCounts`); the count job turns a survey's per-photo counts
and those errors into totals per class with an interval (:func:`survey_totals`).

The method, per class (a ratio estimator with a two-level bootstrap):

- **Calibration.** Over the held-out photos, the ratio ``r`` of true to predicted animals,
  with one animal's worth of prior towards 1 (``(sum(true) + 1) / (sum(predicted) + 1)``):
  a model that finds 85 % of the pups has ``r`` near 1.18. The total is ``r`` times the
  survey's counted animals.
- **Scatter.** Each held-out photo's error around ``r * predicted``, divided by
  ``sqrt(r * predicted + 1)``: errors grow like the square root of the count (as counting
  noise does), so one photo's standardised error applies to a test photo of another count.
- **Interval.** Each of ``draws`` simulations resamples the held-out photos with
  replacement (how well the model's errors are known: with few held-out photos this is most
  of the width, as a bias measured on them applies to every photo of the survey), fits ``r``
  and the errors again, centres the errors, and gives every survey photo an error drawn from
  them; the interval is the middle ``level`` share of the simulated totals. The bootstrap
  under-states spread from few photos, so its deviations (of ``log r`` and of the errors)
  are widened by ``sqrt(M / (M - 1))`` and Student's t over the normal quantile for ``M``
  held-out photos.
- **Few animals.** A rare class's bias is measured on a handful of animals: 7 adult males
  all counted right in the held-out photos leave the bootstrap no spread at all, yet say
  little about the next hundred. So ``log r`` varies at least like ``sqrt(sum (true -
  predicted)^2 + 1/2) / (n + 1)``, where ``n`` is the held-out animals of the class: the
  delta-method spread of the ratio with half an animal's error of prior (whole-animal
  errors make this the binomial ``sqrt(e / (n + 1))`` of a miscount rate ``e`` measured on
  ``n`` animals; a density model's fractional errors count as their squares, as they add
  to a total). Where the bootstrap's own spread is larger, it stands.
- **Another survey.** The held-out photos come from the survey the model was trained on;
  another survey (another day, light, colony) moves the model's bias by an amount no
  photo of the training survey shows. ``shift`` is that spread, a standard deviation of
  ``log r`` added to the measured one (docs/results.md: measured on fresh synthetic surveys; 0
  assumes the counted photos are exchangeable with the held-out ones). Annotated photos of
  the survey itself (below) measure its bias directly and take no such allowance.

It assumes the survey's photos are like the held-out ones (same camera, altitude and
annotators). Held-out photos that chose the training epoch (the best of some 30 by their
counts) have errors a little optimistic: the epoch that suits them best is not the one that
suits a fresh survey best. So when at least :data:`MIN_UNCHOSEN` held-out photos took no
part in that choice, the intervals rest on those alone (:func:`unchosen_errors`).

**Annotated photos of the survey** (double sampling, as survey statisticians calibrate an
aerial count on a ground-truthed sample): when the true counts of some of the survey's own
photos are known (``known``), those photos' counts measure the errors instead of the training
run's held-out photos, and their truth enters the totals as it is; only the other photos are
estimated. This measures the model on the survey it counts (another camera, season or colony
shifts a model's errors, and no held-out photo of the training survey sees that), and more
annotated photos narrow the interval where the held-out photos were a fixed few.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from herdcount import storage

#: The file of a training run holding its held-out photos' counts.
VALIDATION_COUNTS = "validation_counts.csv"

#: The count job's ``shift`` for intervals from a model's held-out photos: how far (standard
#: deviation of ``log r``) a model's bias moved from its training survey's held-out photos to
#: fresh surveys, beyond their sampling spread (``bench/intervals.py --fit-shift``, method of
#: moments: 0.029 over seven 160-photo synthetic runs, 0.030 over eleven; README). Real
#: surveys, flown on other days over other colonies, may move more: annotated photos of the
#: survey measure it.
DEFAULT_SURVEY_SHIFT = 0.03


@dataclass(frozen=True)
class ValidationCounts:
    """True and predicted counts of a model's held-out photos: its measured errors.

    Attributes
    ----------
    ids : list of str
        The held-out photos.
    class_names : list of str
        Column order of the counts.
    true, predicted : (M, K) float64 arrays
        Counts per photo and class.
    """

    ids: list[str]
    class_names: list[str]
    true: NDArray[np.float64]
    predicted: NDArray[np.float64]

    def to_csv(self) -> str:
        """``train_id``, then ``true_<class>`` and ``predicted_<class>`` for each class."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(
            [
                "train_id",
                *(f"true_{n}" for n in self.class_names),
                *(f"predicted_{n}" for n in self.class_names),
            ]
        )
        for key, t, p in zip(self.ids, self.true, self.predicted):
            writer.writerow([key, *(f"{v:g}" for v in t), *(f"{v:.4f}" for v in p)])
        return buf.getvalue()

    @classmethod
    def from_csv(cls, text: str, name: str = VALIDATION_COUNTS) -> ValidationCounts:
        """The inverse of :meth:`to_csv`.

        Raises
        ------
        ValueError
            If the header is not of that shape or a value is not a number; the message names
            ``name`` and the line.
        """
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
        header = rows[0] if rows else []
        k = (len(header) - 1) // 2
        names = [h.removeprefix("true_") for h in header[1 : 1 + k]]
        expected = ["train_id", *(f"true_{n}" for n in names), *(f"predicted_{n}" for n in names)]
        if not k or header != expected:
            raise ValueError(
                f"{name}: header {header}; expected train_id, true_<class>..., predicted_<class>..."
            )
        values = []
        for line, row in enumerate(rows[1:], start=2):
            try:
                values.append([float(v) for v in row[1:]])
            except ValueError:
                raise ValueError(f"{name}, line {line}: non-numeric value in {row[1:]}") from None
            if len(row) != len(header):
                raise ValueError(f"{name}, line {line}: {len(row)} fields; expected {len(header)}")
        array = np.array(values, dtype=np.float64).reshape(len(values), 2 * k)
        return cls([row[0] for row in rows[1:]], names, array[:, :k], array[:, k:])


def write_validation_counts(
    path: str | Path, ids: list[str], true: ArrayLike, predicted: ArrayLike, class_names: list[str]
) -> None:
    """Write a run's ``validation_counts.csv`` (atomically)."""
    record = ValidationCounts(
        list(ids), list(class_names), np.asarray(true, np.float64), np.asarray(predicted, np.float64)
    )
    storage.write_text_atomic(path, record.to_csv())


def read_validation_counts(run: str | Path) -> ValidationCounts | None:
    """The held-out photos' counts of a training run; None for a run written without them."""
    path = storage.join(run, VALIDATION_COUNTS)
    if not storage.exists(path):
        return None
    return ValidationCounts.from_csv(storage.read_text(path), path)


@dataclass(frozen=True)
class SurveyTotals:
    """Totals per class over a set of photos, with their interval.

    Attributes
    ----------
    counted : (K,) float64 array
        The sum of the photos' counts.
    total : (K,) float64 array
        The estimate: ``counted`` times the calibration ratio (``counted`` without errors).
    low, high : (K,) float64 arrays
        The interval's ends; NaN without measured errors.
    photos : int
        Photos summed.
    level : float
        Share of the truth's distribution the interval holds.
    """

    counted: NDArray[np.float64]
    total: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    photos: int
    level: float


def survey_totals(
    counts: ArrayLike,
    errors: ValidationCounts | None,
    *,
    known: ArrayLike | None = None,
    level: float = 0.9,
    draws: int = 2000,
    seed: int = 0,
    shift: float = 0.0,
) -> SurveyTotals:
    """Per-class totals of the photos' ``counts`` and an interval from the model's ``errors``.

    Parameters
    ----------
    counts : (N, K) array_like
        Counts per photo and class, as the count job made them.
    errors : ValidationCounts or None
        The model's held-out photos' counts (:func:`read_validation_counts`), or annotated
        photos' counts (:func:`annotated_errors`); None gives the plain sums without an
        interval.
    known : (N, K) array_like, optional
        True counts of the photos whose truth is known, NaN in the rows of the others: known
        photos add their truth to the total and its ends; only the others are estimated.
    level : float, optional
        Share of the simulated totals inside the interval.
    draws : int, optional
        Bootstrap simulations.
    seed : int, optional
        Seed of the simulations: the same inputs give the same interval.
    shift : float, optional
        Spread (standard deviation of the log ratio of true to counted animals) by which the
        model's bias may differ between the photos ``errors`` were measured on and these;
        not applied where ``known`` photos measure the errors on this survey itself.

    Returns
    -------
    SurveyTotals

    Raises
    ------
    ValueError
        If ``level`` is not in (0, 1), ``shift`` is negative, the class numbers differ, or
        fewer than 2 held-out photos are given.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"counts must be an (N, K) array, got shape {counts.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not shift >= 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    counted = counts.sum(axis=0)
    nan = np.full(counts.shape[1], np.nan)
    if known is not None:
        known = np.asarray(known, dtype=np.float64)
        if known.shape != counts.shape:
            raise ValueError(f"known must have the counts' shape {counts.shape}, got {known.shape}")
        sure = ~np.isnan(known).any(axis=1)
        if sure.any():
            # The annotated photos' errors are this survey's own: no shift to allow for.
            rest = survey_totals(counts[~sure], errors, level=level, draws=draws, seed=seed)
            truth = known[sure].sum(axis=0)
            return SurveyTotals(
                counted, rest.total + truth, rest.low + truth, rest.high + truth, len(counts), level
            )
    if errors is None:
        return SurveyTotals(counted, counted.copy(), nan, nan.copy(), len(counts), level)
    if errors.true.shape[1] != counts.shape[1]:
        raise ValueError(
            f"the model's errors are for {errors.true.shape[1]} classes, the counts have {counts.shape[1]}"
        )
    if len(errors.true) < 2:
        raise ValueError(f"an interval needs at least 2 held-out photos, got {len(errors.true)}")
    rng = np.random.default_rng(seed)
    total, low, high = (np.empty(counts.shape[1]) for _ in range(3))
    for k in range(counts.shape[1]):
        total[k], low[k], high[k] = _class_interval(
            errors.predicted[:, k], errors.true[:, k], counts[:, k], level, draws, rng, shift
        )
    return SurveyTotals(counted, total, low, high, len(counts), level)


#: Fewest held-out photos that did not choose the training epoch for the intervals to rest
#: on them alone; with fewer, every held-out photo counts.
MIN_UNCHOSEN = 8


def unchosen_errors(errors: ValidationCounts, chosen_on: list[str] | None) -> ValidationCounts | None:
    """The held-out photos of ``errors`` that did not choose the training epoch (``chosen_on``:
    model.json's ``training_data.epoch_chosen_on``), when there are at least
    :data:`MIN_UNCHOSEN` of them; else None."""
    if chosen_on is None:
        return None
    chosen = set(chosen_on)
    keep = [i for i, key in enumerate(errors.ids) if key not in chosen]
    if len(keep) < MIN_UNCHOSEN:
        return None
    return ValidationCounts(
        [errors.ids[i] for i in keep], errors.class_names, errors.true[keep], errors.predicted[keep]
    )


def interval_errors(
    errors: ValidationCounts | None, chosen_on: list[str] | None
) -> tuple[ValidationCounts | None, str]:
    """The held-out photos a model's intervals rest on, and which they are: those that did
    not choose its epoch (``held-out-unchosen``, :func:`unchosen_errors`; ``chosen_on`` as
    the run records them, ``ModelRun.epoch_chosen_on``) when there are enough, else all
    (``held-out``)."""
    if errors is not None:
        unchosen = unchosen_errors(errors, chosen_on)
        if unchosen is not None:
            return unchosen, "held-out-unchosen"
    return errors, "held-out"


def group_errors(
    ids: list[str], groups: list[str | None], true: ArrayLike, predicted: ArrayLike
) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64]]:
    """Held-out counts summed per group (a photo without one is its own group), in order
    of first appearance: the units the intervals resample when tiles of one source photo,
    or frames of one flight, share their errors.

    Returns
    -------
    group ids, (G, K) true, (G, K) predicted
    """
    true, predicted = np.asarray(true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    keys = [g if g is not None else i for i, g in zip(ids, groups)]
    order = list(dict.fromkeys(keys))
    member = np.array([[k == g for k in keys] for g in order], dtype=np.float64).reshape(
        len(order), len(keys)
    )
    return order, member @ true.reshape(len(keys), -1), member @ predicted.reshape(len(keys), -1)


def annotated_errors(
    ids: list[str], true: ArrayLike, counted: ArrayLike, class_names: list[str]
) -> ValidationCounts:
    """The errors measured on a survey's annotated photos: their true counts beside the
    counts the model made of them, in the shape of a training run's held-out photos."""
    true = np.asarray(true, dtype=np.float64).reshape(len(ids), len(class_names))
    counted = np.asarray(counted, dtype=np.float64).reshape(true.shape)
    return ValidationCounts(list(ids), list(class_names), true, counted)


def calibration_ratio(true: ArrayLike, predicted: ArrayLike) -> NDArray[np.float64]:
    """True over predicted animals along the last axis, with one animal of prior towards 1:
    a rare class with no animal found in the held-out photos gets 1, not infinity. The
    calibration of a survey's totals (see the module's docstring)."""
    true, predicted = np.asarray(true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    return (true.sum(axis=-1) + 1.0) / (predicted.sum(axis=-1) + 1.0)


def _class_interval(
    predicted: np.ndarray,
    true: np.ndarray,
    counts: np.ndarray,
    level: float,
    draws: int,
    rng,
    shift: float = 0.0,
) -> tuple[float, float, float]:
    """``(total, low, high)`` of one class; see the module's docstring."""
    from scipy import stats

    m = len(predicted)
    q = (1 + level) / 2
    # The bootstrap under-states spread from few photos: its deviations are widened by
    # sqrt(M / (M - 1)) and Student's t over the normal quantile.
    widen = np.sqrt(m / (m - 1)) * stats.t.ppf(q, m - 1) / stats.norm.ppf(q)
    pick = rng.integers(0, m, size=(draws, m))
    p, t = predicted[pick], true[pick]
    log_r = np.log(calibration_ratio(t, p))
    log_r = float(np.log(calibration_ratio(true, predicted))) + (log_r - log_r.mean()) * widen
    # Few held-out animals measure a bias poorly: 7 males all counted right say little about
    # the next 100. The ratio's delta-method variance, with half an animal's squared error
    # of prior, is a floor; where the photos' own scatter says more, it stands. Squared, not
    # absolute, errors: a density model's 0.3-animal errors add to a total as 0.09 each.
    n = float(true.sum())
    floor = (float(np.square(true - predicted).sum()) + 0.5) / (n + 1.0) ** 2
    extra = np.sqrt(max(floor - float(log_r.var()), 0.0) + shift**2)
    r = np.exp(log_r + rng.normal(0.0, extra, size=draws))[:, None]
    z = (t - r * p) / np.sqrt(r * p + 1.0)
    # Centred: the ratio carries the bias; left in, the weighting by the square root would
    # add a bias of its own.
    z = (z - z.mean(axis=1, keepdims=True)) * widen
    simulated = np.empty(draws)
    chunk = max(1, 4_000_000 // max(len(counts), 1))
    for first in range(0, draws, chunk):
        rows = slice(first, first + chunk)
        mean = r[rows] * counts[None, :]
        drawn = np.take_along_axis(z[rows], rng.integers(0, m, size=(len(mean), len(counts))), axis=1)
        simulated[rows] = (mean + np.sqrt(mean + 1.0) * drawn).sum(axis=1)
    total = float(calibration_ratio(true, predicted) * counts.sum())
    lo, hi = np.quantile(simulated, [1 - q, q])
    return total, max(0.0, float(lo)), float(hi)
