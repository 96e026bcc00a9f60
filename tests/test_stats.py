import itertools
from math import comb

import pytest

from iterkd.evaluate.passk import pass_at_k, pass_at_k_table


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
