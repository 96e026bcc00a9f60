"""Teacher accounting: tokens and cost per call, in total and per stage (``Ledger``), and the budget error.

A cached call costs nothing now; what it cost when first made is kept apart (``cached_cost_usd``), so a budget
means the same across resumes (see ``iterkd.teacher.client``).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass


class BudgetExceeded(Exception):
    """The teacher budget is spent. Everything received is in the cache: rerun with a higher budget to resume."""

    def __init__(self, message: str, *, spent_usd: float, budget_usd: float) -> None:
        super().__init__(message)
        self.spent_usd = spent_usd
        self.budget_usd = budget_usd


class TokenBudgetReached(BudgetExceeded):
    """A token budget (``TokenBudget``) is spent; what was answered is on disk and in the cache."""

    def __init__(self, message: str, *, spent_tokens: int, budget_tokens: int) -> None:
        Exception.__init__(self, message)
        self.spent_usd = self.budget_usd = 0.0
        self.spent_tokens, self.budget_tokens = spent_tokens, budget_tokens


class TokenBudget:
    """A generator (the teacher, the judge) that refuses to send a call once ``spent`` tokens (prompt +
    completion) have reached ``budget``: the caller's stage engine has appended every earlier batch, so a rerun
    with a higher budget resumes where this one stopped. ``spent`` starts at what the caller counted on disk
    (a resumed run means the same budget), and grows by every answer returned, cached or not (those are
    written to the same records). A batch in flight is finished, so the spend can pass the budget by one
    batch. Other attributes (``concurrent_requests``, ``stats``...) are the wrapped generator's."""

    def __init__(self, generator, budget: int | None, spent: int, what: str) -> None:
        self._gen, self.budget, self.spent, self.what = generator, budget, spent, what

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._gen, name)

    def chat(self, conversations, params, n: int = 1):
        if self.budget is not None and self.spent >= self.budget:
            raise TokenBudgetReached(
                f"{self.what} teacher-token budget reached: {self.spent} of {self.budget} tokens; everything "
                "answered so far is kept: rerun with a higher budget to go on from here",
                spent_tokens=self.spent,
                budget_tokens=self.budget,
            )
        outs = self._gen.chat(conversations, params, n=n)
        self.spent += sum(c.prompt_tokens + c.completion_tokens for o in outs for c in o)
        return outs

    def close(self) -> None:
        self._gen.close()


@dataclass
class Usage:
    """Totals of teacher calls. ``calls``/tokens/``cost_usd``: requests answered by the endpoint in this run
    (paid); ``cached``/``cached_*``: answered from the cache (free now; ``cached_cost_usd`` is what they cost
    when first made)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    cached_cost_usd: float = 0.0

    def add(self, prompt_tokens: int, completion_tokens: int, cached: bool = False, cost_usd: float = 0.0) -> None:
        if cached:
            self.cached += 1
            self.cached_prompt_tokens += prompt_tokens
            self.cached_completion_tokens += completion_tokens
            self.cached_cost_usd += cost_usd
        else:
            self.calls += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.cost_usd += cost_usd

    @property
    def run_cost_usd(self) -> float:
        """Paid now plus what the cached calls cost when first made (the cost of the run's data)."""
        return self.cost_usd + self.cached_cost_usd

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["cost_usd"] = round(self.cost_usd, 6)
        d["cached_cost_usd"] = round(self.cached_cost_usd, 6)
        return d


class Ledger:
    """Token and cost accounting, in total and per stage; thread-safe."""

    def __init__(self, price_input_per_mtok: float = 0.0, price_output_per_mtok: float = 0.0) -> None:
        self.price_input_per_mtok = price_input_per_mtok
        self.price_output_per_mtok = price_output_per_mtok
        self.total = Usage()
        self.by_stage: dict[str, Usage] = {}
        self._lock = threading.Lock()

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_input_per_mtok + completion_tokens * self.price_output_per_mtok) / 1e6

    def add(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cached: bool = False,
        stage: str | None = None,
        cost_usd: float | None = None,
    ) -> float:
        """Count one call; return its cost (``cost_usd`` default: from the prices). A cached call's cost is
        booked as ``cached_cost_usd``, not as spending."""
        cost = self.cost(prompt_tokens, completion_tokens) if cost_usd is None else cost_usd
        with self._lock:
            self.total.add(prompt_tokens, completion_tokens, cached, cost)
            if stage:
                self.by_stage.setdefault(stage, Usage()).add(prompt_tokens, completion_tokens, cached, cost)
        return cost

    @property
    def spent_usd(self) -> float:
        return self.total.cost_usd

    @property
    def run_cost_usd(self) -> float:
        return self.total.run_cost_usd

    def as_dict(self) -> dict:
        with self._lock:
            return {
                "price_input_per_mtok": self.price_input_per_mtok,
                "price_output_per_mtok": self.price_output_per_mtok,
                **self.total.as_dict(),
                "by_stage": {k: v.as_dict() for k, v in self.by_stage.items()},
            }
