"""llama.cpp's native llama-server (built by `iterkd models build-server` / `make llama-server`): the embedded
server with parallel slots, its clean shutdown when its owner dies, and `iterkd eval --backend llama-server`.

Runs the real binary with the smallest registry model; skipped when the binary is not built (make test builds
it first)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("openai")
pytest.importorskip("llama_cpp")

from iterkd.errors import UserError
from iterkd.models import SamplingParams, load_generator
from iterkd.models.llama_server import LlamaServer
from iterkd.models.llamacpp_source import SERVER_ENV, native_server

MODEL = "smollm2-135m-instruct"
needs_native = pytest.mark.skipif(native_server() is None, reason="llama-server not built (make llama-server)")
# prompts of distinct lengths: a prompt's token count tells which prompt an answer belongs to
CONVS = [
    [{"role": "user", "content": "Write a Python function that returns its argument" + " plus one" * k + "."}]
    for k in range(5)
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[-1][0] != "Z"


@needs_native
@pytest.mark.slow
def test_native_server_serves_parallel_requests_in_order(tmp_path):
    gen = load_generator(MODEL, backend="llama-server", parallel=3, server_threads=1,
                         server_log=str(tmp_path / "s.log"))  # fmt: skip
    try:
        assert gen.server.binary == native_server()
        cmd = (tmp_path / "s.log").read_text().splitlines()[0]
        assert "--parallel 3" in cmd and f"--ctx-size {4096 * 3}" in cmd
        params = SamplingParams(temperature=0.0, max_tokens=24)
        out = gen.chat(CONVS, params)
        assert gen.requests_sent == 5 and len(out) == 5
        assert all(row[0].completion_tokens > 0 and row[0].prompt_tokens > 0 for row in out)
        # answers come back in input order: each one is the answer to its own prompt (its prompt's token count
        # is the witness; the text itself may differ from a lone request's: batched sums are not bit-equal)
        alone = [gen.chat([c], params)[0][0] for c in CONVS]
        assert [a.prompt_tokens for a in alone] == [row[0].prompt_tokens for row in out]
        assert len({a.prompt_tokens for a in alone}) == len(CONVS)
        assert gen.cache.path is None  # eval answers are not cached (generations.jsonl keeps them)
        sampled = gen.chat(CONVS[:1], SamplingParams(temperature=0.8, max_tokens=16, seed=3), n=2)
        assert len(sampled[0]) == 2 and all(c.text for c in sampled[0])
    finally:
        gen.close()
    assert not _alive(gen.server.pid)


@needs_native
@pytest.mark.slow
def test_native_server_dies_with_its_owner(tmp_path):
    """SIGKILL the process that started the server: the kernel's parent-death signal stops the server."""
    code = (
        "import sys, time\n"
        "from iterkd.models.llama_server import LlamaServer\n"
        f"srv = LlamaServer({MODEL!r}, n_threads=1, impl='native', log_path={str(tmp_path / 'o.log')!r}).start()\n"
        "print(srv.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(owner.stdout.readline())
        assert _alive(pid)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(pid)
    finally:
        owner.kill()


@needs_native
@pytest.mark.slow
def test_served_model_answers_any_thread_whichever_thread_started_it(tmp_path):
    """A server is started explicitly by its owner (here ``load_generator``, through ``load_teacher``) and serves
    requests made from worker threads; started from a worker thread that then ends (a ``LazyGenerator``'s first
    use may come from any thread), it keeps serving: the kernel's parent-death signal of the native server
    belongs to iterkd's spawner thread, not to the thread that asked for the server."""
    from concurrent.futures import ThreadPoolExecutor

    params = SamplingParams(temperature=0.0, max_tokens=8)

    def load():
        return load_generator(MODEL, backend="llama-server", parallel=1, server_threads=1)

    main = load()  # on the main thread
    try:
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(main.chat, CONVS[:1], params).result()[0][0].completion_tokens > 0
    finally:
        main.close()
    with ThreadPoolExecutor(1) as pool:  # the pool's thread ends with the block
        gen = pool.submit(load).result()
    try:
        time.sleep(1.0)  # a parent-death signal tied to that thread would have stopped the server by now
        assert _alive(gen.server.pid)
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(gen.chat, CONVS[:1], params).result()[0][0].completion_tokens > 0
    finally:
        gen.close()
    assert not _alive(gen.server.pid)


def test_native_impl_without_binary_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(SERVER_ENV, str(tmp_path / "nope"))
    with pytest.raises(UserError, match="ITERKD_LLAMA_SERVER=.*not an executable"):
        LlamaServer(MODEL, impl="native").start()
    monkeypatch.delenv(SERVER_ENV)
    monkeypatch.setenv("ITERKD_CACHE", str(tmp_path / "cache"))  # an empty cache: nothing built there
    monkeypatch.setattr(
        "iterkd.models.registry.resolve", lambda name: type("R", (), {"path": tmp_path / "m.gguf", "name": name})()
    )
    with pytest.raises(
        UserError, match="^llama.cpp server: no native llama-server is built.*iterkd models build-server"
    ):
        LlamaServer(MODEL, impl="native").start()
    with pytest.raises(UserError, match="^llama.cpp server: unknown impl 'tgi'"):
        LlamaServer(MODEL, impl="tgi")
    with pytest.raises(UserError, match="registry model or a .gguf"):
        load_generator("some/hub-id", backend="llama-server")


@needs_native
@pytest.mark.slow
def test_eval_with_llama_server_backend(tmp_path):
    from iterkd.evaluate.run import EvalConfig, run_eval

    out = tmp_path / "ev"
    cfg = EvalConfig(model=MODEL, benchmark="humaneval", limit=4, backend="llama-server", batch_size=2, max_tokens=96)
    doc = run_eval(cfg, out, progress=False)
    assert (
        doc["n_samples"] == 4 and json.loads((out / "generation_config.json").read_text())["backend"] == "llama-server"
    )
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["seconds"] > 0 for r in rows)
    gen = doc["generation"]
    assert gen["total_seconds"] == pytest.approx(sum(r["seconds"] for r in rows), abs=0.1)
    assert gen["total_tokens_per_second"] > 0
    with pytest.raises(UserError, match="eval: backend 'openai': evaluation runs a local student.*--base-url"):
        EvalConfig(model=MODEL, benchmark="humaneval", backend="openai")


