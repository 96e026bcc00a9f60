"""Generation backends with the real smallest model (smollm2-135m-instruct, 98 MB, fetched once and cached).

Marked slow; they still run in CI. llama.cpp needs llama-cpp-python; transformers needs torch, transformers,
gguf and accelerate: a test is skipped when its backend is not installed.
"""

from __future__ import annotations

import importlib.util

import pytest

from conftest import STUDENT
from iterkd.codegen import build_messages, sanitize
from iterkd.errors import UserError
from iterkd.models import Completion, SamplingParams, load_generator
from iterkd.models.base import GenStats, sample_seed, truncate_at_stop

CONV = [
    {"role": "user", "content": "Write a Python function add(a, b) that returns a + b. Use one ```python code block."}
]
CONV2 = [{"role": "user", "content": "Write a Python function that reverses a string."}]

has_llama = importlib.util.find_spec("llama_cpp") is not None
has_hf = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "gguf", "accelerate"))


# --------------------------------------------------------------------------------------------- no model needed


def test_sampling_params_validation():
    assert SamplingParams().greedy and not SamplingParams(temperature=0.2).greedy
    for bad in (dict(temperature=-1), dict(top_p=0), dict(max_tokens=0)):
        with pytest.raises(UserError):
            SamplingParams(**bad)


def test_sample_seed_stable_and_distinct():
    a = sample_seed(0, CONV, 0)
    assert a == sample_seed(0, CONV, 0) and 0 <= a < 2**31
    assert len({a, sample_seed(0, CONV, 1), sample_seed(1, CONV, 0), sample_seed(0, CONV2, 0)}) == 4


def test_truncate_at_stop():
    assert truncate_at_stop("abc```def", ["```"]) == ("abc", True)
    assert truncate_at_stop("abc", ["x", ""]) == ("abc", False)
    assert truncate_at_stop("a\nb END c", ["\n", "END"]) == ("a", True)


def test_stats():
    s = GenStats()
    c = Completion("x", 10, 5, "stop")
    s.add([[c, c]], 0.5, generated=[c])
    assert (s.completions, s.prompt_tokens, s.completion_tokens, s.tokens_per_s) == (2, 10, 5, 10.0)
    assert s.as_dict()["tokens_per_s"] == 10.0


def test_unknown_backend_and_llamacpp_needs_gguf():
    with pytest.raises(UserError, match="unknown backend"):
        load_generator(STUDENT, backend="tgi")
    with pytest.raises(UserError, match="GGUF"):
        load_generator("Qwen/Qwen2.5-Coder-0.5B-Instruct", backend="llama.cpp")


# --------------------------------------------------------------------------------------------- llama.cpp


@pytest.fixture(scope="module")
def llama():
    if not has_llama:
        pytest.skip("llama-cpp-python is not installed")
    g = load_generator(STUDENT, backend="llamacpp")
    yield g
    g.close()


@pytest.mark.slow
def test_llamacpp_greedy_is_deterministic(llama):
    assert llama.backend == "llamacpp" and llama.name == STUDENT
    p = SamplingParams(max_tokens=64)
    a = llama.chat([CONV, CONV2], p, n=2)
    b = llama.chat([CONV], p)
    assert len(a) == 2 and [len(r) for r in a] == [2, 2]
    assert a[0][0].text == a[0][1].text == b[0][0].text
    c = a[0][0]
    assert c.text.strip() and c.prompt_tokens > 10 and 0 < c.completion_tokens <= 64
    assert c.finish_reason in ("stop", "length")
    assert "def add" in sanitize(c.text, entry_point="add")


@pytest.mark.slow
def test_llamacpp_sampling_reproducible_per_conversation_and_index(llama):
    p = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=24, seed=7)
    a = llama.chat([CONV, CONV2], p, n=3)
    b = llama.chat([CONV2, CONV], p, n=3)  # another order: the same samples per conversation
    assert [c.text for c in a[0]] == [c.text for c in b[1]]
    assert [c.text for c in a[1]] == [c.text for c in b[0]]
    assert len({c.text for c in a[0]}) > 1  # different sample indices differ
    other = llama.chat([CONV], SamplingParams(temperature=1.0, max_tokens=24, seed=8), n=3)
    assert [c.text for c in other[0]] != [c.text for c in a[0]]


@pytest.mark.slow
def test_llamacpp_max_tokens_stop_and_stats(llama):
    before = llama.stats.completion_tokens
    r = llama.chat([CONV], SamplingParams(max_tokens=5))[0][0]
    assert r.finish_reason == "length" and r.completion_tokens == 5
    s = llama.chat([CONV], SamplingParams(max_tokens=64, stop=["def"]))[0][0]
    assert "def" not in s.text and s.finish_reason == "stop"
    assert llama.stats.completion_tokens > before and llama.stats.tokens_per_s > 0


@pytest.mark.slow
def test_llamacpp_benchmark_prompt_end_to_end(llama):
    from types import SimpleNamespace

    task = SimpleNamespace(
        task_id="HumanEval/x", benchmark="humaneval", entry_point="add", seen_tests=[],
        prompt='def add(a: int, b: int) -> int:\n    """Return a + b.\n    >>> add(1, 2)\n    3\n    """\n',
    )  # fmt: skip
    out = llama.chat([build_messages(task)], SamplingParams(max_tokens=128))[0][0]
    program = sanitize(out.text, task)
    assert isinstance(program, str) and program.strip()
    compile(program, "<program>", "exec")


# --------------------------------------------------------------------------------------------- transformers


@pytest.fixture(scope="module")
def hf():
    if not has_hf:
        pytest.skip("torch / transformers / gguf / accelerate are not installed")
    g = load_generator(STUDENT, backend="hf", batch_size=4)
    yield g
    g.close()


@pytest.mark.slow
def test_hf_from_gguf_greedy_deterministic(hf):
    import torch

    assert hf.backend == "hf" and hf.dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    assert hf.render(CONV).endswith("<|im_start|>assistant\n")
    p = SamplingParams(max_tokens=48)
    a = hf.chat([CONV, CONV2], p, n=2)
    b = hf.chat([CONV, CONV2], p)
    assert [len(r) for r in a] == [2, 2] and a[0][0].text == a[0][1].text
    assert [r[0].text for r in a] == [r[0].text for r in b]
    c = a[0][0]
    assert c.text.strip() and c.prompt_tokens > 10 and 0 < c.completion_tokens <= 48
    assert "def add" in c.text


@pytest.mark.slow
def test_hf_sampling_seeded_and_stops(hf):
    p = SamplingParams(temperature=1.0, max_tokens=16, seed=3)
    a = hf.chat([CONV], p, n=3)
    b = hf.chat([CONV], p, n=3)
    assert [c.text for c in a[0]] == [c.text for c in b[0]] and len(a[0]) == 3
    r = hf.chat([CONV], SamplingParams(max_tokens=4))[0][0]
    assert r.finish_reason == "length" and r.completion_tokens == 4
    s = hf.chat([CONV], SamplingParams(max_tokens=64, stop=["def"]))[0][0]
    assert "def" not in s.text and s.finish_reason == "stop"
    assert hf.stats.tokens_per_s > 0
