"""``iterkd eval --base-url``: a student already served behind OpenAI-compatible endpoints (issue 22).

The real test runs the command line against two llama.cpp servers (``llama_cpp.server``, smollm2-135m-instruct)
and counts each server's requests from its own access log; skipped without llama-cpp-python. The error cases
need no server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from iterkd.errors import UserError

MODEL = "smollm2-135m-instruct"
needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")


def iterkd(*args, env=None):
    cmd = [sys.executable, "-m", "iterkd", *map(str, args)]
    return subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    )


def served(log) -> int:
    """Chat completions the server itself logged."""
    return log.read_text().count("POST /v1/chat/completions")


@pytest.mark.slow
@needs_llama
def test_eval_spreads_requests_over_two_servers_and_resumes_on_one(tmp_path):
    from iterkd.models.llama_server import LlamaServer

    out, logs = tmp_path / "ev", [tmp_path / "a.log", tmp_path / "b.log"]
    common = dict(startup_timeout_s=120, n_threads=1, impl="python")
    with LlamaServer(MODEL, log_path=logs[0], **common) as a, LlamaServer(MODEL, log_path=logs[1], **common) as b:
        args = ["eval", "--model", a.model_name, "--benchmark", "humaneval", "--limit", "4", "--max-tokens", "128"]
        args += ["--out", out, "-q"]
        res = iterkd(*args, "--base-url", a.base_url, "--base-url", b.base_url)
        assert res.returncode == 0, res.stderr[-2000:]
        doc = json.loads((out / "results.json").read_text())
        assert doc["n_tasks"] == 4 and len(doc["samples"]) == 4
        gen = doc["generation"]
        assert gen["backend"] == "openai" and gen["settings"]["backend"] == "openai"
        by_server = [served(log) for log in logs]
        assert all(by_server) and sum(by_server) == 4  # both servers answered, by their own logs
        assert gen["requests_by_endpoint"] == {a.base_url: by_server[0], b.base_url: by_server[1]}
        assert "base_url" not in json.loads((out / "generation_config.json").read_text())
        assert str(tmp_path) not in (out / "results.json").read_text()
        # the same run on one endpoint: generations.jsonl is complete, nothing is sent, settings are the same
        again = iterkd(*args, "--base-url", a.base_url)
        assert again.returncode == 0, again.stderr[-2000:]
        assert [served(log) for log in logs] == by_server
        redo = json.loads((out / "results.json").read_text())
        assert redo["generation"]["requests_by_endpoint"] == {a.base_url: 0}
        assert redo["pass_at_k"] == doc["pass_at_k"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--base-url", "not-a-url"],
            "eval: base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got 'not-a-url'",
        ),
        (
            ["--base-url", "http://x", "--backend", "transformers"],
            "eval: backend 'transformers' cannot reach --base-url",
        ),
        (["--backend", "openai"], "eval: backend 'openai': evaluation runs a local student"),
    ],
)
def test_bad_endpoint_options_are_one_line_errors(tmp_path, extra, message):
    out = tmp_path / "ev"
    res = iterkd("eval", "--model", MODEL, "--benchmark", "humaneval", "--out", out, *extra)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()  # refused before any work


def test_remote_endpoint_without_a_key_names_the_variable(tmp_path):
    pytest.importorskip("openai")
    env = {"OPENAI_API_KEY": ""}
    res = iterkd("eval", "-m", "m", "-b", "humaneval", "--limit", "1", "--out", tmp_path / "ev",
                 "--base-url", "http://192.0.2.1:8000/v1", env=env)  # fmt: skip
    assert res.returncode == 2 and "no API key; set the environment variable OPENAI_API_KEY" in res.stderr
    assert "Traceback" not in res.stderr


def test_base_url_is_normalised_and_not_a_distill_setting(tmp_path):
    from iterkd.evaluate.run import EvalConfig
    from iterkd.pipeline import load_distill_config

    cfg = EvalConfig(model="m", benchmark="humaneval", base_url="http://h1:8000/v1/")
    assert cfg.base_url == ["http://h1:8000/v1"] and cfg.generation_backend() == "openai"
    assert EvalConfig(model="m", benchmark="humaneval", backend="openai", base_url=["http://h1/v1"]).base_url
    with pytest.raises(UserError, match="eval: 'base_url' is not a distill setting"):
        load_distill_config(None, [f"run_dir={tmp_path}", "eval.base_url=http://127.0.0.1:8000/v1"], "stand")
