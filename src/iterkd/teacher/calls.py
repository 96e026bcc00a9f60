"""Generators made of calls: the interface shared by the endpoint client (endpoint.py) and the wrappers around
it (``CachedGenerator`` in cache.py, ``Budget`` in budget.py).

A ``Call`` is one completion asked of a model: a conversation, its sampling settings and a sample index (sample
``j`` is sent with ``seed = sample_seed(params.seed, messages, j)``, see ``iterkd.models.base``).
``CallGenerator.chat`` turns conversations into calls -- ``n`` per conversation, or one when decoding is greedy
(its completion is returned ``n`` times) -- answers them with ``answer`` and puts the completions back in input
order. ``answer(calls, stage=, gate=, on_answer=)`` returns one completion per call, in order (a call given
twice is answered once); ``gate()`` runs before each request is sent and raises to stop it (a budget);
``on_answer(call, completion, cost_usd)`` sees each answer the endpoint gave as soon as it arrives (the cache
stores it). A wrapper implements ``answer`` with its generator's ``answer`` and passes every other attribute
through to it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from iterkd.errors import UserError
from iterkd.models.base import BaseGenerator, Completion, SamplingParams, copies, sample_seed

Gate = Callable[[], None]
OnAnswer = Callable[["Call", Completion, float], None]


@dataclass(frozen=True)
class Call:
    messages: list[dict]
    params: SamplingParams
    index: int = 0  # the sample index

    @property
    def seed(self) -> int:
        return sample_seed(self.params.seed, self.messages, self.index)


class CallGenerator(BaseGenerator):
    """A ``Generator`` whose ``chat`` is made of calls (see the module docstring). ``stats`` counts its chat
    calls (tokens: answers the endpoint gave, not those reused); ``stage`` is the default stage name for
    accounting (``chat(..., stage=)`` overrides it)."""

    mixed_params = True  # chat() takes one SamplingParams per conversation
    stage: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self._closed = False
        self._stats_lock = threading.Lock()
        self._last_end = 0.0  # when the latest chat call ended (overlapping calls count their wall time once)

    def answer(
        self,
        calls: list[Call],
        *,
        stage: str | None = None,
        gate: Gate | None = None,
        on_answer: OnAnswer | None = None,
    ) -> list[Completion]:
        """One completion per call, in order (each part answers in ``_answer``)."""
        if self._closed:
            raise UserError("teacher client is closed")
        return self._answer(calls, stage, gate, on_answer)

    def _answer(self, calls: list[Call], stage, gate, on_answer) -> list[Completion]:  # pragma: no cover
        raise NotImplementedError

    def chat(
        self,
        conversations: list[list[dict]],
        params: SamplingParams | list[SamplingParams] | None = None,
        n: int = 1,
        stage: str | None = None,
        gate: Gate | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions per conversation, in input order (``params`` default: the config's sampling; a list
        gives each conversation its own, so that one call can mix e.g. the seeds of several samples and keep every
        server slot busy). ``gate``: run before each request is sent (see the module docstring)."""
        if self._closed:
            raise UserError("teacher client is closed")
        params = params if params is not None else self.config.sampling()
        per_conv = list(params) if isinstance(params, (list, tuple)) else [params] * len(conversations)
        if len(per_conv) != len(conversations):
            raise ValueError(f"{len(per_conv)} sampling settings for {len(conversations)} conversations")
        self._check(conversations, n)
        rows = [[Call(conv, p, j) for j in range(1 if p.greedy else n)] for conv, p in zip(conversations, per_conv)]
        fresh: list[Completion] = []
        start = time.perf_counter()
        answers = iter(
            self.answer(
                [c for row in rows for c in row],
                stage=stage or self.stage,
                gate=gate,
                on_answer=lambda call, completion, cost: fresh.append(completion),
            )
        )
        results = []
        for p, row in zip(per_conv, rows):
            got = [next(answers) for _ in row]
            results.append(
                copies(dataclasses.replace(got[0]), n) if p.greedy else [dataclasses.replace(c) for c in got]
            )
        ended = time.perf_counter()
        with self._stats_lock:  # calls may overlap (``run_stage`` keeps two in flight): count wall time once
            self.stats.add(results, ended - max(start, self._last_end), fresh)
            self._last_end = max(self._last_end, ended)
        return results


class Wrapper:
    """Mixin of a generator around another (``generator``): attributes it does not define are its generator's.
    Touches its generator only when used (it may be a ``LazyGenerator`` that starts nothing until then)."""

    def __init__(self, generator) -> None:
        self.generator = generator

    def __getattr__(self, name: str):  # only for names the wrapper does not define
        if name.startswith("_") or name == "generator":
            raise AttributeError(name)
        return getattr(self.generator, name)

    # BaseGenerator's class defaults would hide the generator's values
    @property
    def name(self) -> str:
        return self.generator.name

    @property
    def backend(self) -> str:
        return self.generator.backend

    @property
    def concurrent_requests(self) -> int:
        return getattr(self.generator, "concurrent_requests", 1)

    @property
    def mixed_params(self) -> bool:
        return bool(getattr(self.generator, "mixed_params", False))

    def close(self) -> None:
        self.generator.close()
