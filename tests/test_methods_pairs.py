"""IterKD Stage I (iterkd.methods.pairs): faults that reveal themselves, pairs proven by the real sandbox, and
the whole stage with a real llama.cpp-served teacher, resumed without a repeated call."""

import json
from pathlib import Path

import pytest

from iterkd.codegen.prompts import ERROR_KINDS, PROMPT_VERSIONS
from iterkd.methods.pairs import PairStats, build_pairs, collect_pairs, reveals_fault, strip_comments
from iterkd.models import Completion
from iterkd.sandbox import Limits
from iterkd.stages import Request, verified_records


def test_revealing_comments_and_strings_are_found_and_comments_stripped():
    quiet = "def add(a, b):\n    # sum of the two\n    return a - b\n"
    loud = "def add(a, b):\n    return a - b  # bug: should be a + b\n"
    doc = 'def add(a, b):\n    """Deliberately wrong."""\n    return a - b\n'
    broken = "def add(a, b)\n    return a + b  # syntax error here\n"
    assert reveals_fault(quiet) == (False, False) and reveals_fault(loud) == (True, False)
    assert reveals_fault(doc) == (False, True) and reveals_fault(broken)[0]
    stripped = strip_comments(loud)
    assert "#" not in stripped and reveals_fault(stripped) == (False, False)
    ns = {}
    exec(stripped, ns)
    assert ns["add"](5, 2) == 3  # the fault itself is untouched
    assert "#" not in strip_comments(broken) and "def add(a, b)" in strip_comments(broken)


def _records(name, tasks, answers, box, meta=None):
    """Real stage records: handwritten answers judged by the real sandbox through the stage's own records()."""
    reqs = [Request(key, tasks[tid], [], (meta or {}).get(key, {})) for key, tid, _ in answers]
    done = [Completion(f"```python\n{code}\n```", 10, 5, "stop") for _, _, code in answers]
    return {r.key: row for r, row in zip(reqs, verified_records(name, box, Limits())(reqs, done, 0.0))}


def test_pairs_keep_only_what_execution_proves(easy_tasks, sandbox):
    tasks = {t.task_id: t for t in easy_tasks}
    add, square = tasks["easy/add"], tasks["easy/square"]
    correct = _records("c", tasks, [("easy/add", "easy/add", "def add(a, b):\n    return a + b\n"),
                                    ("easy/square", "easy/square", "def square(x):\n    return x + x\n")], sandbox)  # fmt: skip
    faulty = _records(
        "f",
        tasks,
        [("easy/add#f0", "easy/add", "def add(a, b):\n    return a - b\n"),
         ("easy/add#f1", "easy/add", "def add(a, b):\n    return b + a\n"),  # "faulty" but passes
         ("easy/add#f2", "easy/add", "def add(a, b):\n    return a * b  # wrong operator\n"),
        ("easy/add#f3", "easy/add", "def add(a, b):\n    return a + c\n"),
         ("easy/square#f0", "easy/square", "def square(x):\n    return x * y\n")],
        sandbox,
        {"easy/add#f0": {"claimed_kind": "logic"}, "easy/add#f1": {"claimed_kind": "logic"},
         "easy/add#f2": {"claimed_kind": "type"}, "easy/add#f3": {"claimed_kind": "name"}, "easy/square#f0": {"claimed_kind": "name"}},
    )  # fmt: skip
    stats = PairStats()
    pairs = build_pairs([add, square], correct, faulty, n_faulty=4, reveal="strip", stats=stats)
    # square's "correct" answer fails its tests: its (real) fault is kept as a fault but makes no pair
    assert [p["rejected"][0]["content"] for p in pairs] == [
        "```python\ndef add(a, b):\n    return a - b\n```",
        "```python\ndef add(a, b):\n    return a * b\n```",  # the revealing comment stripped
        "```python\ndef add(a, b):\n    return a + c\n```",
    ]
    assert all(p["chosen"][0]["content"] == "```python\ndef add(a, b):\n    return a + b\n```" for p in pairs)
    assert (stats.dropped_faulty_passed, stats.faulty_kept, stats.reveals_found, stats.reveals_stripped) == (1, 4, 1, 1)
    assert stats.by_kind["logic"] == {"asked": 2, "failed": 1, "statuses": {"failed": 1}}
    # an exception inside a test is a failed test; the error's class is recorded beside the claimed kind
    assert stats.by_kind["name"]["statuses"] == {"failed": 2} and pairs[2]["actual"]["error"] == "NameError"
    assert pairs[0]["actual"]["status"] == "failed" and "add(1, 2)" in pairs[0]["actual"]["feedback"]
    assert pairs[0]["actual"]["error"] is None and pairs[1]["claimed_kind"] == "type"
    drop = PairStats()
    assert len(build_pairs([add, square], correct, faulty, 4, "drop", drop)) == 2 and drop.dropped_revealing == 1


