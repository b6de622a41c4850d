"""Survey totals with intervals from a model's held-out errors: they hold the truth about as
often as they say, on surveys simulated from a known error model."""

import numpy as np
import pytest

from herdcount.intervals import (
    MIN_UNCHOSEN,
    ValidationCounts,
    annotated_errors,
    read_validation_counts,
    survey_totals,
    unchosen_errors,
    write_validation_counts,
)


def photos(rng, n, *, mean, found, noise):
    """True animals per photo (overdispersed) and a model's counts of them: it finds a
    share ``found`` of them, with noise growing like the square root of the count."""
    truth = rng.poisson(rng.gamma(2.0, mean / 2.0, size=n)).astype(float)
    counted = np.maximum(0.0, found * truth + rng.normal(0.0, noise * np.sqrt(truth + 1)))
    return truth, counted


@pytest.mark.parametrize(
    ("held_out", "survey", "mean", "found"),
    [(30, 40, 5.0, 0.85), (12, 100, 3.0, 1.15), (60, 400, 20.0, 0.9)],
)
def test_ninety_percent_intervals_hold_the_true_total_about_ninety_percent_of_the_time(
    held_out, survey, mean, found
):
    rng = np.random.default_rng(held_out)
    inside, widths = [], []
    for rep in range(150):
        val_true, val_counted = photos(rng, held_out, mean=mean, found=found, noise=0.6)
        true, counted = photos(rng, survey, mean=mean, found=found, noise=0.6)
        errors = ValidationCounts(
            [str(i) for i in range(held_out)], ["a"], val_true[:, None], val_counted[:, None]
        )
        totals = survey_totals(counted[:, None], errors, draws=500, seed=rep)
        inside.append(totals.low[0] <= true.sum() <= totals.high[0])
        widths.append((totals.high[0] - totals.low[0]) / true.sum())
    coverage = np.mean(inside)
    assert 0.83 <= coverage <= 0.97, coverage
    # Calibrated: the total is the counted sum times the held-out photos' ratio.
    assert totals.total[0] == pytest.approx(counted.sum() * (val_true.sum() + 1) / (val_counted.sum() + 1))
    assert np.median(widths) < 0.6


def test_more_held_out_photos_give_narrower_intervals_and_none_give_plain_sums():
    rng = np.random.default_rng(0)
    _, counted = photos(rng, 50, mean=5.0, found=0.9, noise=0.6)
    width = []
    for held_out in (8, 32, 128):
        val_true, val_counted = photos(rng, held_out, mean=5.0, found=0.9, noise=0.6)
        errors = ValidationCounts(
            list(map(str, range(held_out))), ["a"], val_true[:, None], val_counted[:, None]
        )
        totals = survey_totals(counted[:, None], errors)
        assert totals.low[0] < totals.total[0] < totals.high[0]
        width.append(totals.high[0] - totals.low[0])
    assert width[0] > width[1] > width[2]
    plain = survey_totals(counted[:, None], None)
    assert plain.total[0] == plain.counted[0] == pytest.approx(counted.sum()) and np.isnan(plain.low[0])


def test_the_same_inputs_give_the_same_interval_and_bad_input_is_refused():
    errors = ValidationCounts(
        ["1", "2", "3"], ["a", "b"], np.array([[1, 0], [2, 1], [0, 3]]), np.ones((3, 2))
    )
    counts = np.array([[1.0, 2.0], [0.5, 0.0]])
    first, again = survey_totals(counts, errors), survey_totals(counts, errors)
    np.testing.assert_array_equal(first.low, again.low)
    with pytest.raises(ValueError, match="level"):
        survey_totals(counts, errors, level=1.5)
    with pytest.raises(ValueError, match="for 2 classes"):
        survey_totals(np.ones((2, 3)), errors)
    with pytest.raises(ValueError, match="at least 2 held-out photos"):
        survey_totals(counts, ValidationCounts(["1"], ["a", "b"], np.ones((1, 2)), np.ones((1, 2))))


