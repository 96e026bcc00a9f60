"""``EndpointClient``: the client of an OpenAI-compatible chat endpoint (closed APIs, vLLM, SGLang, llama.cpp's
server; the ``openai`` package, chat completions) as a ``Generator`` (a ``CallGenerator``, calls.py). The
teacher, the judge, a student behind ``iterkd eval --base-url`` and a served student all talk through it;
``load_teacher`` (load.py) puts the call cache and a budget around it.

* One or several base URLs serving the same model: requests go to them in turn (round robin), and a retried
  request goes to the next one. Or a ``ManagedServer`` of iterkd's own (``server=``, started by the caller):
  the client talks to it, sends it neutral sampling settings and stops it on ``close()``.
* Requests run in parallel on a thread pool of ``concurrency`` threads, sample-major (every conversation's
  first sample, then the seconds: a server slot that just answered a prompt is likely to get that prompt's
  next sample and reuse its cached prefix); answers come back in input order. A call given twice is sent once.
* Retries: HTTP 408 / 409 / 429 / 5xx, timeouts and connection errors are retried ``max_retries`` times with
  exponential backoff and jitter (``backoff_base_s * 2**attempt``, capped at ``backoff_max_s``, the wait drawn
  uniformly from its upper half; a ``Retry-After`` header is honoured up to the cap), by ``tenacity``. The
  ``openai`` client's own retries are off. 401 / 403 / 404 / 400 / 422 fail at once with a ``UserError`` naming
  what to fix.
* Timeouts: a request is abandoned (and retried) after ``TeacherConfig.request_timeout_s(max_tokens)``:
  ``timeout_s`` when set, else the time its ``max_tokens`` take at ``expected_tokens_per_s``, at least
  ``min_timeout_s`` -- a stalled request is retried after about as long as a slow answer takes, not 10 minutes.
* A gate (a budget) runs before each request; on the first error, requests in flight finish (their answers are
  booked and handed to ``on_answer``), the rest are dropped and the error is raised (a gate's first).
  ``cancel_pending()`` drops the unsent requests of every running call (its caller was stopped).
* Usage: ``ledger`` (a ``Ledger``) counts answered calls, tokens and cost, in total and per stage;
  ``requests_sent`` (retries included), ``requests_by_endpoint``, ``retries``.
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import urlparse

from iterkd.errors import UserError
from iterkd.models.base import Completion, SamplingParams, truncate_at_stop
from iterkd.teacher.cache import canonical_json
from iterkd.teacher.calls import Call, CallGenerator, Gate, OnAnswer
from iterkd.teacher.config import TeacherConfig
from iterkd.teacher.ledger import Ledger

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
_RETRY_STATUS = {408, 409, 429}
_MAX_STOP = 4  # the OpenAI API takes at most 4 stop strings; the rest are applied here


class TeacherRequestError(UserError):
    """A request still failed after all retries (endpoint down, overloaded, timing out)."""


def openai_module():
    """The ``openai`` package (UserError when it is not installed)."""
    try:
        import openai
    except ImportError as e:
        raise UserError("the teacher client needs the openai package (pip install openai)") from e
    return openai


def _is_local(base_url: str) -> bool:
    return (urlparse(base_url).hostname or "") in _LOCAL_HOSTS


@dataclass
class _Job:
    call: Call
    result: Completion | None = None
    refused: bool = False  # stopped by the gate before it was sent


class EndpointClient(CallGenerator):
    """A model behind an OpenAI-compatible endpoint (see the module docstring).

    config: the endpoint settings (``base_url``, ``model``, retries, timeouts, prices, ``concurrency``...).
    server: a started ``ManagedServer`` to talk to instead of ``config.base_url`` (the client stops it on
    ``close``). Attributes: ``model``, ``base_url`` / ``base_urls``, ``identity`` (what a cache keys answers
    on), ``ledger``, ``stats``, ``requests_sent``, ``requests_by_endpoint``, ``retries``, ``server``.
    """

    backend = "openai"

    def __init__(self, config: TeacherConfig, server=None) -> None:
        super().__init__()
        self.config = config
        self.server = server
        self.requests_sent = 0
        self.requests_by_endpoint: Counter = Counter()  # index into base_urls -> requests sent there
        self.retries = 0
        self._count_lock = threading.Lock()
        self._queued: set[Future] = set()  # requests of running calls (cancel_pending)
        try:
            self._openai = openai_module()
            self.ledger = Ledger(config.price_input_per_mtok, config.price_output_per_mtok)
            if server is None:
                self.base_urls, self.model = config.base_urls(), str(config.model)
                self.identity = self.model
            else:
                self.base_urls, self.model = [server.base_url], server.model_name
                self.identity = server.identity or self.model
            self.base_url = ", ".join(self.base_urls)  # for messages
            self.name = self.model
            key = self._api_key()
            self._clients = [self._openai.OpenAI(api_key=key, base_url=u, max_retries=0) for u in self.base_urls]
        except BaseException:
            self.close()
            raise
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="iterkd-teacher")
        self.concurrent_requests = config.concurrency

    # ----------------------------------------------------------------------------------------- the request

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

    def sampling_key(self, params: SamplingParams) -> dict:
        """Every request field of ``params`` that changes the answer (the seed only when sampling): with the
        conversation, the sample index and ``identity``, what a cache keys an answer on."""
        return {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": None if params.greedy else params.seed,
            "stop": list(params.stop) if params.stop else None,
            "extra_body": self._extra_body(params),
        }

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

    def _request(self, call: Call) -> Completion:
        """One completion; retryable errors are retried (tenacity) with ``_backoff`` waits."""
        from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt

        cfg, params = self.config, call.params
        kwargs = {
            "model": self.model,
            "messages": call.messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            cfg.max_tokens_param: params.max_tokens,
            "seed": call.seed,
            "n": 1,
            "timeout": cfg.request_timeout_s(params.max_tokens),
        }
        if params.stop:
            kwargs["stop"] = list(params.stop)[:_MAX_STOP]
        extra = self._extra_body(params)
        if extra:
            kwargs["extra_body"] = extra
        attempts = cfg.max_retries + 1
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            retry=retry_if_exception(self._retryable),
            wait=lambda state: self._backoff(state.attempt_number - 1, state.outcome.exception()),
            before_sleep=lambda state: self._count_retry(),
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

    def _count_retry(self) -> None:
        with self._count_lock:
            self.retries += 1

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

    # ----------------------------------------------------------------------------------------- calls

    def _fetch(self, job: _Job, stage: str | None, gate: Gate | None, on_answer: OnAnswer | None) -> None:
        if gate is not None:
            try:
                gate()
            except BaseException:
                job.refused = True
                raise
        c = self._request(job.call)
        cost = self.ledger.add(c.prompt_tokens, c.completion_tokens, cached=False, stage=stage)
        if on_answer is not None:
            on_answer(job.call, c, cost)
        job.result = c

    def _answer(self, calls: list[Call], stage, gate: Gate | None, on_answer: OnAnswer | None) -> list[Completion]:
        """One completion per call, in order; a call given twice is sent once (see the module docstring)."""
        jobs: dict[str, _Job] = {}
        keys = []
        for call in calls:
            k = canonical_json([call.messages, self.sampling_key(call.params), call.index])
            jobs.setdefault(k, _Job(call))
            keys.append(k)
        if jobs:
            self._fetch_all(list(jobs.values()), stage, gate, on_answer)
        return [jobs[k].result for k in keys]

    def _fetch_all(self, jobs: list[_Job], stage: str | None, gate: Gate | None, on_answer: OnAnswer | None) -> None:
        """Send the jobs in parallel, sample-major; on the first error let running requests finish, drop the rest
        and raise (the gate's error first)."""
        if gate is not None:
            gate()
        jobs = sorted(jobs, key=lambda j: j.call.index)  # stable: conversation order within a sample index
        futures: list[Future] = [self._pool.submit(self._fetch, j, stage, gate, on_answer) for j in jobs]
        with self._count_lock:
            self._queued.update(futures)
        try:
            pending = _wait(futures, first_exception=True)
        except BaseException:  # Ctrl-C: drop what has not started; running requests finish and are booked
            for f in futures:
                f.cancel()
            raise
        finally:
            with self._count_lock:
                self._queued.difference_update(futures)
        if any(f.cancelled() for f in futures):  # cancel_pending() from another thread (its caller was stopped)
            _wait(futures)
            raise TeacherRequestError("teacher requests cancelled")
        failed = [(f.exception(), j) for f, j in zip(futures, jobs) if f.done() and not f.cancelled() and f.exception()]
        if failed:
            for f in pending:
                f.cancel()
            _wait(futures)
            refused = [e for e, j in failed if j.refused]
            raise (refused or [e for e, _ in failed])[0]

    def cancel_pending(self) -> None:
        """Drop the requests of every running call that have not been sent yet (those calls raise); requests in
        flight finish. For a caller that runs chat calls in other threads and is stopped."""
        with self._count_lock:
            queued = list(self._queued)
        for f in queued:
            f.cancel()

    def as_dict(self) -> dict:
        """Endpoint description and accounting, for data cards."""
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


def _wait(futures: list[Future], first_exception: bool = False) -> list[Future]:
    """``concurrent.futures.wait`` that also returns once a future is cancelled (a cancelled future that no pool
    thread ever picks up, e.g. after the pool shut down, never wakes ``wait``); returns the futures not done."""
    while True:
        _, pending = wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION if first_exception else "ALL_COMPLETED")
        if not pending or any(f.cancelled() for f in futures):
            return list(pending)
        if first_exception and any(f.done() and f.exception() is not None for f in futures):
            return list(pending)
