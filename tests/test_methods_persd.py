"""PERsD-family data construction with real parts: a real small model as student and teacher, the real sandbox."""

import json

import pytest

from iterkd.codegen.prompts import refine_messages, repair_messages
from iterkd.methods import METHODS, build_examples, collect, write_dataset
from iterkd.methods.decontam import is_contaminated
from iterkd.sandbox import Limits, Sandbox
from iterkd.tasks import load_mbpp


def _rec(task, code, passed, feedback=""):
    return {
        "task_id": task.task_id,
        "code": code,
        "passed": passed,
        "status": "passed" if passed else "failed",
        "feedback": feedback,
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }


def test_examples_per_method_have_the_documented_shapes():
    t1, t2, t3 = load_mbpp("train")[:3]
    attempts = {
        t1.task_id: _rec(t1, "def a(): return 0", False, "INPUT: a()\nOUTPUT: 0\nEXPECTED: 1"),
        t2.task_id: _rec(t2, "def b(): return 1", False, "ERROR: NameError"),
        t3.task_id: _rec(t3, t3.canonical_solution, True),
    }
    teacher = {t1.task_id: _rec(t1, "def a(): return 1", True), t2.task_id: _rec(t2, "def b(): return 2", False)}
    persd = build_examples("persd", [t1, t2, t3], attempts, teacher)
    assert [e["task_id"] for e in persd] == [t1.task_id]  # only the passing repair of a failed task
    ex = persd[0]
    assert ex["prompt"][0]["role"] == "user" and t1.prompt in ex["prompt"][0]["content"]
    assert ex["completion"] == [{"role": "assistant", "content": "```python\ndef a(): return 1\n```"}]
    assert ex["student_feedback"].startswith("INPUT: a()") and ex["method"] == "persd" and ex["kind"] == "text-to-code"
    refine = build_examples("persd-refine", [t1, t2, t3], attempts, teacher)
    assert len(refine) == 1 and refine[0]["kind"] == "refine"
    content = refine[0]["prompt"][0]["content"]
    assert "def a(): return 0" in content and "EXPECTED: 1" in content and t1.prompt in content
    combine = build_examples("persd-combine", [t1, t2, t3], attempts, teacher)
    assert sorted(e["kind"] for e in combine) == ["refine", "text-to-code"]
    stand = build_examples("stand", [t1, t2, t3], None, teacher)
    assert [e["task_id"] for e in stand] == [t1.task_id] and "student_code" not in stand[0]


