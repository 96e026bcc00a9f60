"""The one task model every source (HumanEval, MBPP, user JSONL) is converted into."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Task:
    """A programming task with executable tests.

    A program is judged by executing, in one namespace: the program, then ``setup``, then each test in
    order, stopping at the first failure. ``tests`` are the hidden tests that decide verdicts;
    ``seen_tests`` may be shown to a model (e.g. MBPP's first assert, HumanEval's docstring examples).
    """

    task_id: str
    prompt: str
    entry_point: str
    tests: list[str]
    seen_tests: list[str] = field(default_factory=list)
    setup: str = ""
    canonical_solution: str | None = None
    benchmark: str = "custom"
    reference_cpu_s: float | None = None  # CPU time of the reference solution, where it is slow

    def cpu_budget(self, timeout_s: float) -> float:
        """The CPU budget for one sample: the requested timeout, but at least 4x the reference time,
        so a correct solution is never judged a timeout because the task itself is heavy."""
        return max(timeout_s, 4 * self.reference_cpu_s) if self.reference_cpu_s else timeout_s

    def to_dict(self) -> dict:
        return asdict(self)
