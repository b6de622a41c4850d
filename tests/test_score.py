import math
import subprocess
import sys

import pytest

from herdcount.commands.score import main
from herdcount.score import score

HEADER = "test_id,adult_males,subadult_males,adult_females,juveniles,pups\n"


@pytest.fixture
def truth(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text(HEADER + "0,1,0,4,2,3\n1,0,2,0,0,6\n2,3,0,1,1,0\n")
    return path


def write(tmp_path, body, header=HEADER):
    path = tmp_path / "submission.csv"
    path.write_text(header + body)
    return path


def test_scores_match_values_computed_by_hand(tmp_path, truth):
    # Rows in another order than the truth's: ids, not positions, pair them.
    submission = write(tmp_path, "2,3,0,1,1,0\n0,0,0,4,2,5\n1,0,1,0,3,6\n")
    result = score(submission, truth)
    expected = {
        "adult_males": math.sqrt(1 / 3),
        "subadult_males": math.sqrt(1 / 3),
        "adult_females": 0.0,
        "juveniles": math.sqrt(9 / 3),
        "pups": math.sqrt(4 / 3),
    }
    assert result["rmse"] == pytest.approx(expected)
    assert result["mean_rmse"] == pytest.approx(sum(expected.values()) / 5)
    assert result["mae"] == pytest.approx(
        {"adult_males": 1 / 3, "subadult_males": 1 / 3, "adult_females": 0.0, "juveniles": 1.0, "pups": 2 / 3}
    )
    zeros = {
        "adult_males": math.sqrt(10 / 3),
        "subadult_males": math.sqrt(4 / 3),
        "adult_females": math.sqrt(17 / 3),
        "juveniles": math.sqrt(5 / 3),
        "pups": math.sqrt(45 / 3),
    }
    assert result["zero_rmse"] == pytest.approx(zeros)
    assert result["zero_mean_rmse"] == pytest.approx(sum(zeros.values()) / 5)


def test_command_prints_the_table(tmp_path, truth):
    submission = write(tmp_path, "0,1,0,4,2,3\n1,0,2,0,0,6\n2,3,0,1,1,0\n")
    done = subprocess.run(
        [sys.executable, "-m", "herdcount.cli", "score", str(submission), str(truth)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["class", "RMSE", "MAE", "all", "zeros"]
    assert lines[6].split() == [
        "mean",
        "0.0000",
        "0.0000",
        f"{(sum(math.sqrt(v / 3) for v in (10, 4, 17, 5, 45)) / 5):.4f}",
    ]


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        ("0,1,0,4,2,3\n1,0,2,0,0,6\n", HEADER, "missing ['2']"),
        ("0,1,0,4,2,3\n1,0,2,0,0,6\n2,3,0,1,1,0\n7,0,0,0,0,0\n", HEADER, "extra ['7']"),
        ("0,1,0,4,2,3\n0,0,2,0,0,6\n2,3,0,1,1,0\n", HEADER, "line 3: id '0' appears twice"),
        ("0,1,0,4,2,3\n1,0,2,x,0,6\n2,3,0,1,1,0\n", HEADER, "line 3: non-numeric"),
        ("0,1,0,4,2,3\n1,0,2,0,0,6\n2,3,0,-1,1,0\n", HEADER, "line 4: counts must be non-negative"),
        ("0,1,0,4,2,3\n1,0,2,0,0\n2,3,0,1,1,0\n", HEADER, "line 3: 5 fields"),
        ("0,1,0,4,2,3\n", "test_id,adult_males,adult_females,subadult_males,juveniles,pups\n", "header is"),
    ],
)
def test_bad_submissions_are_rejected_naming_the_row(tmp_path, truth, capsys, body, header, message):
    submission = write(tmp_path, body, header)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        score(submission, truth)
    assert main([str(submission), str(truth)]) == 2
    assert message in capsys.readouterr().err