def test_parquet_holds_the_same_rows_as_jsonl(tmp_path):
    import pyarrow.parquet as pq

    from iterkd.methods import DataStats

    t1, t2 = load_mbpp("train")[:2]
    attempts = {t.task_id: _rec(t, "def x(): pass", False, "ERROR: boom") for t in (t1, t2)}
    teacher = {t.task_id: _rec(t, t.canonical_solution, True) for t in (t1, t2)}
    examples = build_examples("persd-combine", [t1, t2], attempts, teacher)
    write_dataset(examples, DataStats(method="persd-combine", examples=len(examples)), tmp_path, parquet=True)
    jsonl = [json.loads(l) for l in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert pq.read_table(tmp_path / "train.parquet").to_pylist() == jsonl == examples


def test_prompts_carry_code_and_error():
    task = load_mbpp("train")[0]
    teacher = repair_messages(task, "def f(x):\n    return x\n", "INPUT: f(1)\nOUTPUT: 1\nEXPECTED: 2")[0]["content"]
    assert "INCORRECT CODE" in teacher and "stay as close as possible" in teacher and "EXPECTED: 2" in teacher
    student = refine_messages(task, "def f(x):\n    return x\n", "INPUT: f(1)")[0]["content"]
    assert "Your previous code" in student and "def f(x)" in student


def test_teacher_can_see_the_reference_solution():
    import dataclasses

    from iterkd.errors import UserError

    task = load_mbpp("train")[0]
    msgs = repair_messages(task, "def f(x):\n    return x\n", "INPUT: f(1)", reference=task.canonical_solution)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert task.canonical_solution.strip() in msgs[1]["content"] and msgs[1]["content"].startswith("```python")
    assert msgs[2] == repair_messages(task, "def f(x):\n    return x\n", "INPUT: f(1)")[0]
    bare = dataclasses.replace(task, canonical_solution=None)
    with pytest.raises(UserError, match="1 seed tasks have no canonical_solution"):
        collect("persd", [bare], None, None, None, None, None, None, None, teacher_sees_reference=True)


class _ReferenceAnswers:
    """Answers every task with its reference solution and records how many prompts each call carried (the
    stage's queueing is under test here; the real servers are exercised in the slow tests below)."""

    backend = "scripted"

    def __init__(self, tasks, concurrent_requests):
        self.by_prompt = {t.prompt: t.canonical_solution for t in tasks}
        self.concurrent_requests = concurrent_requests
        self.calls: list[int] = []

    def chat(self, conversations, params, n=1):
        from iterkd.models.base import Completion

        self.calls.append(len(conversations))
        answers = []
        for conv in conversations:
            code = next(c for p, c in self.by_prompt.items() if p in conv[-1]["content"])
            answers.append([Completion(f"```python\n{code}\n```", 10, 5, "stop")])
        return answers


def test_stage_keeps_a_concurrent_backend_queued_and_resumes(tmp_path, sandbox):
    from iterkd.codegen.prompts import direct_messages
    from iterkd.models import SamplingParams
    from iterkd.stages import Request, run_stage, verified_records

    tasks = load_mbpp("train")[:20]
    requests = [Request(t.task_id, t, direct_messages(t)) for t in tasks]
    gen = _ReferenceAnswers(tasks, concurrent_requests=3)
    path = tmp_path / "stage.jsonl"
    records = verified_records("s", sandbox, Limits())
    recs = run_stage("s", gen, requests, SamplingParams(), path, records, batch_size=2, progress=False)
    assert gen.calls == [12, 8]  # 4 x 3 slots per call, not batch_size 2
    assert all(r["passed"] for r in recs.values()) and len(path.read_text().splitlines()) == 20
    again = _ReferenceAnswers(tasks, concurrent_requests=1)
    assert (
        run_stage("s", again, requests, SamplingParams(), path, records, batch_size=2, progress=False) == recs
        and again.calls == []
    )


def test_decontamination_catches_benchmark_tasks():
    test_task = load_mbpp("test")[5]
    assert is_contaminated(test_task.prompt)
    from iterkd.methods.decontam import CODE_N, ngrams

    long_solution = next(t.canonical_solution for t in load_mbpp("test") if ngrams(t.canonical_solution, CODE_N))
    assert is_contaminated(code="# copied\n" + long_solution)
    assert not is_contaminated("Write a function that returns the number of vowels in a sentence, ignoring y.")
    train = load_mbpp("train")
    dropped = sum(is_contaminated(t.prompt, t.canonical_solution) for t in train)
    assert 0 < dropped < len(train) // 5


@pytest.mark.slow
def test_collect_persd_combine_end_to_end_and_resume(tmp_path, served_student):
    from iterkd.models import SamplingParams
    from iterkd.models.base import LazyGenerator

    tasks = load_mbpp("train")[:4]
    model = served_student  # student and teacher
    limits = Limits(timeout_s=2)
    student_params = SamplingParams(temperature=0.3, max_tokens=160, seed=0)
    teacher_params = SamplingParams(temperature=0.0, max_tokens=160, seed=0)
    with Sandbox(workers=2, limits=limits) as sb:
        params = (student_params, teacher_params, sb, limits, tmp_path / "data")
        where = {"batch_size": 2, "progress": False}
        examples, stats = collect("persd-combine", tasks, model, model, *params, **where)
        calls = model.stats.calls
        attempts = [json.loads(l) for l in (tmp_path / "data" / "student_attempts.jsonl").read_text().splitlines()]
        assert len(attempts) == stats.attempted == 4 - stats.dropped_contaminated
        assert stats.failed == sum(not a["passed"] for a in attempts)
        assert all(a["feedback"] for a in attempts if not a["passed"])
        repairs = [json.loads(l) for l in (tmp_path / "data" / "teacher_repair.jsonl").read_text().splitlines()]
        assert len(repairs) == stats.teacher_calls == stats.failed
        assert stats.examples == len(examples) == 2 * (stats.teacher_passed - stats.dropped_generated_contaminated)

        # a rerun resumes from the stage files: no new model calls, same examples, and the student is not even
        # loaded (a lazy student whose loading fails would raise)
        def no_student():
            raise AssertionError("the student was loaded although every attempt is on disk")

        student = LazyGenerator(no_student)
        again, stats2 = collect("persd-combine", tasks, student, model, *params, **where)
        assert model.stats.calls == calls and again == examples and stats2 == stats and not student.loaded
        student.close()
    path = write_dataset(examples, stats, tmp_path / "out", {"teacher": "smollm2"}, parquet=True)
    card = json.loads((tmp_path / "out" / "data_card.json").read_text())
    assert card["examples"] == len(examples) and card["teacher"] == "smollm2" and path.exists()
    assert card["files"] == ["train.jsonl", "train.parquet"]
    assert set(METHODS) == {"stand", "inpd", "persd", "persd-refine", "persd-combine"}
