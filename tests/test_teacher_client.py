"""The teacher (iterkd.teacher: the endpoint client, config, ledger, cache, budget, load_teacher) and the servers
iterkd runs (models/server.py, llama_server.py, vllm_server.py).

Real servers only: the llama.cpp tests run ``llama_cpp.server`` (the native llama-server has its own tests in
test_llama_native.py) with the smallest registry model
(smollm2-135m-instruct); HTTP error handling runs against a small ``http.server`` in a thread that answers with
scripted status codes. Skipped when openai or llama-cpp-python is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("openai")

from iterkd.errors import UserError
from iterkd.models import SamplingParams, load_generator
from iterkd.models.llama_server import LlamaServer, free_port
from iterkd.models.server import ManagedServer
from iterkd.models.vllm_server import VllmServer
from iterkd.teacher import (
    DEFAULT_TEACHER,
    Budget,
    BudgetExceeded,
    CachedGenerator,
    EndpointClient,
    Ledger,
    TeacherConfig,
    TeacherRequestError,
    load_teacher,
)
from iterkd.teacher.cache import CompletionCache, call_key
from iterkd.teacher.config import OPENAI_BASE_URL

MODEL = "smollm2-135m-instruct"
has_llama = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(not has_llama, reason="llama-cpp-python not installed")

CONVS = [
    [{"role": "user", "content": "Name a fruit."}],
    [{"role": "user", "content": "Write a Python function add(a, b)."}],
    [{"role": "user", "content": "What is 2 + 2?"}],
]
THREADS = 1
GREEDY = SamplingParams(temperature=0.0, max_tokens=8)
# What the embedded server gets automatically (llama_cpp.server's own defaults are top_k 40, min_p 0.05, ...).
NEUTRAL = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
FAST_RETRY = dict(max_retries=2, backoff_base_s=0.05, backoff_max_s=0.2)


def _gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not has_llama:
        pytest.skip("llama-cpp-python not installed")
    log = tmp_path_factory.mktemp("srv") / "server.log"
    # One thread: on a machine shared with other CPU-heavy work, llama.cpp's thread barriers stall badly.
    with LlamaServer(MODEL, log_path=log, startup_timeout_s=120, n_threads=THREADS, impl="python") as srv:
        yield srv


def _teacher(server, tmp_path, name="cache.sqlite", **kw):
    cfg = dict(base_url=server.base_url, model=server.model_name, cache_path=str(tmp_path / name), concurrency=2,
               extra_body=NEUTRAL)  # fmt: skip
    cfg.update(kw)
    return load_teacher(TeacherConfig(**cfg))


class _Scripted(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions with the next scripted (status, headers, delay) entry; 200 = a valid
    completion."""

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with srv.lock:
            srv.times.append(time.monotonic())
            srv.bodies.append(body)
            status, headers, delay = srv.script.pop(0) if srv.script else srv.default
        if delay:
            time.sleep(delay)
        if status == 200:
            payload = {
                "id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            }  # fmt: skip
        else:
            payload = {"error": {"message": f"scripted {status}", "type": "test", "code": status}}
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *a):
        pass


@pytest.fixture
def http():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.times, srv.bodies, srv.script, srv.default = [], [], [], (200, {}, 0)
    srv.base_url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _fake_teacher(http, tmp_path, **kw):
    cfg = dict(base_url=http.base_url, model="fake-model", cache_path=":memory:", concurrency=1, **FAST_RETRY)
    cfg.update(kw)
    return load_teacher(TeacherConfig(**cfg))


# --------------------------------------------------------------------------------------------- config, cache, ledger


def test_config_defaults_and_validation():
    assert TeacherConfig().served_model == DEFAULT_TEACHER
    c = TeacherConfig(model="gpt-4o-mini")
    assert c.base_url == OPENAI_BASE_URL and c.served_model is None
    assert TeacherConfig(temperature=0.7, top_p=0.9, max_tokens=64, seed=3).sampling() == SamplingParams(
        temperature=0.7, top_p=0.9, max_tokens=64, seed=3
    )
    bad = [
        (dict(base_url="http://x/v1", served_model=MODEL), "not both"),
        (dict(base_url="localhost:8000"), "http"),
        (dict(base_url="http://x/v1"), "model is required"),
        (dict(model="m", concurrency=0), "concurrency"),
        (dict(model="m", temperature=-1), "temperature"),
        (dict(model="m", budget_usd=0), "budget_usd"),
        (dict(model="m", price_input_per_mtok=-1), "price_input"),
        (dict(model="m", timeout_s=0), "timeout_s"),
        (dict(model="m", max_tokens_param="max_new_tokens"), "max_tokens_param"),
    ]
    for kw, msg in bad:
        with pytest.raises(UserError, match=msg):
            TeacherConfig(**kw)
    with pytest.raises(UserError, match="unknown setting.*temprature"):
        TeacherConfig.from_dict({"model": "m", "temprature": 0.2})


