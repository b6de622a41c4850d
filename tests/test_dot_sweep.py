"""Extraction across annotation styles: surveys whose dots differ in radius, colour drift,
JPEG quality and the darkness of the animals under them, all found with the default
scheme and settings (nothing per survey) and checked dot by dot against the generator's truth."""

import numpy as np
import pytest

from herdcount.dotstyle import score_against_truth
from herdcount.synth import AnnotationStyle, truth_dir, write_survey

pytestmark = pytest.mark.slow

# (radius range, colour drift, JPEG quality range, share of dark animals), and the least
# precision and recall required in every class.
STYLES = {
    "radius 3, drift 25, JPEG 70-95": (AnnotationStyle((3.0, 3.3), 25, (70, 95)), 0.995),
    "radius 4, drift 25, JPEG 70-95": (AnnotationStyle((4.0, 4.3), 25, (70, 95)), 0.995),
    "radius 5, drift 25, JPEG 70-95": (AnnotationStyle((5.0, 5.3), 25, (70, 95)), 0.995),
    "radius 2.7-3.3, 30 % dark animals": (AnnotationStyle(dark_share=0.3), 0.995),
    # Not yet at the 99.5 %: 4 px dots lose their colour to JPEG's 2x2 chroma
    # blocks at quality 70-80 (one pup or brown dot in 50-100 missed); guarded at 95 %.
    "radius 2, drift 25, JPEG 70-95": (AnnotationStyle((2.0, 2.2), 25, (70, 95)), 0.95),
}


@pytest.mark.parametrize("name", list(STYLES))
def test_every_class_is_found_dot_by_dot(name, tmp_path, config):
    style, least = STYLES[name]
    data = tmp_path / "data"
    size = {"width": 1600, "height": 1100, "density": 30.0}
    write_survey(data, n_train=8, n_test=0, seed=2, config=config, n_mismatched=0, style=style, **size)
    total = score_against_truth(str(data), str(truth_dir(data)), config)
    assert (total.truth >= 10).all(), f"too few dots of some class to judge: {total.truth}"
    assert (total.precision >= least).all() and (total.recall >= least).all(), (
        f"{name}: precision {np.round(total.precision, 4)}, recall {np.round(total.recall, 4)} "
        f"of {total.truth} dots"
    )
