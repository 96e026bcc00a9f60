"""The unbiased pass@k estimator (Chen et al., 2021)."""

from __future__ import annotations

from math import comb

K_VALUES = (1, 5, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) passes."""
    if n < k:
        raise ValueError(f"need n >= k (n={n}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_at_k_table(counts: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Mean pass@k over tasks for every k in K_VALUES not above the smallest per-task sample count.

    counts maps task_id -> (n samples, c correct)."""
    if not counts:
        return {}
    n_min = min(n for n, _ in counts.values())
    return {
        f"pass@{k}": sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts) for k in K_VALUES if k <= n_min
    }
