import pytest

from rtstudy.core.stats import compare, describe, mean_ci


def test_mean_ci_matches_student_t():
    e = mean_ci([0.80, 0.82, 0.84])
    assert e.mean == pytest.approx(0.82)
    # sd = 0.02, t(2) = 4.303, half = 4.303 * 0.02 / sqrt(3)
    assert e.half_width == pytest.approx(4.303 * 0.02 / 3**0.5)


def test_single_value_and_empty():
    assert mean_ci([0.5]).n == 1 and mean_ci([0.5]).half_width == 0
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])


def test_claims_only_where_intervals_separate():
    hi, lo = mean_ci([0.90, 0.91, 0.92]), mean_ci([0.80, 0.81, 0.82])
    assert compare(hi, lo) == "better" and compare(lo, hi) == "worse"
    wide = mean_ci([0.70, 0.95, 0.85])
    assert compare(hi, wide) == "tie"
    assert compare(mean_ci([0.9]), mean_ci([0.1])) == "tie", "one seed never supports a claim"
    assert "beats" in describe("robust", hi, "natural", lo)
    assert "not distinguishable" in describe("robust", hi, "natural", wide)