def test_missing_api_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("ITERKD_TEST_KEY", raising=False)
    with pytest.raises(UserError, match="ITERKD_TEST_KEY"):
        load_teacher(TeacherConfig(base_url="https://teacher.example/v1", model="m", api_key_env="ITERKD_TEST_KEY",
                                   cache_path=":memory:"))  # fmt: skip
    # Local endpoints and api_key_env=None need no key.
    load_teacher(TeacherConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="ITERKD_TEST_KEY",
                               cache_path=":memory:")).close()  # fmt: skip
    load_teacher(TeacherConfig(base_url="https://teacher.example/v1", model="m", api_key_env=None,
                               cache_path=":memory:")).close()  # fmt: skip


def test_cache_key_and_store(tmp_path):
    msgs = [{"role": "user", "content": "hi"}]
    s = {"temperature": 0.5, "top_p": 1.0, "max_tokens": 8, "seed": 0, "stop": None, "extra_body": {}}
    k = call_key("m", msgs, s, 0)
    assert k == call_key("m", [dict(reversed(list(msgs[0].items())))], dict(reversed(list(s.items()))), 0)  # canonical
    others = {call_key("m2", msgs, s, 0), call_key("m", [{"role": "user", "content": "hi!"}], s, 0),
              call_key("m", msgs, {**s, "temperature": 0.6}, 0), call_key("m", msgs, s, 1)}  # fmt: skip
    assert k not in others and len(others) == 4
    path = tmp_path / "c.sqlite"
    cache = CompletionCache(path)
    threads = [
        threading.Thread(
            target=lambda i=i: cache.put(
                f"k{i}",
                model="m",
                text=f"t{i}",
                finish_reason="stop",
                prompt_tokens=i,
                completion_tokens=1,
                cost_usd=0.5,
            )
        )  # fmt: skip
        for i in range(8)
    ]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(cache) == 8 and cache.total_cost() == 4.0
    assert cache.get("k3").text == "t3" and cache.get("nope") is None
    cache.close()
    # Committed and readable by another connection; WAL mode.
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 8
    con.close()


def test_ledger_prices_stages_and_cached():
    led = Ledger(price_input_per_mtok=2.0, price_output_per_mtok=10.0)
    assert led.add(1_000_000, 100_000, stage="a") == pytest.approx(3.0)
    led.add(500_000, 0, cached=True, stage="b", cost_usd=1.0)
    led.add(0, 0, cached=True, stage="b")
    d = led.as_dict()
    assert (d["calls"], d["cached"], d["prompt_tokens"], d["cached_prompt_tokens"]) == (1, 2, 1_000_000, 500_000)
    assert d["cost_usd"] == pytest.approx(3.0) and d["cached_cost_usd"] == pytest.approx(1.0)
    assert led.spent_usd == pytest.approx(3.0) and led.run_cost_usd == pytest.approx(4.0)
    assert (
        d["by_stage"]["a"]["calls"] == 1 and d["by_stage"]["b"]["cached"] == 2 and d["by_stage"]["b"]["cost_usd"] == 0
    )


# --------------------------------------------------------------------------------------------- scripted HTTP server


def test_401_and_404_are_clear_user_errors(http, monkeypatch):
    monkeypatch.setenv("ITERKD_TEST_KEY", "sk-wrong")
    http.script = [(401, {}, 0)]
    with _fake_teacher(http, None, api_key_env="ITERKD_TEST_KEY") as gen:
        with pytest.raises(UserError, match="401.*ITERKD_TEST_KEY"):
            gen.chat(CONVS[:1], GREEDY)
        assert gen.requests_sent == 1  # not retried
    http.script = [(404, {}, 0)]
    with _fake_teacher(http, None) as gen:
        with pytest.raises(UserError, match=f"404 for model 'fake-model' at base URL {http.base_url}"):
            gen.chat(CONVS[:1], GREEDY)
        assert gen.requests_sent == 1


