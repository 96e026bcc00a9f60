"""Statistics on evaluation results: the unbiased pass@k estimator (Chen et al., 2021), the exact sign test and
paired counts for comparing two runs task by task, and percentile-bootstrap confidence intervals for mean pass@k
and for a paired pass@1 difference.

numpy is imported only inside the bootstrap functions, so that scoring (``iterkd check``) does not load it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import comb
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

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


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (= exact McNemar on the discordant tasks): how likely a split of wins + losses at
    least this uneven is if both sides were equally good. 1.0 when there are no discordant tasks."""
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be >= 0 (wins={wins}, losses={losses})")
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_counts(a: Mapping[str, bool], b: Mapping[str, bool]) -> tuple[int, int, int, int]:
    """(only a passes, only b passes, both pass, neither passes) over the task ids of a and b (which must match)."""
    if a.keys() != b.keys():
        raise ValueError(f"task ids differ: {_key_difference(a, b)}")
    only_a = sum(bool(a[t]) and not b[t] for t in a)
    only_b = sum(bool(b[t]) and not a[t] for t in a)
    both = sum(bool(a[t]) and bool(b[t]) for t in a)
    return only_a, only_b, both, len(a) - only_a - only_b - both


def bootstrap_ci(
    per_task: Sequence[Sequence[bool]], k: int = 1, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(estimate, low, high) for mean pass@k over tasks; per_task holds each task's sample outcomes.

    The estimate is the mean of pass_at_k(n_i, c_i, k). The interval is a two-level percentile bootstrap: each
    resample draws tasks with replacement and, for a task with more than one sample, redraws its n_i samples with
    replacement too (a Binomial(n_i, c_i / n_i) correct count), so it covers both which tasks were drawn and the
    sampling noise within a task."""
    import numpy as np

    _check_boot(n_boot, level)
    n, c = _counts(per_task, k)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(n), size=(n_boot, len(n)))
    table, row = _pass_table(n, k)
    estimate = float(table[row, c].mean())
    means = _resampled_pass(n, c, idx, rng, table, row).mean(axis=1)
    return (estimate, *_percentiles(means, level))


def paired_diff_ci(
    a: Mapping[str, Sequence[bool]],
    b: Mapping[str, Sequence[bool]],
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high) for pass@1 of a minus pass@1 of b, by a paired percentile bootstrap over tasks.

    Each resample draws the same task ids for a and b (with replacement), and redraws each task's samples with
    replacement on both sides when it has more than one. a and b must have the same task ids."""
    import numpy as np

    _check_boot(n_boot, level)
    if a.keys() != b.keys():
        raise ValueError(f"task ids differ: {_key_difference(a, b)}")
    ids = sorted(a)
    n_a, c_a = _counts([a[t] for t in ids], 1)
    n_b, c_b = _counts([b[t] for t in ids], 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    table_a, row_a = _pass_table(n_a, 1)
    table_b, row_b = _pass_table(n_b, 1)
    estimate = float((c_a / n_a).mean() - (c_b / n_b).mean())
    diffs = _resampled_pass(n_a, c_a, idx, rng, table_a, row_a).mean(axis=1)
    diffs -= _resampled_pass(n_b, c_b, idx, rng, table_b, row_b).mean(axis=1)
    return (estimate, *_percentiles(diffs, level))


def _key_difference(a: Mapping[str, object], b: Mapping[str, object]) -> str:
    """A short description of which task ids only one side has."""
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    return f"{len(only_a)} only in a {only_a[:3]}, {len(only_b)} only in b {only_b[:3]}"


def _check_boot(n_boot: int, level: float) -> None:
    """Reject a bootstrap with no resamples or a level outside (0, 1)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1 (n_boot={n_boot})")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (level={level})")


def _counts(per_task: Sequence[Sequence[bool]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-task sample counts n and correct counts c as integer arrays; every task needs at least k >= 1 samples."""
    import numpy as np

    if k < 1:
        raise ValueError(f"k must be >= 1 (k={k})")
    if len(per_task) == 0:
        raise ValueError("no tasks")
    n = np.array([len(s) for s in per_task], dtype=np.int64)
    if n.min() < k:
        raise ValueError(f"every task needs at least k={k} samples (smallest has {n.min()})")
    c = np.array([sum(bool(x) for x in s) for s in per_task], dtype=np.int64)
    return n, c


def _pass_table(n: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """table[row[i], c] = pass_at_k(n_i, c, k) for c in 0..n_i: one table row per distinct sample count."""
    import numpy as np

    sizes, row = np.unique(n, return_inverse=True)
    table = np.zeros((len(sizes), int(sizes.max()) + 1))
    for r, size in enumerate(sizes.tolist()):
        table[r, : size + 1] = [pass_at_k(size, c, k) for c in range(size + 1)]
    return table, row.reshape(-1)


def _resampled_pass(
    n: np.ndarray, c: np.ndarray, idx: np.ndarray, rng: np.random.Generator, table: np.ndarray, row: np.ndarray
) -> np.ndarray:
    """pass@k of the tasks idx picks, with each task's samples redrawn with replacement (shape of idx)."""
    n_i = n[idx]
    redrawn = rng.binomial(n_i, c[idx] / n_i)  # correct count among n_i samples drawn with replacement
    return table[row[idx], redrawn]


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of the bootstrap values."""
    import numpy as np

    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
