"""The generation interface shared by the backends (interfaces and small helpers only; the factory is
``iterkd.models.load``).

A Generator turns chat conversations (lists of ``{"role", "content"}`` messages) into completions, using the
model's own chat template. Seeds: sample ``j`` of a conversation is drawn with ``sample_seed(params.seed,
conversation, j)``, a hash of the seed, the conversation's content and ``j`` -- so results do not depend on
the order or batching of conversations (llama.cpp backend; the transformers backend seeds per batch, see
``hf.py``). With ``temperature == 0`` decoding is greedy and the ``n`` completions are copies of one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Optional, Protocol, runtime_checkable

from pydantic import Field

from iterkd.config import ConfigModel
from iterkd.errors import UserError


class SamplingParams(ConfigModel):
    """How to sample (a config's ``student_sampling`` section; also built from a teacher's settings)."""

    where: ClassVar[str] = "sampling"

    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(512, ge=1)
    seed: int = 0
    stop: Optional[list[str]] = None
    top_k: int = Field(0, ge=0)  # 0 = no top-k filtering (same meaning in every backend)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop string) or "length" (max_tokens reached)


@dataclass
class GenStats:
    """Running totals of a generator, for throughput reports."""

    calls: int = 0
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        """Generated (completion) tokens per second of wall time spent in ``chat``."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def add(
        self, completions: list[list[Completion]], seconds: float, generated: list[Completion] | None = None
    ) -> None:
        """Count one ``chat`` call. ``generated``: the completions actually computed (greedy copies of one
        completion are returned ``n`` times but generated once); default: all of them."""
        self.calls += 1
        self.seconds += seconds
        self.completions += sum(len(row) for row in completions)
        for c in generated if generated is not None else [c for row in completions for c in row]:
            self.prompt_tokens += c.prompt_tokens
            self.completion_tokens += c.completion_tokens

    def as_dict(self) -> dict:
        return {
            "calls": self.calls,
            "completions": self.completions,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 2),
        }


@runtime_checkable
class Generator(Protocol):
    name: str
    backend: str
    stats: GenStats

    def chat(self, conversations: list[list[dict]], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        """One list per conversation, ``n`` completions each."""
        ...

    def close(self) -> None: ...


class BaseGenerator:
    """Common plumbing: stats, context manager, argument checks."""

    name: str = ""
    backend: str = ""
    # requests the backend works on at once (a server's slots, a client's threads): callers keep more than this
    # queued so that no slot waits for the slowest answer of a batch
    concurrent_requests: int = 1
    # chat() takes a list of SamplingParams, one per conversation (server clients)
    mixed_params: bool = False

    def __init__(self) -> None:
        self.stats = GenStats()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    @staticmethod
    def _check(conversations, n: int) -> None:
        if n < 1:
            raise UserError(f"n must be >= 1, got {n}")
        for conv in conversations:
            if not isinstance(conv, list) or not all(isinstance(m, dict) and "role" in m for m in conv):
                raise TypeError("each conversation must be a list of {'role': ..., 'content': ...} dicts")


class LazyGenerator:
    """A generator loaded on first use: a resumed stage whose records are all on disk loads no model and starts
    no server. Attribute access (``chat``, ``stats``, ...) loads it; ``close`` closes it only if it was loaded."""

    def __init__(self, load: Callable[[], Generator]):
        self._load = load
        self._gen: Generator | None = None

    @property
    def loaded(self) -> bool:
        return self._gen is not None

    def __getattr__(self, name: str):  # only for names this class does not define
        if name.startswith("_"):
            raise AttributeError(name)
        if self._gen is None:
            self._gen = self._load()
        return getattr(self._gen, name)

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()


def queue_size(generator, batch_size: int) -> int:
    """Prompts to hand ``generator`` per call: ``batch_size``, or 4x its ``concurrent_requests`` for a server or
    API client (more queued than slots keeps every slot busy while the longest answer of a batch finishes)."""
    return max(batch_size, 4 * getattr(generator, "concurrent_requests", 1))


def copies(c: Completion, n: int) -> list[Completion]:
    """Greedy decoding: the one completion, returned ``n`` times (generated once; counted once in stats)."""
    return [c] + [dataclasses.replace(c) for _ in range(n - 1)]


def sample_seed(seed: int, conversation: list[dict], index: int) -> int:
    """A 31-bit seed for sample ``index`` of ``conversation`` (stable across runs, orders and batchings)."""
    blob = json.dumps([seed, index, conversation], sort_keys=True, ensure_ascii=False).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


def truncate_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Cut ``text`` at the first occurrence of any stop string (excluded); return (text, whether cut)."""
    if not stop:
        return text, False
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