def test_retries_with_backoff_then_success(http):
    http.script = [(429, {}, 0), (500, {}, 0), (503, {}, 0)]
    with _fake_teacher(http, None, max_retries=3, backoff_base_s=0.05, backoff_max_s=1.0) as gen:
        out = gen.chat(CONVS[:1], GREEDY, n=2)
        assert [c.text for c in out[0]] == ["ok", "ok"] and out[0][0].prompt_tokens == 10
        assert (gen.requests_sent, gen.retries, len(http.times)) == (4, 3, 4)
    gaps = [b - a for a, b in zip(http.times, http.times[1:])]
    # Waits are drawn from the upper half of 0.05 * 2**attempt: >= 0.025, 0.05, 0.1.
    for gap, low in zip(gaps, (0.025, 0.05, 0.1)):
        assert gap >= low * 0.9, gaps
    body = http.bodies[-1]
    assert body["model"] == "fake-model" and body["temperature"] == 0 and body["max_tokens"] == 8 and "seed" in body


def test_retries_exhausted_and_retry_after_and_timeout(http):
    http.default = (500, {}, 0)
    with _fake_teacher(http, None) as gen:
        with pytest.raises(TeacherRequestError, match=r"failed after 3 attempt\(s\): HTTP 500: .*scripted 500"):
            gen.chat(CONVS[:1], GREEDY)
        assert len(http.times) == 3
    http.times.clear()
    http.script = [(429, {"Retry-After": "0.3"}, 0)]
    http.default = (200, {}, 0)
    with _fake_teacher(http, None) as gen:
        gen.chat(CONVS[:1], GREEDY)
    assert http.times[1] - http.times[0] >= 0.2  # Retry-After honoured (capped at backoff_max_s = 0.2)
    http.default = (200, {}, 1.0)  # slower than the timeout
    with _fake_teacher(http, None, timeout_s=0.2, max_retries=1) as gen:
        with pytest.raises(TeacherRequestError, match=r"after 2 attempt\(s\): request timed out"):
            gen.chat(CONVS[:1], GREEDY)
    # Without timeout_s the timeout fits the request: max_tokens at expected_tokens_per_s, at least min_timeout_s.
    fitted = dict(min_timeout_s=0.3, expected_tokens_per_s=100.0, max_retries=0)
    with _fake_teacher(http, None, **fitted) as gen:
        assert gen.config.request_timeout_s(8) == 0.3 and gen.config.request_timeout_s(400) == 4.0
        with pytest.raises(TeacherRequestError, match=r"after 1 attempt\(s\): request timed out"):
            gen.chat(CONVS[:1], GREEDY)  # 8 tokens: 0.3 s, the answer takes 1 s
        assert gen.chat(CONVS[:1], SamplingParams(temperature=0.0, max_tokens=400))[0][0].text == "ok"  # 4 s


def test_load_generator_openai_backend(http):
    gen = load_generator("fake-model", backend="openai", base_url=http.base_url, cache_path=":memory:")
    try:
        assert isinstance(gen, CachedGenerator) and isinstance(gen.generator, EndpointClient)
        assert gen.backend == "openai" and gen.name == "fake-model" and gen.concurrent_requests == 4
        assert gen.chat(CONVS[:2], GREEDY)[1][0].text == "ok"
        out = gen.chat([CONVS[2], CONVS[2]], SamplingParams(temperature=0.5, max_tokens=8), n=2)
        assert gen.requests_sent == 4 and len(out) == 2 and len(out[1]) == 2  # a repeated conversation: sent once
        seeds = [b["seed"] for b in http.bodies[-2:]]
        assert len(set(seeds)) == 2  # sample_seed per index
    finally:
        gen.close()
    with pytest.raises(UserError, match="unknown setting.*n_gpu_layers"):
        load_generator("fake-model", backend="openai", base_url=http.base_url, n_gpu_layers=3)


# --------------------------------------------------------------------------------------------- budgets

# every scripted answer: 10 prompt + 2 completion tokens, at these prices $1.20
PRICES = dict(price_input_per_mtok=1e5, price_output_per_mtok=1e5)