def test_build_step_runner_logs_output_and_reports_failures(tmp_path, capfd):
    from iterkd.models.llamacpp_source import _run_logged

    script = "for i in 5 12 19 33 100; do printf '[%3d%%] Building x%d\\n' $i $i; done"  # CMake's format
    with (tmp_path / "b.log").open("w") as log:
        _run_logged(["sh", "-c", script], log, progress=True)
    assert "[ 33%] Building x33" in (tmp_path / "b.log").read_text()
    err = capfd.readouterr().err  # not a terminal: one line per 10%
    assert err.splitlines() == ["building llama-server 5%", "building llama-server 12%", "building llama-server 33%",
                                "building llama-server 100%"]  # fmt: skip
    with (tmp_path / "c.log").open("w") as log, pytest.raises(UserError, match="build step failed(.|\n)*broken"):
        _run_logged(["sh", "-c", "echo broken; exit 3"], log, progress=False)


@needs_native
@pytest.mark.slow
def test_auto_backend_serves_the_registry_student_as_q8_0(tmp_path, monkeypatch):
    """`auto` picks the native server when it is built, and the registry student is served re-quantised to its
    serve_quant type (Q4_1 -> Q8_0: the same weights, kernels that batch); without a built server `auto` is
    llama.cpp in-process."""
    import gguf

    from iterkd.models.load import resolve_backend, server_kw
    from iterkd.models.registry import model_path, serving_path

    assert resolve_backend(MODEL) == "llama-server" and server_kw(MODEL, "auto", 5) == {"parallel": 5}
    served = serving_path(MODEL)
    assert served.name == f"{MODEL}.q8_0.gguf" and serving_path(MODEL) == served
    types = {t.tensor_type.name for t in gguf.GGUFReader(served).tensors}
    assert "Q8_0" in types and "Q4_1" not in types
    gguf_file = model_path(MODEL)
    monkeypatch.setenv("ITERKD_CACHE", str(tmp_path / "cache"))  # an empty cache: no server built there
    assert resolve_backend(str(gguf_file)) == "llamacpp" and server_kw(str(gguf_file), "auto", 5) == {}
    with pytest.raises(UserError, match="flash_attn must be"):
        LlamaServer(MODEL, flash_attn="yes")


