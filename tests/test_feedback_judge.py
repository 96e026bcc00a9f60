"""The rubric judge: parsing judgements, ROC AUC on known inputs, and a real llama.cpp-served judge."""

import json

import pytest

from iterkd.codegen.prompts import judge_messages, task_statement
from iterkd.feedback.judge import judge_answers, parse_total, roc_auc, roc_auc_ci
from iterkd.tasks import load_humaneval, load_mbpp


def test_parse_total_reads_the_total_or_sums_the_items():
    assert parse_total("Code Analysis: fine.\nTotal: 4.5") == 4.5
    assert parse_total("Total score: 5/6\n...\n**Total:** 3") == 3.0  # the last total counts
    items = ("Basic functionality: 2\nBoundary checks: 0.5\nRequirement coverage: 1\n"
             "Readability and documentation: 1\nCoding practices: 0\n")  # fmt: skip
    assert parse_total(items) == 4.5
    assert parse_total(items.replace("Coding practices: 0\n", "")) is None  # an item missing, no total
    assert parse_total("Total: 9") is None and parse_total("looks good to me") is None


def test_roc_auc_on_known_inputs():
    assert roc_auc([6, 5, 1, 0], [True, True, False, False]) == 1.0
    assert roc_auc([0, 1, 5, 6], [True, True, False, False]) == 0.0
    assert roc_auc([6, 6, 6, 6], [True, False, True, False]) == 0.5  # every score equal: chance
    assert roc_auc([5, 3, 4], [True, False, False]) == 1.0 and roc_auc([1, 2], [True, True]) is None
    assert roc_auc([4, 2, 4, 1], [True, True, False, False]) == pytest.approx(0.625)  # 2.5 of 4 pairs


def test_roc_auc_interval_is_a_bootstrap_over_the_answers():
    separating = roc_auc_ci([6, 5, 6, 1, 0, 2], [True, True, True, False, False, False])
    assert separating == (1.0, 1.0, 1.0)  # every resample with both kinds separates them
    passed = [True] * 70 + [False] * 70
    scores = [i % 7 for i in range(70)] * 2  # a judge at chance: the same scores for passing and failing answers
    auc, low, high = roc_auc_ci(scores, passed)
    assert auc == 0.5 and low < 0.5 < high and 0.05 < high - low < 0.3
    assert roc_auc_ci(scores, passed) == (auc, low, high)  # seeded: the same interval again
    assert roc_auc_ci([1, 2], [True, True]) is None


def test_the_judge_sees_the_task_without_the_answer_format():
    mbpp = load_mbpp("validation")[0]
    text = judge_messages(mbpp, "def f():\n    pass\n", "trace")[0]["content"]
    assert task_statement(mbpp) in text and mbpp.seen_tests[0] in text and "Reply with the complete" not in text
    assert "Trace:" in text and "Total: X" in text
    assert "```python\nfrom typing import List" in task_statement(load_humaneval()[0])


@pytest.mark.slow
def test_a_real_judge_scores_resumes_and_counts(tmp_path, teacher_client):
    from iterkd.models import SamplingParams

    tasks = load_mbpp("validation")[:3]
    answers = [
        (f"{t.task_id}#{i}", t, code)
        for t in tasks
        for i, code in enumerate([t.canonical_solution, "def f():\n    return None\n"])
    ]
    params = SamplingParams(temperature=0.0, max_tokens=96)
    path = tmp_path / "judge.jsonl"
    judge = teacher_client(tmp_path / "c.sqlite")
    try:
        recs = judge_answers(answers, judge, params, path, progress=False)
        sent = judge.requests_sent
    finally:
        judge.close()
    retried = sum(r["retried"] for r in recs.values())
    assert sent == 6 + retried and len(recs) == 6
    assert all(r["score"] is None or 0 <= r["score"] <= 6 for r in recs.values())
    assert all(r["retried"] == (parse_total(r["judgement"]) is None) for r in recs.values())
    assert len(path.read_text().splitlines()) == 6 and all(
        json.loads(l)["variant"] == "trace" for l in path.read_text().splitlines()
    )
    judge = teacher_client(tmp_path / "c.sqlite")
    try:
        assert judge_answers(answers, judge, params, path, progress=False) == recs and judge.requests_sent == 0
    finally:
        judge.close()