def test_budget_of_tokens_counts_every_answer_returned(http):
    with _fake_teacher(http, None) as gen:
        budget = Budget(gen, tokens=30, spent_tokens=10, what="run")
        budget.chat(CONVS[:1], GREEDY)
        budget.chat(CONVS[1:2], GREEDY)  # 34 tokens now: the next chat call is refused
        with pytest.raises(BudgetExceeded, match="^run teacher-token budget reached: 34 of 30 tokens; ") as ei:
            budget.chat(CONVS[2:], GREEDY)
        assert (ei.value.limit, ei.value.spent, ei.value.budget, gen.requests_sent) == ("tokens", 34, 30, 2)
        # answers from the cache count too (the caller writes them to its records)
        again = Budget(gen, tokens=12)
        again.chat(CONVS[:1], GREEDY)
        with pytest.raises(BudgetExceeded, match="^teacher-token budget reached: 12 of 12 tokens"):
            again.chat(CONVS[:1], GREEDY)
        assert gen.requests_sent == 2


def test_budget_of_usd_stops_the_next_request(http):
    with _fake_teacher(http, None, **PRICES) as gen:
        budget = Budget(gen, usd=2.0)
        with pytest.raises(BudgetExceeded, match=r"^teacher budget reached: \$2\.4000 of \$2\.0000 .*budget_usd") as ei:
            budget.chat(CONVS, GREEDY)  # one request at a time: the third is not sent
        assert (ei.value.limit, ei.value.budget, gen.requests_sent) == ("usd", 2.0, 2)
        assert ei.value.spent == pytest.approx(2.4) and "\n" not in str(ei.value)  # iterkd prints one line
        assert [c[0].text for c in budget.chat(CONVS[:2], GREEDY)] == ["ok", "ok"]  # cached answers: no request
    with load_teacher(TeacherConfig(base_url=http.base_url, model="fake-model", cache_path=":memory:",
                                    concurrency=1, budget_usd=2.0, **PRICES)) as gen:  # fmt: skip
        assert isinstance(gen, Budget) and isinstance(gen.generator, CachedGenerator)
        gen.stage = "persd"
        with pytest.raises(BudgetExceeded, match="teacher budget reached"):
            gen.chat(CONVS, GREEDY)
        assert gen.requests_sent == 2 and gen.ledger.by_stage["persd"].calls == 2


def test_budget_of_tokens_and_usd_names_the_limit_reached(http):
    with _fake_teacher(http, None, **PRICES) as gen:
        both = Budget(gen, tokens=20, usd=100.0)
        both.chat(CONVS[:2], GREEDY)  # 24 tokens, $2.40
        with pytest.raises(BudgetExceeded, match="teacher-token budget reached: 24 of 20 tokens") as ei:
            both.chat(CONVS[2:], GREEDY)
        assert ei.value.limit == "tokens"
        both = Budget(gen, tokens=10**6, usd=2.0)  # the same client's ledger: $2.40 spent already
        with pytest.raises(BudgetExceeded, match=r"teacher budget reached: \$2\.4000 of \$2\.0000") as ei:
            both.chat(CONVS[2:], GREEDY)
        assert ei.value.limit == "usd" and gen.requests_sent == 2
        # nested (IterKD's run and round budgets): the outer one is checked first
        nested = Budget(Budget(gen, tokens=1, what="run"), tokens=1, what="round 2")
        nested.chat(CONVS[:1], GREEDY)
        with pytest.raises(BudgetExceeded, match="^round 2 teacher-token budget reached: 12 of 1 tokens"):
            nested.chat(CONVS[:1], GREEDY)


def test_budget_loads_a_lazy_generator_only_when_asked(http):
    from iterkd.models.base import LazyGenerator

    lazy = LazyGenerator(lambda: _fake_teacher(http, None))
    budget = Budget(Budget(lazy, tokens=100, what="run"), tokens=100, what="round 1")
    assert not lazy.loaded
    assert budget.mixed_params and budget.concurrent_requests == 1 and lazy.loaded
    assert budget.chat(CONVS[:1], GREEDY)[0][0].text == "ok" and budget.requests_sent == 1
    assert budget.as_dict()["stats"]["calls"] == 1
    budget.close()


# --------------------------------------------------------------------------------------------- real llama.cpp server


@needs_llama
@pytest.mark.slow
def test_server_answers_on_free_port(server):
    assert server.running and server.host == "127.0.0.1" and server.port > 0
    import urllib.request

    with urllib.request.urlopen(server.base_url + "/models", timeout=5) as r:
        ids = [m["id"] for m in json.load(r)["data"]]
    assert ids == [MODEL]