@pytest.mark.slow
def test_collect_pairs_with_a_real_teacher_then_resume(tmp_path, teacher_client, sandbox, easy_tasks):
    from iterkd.models import SamplingParams

    tasks = easy_tasks
    cache = tmp_path / "cache.sqlite"
    params = SamplingParams(temperature=0.0, max_tokens=96)
    teacher = teacher_client(cache, concurrency=2)
    try:
        pairs, stats = collect_pairs(tasks, teacher, params, sandbox, Limits(), tmp_path, n_faulty=2, progress=False)
        sent = teacher.requests_sent
    finally:
        teacher.close()
    assert sent == 6 + 12  # one correct and two faulty answers per question, nothing repeated
    assert stats.correct_asked == 6 and stats.faulty_asked == 12
    assert stats.correct_kept + stats.dropped_correct_failed == 6
    assert stats.faulty_kept + stats.dropped_faulty_passed + stats.dropped_revealing == 12
    assert sum(k["asked"] for k in stats.by_kind.values()) == 12 and set(stats.by_kind) <= set(ERROR_KINDS)
    faulty = [json.loads(line) for line in (tmp_path / "teacher_faulty.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in faulty) == sorted(f"{t.task_id}#f{j}" for t in tasks for j in range(2))
    kept = {t.task_id for t in tasks} & {r["task_id"] for r in faulty if not r["passed"]}
    assert {p["task_id"] for p in pairs} <= kept and all(p["actual"]["status"] != "passed" for p in pairs)
    assert PROMPT_VERSIONS["teacher-faulty"] == "v1"
    # resume: every record is on disk, so a second run asks nothing (not even the cache) and pairs the same
    teacher = teacher_client(cache)
    try:
        again, stats2 = collect_pairs(tasks, teacher, params, sandbox, Limits(), tmp_path, n_faulty=2, progress=False)
        assert teacher.requests_sent == 0 and teacher.ledger.total.cached == 0
    finally:
        teacher.close()
    assert again == pairs and stats2 == stats


def test_student_negatives_pair_a_failed_attempt_with_the_verified_answer(easy_tasks, sandbox):
    from iterkd.methods.pairs import student_pairs

    tasks = {t.task_id: t for t in easy_tasks}
    correct = _records("c", tasks, [("easy/add", "easy/add", "def add(a, b):\n    return a + b\n")], sandbox)
    attempts = _records("s", tasks, [("easy/add", "easy/add", "def add(a, b):\n    return a + b + 1\n"),
                                     ("easy/square", "easy/square", "def square(x):\n    return x ** 2\n")], sandbox)  # fmt: skip
    pairs = student_pairs(list(tasks.values()), correct, attempts)
    assert [(p["task_id"], p["source"]) for p in pairs] == [("easy/add", "student")]  # square passed: no negative
    assert (
        pairs[0]["rejected"][0]["content"].endswith("return a + b + 1\n```")
        and pairs[0]["actual"]["status"] == "failed"
    )


def test_mutate_asks_to_break_the_teachers_own_passing_answer_minimally(easy_tasks):
    """fault_prompt mutate: only questions whose correct answer passed are asked, each with that answer as the
    teacher's own earlier turn; the kinds rotate as for ask, the keys are the same."""
    from iterkd.methods.pairs import _faulty_requests

    tasks = easy_tasks[:3]
    good = "def add(a, b):\n    return a + b\n"
    correct = {tasks[0].task_id: {"passed": True, "code": good}, tasks[1].task_id: {"passed": False, "code": "x"}}
    asked = _faulty_requests(tasks, 2, correct)
    assert [r.key for r in asked] == [f"{tasks[0].task_id}#f0", f"{tasks[0].task_id}#f1"]
    roles = [m["role"] for m in asked[0].messages]
    assert roles == ["user", "assistant", "user"] and good.strip() in asked[0].messages[1]["content"]
    kinds = [r.meta["claimed_kind"] for r in asked]
    assert kinds == list(ERROR_KINDS)[:2] and ERROR_KINDS[kinds[1]] in asked[1].messages[2]["content"]
    assert "smallest change" in asked[0].messages[2]["content"]
    # ask: every question, from scratch, the same keys and kinds
    plain = _faulty_requests(tasks, 2)
    assert len(plain) == 6 and [r.key for r in plain[:2]] == [r.key for r in asked]
    assert [m["role"] for m in plain[0].messages] == ["user"]
    with pytest.raises(ValueError, match="fault_prompt must be one of"):
        collect_pairs(tasks, None, None, None, None, Path("."), fault_prompt="rewrite")
