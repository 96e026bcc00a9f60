"""The teacher client: any OpenAI-compatible chat endpoint as a ``Generator``.

One client covers closed APIs, vLLM, SGLang and llama.cpp's server (``openai`` package, chat completions).
``OpenAIChatGenerator`` implements the ``Generator`` protocol (``chat``, ``close``, ``stats``), so a method
uses a teacher exactly like a local model. ``TeacherConfig`` holds the settings; ``load_teacher(config)``
builds the generator. With ``served_model`` (default when neither ``base_url`` nor ``model`` is given:
``qwen2.5-coder-1.5b-instruct``) iterkd starts its own ``llama_cpp.server`` (``LlamaServer``) and stops it on
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
  uniformly from its upper half; a ``Retry-After`` header is honoured up to the cap). The ``openai`` client's own
  retries are off. 401 / 403 / 404 / 400 / 422 fail at once with a ``UserError`` naming what to fix.
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
from iterkd.models.base import BaseGenerator, Completion, SamplingParams, sample_seed, truncate_at_stop
from iterkd.models.cache import CompletionCache, call_key

DEFAULT_TEACHER = "qwen2.5-coder-1.5b-instruct"
OPENAI_BASE_URL = "https://api.openai.com/v1"
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
_RETRY_STATUS = {408, 409, 429}
_MAX_STOP = 4  # the OpenAI API takes at most 4 stop strings; the rest are applied here


class BudgetExceeded(Exception):
    """The teacher budget is spent. Everything received is in the cache: rerun with a higher budget to resume."""

    def __init__(self, message: str, *, spent_usd: float, budget_usd: float) -> None:
        super().__init__(message)
        self.spent_usd = spent_usd
        self.budget_usd = budget_usd


class TeacherRequestError(UserError):
    """A request still failed after all retries (endpoint down, overloaded, timing out)."""


# --------------------------------------------------------------------------------------------- config


@dataclass
class TeacherConfig:
    """Settings of a teacher endpoint.

    base_url: the OpenAI-compatible base URL (``.../v1``); None with a ``model`` = the OpenAI API; None with
    neither ``model`` nor ``served_model`` = the embedded default teacher (``DEFAULT_TEACHER``).
    model: the model name on the endpoint (for ``served_model``: set automatically).
    api_key_env: name of the environment variable holding the key; None / "" = send no key. Local endpoints
    (127.0.0.1, localhost) work without the variable being set.
    cache_path: SQLite file of the call cache; None = ``<iterkd cache>/teacher-cache.sqlite``; ":memory:" =
    nothing persists.
    served_model: a registry name or ``.gguf`` path that iterkd serves itself (``LlamaServer``, ``server_*``
    settings); excludes ``base_url``. server_impl: "auto" (llama.cpp's native llama-server if built, else
    ``llama_cpp.server``), "native" or "python". server_parallel: requests the native server decodes together
    (None = ``concurrency``).
    extra_body: extra JSON fields sent with every request (e.g. ``{"min_p": 0}`` for vLLM); part of the
    cache key.
    max_tokens_param: the request field for the token limit ("max_tokens", or "max_completion_tokens" for
    OpenAI reasoning models).
    """

    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    temperature: float = 0.0
    top_p: float = 0.95
    max_tokens: int = 1024
    seed: int = 0
    top_k: int = 0
    concurrency: int = 4
    timeout_s: float = 600.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    budget_usd: float | None = None
    cache_path: str | None = None
    served_model: str | None = None
    server_n_ctx: int = 4096
    server_threads: int | None = None
    server_log: str | None = None
    server_startup_timeout_s: float = 300.0
    server_impl: str = "auto"
    server_parallel: int | None = None
    extra_body: dict | None = None
    max_tokens_param: str = "max_tokens"

    def __post_init__(self) -> None:
        if self.served_model is not None and self.base_url is not None:
            raise UserError(
                f"teacher: give either base_url ({self.base_url}) or served_model ({self.served_model}), not both"
            )
        if self.served_model is None and self.base_url is None:
            if self.model is None:
                self.served_model = DEFAULT_TEACHER
            else:
                self.base_url = OPENAI_BASE_URL
        if self.served_model is not None:
            if not str(self.served_model).strip():
                raise UserError("teacher: served_model is empty")
        else:
            url = urlparse(str(self.base_url))
            if url.scheme not in ("http", "https") or not url.netloc:
                raise UserError(
                    f"teacher: base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {self.base_url!r}"
                )
            if not self.model or not str(self.model).strip():
                raise UserError(f"teacher: model is required with base_url {self.base_url}")
        self.sampling()  # validates temperature, top_p, max_tokens
        checks = [
            (self.concurrency >= 1, f"concurrency must be >= 1, got {self.concurrency}"),
            (self.timeout_s > 0, f"timeout_s must be > 0, got {self.timeout_s}"),
            (self.max_retries >= 0, f"max_retries must be >= 0, got {self.max_retries}"),
            (self.backoff_base_s >= 0, f"backoff_base_s must be >= 0, got {self.backoff_base_s}"),
            (self.backoff_max_s >= self.backoff_base_s, "backoff_max_s must be >= backoff_base_s"),
            (self.price_input_per_mtok >= 0, f"price_input_per_mtok must be >= 0, got {self.price_input_per_mtok}"),
            (self.price_output_per_mtok >= 0, f"price_output_per_mtok must be >= 0, got {self.price_output_per_mtok}"),
            (self.budget_usd is None or self.budget_usd > 0, f"budget_usd must be > 0 (or unset), got {self.budget_usd}"),
            (self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}"),
            (self.server_n_ctx >= 256, f"server_n_ctx must be >= 256, got {self.server_n_ctx}"),
            (self.server_impl in ("auto", "native", "python"),
             f"server_impl must be auto, native or python, got {self.server_impl!r}"),
            (self.server_parallel is None or self.server_parallel >= 1,
             f"server_parallel must be >= 1, got {self.server_parallel}"),
            (self.server_startup_timeout_s > 0, "server_startup_timeout_s must be > 0"),
            (self.max_tokens_param in ("max_tokens", "max_completion_tokens"),
             f"max_tokens_param must be 'max_tokens' or 'max_completion_tokens', got {self.max_tokens_param!r}"),
            (self.extra_body is None or isinstance(self.extra_body, dict), "extra_body must be a dict"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise UserError(f"teacher: {msg}")

    @classmethod
    def from_dict(cls, d: dict) -> "TeacherConfig":
        """Build from a dict (a config file's ``teacher`` section); unknown keys are an error."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise UserError(f"teacher: unknown setting(s) {', '.join(unknown)}; known: {', '.join(names)}")
        return cls(**d)

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed, top_k=self.top_k
        )

    def resolved_cache_path(self) -> str | None:
        """The cache file (None = in memory)."""
        if self.cache_path == ":memory:":
            return None
        if self.cache_path:
            return str(Path(self.cache_path).expanduser())
        from iterkd.models.registry import cache_dir

        return str(cache_dir() / "teacher-cache.sqlite")

    def as_dict(self) -> dict:
        """For data cards (no secrets: only the *name* of the key's variable)."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------- accounting


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


# --------------------------------------------------------------------------------------------- generator


def _is_local(base_url: str) -> bool:
    return (urlparse(base_url).hostname or "") in _LOCAL_HOSTS


@dataclass
class _Job:
    key: str
    conv: list[dict]
    index: int
    seed: int
    result: Completion | None = None
    cached: bool = False


class OpenAIChatGenerator(BaseGenerator):
    """A teacher behind an OpenAI-compatible endpoint (see the module docstring).

    Attributes: ``ledger`` (Ledger), ``stats`` (GenStats; fresh completions only), ``stage`` (default stage
    name for accounting), ``requests_sent`` (HTTP requests, retries included), ``retries``, ``server`` (the
    embedded LlamaServer or None), ``cache``.
    """

    backend = "openai"

    def __init__(self, config: TeacherConfig | None = None, **overrides) -> None:
        super().__init__()
        if config is None:
            config = TeacherConfig.from_dict(overrides)
        elif overrides:
            config = TeacherConfig.from_dict({**dataclasses.asdict(config), **overrides})
        self.config = config
        self.stage: str | None = None
        self.requests_sent = 0
        self.retries = 0
        self.server = None
        self._cache_model: str | None = None  # what the cache keys on instead of the model name, if set
        self._closed = False
        self._count_lock = threading.Lock()
        try:
            import openai
        except ImportError as e:
            raise UserError("the teacher client needs the openai package (pip install openai)") from e
        self._openai = openai
        self.ledger = Ledger(config.price_input_per_mtok, config.price_output_per_mtok)
        self.cache = CompletionCache(config.resolved_cache_path())
        try:
            if config.served_model is not None:
                from iterkd.models.llama_server import LlamaServer

                self.server = LlamaServer(
                    config.served_model,
                    n_ctx=config.server_n_ctx,
                    n_threads=config.server_threads,
                    log_path=config.server_log,
                    startup_timeout_s=config.server_startup_timeout_s,
                    impl=config.server_impl,
                    parallel=config.server_parallel or config.concurrency,
                ).start()
                self.base_url, self.model = self.server.base_url, self.server.model_name
                path = self.server.model_path
                if path is not None and str(config.served_model).strip().lower().endswith(".gguf"):
                    # a file's name says nothing of its weights (every trained student is final.q8_0.gguf):
                    # key the cache on the file's identity as well
                    st = Path(path).stat()
                    self._cache_model = f"{self.model}@{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}"
            else:
                self.base_url, self.model = str(config.base_url).rstrip("/"), str(config.model)
            self.name = self.model
            self._client = openai.OpenAI(
                api_key=self._api_key(),
                base_url=self.base_url,
                timeout=config.timeout_s,
                max_retries=0,
            )
        except BaseException:
            self.close()
            raise
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="iterkd-teacher")
        self.concurrent_requests = config.concurrency

    # ----------------------------------------------------------------------------------------- helpers

    def _api_key(self) -> str:
        env = self.config.api_key_env
        key = os.environ.get(env, "") if env else ""
        if key:
            return key
        if not env or self.server is not None or _is_local(self.base_url):
            return "not-needed"  # the client insists on a non-empty string
        raise UserError(
            f"teacher {self.model} at {self.base_url}: no API key; set the environment variable {env} "
            "(or set api_key_env to the variable that holds it, or to an empty value for endpoints without keys)"
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
            return UserError(f"teacher endpoint {self.base_url} rejected the API key (HTTP 401): {fix}. Server said: {detail}")
        if isinstance(err, o.PermissionDeniedError):
            return UserError(
                f"teacher endpoint {self.base_url} refused access to model {self.model!r} (HTTP 403; key from {env}). "
                f"Server said: {detail}"
            )
        if isinstance(err, o.NotFoundError):
            return UserError(
                f"teacher endpoint answered HTTP 404 for model {self.model!r} at base URL {self.base_url}: the model "
                f"is unknown there or the base URL is wrong (OpenAI-compatible servers usually end in /v1). "
                f"Server said: {detail}"
            )
        return UserError(f"teacher endpoint {self.base_url} rejected the request for model {self.model!r} (HTTP {code}): {detail}")

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
        """One completion, with retries."""
        cfg = self.config
        stop = list(params.stop)[:_MAX_STOP] if params.stop else None
        kwargs = {
            "model": self.model,
            "messages": conv,
            "temperature": params.temperature,
            "top_p": params.top_p,
            cfg.max_tokens_param: params.max_tokens,
            "seed": seed,
            "n": 1,
        }
        if stop:
            kwargs["stop"] = stop
        if extra:
            kwargs["extra_body"] = extra
        attempts = cfg.max_retries + 1
        last: Exception | None = None
        for attempt in range(attempts):
            if self._closed:
                raise UserError("teacher client closed while requests were pending")
            with self._count_lock:
                self.requests_sent += 1
            try:
                resp = self._client.chat.completions.create(**kwargs)
            except self._openai.APIError as err:
                if not self._retryable(err):
                    raise self._fatal(err) from err
                last = err
                if attempt + 1 < attempts:
                    with self._count_lock:
                        self.retries += 1
                    time.sleep(self._backoff(attempt, err))
                continue
            return self._parse(resp, params)
        raise TeacherRequestError(
            f"teacher request to {self.base_url} (model {self.model!r}) failed after {attempts} attempt(s): "
            f"{self._describe(last)}"
        ) from last

    @staticmethod
    def _parse(resp, params: SamplingParams) -> Completion:
        if not getattr(resp, "choices", None):
            raise TeacherRequestError(f"teacher endpoint returned no choices: {str(resp)[:300]}")
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

    def _fetch(self, job: _Job, params: SamplingParams, extra: dict, stage: str | None) -> None:
        self._budget_check()
        c = self._request(job.conv, params, job.seed, extra)
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

    def chat(
        self,
        conversations: list[list[dict]],
        params: SamplingParams | None = None,
        n: int = 1,
        stage: str | None = None,
    ) -> list[list[Completion]]:
        """``n`` completions per conversation, in input order (``params`` default: the config's sampling)."""
        if self._closed:
            raise UserError("teacher client is closed")
        params = params if params is not None else self.config.sampling()
        self._check(conversations, n)
        stage = stage or self.stage
        start = time.perf_counter()
        extra = self._extra_body(params)
        skey = self._sampling_key(params, extra)
        per_conv = 1 if params.greedy else n
        jobs: dict[str, _Job] = {}
        layout: list[list[str]] = []
        for conv in conversations:
            keys = []
            for j in range(per_conv):
                k = call_key(self._cache_model or self.model, conv, skey, j)
                if k not in jobs:
                    jobs[k] = _Job(k, conv, j, sample_seed(params.seed, conv, j))
                keys.append(k)
            layout.append(keys)

        uses = Counter(k for keys in layout for k in keys)
        for k, hit in self.cache.get_many(list(jobs)).items():
            job = jobs[k]
            job.result = Completion(hit.text, hit.prompt_tokens, hit.completion_tokens, hit.finish_reason)
            job.cached = True
            # Booked once per use (a conversation given twice in one call: one lookup, two uses), before any
            # request is sent, so that the budget check counts them.
            for _ in range(uses[k]):
                self.ledger.add(hit.prompt_tokens, hit.completion_tokens, cached=True, stage=stage, cost_usd=hit.cost_usd)
        fresh: list[Completion] = []
        misses = [j for j in jobs.values() if not j.cached]
        if misses:
            self._budget_check()
            futures: list[Future] = [self._pool.submit(self._fetch, j, params, extra, stage) for j in misses]
            try:
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:  # Ctrl-C: drop what has not started; running requests finish and are cached
                for f in futures:
                    f.cancel()
                raise
            errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception()]
            if errors:
                for f in pending:
                    f.cancel()
                wait(futures)  # let running requests finish (their answers are cached and booked)
                budget = [e for e in errors if isinstance(e, BudgetExceeded)]
                raise (budget or errors)[0]
            fresh = [j.result for j in misses]

        results: list[list[Completion]] = []
        for keys in layout:
            if params.greedy:
                c = jobs[keys[0]].result
                results.append([dataclasses.replace(c) for _ in range(n)])
            else:
                results.append([dataclasses.replace(jobs[k].result) for k in keys])
        self.stats.add(results, time.perf_counter() - start, fresh)
        return results

    def as_dict(self) -> dict:
        """Teacher description and accounting, for data cards."""
        return {
            "backend": self.backend,
            "model": self.model if hasattr(self, "model") else None,
            "base_url": self.base_url if hasattr(self, "base_url") else None,
            "served_model": self.config.served_model,
            "requests_sent": self.requests_sent,
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
        client = getattr(self, "_client", None)
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
        if self.server is not None:
            self.server.stop()
        cache = getattr(self, "cache", None)
        if cache is not None:
            cache.close()


def load_teacher(config: TeacherConfig | None = None, **overrides) -> OpenAIChatGenerator:
    """The teacher generator for ``config`` (default: the embedded ``DEFAULT_TEACHER``); fields can be
    overridden by keyword. With ``served_model`` the llama.cpp server is started now and stopped by ``close()``."""
    return OpenAIChatGenerator(config, **overrides)