@needs_llama
@pytest.mark.slow
def test_parallel_in_order_and_greedy_deterministic(server, tmp_path):
    with _teacher(server, tmp_path, "a.sqlite", concurrency=3) as gen:
        batch = gen.chat(CONVS, GREEDY, n=2)
        assert gen.requests_sent == 3  # greedy: one request per conversation, returned n times
        assert gen.stats.completions == 6 and gen.stats.completion_tokens > 0
    with _teacher(server, tmp_path, "b.sqlite", concurrency=1) as gen:  # fresh cache, one at a time, reversed
        single = [gen.chat([c], GREEDY)[0][0] for c in reversed(CONVS)][::-1]
    # In input order: each answer is its own prompt's (the prompt's token count is the witness; the text of a
    # batched greedy answer may differ from a lone one's, which llama.cpp's servers do not promise to match).
    assert [row[0].prompt_tokens for row in batch] == [c.prompt_tokens for c in single]
    assert len({c.prompt_tokens for c in single}) == 3
    assert all(row[0].text == row[1].text for row in batch)
    assert len({c.text for c in single}) == 3 and all(c.text for c in single)
    assert all(c.finish_reason in ("stop", "length") and c.prompt_tokens > 0 for c in single)


@needs_llama
@pytest.mark.slow
def test_cache_hits_send_nothing_and_survive_the_server(server, tmp_path):
    sampled = SamplingParams(temperature=0.9, max_tokens=6, seed=1)
    with _teacher(server, tmp_path) as gen:
        first = gen.chat(CONVS[:1], GREEDY)
        assert gen.requests_sent == 1
        again = gen.chat(CONVS[:1], GREEDY)
        assert gen.requests_sent == 1 and again[0][0].text == first[0][0].text
        assert (gen.ledger.total.calls, gen.ledger.total.cached) == (1, 1)
        gen.chat(CONVS[:1], SamplingParams(temperature=0.0, max_tokens=7))  # other params: miss
        assert gen.requests_sent == 2
        s2 = gen.chat(CONVS[:1], sampled, n=2)  # sample indices 0 and 1
        assert gen.requests_sent == 4
        s3 = gen.chat(CONVS[:1], sampled, n=3)  # 0 and 1 cached, index 2 new
        assert gen.requests_sent == 5 and [c.text for c in s3[0][:2]] == [c.text for c in s2[0]]
    # Another client on the same cache, endpoint down: cached calls still answer, a miss fails.
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with load_teacher(TeacherConfig(base_url=dead, model=MODEL, cache_path=str(tmp_path / "cache.sqlite"),
                                    extra_body=NEUTRAL, **FAST_RETRY)) as gen:  # fmt: skip
        assert gen.chat(CONVS[:1], GREEDY)[0][0].text == first[0][0].text
        assert gen.chat(CONVS[:1], sampled, n=3)[0][2].text == s3[0][2].text
        assert gen.requests_sent == 0 and gen.ledger.total.cached == 4
        with pytest.raises(TeacherRequestError, match="after 3 attempt.*Connection"):
            gen.chat(CONVS[1:2], GREEDY)


@needs_llama
@pytest.mark.slow
def test_cost_stages_budget_and_resume(server, tmp_path):
    prices = dict(price_input_per_mtok=1000.0, price_output_per_mtok=2000.0)
    with _teacher(server, tmp_path, concurrency=1, budget_usd=1e-6, **prices) as gen:
        gen.stage = "persd-repair"
        with pytest.raises(BudgetExceeded, match="higher budget_usd") as ei:
            gen.chat(CONVS, GREEDY)
        assert gen.requests_sent == 1  # the first call was under budget; the next one was not sent
        u = gen.ledger.total
        assert (
            u.cost_usd == pytest.approx((u.prompt_tokens * 1000 + u.completion_tokens * 2000) / 1e6) and u.cost_usd > 0
        )
        assert ei.value.limit == "usd" and ei.value.spent == pytest.approx(u.cost_usd) and ei.value.budget == 1e-6
        assert gen.ledger.by_stage["persd-repair"].calls == 1
        paid = u.cost_usd
    # Same budget again: the cached call counts toward it, nothing is sent.
    with _teacher(server, tmp_path, concurrency=1, budget_usd=1e-6, **prices) as gen:
        with pytest.raises(BudgetExceeded):
            gen.chat(CONVS, GREEDY)
        assert gen.requests_sent == 0
    # Higher budget: resumes, never repays the first call.
    with _teacher(server, tmp_path, concurrency=2, budget_usd=100.0, **prices) as gen:
        out = gen.chat(CONVS, GREEDY, stage="persd-repair")
        assert gen.requests_sent == 2 and len(out) == 3
        d = gen.as_dict()["usage"]
        assert (d["calls"], d["cached"]) == (2, 1) and d["cached_cost_usd"] == pytest.approx(paid)
        assert d["by_stage"]["persd-repair"]["calls"] == 2
        rows = (
            sqlite3.connect(tmp_path / "cache.sqlite").execute("SELECT cost_usd, prompt_tokens FROM calls").fetchall()
        )
        assert len(rows) == 3 and all(c > 0 and p > 0 for c, p in rows)


