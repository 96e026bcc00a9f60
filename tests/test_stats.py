import itertools
import math
import time
from math import comb

import pytest

from iterkd.evaluate.stats import (
    bootstrap_ci,
    paired_counts,
    paired_diff_ci,
    pass_at_k,
    pass_at_k_table,
    sign_test,
)


def brute_force(n, c, k):
    """Fraction of k-subsets of n samples (c correct) containing at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 2, 1), (5, 2, 3), (7, 3, 5), (10, 1, 10), (6, 6, 2)])
def test_estimator_matches_brute_force(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k))


def test_table_only_reports_k_up_to_smallest_sample_count():
    table = pass_at_k_table({"a": (10, 5), "b": (5, 0)})
    assert set(table) == {"pass@1", "pass@5"}
    assert table["pass@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert table["pass@5"] == pytest.approx((1 - comb(5, 5) / comb(10, 5)) / 2)
    assert pass_at_k_table({"a": (1, 1)}) == {"pass@1": 1.0}
    with pytest.raises(ValueError):
        pass_at_k(1, 0, 5)


def test_sign_test_known_values():
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 0) == 0.0625
    assert sign_test(0, 5) == 0.0625
    assert sign_test(3, 3) == 1.0
    exact = 2 * sum(math.comb(12, i) for i in range(3)) / 2**12  # 2 * 79 / 4096
    assert sign_test(10, 2) == pytest.approx(exact) == pytest.approx(0.0385742, abs=1e-6)
    assert sign_test(2, 10) == sign_test(10, 2)
    with pytest.raises(ValueError):
        sign_test(-1, 2)


def test_paired_counts():
    a = {"t1": True, "t2": True, "t3": False, "t4": False, "t5": True}
    b = {"t1": True, "t2": False, "t3": True, "t4": False, "t5": False}
    assert paired_counts(a, b) == (2, 1, 1, 1)
    assert paired_counts(b, a) == (1, 2, 1, 1)
    assert paired_counts({}, {}) == (0, 0, 0, 0)
    with pytest.raises(ValueError):
        paired_counts(a, {**b, "t6": True})
    with pytest.raises(ValueError):
        paired_counts({"t1": True}, {"t2": True})


def half_passing(tasks=400, samples=1):
    """`tasks` tasks: with one sample, the first half pass; with more, each task passes half its samples."""
    if samples == 1:
        return [[t < tasks // 2] for t in range(tasks)]
    return [[s < samples // 2 for s in range(samples)] for _ in range(tasks)]


def test_bootstrap_ci_degenerate():
    assert bootstrap_ci([[True]] * 50) == (1.0, 1.0, 1.0)
    assert bootstrap_ci([[False, False, False]] * 50) == (0.0, 0.0, 0.0)
    assert bootstrap_ci([[True] * 10] * 20, k=5) == (1.0, 1.0, 1.0)


def test_bootstrap_ci_single_sample_matches_normal_approximation():
    estimate, low, high = bootstrap_ci(half_passing())
    assert estimate == 0.5
    half_width = 1.96 * math.sqrt(0.25 / 400)
    assert low == pytest.approx(0.5 - half_width, abs=0.01)
    assert high == pytest.approx(0.5 + half_width, abs=0.01)


def test_bootstrap_ci_more_samples_per_task_narrow_the_interval():
    _, low1, high1 = bootstrap_ci(half_passing())
    estimate, low10, high10 = bootstrap_ci(half_passing(samples=10))
    assert estimate == 0.5
    assert low10 < 0.5 < high10  # within-task sampling noise is still covered
    assert high10 - low10 < high1 - low1


def test_bootstrap_ci_is_deterministic_given_seed():
    tasks = half_passing()
    assert bootstrap_ci(tasks, seed=3) == bootstrap_ci(tasks, seed=3)
    other = bootstrap_ci(tasks, seed=4)
    assert other != bootstrap_ci(tasks, seed=3)
    assert other == pytest.approx(bootstrap_ci(tasks, seed=3), abs=0.01)


def test_bootstrap_ci_pass_at_5_estimate_matches_table():
    per_task = [[s < c for s in range(10)] for c in (0, 1, 2, 3, 5, 7, 10, 4, 1, 0)]
    expected = pass_at_k_table({f"t{i}": (10, sum(s)) for i, s in enumerate(per_task)})["pass@5"]
    estimate, low, high = bootstrap_ci(per_task, k=5)
    assert estimate == pytest.approx(expected)
    assert 0 <= low <= estimate <= high <= 1


def test_bootstrap_ci_mixed_sample_counts():
    per_task = [[True], [False], [True, False, True], [False] * 4, [True] * 7 + [False]]
    expected = (1 + 0 + 2 / 3 + 0 + 7 / 8) / 5
    estimate, low, high = bootstrap_ci(per_task)
    assert estimate == pytest.approx(expected)
    assert 0 <= low <= estimate <= high <= 1


def test_bootstrap_ci_errors():
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([[True], []])
    with pytest.raises(ValueError):
        bootstrap_ci([[True] * 10, [True] * 4], k=5)
    with pytest.raises(ValueError):
        bootstrap_ci([[True]], level=1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([[True]], n_boot=0)


def test_bootstrap_ci_is_fast():
    tasks = [[(t * 7 + s) % 3 == 0 for s in range(10)] for t in range(500)]
    start = time.perf_counter()
    bootstrap_ci(tasks, k=5, n_boot=2000)
    assert time.perf_counter() - start < 1.0


def test_paired_diff_ci_identical_runs():
    a = {f"t{i}": [i % 3 == 0] for i in range(60)}
    assert paired_diff_ci(a, dict(a)) == (0.0, 0.0, 0.0)


def test_paired_diff_ci_detects_a_paired_difference():
    a = {f"t{i}": [i < 60] for i in range(100)}
    b = {f"t{i}": [i < 40] for i in range(100)}  # the first 40 of a's 60
    estimate, low, high = paired_diff_ci(a, b)
    assert estimate == pytest.approx(0.2)
    assert 0 < low < 0.2 < high
    reverse = paired_diff_ci(b, a)
    assert reverse[0] == pytest.approx(-0.2)
    assert reverse[1] < -0.2 < reverse[2] < 0


def test_paired_diff_ci_resamples_within_tasks():
    a = {f"t{i}": [True, False] for i in range(50)}
    estimate, low, high = paired_diff_ci(a, dict(a), seed=1)
    assert estimate == 0.0
    assert low < 0 < high  # the two runs' sampling noise is independent
    assert paired_diff_ci(a, dict(a), seed=1) == (estimate, low, high)


def test_paired_diff_ci_errors():
    with pytest.raises(ValueError):
        paired_diff_ci({"t1": [True]}, {"t2": [True]})
    with pytest.raises(ValueError):
        paired_diff_ci({}, {})
    with pytest.raises(ValueError):
        paired_diff_ci({"t1": []}, {"t1": [True]})
