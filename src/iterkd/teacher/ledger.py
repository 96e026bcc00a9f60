"""Teacher accounting: tokens and cost per call, in total and per stage (``Ledger``).

A cached call costs nothing now; what it cost when first made is kept apart (``cached_cost_usd``), so a budget
means the same across resumes (see ``iterkd.teacher.budget``).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass


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