@needs_llama
@pytest.mark.slow
def test_embedded_teacher_starts_and_stops(tmp_path):
    log = tmp_path / "teacher.log"
    gen = load_teacher(served_model=MODEL, cache_path=":memory:", server_log=str(log), max_tokens=4, concurrency=1,
                       server_threads=THREADS, server_impl="python")  # fmt: skip
    try:
        pid = gen.server.pid
        assert gen.model == MODEL and gen.base_url.startswith("http://127.0.0.1:")
        assert gen.chat(CONVS[:1])[0][0].completion_tokens <= 4
        assert "--model_alias " + MODEL in log.read_text()  # the caller's log file gets the server's output
    finally:
        gen.close()
    assert _gone(pid) and gen.server.proc.poll() is not None


@needs_llama
@pytest.mark.slow
def test_server_gone_after_exception_in_with(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with LlamaServer(MODEL, log_path=tmp_path / "s.log", n_threads=THREADS, impl="python") as srv:
            pid = srv.pid
            raise KeyboardInterrupt  # what Ctrl-C raises
    assert _gone(pid)
    srv.stop()  # idempotent


@needs_llama
def test_bad_model_path_fails_with_log_tail(tmp_path):
    bad = tmp_path / "missing.gguf"
    srv = LlamaServer(bad, log_path=tmp_path / "bad.log", startup_timeout_s=60, impl="python")
    started = r"^llama\.cpp server for .*missing\.gguf exited during start-up"  # the server names itself
    with pytest.raises(UserError, match=started + r"(.|\n)*last lines of its log(.|\n)*missing\.gguf"):
        srv.start()
    assert srv.proc.poll() is not None and _gone(srv.pid)


class _StaticServer(ManagedServer):
    """``python -m http.server`` over a directory holding ``v1/models``: a server that is healthy at once (no
    model needed); ``exit_code`` makes it a program that exits during start-up instead."""

    name = "static server"

    def __init__(self, root, exit_code=None, **kw):
        super().__init__("static", **kw)
        self.root, self.exit_code = root, exit_code

    def _prepare(self):
        self.model_name = "static"

    def _command(self):
        if self.exit_code is not None:
            return [sys.executable, "-c", f"print('no such model'); raise SystemExit({self.exit_code})"]
        return [sys.executable, "-m", "http.server", "--bind", self.host, "--directory", str(self.root), str(self.port)]


@pytest.mark.slow
def test_server_outlives_the_thread_that_started_it_and_names_itself(tmp_path):
    """A server started from a worker thread that ends keeps running (its parent-death signal belongs to
    iterkd's spawner thread, which lives as long as the process), and answers requests from other threads; a
    server that cannot start says which server it is."""
    import urllib.request

    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "models").write_text('{"data": []}')
    srv = _StaticServer(tmp_path, log_path=tmp_path / "s.log", startup_timeout_s=30)
    assert srv.die_with_parent
    worker = threading.Thread(target=srv.start)
    worker.start()
    worker.join()
    time.sleep(1.0)  # the kernel's signal, had it been tied to the worker thread, is delivered by now
    try:
        assert srv.running
        with urllib.request.urlopen(srv.base_url + "/models", timeout=5) as r:
            assert json.load(r) == {"data": []}
    finally:
        srv.stop()
    assert _gone(srv.pid)
    bad = _StaticServer(tmp_path, exit_code=3, log_path=tmp_path / "bad.log")
    with pytest.raises(
        UserError, match=r"^static server for static exited during start-up \(exit code 3\)(.|\n)*no such model"
    ):
        bad.start()


