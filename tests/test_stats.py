import pytest

from mlxdraft.stats import compute_speedup, find_outliers, first_divergence, summarize


def test_summary():
    summary = summarize([1.0, 2.0, 3.0, None])
    assert (summary.mean, summary.min, summary.max, summary.n) == (2.0, 1.0, 3.0, 3)
    assert summary.stdev == pytest.approx(1.0)
    assert summarize([]) is None
    assert summarize([5.0]).stdev == 0.0


def test_speedup_ratio_error_and_interval():
    speedup = compute_speedup([10.0, 10.0, 10.0, 10.0], [15.0, 14.0, 16.0, 15.0])
    assert speedup.ratio == pytest.approx(1.5)
    assert speedup.stdev == pytest.approx(1.5 * (0.816496580927726 / 15.0))
    assert 1.39 <= speedup.ci_low <= 1.5 <= speedup.ci_high <= 1.61
    two_runs = compute_speedup([10.0, 12.0], [20.0, 20.0])
    assert two_runs.ci_low is None


def test_outliers_by_median_and_mad():
    assert find_outliers([10, 10.2, 9.9, 10.1, 30]) == [4]
    assert find_outliers([1, 1, 1]) == []


def test_first_divergence():
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert first_divergence([1, 2], [1, 2, 3]) == 2
