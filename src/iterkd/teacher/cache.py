"""A persistent cache of teacher calls (SQLite), so a rerun or a resumed run never pays twice for one call.

Key: the SHA-256 of the canonical JSON (sorted keys, no whitespace, UTF-8) of
``{"v": 1, "model": <endpoint model>, "messages": [...], "sampling": {...}, "index": <sample index>}``
(``call_key``). The sampling dict holds every request parameter that changes the output (temperature, top_p,
max_tokens, seed, stop, top_k and extra body fields). The base URL is not part of the key: the same model
name on two endpoints is assumed to be the same model.

Value (one row): completion text, finish reason, prompt / completion token counts, cost in USD (what the
call cost when it was made) and the creation time (Unix seconds).

The database is in WAL mode; every insert is committed at once, so a crash loses at most the calls in
flight. One connection is shared by all threads behind a lock (SQLite work is tiny next to a network call).
``path=None`` keeps the cache in memory (nothing persists).

``CachedGenerator(generator, cache)`` puts the cache around a generator of calls (the endpoint client): every
call is first looked up; only misses are sent, and each answer is stored as soon as it arrives. A rerun never
pays twice for a call.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from iterkd.errors import UserError
from iterkd.models.base import Completion
from iterkd.teacher.calls import Call, CallGenerator, Gate, OnAnswer, Wrapper

CACHE_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key               TEXT PRIMARY KEY,
    model             TEXT NOT NULL,
    text              TEXT NOT NULL,
    finish_reason     TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd          REAL NOT NULL,
    created           REAL NOT NULL
)
"""


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def call_key(model: str, messages: list[dict], sampling: dict, index: int) -> str:
    """The cache key of sample ``index`` of ``messages`` sent to ``model`` with ``sampling``."""
    blob = canonical_json(
        {"v": CACHE_VERSION, "model": model, "messages": messages, "sampling": sampling, "index": index}
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedCall:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    created: float
    model: str = ""


class CompletionCache:
    """``get`` / ``get_many`` / ``put`` on a SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path).expanduser() if path else None
        self._lock = threading.Lock()
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path) if self.path else ":memory:", check_same_thread=False, timeout=30.0, isolation_level=None
            )
            if self.path is not None:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against a process crash
            self._conn.execute(_SCHEMA)
        except (sqlite3.Error, OSError) as e:
            raise UserError(f"cannot open the teacher cache {self.path}: {e}") from e

    def get(self, key: str) -> CachedCall | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: list[str]) -> dict[str, CachedCall]:
        out: dict[str, CachedCall] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(uniq), 500):
                chunk = uniq[i : i + 500]
                rows = self._conn.execute(
                    "SELECT key, text, finish_reason, prompt_tokens, completion_tokens, cost_usd, created, model "
                    f"FROM calls WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for k, *rest in rows:
                    out[k] = CachedCall(*rest)
        return out

    def put(
        self,
        key: str,
        *,
        model: str,
        text: str,
        finish_reason: str,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float,
        created: float | None = None,
    ) -> None:
        """Insert (or replace) one call and commit."""
        row = (key, model, text, finish_reason, int(prompt_tokens), int(completion_tokens), float(cost_usd),
               time.time() if created is None else created)  # fmt: skip
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?,?,?)", row)  # autocommit

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def total_cost(self) -> float:
        """What all cached calls cost when they were made."""
        with self._lock:
            return float(self._conn.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM calls").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass


class CachedGenerator(Wrapper, CallGenerator):
    """``generator`` (a ``CallGenerator`` with ``identity``, ``sampling_key`` and ``ledger``: the endpoint client)
    with ``cache`` in front (see the module docstring). A call is keyed by ``call_key(generator.identity,
    messages, generator.sampling_key(params), index)``. Answers from the cache are booked in the generator's
    ledger as cached, at what they cost when first made, once per use and before any request is sent (so a
    budget counts them). ``close`` closes the generator and the cache. Other attributes are the generator's;
    ``stats`` counts the chat calls made here."""

    def __init__(self, generator: CallGenerator, cache: CompletionCache) -> None:
        Wrapper.__init__(self, generator)
        CallGenerator.__init__(self)
        self.cache = cache

    def key(self, call: Call) -> str:
        gen = self.generator
        return call_key(gen.identity, call.messages, gen.sampling_key(call.params), call.index)

    def _answer(self, calls: list[Call], stage, gate: Gate | None, on_answer: OnAnswer | None) -> list[Completion]:
        keys = [self.key(c) for c in calls]
        hits = self.cache.get_many(keys)
        for k in keys:  # once per use: a conversation given twice in one call is one lookup, two uses
            if k in hits:
                h = hits[k]
                self.generator.ledger.add(
                    h.prompt_tokens, h.completion_tokens, cached=True, stage=stage, cost_usd=h.cost_usd
                )
        misses = {k: c for k, c in zip(keys, calls) if k not in hits}

        def store(call: Call, c: Completion, cost: float) -> None:
            self.cache.put(self.key(call), model=self.generator.model, text=c.text, finish_reason=c.finish_reason,
                           prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens, cost_usd=cost)  # fmt: skip
            if on_answer is not None:
                on_answer(call, c, cost)

        fresh = dict(zip(misses, self.generator.answer(list(misses.values()), stage=stage, gate=gate, on_answer=store)))
        return [
            Completion(h.text, h.prompt_tokens, h.completion_tokens, h.finish_reason)
            if (h := hits.get(k))
            else fresh[k]
            for k in keys
        ]

    def as_dict(self) -> dict:
        return {**self.generator.as_dict(), "stats": self.stats.as_dict()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.generator.close()
        finally:
            self.cache.close()