@needs_native
@pytest.mark.slow
def test_server_stage_mixes_samples_and_overlaps_batches(tmp_path):
    """run_stage hands a server client one SamplingParams per request: 5 tasks x 3 samples in queues of 8 take 2
    calls (one per sample index would take 3), every record lands once, and the seconds booked (each batch's
    share of the wall time) add up to no more than the time the stage took."""
    from iterkd.codegen import build_messages
    from iterkd.stages import Request, StageStats, run_stage
    from iterkd.tasks import load_tasks

    tasks = load_tasks("humaneval")[:5]
    reqs = [
        Request(
            (t.task_id, i), t, build_messages(t), {"sample": i}, SamplingParams(temperature=0.5, max_tokens=24, seed=i)
        )
        for i in range(3)
        for t in tasks
    ]

    def records(batch, completions, seconds):
        return [{"task_id": r.task.task_id, "sample": r.meta["sample"], "n": c.completion_tokens,
                 "seconds": seconds / len(batch)} for r, c in zip(batch, completions)]  # fmt: skip

    gen = load_generator(MODEL, backend="llama-server", parallel=2, server_threads=1)
    try:
        stats = StageStats()
        began = time.perf_counter()
        done = run_stage("t", gen, reqs, None, tmp_path / "log.jsonl", records,
                         key=lambda r: (r["task_id"], r["sample"]), batch_size=2, progress=False, stats=stats)  # fmt: skip
        wall = time.perf_counter() - began
        assert gen.stats.calls == 2 and gen.requests_sent == 15
    finally:
        gen.close()
    assert list(done) == [r.key for r in reqs] and all(row["n"] > 0 for row in done.values())
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert sorted((json.loads(x)["task_id"], json.loads(x)["sample"]) for x in lines) == sorted(done)
    assert stats.generated_now == 15 and 0 < stats.seconds <= wall


def test_vllm_server_command_and_a_clear_error_without_vllm(tmp_path):
    """server_impl / --backend vllm: vLLM's own OpenAI server, with a registry name mapped to its Hugging Face
    model; where vLLM is not installed (this CPU machine) a user gets one line, exit 2, before any generation."""
    import importlib.util
    import subprocess
    import sys

    from iterkd.models.vllm_server import VllmServer

    srv = VllmServer("qwen2.5-coder-0.5b-instruct", parallel=8, tensor_parallel=2, data_parallel=3, port=8123,
                     n_ctx=2048)  # fmt: skip
    cmd = srv._command()
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags == {"--model": "Qwen/Qwen2.5-Coder-0.5B-Instruct", "--served-model-name": "qwen2.5-coder-0.5b-instruct",
                     "--host": "127.0.0.1", "--port": "8123", "--max-model-len": "2048", "--max-num-seqs": "8",
                     "--seed": "0", "--tensor-parallel-size": "2", "--data-parallel-size": "3"}  # fmt: skip
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here: the missing-vLLM error does not apply")
    res = subprocess.run([sys.executable, "-m", "iterkd", "eval", "--model", "qwen2.5-coder-0.5b-instruct",
                          "--benchmark", "humaneval", "--limit", "1", "--backend", "vllm", "--out", str(tmp_path / "e")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iterkd: error: vLLM server: vLLM is not installed")
