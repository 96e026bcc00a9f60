"""``Budget``: a generator (the teacher, the judge) that stops once it has spent a budget of tokens and/or US
dollars, and ``BudgetExceeded``, the one error of every budget.

* ``tokens``: prompt + completion tokens of every answer returned, cached or not (the caller writes them all to
  its records); counting starts at ``spent_tokens`` (what the caller counted on disk, so a resumed run means the
  same budget). A chat call is refused once the budget is reached; a call already running is finished, so the
  spend can pass the budget by one call. IterKD nests two: ``Budget(Budget(teacher, tokens=run, ...),
  tokens=round, ...)``.
* ``usd``: what the run's calls cost -- paid now plus what the cache hits had cost when first made (the
  ``ledger`` of the generator, an endpoint client: ``run_cost_usd``). A request is not sent once the cost has
  reached the budget; requests already in flight are completed and cached, so the spend can pass the budget by
  up to ``concurrency - 1`` calls. Counting the cached cost makes the cap mean the same across resumes:
  rerunning with the same budget stops at the same point without paying; a higher budget resumes where the last
  run stopped. The per-request check needs a generator whose ``chat`` takes ``gate=`` (``CallGenerator``).

``BudgetExceeded`` says which limit was reached (``limit``: "tokens" or "usd"), ``spent`` and ``budget`` (in
that unit); everything answered before it is kept (on disk, in the cache): rerun with a higher budget to go on.
``iterkd`` stops with exit code 3 and its one-line message.
"""

from __future__ import annotations

import threading

from iterkd.models.base import BaseGenerator
from iterkd.teacher.calls import Gate, Wrapper


class BudgetExceeded(Exception):
    """A budget is spent: ``limit`` ("tokens" or "usd"), ``spent`` and ``budget`` in that unit, ``what`` the
    budget's name ("run", "round 2", ""). Everything received is kept (records, cache): rerun with a higher budget
    to resume."""

    def __init__(self, message: str, *, limit: str, spent: float, budget: float, what: str = "") -> None:
        super().__init__(message)
        self.limit, self.spent, self.budget, self.what = limit, spent, budget, what


class Budget(Wrapper, BaseGenerator):
    """``generator`` with a budget of ``tokens`` and/or ``usd`` (see the module docstring). ``what`` names the
    budget in messages ("run", "round 2"). Other attributes are the generator's."""

    stage: str | None = None

    def __init__(
        self, generator, *, tokens: int | None = None, usd: float | None = None, spent_tokens: int = 0, what: str = ""
    ) -> None:
        Wrapper.__init__(self, generator)
        self.tokens, self.usd, self.spent_tokens, self.what = tokens, usd, spent_tokens, what
        self._lock = threading.Lock()

    def _prefix(self) -> str:
        return f"{self.what} " if self.what else ""

    def check_tokens(self) -> None:
        """Raise BudgetExceeded once the token budget is spent."""
        if self.tokens is not None and self.spent_tokens >= self.tokens:
            raise BudgetExceeded(
                f"{self._prefix()}teacher-token budget reached: {self.spent_tokens} of {self.tokens} tokens; "
                "everything answered so far is kept: rerun with a higher budget to go on from here",
                limit="tokens",
                spent=self.spent_tokens,
                budget=self.tokens,
                what=self.what,
            )

    def check_usd(self) -> None:
        """Raise BudgetExceeded once the run's cost has reached the USD budget."""
        if self.usd is None:
            return
        ledger = self.generator.ledger
        spent = ledger.run_cost_usd
        if spent >= self.usd:
            paid, earlier = ledger.total.cost_usd, ledger.total.cached_cost_usd
            cache = getattr(getattr(self.generator, "cache", None), "path", None)
            where = cache or "memory (not persistent: a rerun pays again)"
            raise BudgetExceeded(
                f"{self._prefix()}teacher budget reached: ${spent:.4f} of ${self.usd:.4f} (paid in this run "
                f"${paid:.4f}, earlier calls reused from the cache ${earlier:.4f}). Everything received so far is in "
                f"the cache ({where}); rerun with a higher budget_usd to resume without paying again.",
                limit="usd",
                spent=spent,
                budget=self.usd,
            )

    def _gate(self, outer: Gate | None) -> Gate | None:
        """The check run before each request: this budget's USD limit, then the enclosing budgets'."""
        if self.usd is None:
            return outer

        def gate() -> None:
            self.check_usd()
            if outer is not None:
                outer()

        return gate

    def chat(self, conversations, params=None, n: int = 1, stage: str | None = None, gate: Gate | None = None):
        self.check_tokens()
        kw = {"stage": stage or self.stage, "gate": self._gate(gate)}
        outs = self.generator.chat(conversations, params, n=n, **{k: v for k, v in kw.items() if v is not None})
        with self._lock:
            self.spent_tokens += sum(c.prompt_tokens + c.completion_tokens for o in outs for c in o)
        return outs
