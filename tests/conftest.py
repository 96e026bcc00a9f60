"""What the tests share: the model names, the small task file, and the expensive things started once per session.

Models. Every model test runs SmolLM2-135M-Instruct (``STUDENT``, the registry's smallest model, ~100 MB): as the
student, and as the teacher and judge (``TEACHER``), which keeps a teacher stage to seconds on 2 CPU cores.

Session fixtures (started on first use, shared by every test that asks for them, stopped at the end):

    served_teacher   one llama.cpp server of TEACHER, started by ``load_teacher(served_model=TEACHER)``
    teacher_client   a factory of teacher clients on that server, each with its own call cache
    served_student   the student as ``load_generator(STUDENT)`` serves it (the native llama-server when built)
    base_model       the registry GGUF de-quantised by the training loader, saved as a transformers directory
    sandbox          a 2-worker sandbox with the default limits

A test that checks a server's or a sandbox's own life (it starts, stops, dies with its owner, is killed) keeps
its own; so does a test of one backend's loading path. The others share these.

Markers. ``slow``: the test loads a model, starts a model server, trains, or runs hundreds of sandbox jobs
(``make test`` runs everything; ``make test-fast`` = ``pytest -m "not slow"``). A test that uses one of the
model fixtures above is marked slow here as well, so that the two can never disagree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

STUDENT = "smollm2-135m-instruct"  # the student of every model test
TEACHER = STUDENT  # ... and its teacher and judge
DATA = Path(__file__).parent / "data"
EASY_TASKS = DATA / "easy_tasks.jsonl"  # 6 small tasks (add, square, ...) with tests: a whole stage in seconds

TEACHER_SLOTS = 4  # requests the shared teacher server decodes together (load_teacher's default concurrency)
# What a client of a served model sends and waits (iterkd.teacher): the server's sampling made neutral (llama.cpp's
# own defaults are top_k 40, min_p 0.05, repeat_penalty 1.1), and 8x the patience of a remote endpoint
# (TeacherConfig.request_timeout_s: 2 tokens/s expected, a served_model 8x slower). The shared server's clients
# get the same, so that a test on the shared server asks exactly what it asked of a server of its own.
SERVED_EXTRA_BODY = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
SERVED_TOKENS_PER_S = 2.0 / 8

MODEL_FIXTURES = {"served_teacher", "teacher_client", "served_student", "base_model"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# --------------------------------------------------------------------------------------------- served models


@pytest.fixture(scope="session")
def served_teacher():
    """One llama.cpp server of ``TEACHER`` for the session (two threads, ``TEACHER_SLOTS`` slots), started as a
    config's ``teacher: {served_model: ...}`` starts it; the yielded generator owns the server (``base_url``,
    ``model``). Tests talk to it through ``teacher_client``."""
    from iterkd.teacher import load_teacher

    gen = load_teacher(served_model=TEACHER, server_threads=2, concurrency=TEACHER_SLOTS, cache_path=":memory:")
    yield gen
    gen.close()


@pytest.fixture
def teacher_client(served_teacher):
    """``teacher_client(cache_path, **overrides)`` -> a teacher generator (``load_teacher``) on the shared server
    with its own call cache (``cache_path``) and request counters, closed at the end of the test (closing it
    earlier is fine). ``overrides``: ``TeacherConfig`` fields such as ``concurrency``."""
    from iterkd.teacher import load_teacher

    made = []

    def make(cache_path, **overrides):
        cfg = dict(
            base_url=served_teacher.base_url,
            model=served_teacher.model,
            cache_path=str(cache_path),
            extra_body=SERVED_EXTRA_BODY,
            expected_tokens_per_s=SERVED_TOKENS_PER_S,
        )
        gen = load_teacher(**{**cfg, **overrides})
        made.append(gen)
        return gen

    yield make
    for gen in made:
        gen.close()


@pytest.fixture(scope="session")
def served_student():
    """The student as ``load_generator(STUDENT)`` loads it (backend auto: llama.cpp's native server when built,
    the registry model re-quantised to Q8_0, 16 slots), once per session. Its ``stats`` count every test's
    calls: compare before and after."""
    from iterkd.models import load_generator

    gen = load_generator(STUDENT)
    yield gen
    gen.close()


@pytest.fixture(scope="session")
def base_model(tmp_path_factory):
    """The registry GGUF loaded by the training loader (from its de-quantised copy, models/dequantize.py), saved as
    a transformers directory of the test session: the starting point of the training tests."""
    from iterkd.train import load_config
    from iterkd.train.sft import load_model_and_tokenizer

    cfg = load_config(None, [f"model={STUDENT}", "train_file=unused", "output_dir=unused"])
    model, tokenizer, ref = load_model_and_tokenizer(cfg)
    assert ref.is_gguf and not getattr(model, "is_quantized", False)
    assert tokenizer.pad_token_id is not None and tokenizer.chat_template
    path = tmp_path_factory.mktemp("base") / STUDENT
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --------------------------------------------------------------------------------------------- sandbox, tasks


@pytest.fixture(scope="session")
def sandbox():
    """A sandbox pool (2 workers, default limits) for tests that run programs through it; tests of the sandbox
    itself open their own."""
    from iterkd.sandbox import Sandbox

    with Sandbox(workers=2) as box:
        yield box


@pytest.fixture
def easy_tasks():
    """The tasks of ``EASY_TASKS`` (a fresh list per test)."""
    from iterkd.tasks import load_task_file

    return load_task_file(EASY_TASKS)