def test_validation_counts_read_back_and_a_bad_file_names_its_line(tmp_path):
    write_validation_counts(
        tmp_path / "validation_counts.csv", ["4", "9"], [[1, 2], [0, 5]], [[0.5, 2.25], [0, 4]], ["a", "b"]
    )
    back = read_validation_counts(tmp_path)
    assert back.ids == ["4", "9"] and back.class_names == ["a", "b"]
    np.testing.assert_allclose(back.predicted, [[0.5, 2.25], [0, 4]])
    assert read_validation_counts(tmp_path / "nowhere") is None
    (tmp_path / "validation_counts.csv").write_text("train_id,true_a,predicted_a\n1,2,x\n")
    with pytest.raises(ValueError, match="line 2: non-numeric"):
        read_validation_counts(tmp_path)


def test_a_rare_class_counted_right_on_few_held_out_animals_is_not_taken_as_certain():
    # 7 held-out photos, one adult male each, every one counted exactly: the bootstrap alone
    # sees no error; a miscount rate measured on 7 animals is still uncertain by about a tenth.
    errors = ValidationCounts(list("abcdefg"), ["a"], np.ones((7, 1)), np.ones((7, 1)))
    counted = np.zeros((16, 1))
    counted[:10] = 1.0
    totals = survey_totals(counted, errors)
    assert totals.total[0] == pytest.approx(10.0)
    assert totals.low[0] < 9.0 and totals.high[0] > 11.0, (totals.low, totals.high)
    # Measured on 70 animals the same perfect record narrows the interval.
    many = ValidationCounts(list("abcdefg"), ["a"], np.full((7, 1), 10.0), np.full((7, 1), 10.0))
    narrow = survey_totals(counted, many)
    assert narrow.high[0] - narrow.low[0] < 0.5 * (totals.high[0] - totals.low[0])


def test_a_rare_class_with_a_density_models_fractional_errors_is_not_given_a_needlessly_wide_interval():
    # One animal per photo on average, each photo's count off by a fraction of an animal (as
    # a density map's sum is): the floor counts those errors as their squares, as they add to
    # a total. Counted as whole-animal miscounts (their absolute size) the intervals held the
    # truth 0.96-0.98 of the time where they say 0.9.
    rng = np.random.default_rng(0)
    inside = []
    for rep in range(300):
        val_true, val_counted = photos(rng, 21, mean=1.0, found=0.95, noise=0.15)
        true, counted = photos(rng, 16, mean=1.0, found=0.95, noise=0.15)
        errors = ValidationCounts(list(map(str, range(21))), ["a"], val_true[:, None], val_counted[:, None])
        totals = survey_totals(counted[:, None], errors, draws=500, seed=rep)
        inside.append(totals.low[0] <= true.sum() <= totals.high[0])
    assert 0.84 <= np.mean(inside) <= 0.95, np.mean(inside)


def test_the_survey_shift_allows_for_a_bias_that_moves_between_surveys():
    # Each survey's model finds 0.9 of the animals times a factor of its own (log-normal,
    # spread 0.1: another day, another colony), which the held-out photos of the training
    # survey cannot show. Without the allowance the intervals miss a quarter of the totals;
    # with the spread as ``shift`` they hold about nine in ten.
    rng = np.random.default_rng(2)
    inside = {0.0: [], 0.1: []}
    for rep in range(300):
        val_true, val_counted = photos(rng, 21, mean=5.0, found=0.9, noise=0.6)
        found = 0.9 * np.exp(rng.normal(0.0, 0.1))
        true, counted = photos(rng, 40, mean=5.0, found=found, noise=0.6)
        errors = ValidationCounts(list(map(str, range(21))), ["a"], val_true[:, None], val_counted[:, None])
        for shift in inside:
            totals = survey_totals(counted[:, None], errors, draws=500, seed=rep, shift=shift)
            inside[shift].append(totals.low[0] <= true.sum() <= totals.high[0])
    assert np.mean(inside[0.0]) < 0.8 and 0.84 <= np.mean(inside[0.1]) <= 0.96, {
        k: np.mean(v) for k, v in inside.items()
    }
    # Annotated photos of the survey measure its own bias: the allowance is not added to them.
    known = np.full((40, 1), np.nan)
    known[:10, 0] = true[:10]
    sample = annotated_errors(list(map(str, range(10))), true[:10, None], counted[:10, None], ["a"])
    plain = survey_totals(counted[:, None], sample, known=known)
    shifted = survey_totals(counted[:, None], sample, known=known, shift=0.1)
    assert (plain.low[0], plain.high[0]) == (shifted.low[0], shifted.high[0])
    with pytest.raises(ValueError, match=r"shift must be >= 0, got -0\.1"):
        survey_totals(counted[:, None], errors, shift=-0.1)


