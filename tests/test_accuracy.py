"""Dot finding against the truth of synthetic surveys of several seeds (no Spark)."""

import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from herdcount.dots import find_dots
from herdcount.imaging import decode_rgb
from herdcount.kaggle import read_mismatched, read_train_csv
from herdcount.synth import truth_dir, write_survey


def match(found: np.ndarray, true: np.ndarray, tol: float = 3.0) -> int:
    """Pairs of found and true dots within ``tol`` pixels, each used at most once."""
    if not len(found) or not len(true):
        return 0
    dist = np.hypot(*(found[:, None, :] - true[None, :, :]).transpose(2, 0, 1))
    rows, cols = linear_sum_assignment(np.where(dist <= tol, dist, 1e6))
    return int((dist[rows, cols] <= tol).sum())


@pytest.mark.slow
@pytest.mark.accuracy
def test_precision_and_recall_per_class_on_several_seeds(tmp_path, config):
    names = config.class_names
    tp, n_found, n_true = (np.zeros(len(names), int) for _ in range(3))
    photos_checked = 0
    for seed in (21, 22, 23):
        data = tmp_path / f"s{seed}"
        write_survey(
            data,
            n_train=5,
            n_test=0,
            seed=seed,
            config=config,
            width=1600,
            height=1100,
            density=60,
            n_mismatched=1,
            mask_share=0.5,
        )
        expected = read_train_csv(data / "Train" / "train.csv", config)
        mismatched = read_mismatched(data / "MismatchedTrainImages.txt")
        for i in range(5):
            if str(i) in mismatched:
                continue
            plain = decode_rgb((data / "Train" / f"{i}.jpg").read_bytes())
            dotted = decode_rgb((data / "TrainDotted" / f"{i}.jpg").read_bytes())
            result = find_dots(plain, dotted, config.dot_colours, **config.to_dict()["dots"])
            assert result.counts(len(names)).tolist() == expected[str(i)], f"seed {seed} photo {i}"
            truth = json.loads((truth_dir(data) / "train" / f"{i}.json").read_text())[config.annotation_key]
            for k, name in enumerate(names):
                true_rc = np.array(truth[name], dtype=float).reshape(-1, 2)[:, ::-1]
                found_rc = result.coords[result.classes == k]
                tp[k] += match(found_rc, true_rc)
                n_found[k] += len(found_rc)
                n_true[k] += len(true_rc)
            photos_checked += 1
    assert photos_checked == 12
    assert (n_true >= 40).all(), f"too few dots per class to measure: {dict(zip(names, n_true))}"
    precision, recall = tp / n_found, tp / n_true
    assert (precision >= 0.995).all(), dict(zip(names, precision))
    assert (recall >= 0.995).all(), dict(zip(names, recall))
