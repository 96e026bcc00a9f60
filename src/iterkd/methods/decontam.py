"""Decontamination: drop seed tasks or generated items that overlap the benchmarks' test tasks (HumanEval,
MBPP test split). Overlap = a shared n-gram: 13 tokens of task text (MBPP repeats some task statements across
its splits word for word), or 50 tokens of code (shorter code n-grams match common idioms such as
``for i in range(len(arr)):``, not copied solutions)."""

from __future__ import annotations

import re
from functools import lru_cache

TEXT_N = 13
CODE_N = 50
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|[^\sA-Za-z0-9_]")


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _TOKEN.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@lru_cache(maxsize=1)
def benchmark_ngrams() -> tuple[frozenset, frozenset]:
    """(text n-grams, code n-grams) of every HumanEval task and every MBPP test-split task."""
    from iterkd.tasks import load_humaneval, load_mbpp

    text, code = set(), set()
    for task in load_humaneval() + load_mbpp("test"):
        text |= ngrams(task.prompt, TEXT_N)
        code |= ngrams(task.canonical_solution or "", CODE_N)
    return frozenset(text), frozenset(code)


def is_contaminated(text: str = "", code: str = "", substrings: bool = False) -> bool:
    """True when the task text or the code overlaps a benchmark test task. ``substrings``: also when one
    contains a benchmark prompt or solution (or is contained in one), case-insensitively (texts over 40
    characters) -- the check for generated questions."""
    bench_text, bench_code = benchmark_ngrams()
    if not ngrams(text, TEXT_N).isdisjoint(bench_text) or not ngrams(code, CODE_N).isdisjoint(bench_code):
        return True
    mine = [m for m in (text.lower(), code.lower()) if len(m) > 40]
    return substrings and any(b in m or m in b for b in benchmark_texts() for m in mine)


@lru_cache(maxsize=1)
def benchmark_texts() -> tuple[str, ...]:
    """Every HumanEval and MBPP-test prompt and solution, lower-cased, over 40 characters."""
    from iterkd.tasks import load_humaneval, load_mbpp

    texts = (x.lower() for t in load_humaneval() + load_mbpp("test") for x in (t.prompt, t.canonical_solution or ""))
    return tuple(t for t in texts if len(t) > 40)
