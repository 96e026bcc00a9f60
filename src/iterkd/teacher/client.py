"""The teacher client: any OpenAI-compatible chat endpoint as a ``Generator``.

One client covers closed APIs, vLLM, SGLang and llama.cpp's server (``openai`` package, chat completions).
``OpenAIChatGenerator`` implements the ``Generator`` protocol (``chat``, ``close``, ``stats``), so a method
uses a teacher exactly like a local model. ``TeacherConfig`` holds the settings; ``load_teacher(config)``
builds the generator. With ``served_model`` (default when neither ``base_url`` nor ``model`` is given:
``qwen2.5-coder-1.5b-instruct``) iterkd starts its own llama.cpp server (``LlamaServer``) and stops it on
``close()``.

Behaviour:

* Requests run in parallel on a thread pool of ``concurrency`` threads; results come back in input order.
* Seeds and greedy decoding follow ``base.py``: sample ``j`` of a conversation is sent with
  ``seed = sample_seed(params.seed, conversation, j)``; with ``temperature == 0`` one request is made per
  conversation and its completion is returned ``n`` times (the cache then only ever holds index 0, and the
  seed is left out of the key because it does not change a greedy answer).
* Every (conversation, sample index) is first looked up in the persistent cache (``cache.py``); only misses are
  sent, and each answer is written to the cache as soon as it arrives. A rerun never pays twice for a call.
* Retries: HTTP 408 / 409 / 429 / 5xx, timeouts and connection errors are retried ``max_retries`` times with
  exponential backoff and jitter (``backoff_base_s * 2**attempt``, capped at ``backoff_max_s``, the wait drawn
  uniformly from its upper half; a ``Retry-After`` header is honoured up to the cap), by ``tenacity``. The
  ``openai`` client's own retries are off. 401 / 403 / 404 / 400 / 422 fail at once with a ``UserError`` naming
  what to fix.
* Timeouts: a request is abandoned (and retried) after ``TeacherConfig.request_timeout_s(max_tokens)``:
  ``timeout_s`` when set, else the time its ``max_tokens`` take at ``expected_tokens_per_s``, at least
  ``min_timeout_s`` -- a stalled request is retried after about as long as a slow answer takes, not 10 minutes.
* Accounting: ``generator.ledger`` (a ``Ledger``) counts paid calls and cache hits, tokens and cost, in total and
  per stage (``generator.stage = "persd-repair"`` or ``chat(..., stage=...)``). Cache hits cost nothing now;
  what they cost when first made is kept apart (``cached_cost_usd``).
* Budget: with ``budget_usd`` set, a request is not sent once the run's cost -- paid now plus what the cache
  hits used so far had cost when first made -- has reached the budget: ``BudgetExceeded`` is raised. Counting
  the cached cost makes the cap mean the same across resumes: rerunning with the same budget stops at the same
  point without paying; a higher budget resumes where the last run stopped. Requests already in flight are
  completed and cached, so the spend can pass the budget by up to ``concurrency - 1`` calls.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from iterkd.errors import UserError
from iterkd.models.base import BaseGenerator, Completion, SamplingParams, copies, sample_seed, truncate_at_stop
from iterkd.teacher.cache import CompletionCache, call_key
from iterkd.teacher.config import TeacherConfig
from iterkd.teacher.ledger import BudgetExceeded, Ledger

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
_RETRY_STATUS = {408, 409, 429}
_MAX_STOP = 4  # the OpenAI API takes at most 4 stop strings; the rest are applied here


class TeacherRequestError(UserError):
    """A request still failed after all retries (endpoint down, overloaded, timing out)."""


def _is_local(base_url: str) -> bool:
    return (urlparse(base_url).hostname or "") in _LOCAL_HOSTS


@dataclass
class _Job:
    key: str
    conv: list[dict]
    index: int
    seed: int
    params: SamplingParams
    extra: dict
    result: Completion | None = None
    cached: bool = False


class OpenAIChatGenerator(BaseGenerator):
    """A teacher behind an OpenAI-compatible endpoint (see the module docstring).

    Attributes: ``ledger`` (Ledger), ``stats`` (GenStats; fresh completions only), ``stage`` (default stage
    name for accounting), ``requests_sent`` (HTTP requests, retries included), ``retries``, ``server`` (the
    embedded LlamaServer or None), ``cache``.
    """

    backend = "openai"
    mixed_params = True

    def __init__(self, config: TeacherConfig | None = None, **overrides) -> None:
        super().__init__()
        if config is None:
            config = TeacherConfig.from_dict(overrides)
        elif overrides:
            config = TeacherConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        self.stage: str | None = None
        self.requests_sent = 0
        self.requests_by_endpoint: Counter = Counter()  # index into base_urls -> requests sent there
        self.retries = 0
        self.server = None
        self._cache_model: str | None = None  # what the cache keys on instead of the model name, if set
        self._closed = False
        self._count_lock = threading.Lock()
        self._last_end = 0.0  # when the latest chat call ended (overlapping calls count their wall time once)
        self._queued: set[Future] = set()  # requests of running chat calls (cancel_pending)
        try:
            import openai
        except ImportError as e:
            raise UserError("the teacher client needs the openai package (pip install openai)") from e
        self._openai = openai
        self.ledger = Ledger(config.price_input_per_mtok, config.price_output_per_mtok)
        self.cache = CompletionCache(config.resolved_cache_path())
        try:
            self._connect()
            key = self._api_key()
            self._clients = [openai.OpenAI(api_key=key, base_url=u, max_retries=0) for u in self.base_urls]
        except BaseException:
            self.close()
            raise
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="iterkd-teacher")
        self.concurrent_requests = config.concurrency

    def _connect(self) -> None:
        """Start the embedded server (``served_model``) or take the configured endpoint."""
        config = self.config
        if config.served_model is None:
            self.base_urls, self.model = config.base_urls(), str(config.model)
            self.base_url = ", ".join(self.base_urls)  # for messages
            self.name = self.model
            return
        from iterkd.models.llama_server import LlamaServer

        self.server = LlamaServer(
            config.served_model,
            n_ctx=config.server_n_ctx,
            n_threads=config.server_threads,
            log_path=config.server_log,
            startup_timeout_s=config.server_startup_timeout_s,
            impl=config.server_impl,
            parallel=config.server_parallel or config.concurrency,
            flash_attn=config.server_flash_attn,
            tensor_parallel=config.server_tensor_parallel,
            data_parallel=config.server_data_parallel,
        ).start()
        self.base_url, self.model = self.server.base_url, self.server.model_name
        self.base_urls = [self.base_url]
        self.name = self.model
        path = self.server.model_path
        if config.server_impl == "vllm":  # other weights (and numerics) than llama.cpp's GGUF of the same name
            self._cache_model = f"{self.model}@vllm:{self.server.vllm_model}"
        elif path is not None and str(config.served_model).strip().lower().endswith(".gguf"):
            # a file's name says nothing of its weights (every trained student is final.q8_0.gguf):
            # key the cache on the file's identity as well
            st = Path(path).stat()
            self._cache_model = f"{self.model}@{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"

    # ----------------------------------------------------------------------------------------- helpers

    def _api_key(self) -> str:
        env = self.config.api_key_env
        key = os.environ.get(env, "") if env else ""
        if key:
            return key
        if not env or self.server is not None or all(_is_local(u) for u in self.base_urls):
            return "not-needed"  # the client insists on a non-empty string
        raise UserError(
            f"{self.model} at {self.base_url}: no API key; set the environment variable {env} "
            "(a teacher or judge config may name another variable in api_key_env, or an empty value for endpoints "
            "without keys)"
        )

    def _extra_body(self, params: SamplingParams) -> dict:
        extra: dict = {}
        if self.server is not None:
            # llama_cpp.server defaults differ from plain sampling (top_k 40, min_p 0.05, repeat_penalty 1.1):
            # use the same neutral settings as the in-process llama.cpp backend.
            extra.update(top_k=params.top_k, min_p=0.0, repeat_penalty=1.0)
        elif params.top_k:
            extra["top_k"] = params.top_k  # vLLM / SGLang / llama.cpp extension; closed APIs reject it
        extra.update(self.config.extra_body or {})
        return extra

    def _sampling_key(self, params: SamplingParams, extra: dict) -> dict:
        return {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": None if params.greedy else params.seed,
            "stop": list(params.stop) if params.stop else None,
            "extra_body": extra,
        }

    def _budget_check(self) -> None:
        budget = self.config.budget_usd
        if budget is None:
            return
        spent = self.ledger.run_cost_usd
        if spent >= budget:
            paid, earlier = self.ledger.total.cost_usd, self.ledger.total.cached_cost_usd
            where = self.cache.path or "memory (not persistent: a rerun pays again)"
            raise BudgetExceeded(
                f"teacher budget reached: ${spent:.4f} of ${budget:.4f} (paid in this run ${paid:.4f}, "
                f"earlier calls reused from the cache ${earlier:.4f}). Everything received so far is in the cache "
                f"({where}); rerun with a higher budget_usd to resume without paying again.",
                spent_usd=spent,
                budget_usd=budget,
            )

    def _backoff(self, attempt: int, err: Exception | None) -> float:
        cfg = self.config
        cap = min(cfg.backoff_max_s, cfg.backoff_base_s * (2**attempt))
        delay = cap / 2 + random.uniform(0, cap / 2)
        response = getattr(err, "response", None)
        if response is not None:
            try:
                after = float(response.headers.get("retry-after", ""))
                delay = max(delay, min(after, cfg.backoff_max_s))
            except (TypeError, ValueError):
                pass
        return delay

    def _fatal(self, err: Exception) -> Exception:
        """A UserError for a non-retryable HTTP status."""
        o = self._openai
        code = getattr(err, "status_code", None)
        detail = getattr(err, "message", None) or str(err)
        env = self.config.api_key_env
        if isinstance(err, o.AuthenticationError):
            fix = (
                f"check the environment variable {env}" if env
                else "set api_key_env to the name of the environment variable that holds the key"
            )  # fmt: skip
            return UserError(f"endpoint {self.base_url} rejected the API key (HTTP 401): {fix}. Server said: {detail}")
        if isinstance(err, o.PermissionDeniedError):
            return UserError(
                f"endpoint {self.base_url} refused access to model {self.model!r} (HTTP 403; key from {env}). "
                f"Server said: {detail}"
            )
        if isinstance(err, o.NotFoundError):
            return UserError(
                f"endpoint answered HTTP 404 for model {self.model!r} at base URL {self.base_url}: the model "
                f"is unknown there or the base URL is wrong (OpenAI-compatible servers usually end in /v1). "
                f"Server said: {detail}"
            )
        return UserError(
            f"endpoint {self.base_url} rejected the request for model {self.model!r} (HTTP {code}): {detail}"
        )

    def _retryable(self, err: Exception) -> bool:
        o = self._openai
        if isinstance(err, o.APIConnectionError):  # includes APITimeoutError
            return True
        if isinstance(err, o.APIStatusError):
            return err.status_code in _RETRY_STATUS or err.status_code >= 500
        return False

    @staticmethod
    def _describe(err: Exception) -> str:
        code = getattr(err, "status_code", None)
        if code is not None:
            return f"HTTP {code}: {getattr(err, 'message', None) or err}"
        if type(err).__name__ == "APITimeoutError":
            return "request timed out"
        return f"{type(err).__name__}: {err}"

    def _request(self, conv: list[dict], params: SamplingParams, seed: int, extra: dict) -> Completion:
        """One completion; retryable errors are retried (tenacity) with ``_backoff`` waits."""
        from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt

        cfg = self.config
        kwargs = {
            "model": self.model,
            "messages": conv,
            "temperature": params.temperature,
            "top_p": params.top_p,
            cfg.max_tokens_param: params.max_tokens,
            "seed": seed,
            "n": 1,
            "timeout": cfg.request_timeout_s(params.max_tokens),
        }
        if params.stop:
            kwargs["stop"] = list(params.stop)[:_MAX_STOP]
        if extra:
            kwargs["extra_body"] = extra
        attempts = cfg.max_retries + 1
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            retry=retry_if_exception(self._retryable),
            wait=lambda state: self._backoff(state.attempt_number - 1, state.outcome.exception()),
            before_sleep=lambda state: self._count("retries"),
        )
        try:
            resp = retrying(self._send, kwargs)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise TeacherRequestError(
                f"request to {self.base_url} (model {self.model!r}) failed after {attempts} attempt(s): "
                f"{self._describe(last)}"
            ) from last
        return self._parse(resp, params)

    def _count(self, name: str) -> None:
        with self._count_lock:
            setattr(self, name, getattr(self, name) + 1)

    def _send(self, kwargs: dict):
        """One HTTP request; a non-retryable API error becomes a UserError naming what to fix."""
        if self._closed:
            raise UserError("teacher client closed while requests were pending")
        with self._count_lock:  # several base URLs: requests (and a retry: the next attempt) go round in turn
            turn = self.requests_sent % len(self._clients)
            self.requests_sent += 1
            self.requests_by_endpoint[turn] += 1
        try:
            return self._clients[turn].chat.completions.create(**kwargs)
        except self._openai.APIError as err:
            if not self._retryable(err):
                raise self._fatal(err) from err
            raise

    @staticmethod
    def _parse(resp, params: SamplingParams) -> Completion:
        if not getattr(resp, "choices", None):
            raise TeacherRequestError(f"endpoint returned no choices: {str(resp)[:300]}")
        choice = resp.choices[0]
        text = (choice.message.content if choice.message is not None else None) or ""
        text, cut = truncate_at_stop(text, params.stop)  # stop strings beyond the API's limit of 4
        usage = getattr(resp, "usage", None)
        return Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            finish_reason="length" if choice.finish_reason == "length" and not cut else "stop",
        )

    def _fetch(self, job: _Job, stage: str | None) -> None:
        self._budget_check()
        c = self._request(job.conv, job.params, job.seed, job.extra)
        cost = self.ledger.add(c.prompt_tokens, c.completion_tokens, cached=False, stage=stage)
        self.cache.put(
            job.key,
            model=self.model,
            text=c.text,
            finish_reason=c.finish_reason,
            prompt_tokens=c.prompt_tokens,
            completion_tokens=c.completion_tokens,
            cost_usd=cost,
        )
        job.result = c

    # ----------------------------------------------------------------------------------------- Generator API

    def _plan(self, conversations, params: list[SamplingParams], n: int) -> tuple[dict[str, _Job], list[list[str]]]:
        """One job per distinct (conversation, sampling, sample index) -- one per conversation when greedy -- and
        each conversation's job keys."""
        jobs: dict[str, _Job] = {}
        layout: list[list[str]] = []
        for conv, p in zip(conversations, params):
            extra = self._extra_body(p)
            skey = self._sampling_key(p, extra)
            keys = []
            for j in range(1 if p.greedy else n):
                k = call_key(self._cache_model or self.model, conv, skey, j)
                if k not in jobs:
                    jobs[k] = _Job(k, conv, j, sample_seed(p.seed, conv, j), p, extra)
                keys.append(k)
            layout.append(keys)
        return jobs, layout

    def _from_cache(self, jobs: dict[str, _Job], layout: list[list[str]], stage: str | None) -> None:
        uses = Counter(k for keys in layout for k in keys)
        for k, hit in self.cache.get_many(list(jobs)).items():
            job = jobs[k]
            job.result = Completion(hit.text, hit.prompt_tokens, hit.completion_tokens, hit.finish_reason)
            job.cached = True
            # Booked once per use (a conversation given twice in one call: one lookup, two uses), before any
            # request is sent, so that the budget check counts them.
            for _ in range(uses[k]):
                self.ledger.add(
                    hit.prompt_tokens, hit.completion_tokens, cached=True, stage=stage, cost_usd=hit.cost_usd
                )

    def _fetch_all(self, misses: list[_Job], stage: str | None) -> None:
        """Send the cache misses in parallel, sample-major (every conversation's first sample, then the seconds:
        a server slot that just answered a prompt is likely to get that prompt's next sample and reuse its cached
        prefix); on the first error let running requests finish (their answers are cached and booked), drop the
        rest and raise (a budget stop first)."""
        self._budget_check()
        misses = sorted(misses, key=lambda j: j.index)  # stable: conversation order within a sample index
        futures: list[Future] = [self._pool.submit(self._fetch, j, stage) for j in misses]
        with self._count_lock:
            self._queued.update(futures)
        try:
            pending = _wait(futures, first_exception=True)
        except BaseException:  # Ctrl-C: drop what has not started; running requests finish and are cached
            for f in futures:
                f.cancel()
            raise
        finally:
            with self._count_lock:
                self._queued.difference_update(futures)
        if any(f.cancelled() for f in futures):  # cancel_pending() from another thread (its caller was stopped)
            _wait(futures)
            raise TeacherRequestError("teacher requests cancelled")
        errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception()]
        if errors:
            for f in pending:
                f.cancel()
            _wait(futures)
            budget = [e for e in errors if isinstance(e, BudgetExceeded)]
            raise (budget or errors)[0]

    def cancel_pending(self) -> None:
        """Drop the requests of every chat call that have not been sent yet (those calls raise); requests in
        flight finish and are cached. For a caller that runs chat calls in other threads and is stopped."""
        with self._count_lock:
            queued = list(self._queued)
        for f in queued:
            f.cancel()

    def chat(
        self,
        conversations: list[list[dict]],
        params: SamplingParams | list[SamplingParams] | None = None,
        n: int = 1,
        stage: str | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions per conversation, in input order (``params`` default: the config's sampling; a list
        gives each conversation its own, so that one call can mix e.g. the seeds of several samples and keep every
        server slot busy)."""
        if self._closed:
            raise UserError("teacher client is closed")
        params = params if params is not None else self.config.sampling()
        per_conv = list(params) if isinstance(params, (list, tuple)) else [params] * len(conversations)
        if len(per_conv) != len(conversations):
            raise ValueError(f"{len(per_conv)} sampling settings for {len(conversations)} conversations")
        self._check(conversations, n)
        stage = stage or self.stage
        start = time.perf_counter()
        jobs, layout = self._plan(conversations, per_conv, n)
        self._from_cache(jobs, layout, stage)
        misses = [j for j in jobs.values() if not j.cached]
        if misses:
            self._fetch_all(misses, stage)
        results = [
            copies(dataclasses.replace(jobs[keys[0]].result), n)
            if p.greedy
            else [dataclasses.replace(jobs[k].result) for k in keys]
            for p, keys in zip(per_conv, layout)
        ]
        ended = time.perf_counter()
        with self._count_lock:  # calls may overlap (``run_stage`` keeps two in flight): count wall time once
            self.stats.add(results, ended - max(start, self._last_end), [j.result for j in misses])
            self._last_end = max(self._last_end, ended)
        return results

    def as_dict(self) -> dict:
        """Teacher description and accounting, for data cards."""
        return {
            "backend": self.backend,
            "model": self.model if hasattr(self, "model") else None,
            "base_url": self.base_url if hasattr(self, "base_url") else None,
            "served_model": self.config.served_model,
            "requests_sent": self.requests_sent,
            **(
                {"requests_by_endpoint": {u: self.requests_by_endpoint[i] for i, u in enumerate(self.base_urls)}}
                if len(getattr(self, "base_urls", [])) > 1
                else {}
            ),  # fmt: skip
            "retries": self.retries,
            "usage": self.ledger.as_dict(),
            "stats": self.stats.as_dict(),
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for client in getattr(self, "_clients", []):  # one HTTP client per endpoint
            try:
                client.close()
            except Exception:
                pass
        if self.server is not None:
            self.server.stop()
        cache = getattr(self, "cache", None)
        if cache is not None:
            cache.close()


def _wait(futures: list[Future], first_exception: bool = False) -> list[Future]:
    """``concurrent.futures.wait`` that also returns once a future is cancelled (a cancelled future that no pool
    thread ever picks up, e.g. after the pool shut down, never wakes ``wait``); returns the futures not done."""
    while True:
        _, pending = wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION if first_exception else "ALL_COMPLETED")
        if not pending or any(f.cancelled() for f in futures):
            return list(pending)
        if first_exception and any(f.done() and f.exception() is not None for f in futures):
            return list(pending)


def load_teacher(config: TeacherConfig | None = None, **overrides) -> OpenAIChatGenerator:
    """The teacher generator for ``config`` (default: the embedded ``DEFAULT_TEACHER``); fields can be
    overridden by keyword. With ``served_model`` the llama.cpp server is started now and stopped by ``close()``."""
    return OpenAIChatGenerator(config, **overrides)