def test_five_classes_of_different_biases_hold_their_totals_from_seven_held_out_photos():
    # Each class's model finds its own share of the animals (0.8-1.1); 7 held-out photos
    # measure those shares noisily, and the intervals still hold the truth about 90 % of the
    # time.
    rng = np.random.default_rng(5)
    found = np.array([0.8, 0.9, 0.95, 1.0, 1.1])
    means = np.array([1.0, 1.5, 8.0, 3.0, 5.0])
    inside = []
    for rep in range(120):
        val = [photos(rng, 7, mean=m, found=f, noise=0.6) for m, f in zip(means, found)]
        test = [photos(rng, 16, mean=m, found=f, noise=0.6) for m, f in zip(means, found)]
        errors = ValidationCounts(
            list(map(str, range(7))),
            list("abcde"),
            np.stack([t for t, _ in val], axis=1),
            np.stack([c for _, c in val], axis=1),
        )
        totals = survey_totals(np.stack([c for _, c in test], axis=1), errors, draws=500, seed=rep)
        true = np.array([t.sum() for t, _ in test])
        inside += list((totals.low <= true) & (true <= totals.high))
    assert 0.83 <= np.mean(inside) <= 0.98, np.mean(inside)


def test_annotated_photos_of_the_survey_measure_its_own_bias_and_enter_as_truth():
    """A model that finds 0.7 of this survey's animals, where its held-out photos said 0.95
    (another season or colony): intervals from the held-out photos miss; from 20 annotated
    photos of the survey (double sampling) they hold about nine times in ten."""
    rng = np.random.default_rng(5)
    inside = {"held-out": [], "annotated": []}
    for rep in range(120):
        val_true, val_counted = photos(rng, 30, mean=5.0, found=0.95, noise=0.6)
        true, counted = photos(rng, 80, mean=5.0, found=0.7, noise=0.6)
        held_out = ValidationCounts(list(map(str, range(30))), ["a"], val_true[:, None], val_counted[:, None])
        known = np.full((80, 1), np.nan)
        known[:20, 0] = true[:20]
        sample = annotated_errors(list(map(str, range(20))), true[:20, None], counted[:20, None], ["a"])
        for how, totals in (
            ("held-out", survey_totals(counted[:, None], held_out, draws=500, seed=rep)),
            ("annotated", survey_totals(counted[:, None], sample, known=known, draws=500, seed=rep)),
        ):
            inside[how].append(totals.low[0] <= true.sum() <= totals.high[0])
    assert np.mean(inside["held-out"]) < 0.3 and 0.83 <= np.mean(inside["annotated"]) <= 0.97, {
        k: np.mean(v) for k, v in inside.items()
    }
    # The annotated photos' truth is in the total and both ends as it is: all known, no width.
    everything = survey_totals(counted[:, None], sample, known=true[:, None])
    assert everything.low[0] == everything.total[0] == everything.high[0] == true.sum()
    assert everything.counted[0] == pytest.approx(counted.sum())
    with pytest.raises(ValueError, match="known must have the counts' shape"):
        survey_totals(counted[:, None], sample, known=true[:10, None])


def test_held_out_photos_that_did_not_choose_the_epoch_are_kept_apart_when_there_are_enough():
    ids = [str(i) for i in range(20)]
    errors = ValidationCounts(ids, ["a"], np.arange(20.0)[:, None], np.arange(20.0)[:, None] + 1)
    chosen = ids[: 20 - MIN_UNCHOSEN]
    kept = unchosen_errors(errors, chosen)
    assert kept.ids == ids[20 - MIN_UNCHOSEN :] and kept.class_names == ["a"]
    np.testing.assert_array_equal(kept.true[:, 0], np.arange(20 - MIN_UNCHOSEN, 20.0))
    np.testing.assert_array_equal(kept.predicted, kept.true + 1)
    # Too few others, or a run that did not record its choice: every held-out photo counts.
    assert unchosen_errors(errors, ids[: 21 - MIN_UNCHOSEN]) is None
    assert unchosen_errors(errors, None) is None