def test_vllm_server_names_itself_when_vllm_is_missing():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(UserError) as ei:
        VllmServer("qwen2.5-coder-0.5b-instruct").start()
    assert str(ei.value).startswith("vLLM server: vLLM is not installed") and "\n" not in str(ei.value)


def test_stop_kills_after_grace(tmp_path):
    """A child that ignores SIGTERM is SIGKILLed after the grace period (no model needed)."""
    import subprocess

    srv = LlamaServer("unused.gguf", log_path=tmp_path / "x.log")
    srv.proc = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    srv.proc.stdout.readline()
    t = time.monotonic()
    srv.stop(grace_s=0.5)
    assert 0.4 < time.monotonic() - t < 5 and srv.proc.returncode == -signal.SIGKILL and _gone(srv.proc.pid)


@needs_llama
@pytest.mark.slow
def test_served_gguf_file_is_keyed_by_identity_not_name(tmp_path):
    """Two different files both called final.q8_0.gguf must not share cached answers."""
    import shutil

    from iterkd.models.registry import resolve

    gguf = tmp_path / "final.q8_0.gguf"
    shutil.copy(resolve(MODEL).path, gguf)
    cfg = dict(served_model=str(gguf), cache_path=str(tmp_path / "c.sqlite"), max_tokens=4, concurrency=1,
               server_threads=THREADS, server_impl="python")  # fmt: skip
    sent = []
    for touch in (False, False, True):
        if touch:  # a new training run overwrote the file
            os.utime(gguf, ns=(time.time_ns(), time.time_ns() + 10**9))
        with load_teacher(**cfg) as gen:
            assert gen.model == "final.q8_0"
            gen.chat(CONVS[:1], GREEDY)
            sent.append(gen.requests_sent)
    assert sent == [1, 0, 1]


@needs_llama
@pytest.mark.slow
def test_several_base_urls_spread_requests_retry_on_the_next_and_share_one_cache(tmp_path):
    """Two real llama.cpp servers behind one teacher config: requests go round in turn (each server's own
    access log shows its share), a dead server's requests are retried on the other, and the cache is shared."""
    convs = [[{"role": "user", "content": f"Name fruit number {i}."}] for i in range(8)]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]

    def served(log):  # completions the server itself logged
        return log.read_text().count("POST /v1/chat/completions")

    with LlamaServer(MODEL, log_path=logs[0], startup_timeout_s=120, n_threads=THREADS, impl="python") as a, \
            LlamaServer(MODEL, log_path=logs[1], startup_timeout_s=120, n_threads=THREADS, impl="python") as b:  # fmt: skip
        cfg = dict(base_url=[a.base_url, b.base_url], model=a.model_name, cache_path=str(tmp_path / "c.sqlite"),
                   concurrency=2, extra_body=NEUTRAL, **FAST_RETRY)  # fmt: skip
        with load_teacher(TeacherConfig(**cfg)) as gen:
            first = gen.chat(convs[:6], GREEDY)
            assert gen.requests_by_endpoint == {0: 3, 1: 3} and gen.retries == 0
            assert [served(log) for log in logs] == [3, 3]
            assert gen.as_dict()["requests_by_endpoint"] == {a.base_url: 3, b.base_url: 3}
            b.stop()  # one endpoint dies: its turns fail to connect and are retried on the other
            rest = gen.chat(convs[6:], GREEDY)
            assert all(c[0].text for c in rest) and gen.retries >= 1 and served(logs[0]) == 5
        # the same cache behind another endpoint list: nothing is sent again
        with load_teacher(TeacherConfig(**{**cfg, "base_url": [a.base_url]})) as again:
            assert [c[0].text for c in again.chat(convs[:6], GREEDY)] == [c[0].text for c in first]
            assert again.requests_sent == 0


def test_base_url_list_is_validated():
    with pytest.raises(UserError, match="empty list"):
        TeacherConfig.from_dict({"base_url": [], "model": "m"})
    with pytest.raises(UserError, match="got 'ftp://x'"):
        TeacherConfig.from_dict({"base_url": ["http://127.0.0.1:1/v1", "ftp://x"], "model": "m"})
    cfg = TeacherConfig.from_dict({"base_url": ["http://h1:8000/v1/", "http://h2:8000/v1"], "model": "m"})
    assert cfg.base_urls() == ["http://h1:8000/v1", "http://h2:8000/v1"]
