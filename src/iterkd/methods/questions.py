"""IterKD Stage III, Feedback-based Knowledge Update: new questions from seeds of each difficulty bucket,
proven by execution, de-duplicated and decontaminated before they enter the next round's pool.

    questions.jsonl        the teacher's answers (resumable stage records), one per (seed, bucket, j)
    questions.retry.jsonl  one rewrite of each rejected question, asked with the reason it was rejected
    new_tasks.jsonl        the accepted questions in the task-file format (``iterkd eval --benchmark FILE``)

A question is accepted when: its answer parses (QUESTION / FUNCTION / SOLUTION / TESTS, >= ``min_tests``
asserts that call the function); the reference solution passes every test; the tests are not trivial (they fail
on a body that does nothing and on ``return None``, and on the seed's own solution when it has the same
function name); it is not a near-duplicate of the pool or of an earlier new question (``dedup`` "words2" or "words":
the paraphrase-aware similarity of methods.dedup, statement words of version 2 or 1, >= ``dedup_threshold``; "minhash": MinHash over word 5-grams of the
question text); and it does not overlap HumanEval or the MBPP test
split (the n-gram check of ``decontam`` plus a case-insensitive substring check of prompts and solutions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from iterkd.codegen.prompts import QUESTION_RETRY, question_messages
from iterkd.feedback import job_for
from iterkd.methods.decontam import is_contaminated
from iterkd.methods.dedup import near_duplicates
from iterkd.stages import Request, follow_up, run_stage
from iterkd.tasks import Task, write_task_file

_FIELD = re.compile(r"QUESTION:\s*(?P<q>.+?)\s*FUNCTION:\s*`?(?P<f>[A-Za-z_]\w*)`?", re.DOTALL)
_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


@dataclass
class QuestionStats:
    asked: int = 0
    parsed: int = 0
    rewritten: int = 0
    failed_reference: int = 0
    trivial_tests: int = 0
    duplicates: int = 0
    contaminated: int = 0
    accepted: int = 0
    by_bucket: dict = field(default_factory=dict)  # bucket -> {asked, accepted}


BUCKETS = ("easy", "medium", "hard")


def bucket(scores: dict, easy_min: float = 5.0, hard_max: float = 3.0) -> str:
    """A question's difficulty for the student from the scores of its answer's views (``feedback.views``: our
    rule; thresholds in the config). Execution decides first (``passed``): a failing answer is never easy, a
    passing one never hard. With a judge's score (``judge``): easy = passes, lint-clean (``static_clean``) and
    judged >= ``easy_min``; hard = fails and judged < ``hard_max``; medium otherwise. Without one (no judge view,
    an unparsed judgement, or ``judge_in_buckets: false``), execution and the static view alone: easy = passes
    lint-clean; hard = fails by crashing (``crashed``: an exception, a syntax error, a timeout) or with lint
    findings; medium = passes with findings, or runs clean and returns a wrong value."""
    score, clean = scores.get("judge"), scores.get("static_clean", True)
    if scores["passed"]:
        return "easy" if clean and (score is None or score >= easy_min) else "medium"
    if score is not None:
        return "hard" if score < hard_max else "medium"
    return "hard" if scores.get("crashed", False) or not clean else "medium"


def parse_question(text: str, task_id: str, min_tests: int = 3) -> Task | str:
    """A Task from the teacher's answer, or the reason it cannot be one."""
    m = _FIELD.search(text)
    blocks = _BLOCK.findall(text)
    if m is None or len(blocks) < 2:
        return "the answer is not in the QUESTION / FUNCTION / SOLUTION / TESTS format"
    name = m.group("f")
    tests = [line.strip() for line in blocks[-1].splitlines() if line.strip().startswith("assert")]
    tests = [t for t in tests if re.search(rf"\b{re.escape(name)}\s*\(", t)]
    if len(tests) < min_tests:
        return f"it needs at least {min_tests} assert lines that call {name}, found {len(tests)}"
    question = " ".join(m.group("q").split())
    return Task(task_id=task_id, prompt=question, entry_point=name, tests=tests, seen_tests=tests[:1],
                canonical_solution=blocks[0].strip() + "\n", benchmark="custom")  # fmt: skip


def _stubs(task: Task, seed: Task | None) -> list[str]:
    """Programs the tests must reject: a body that does nothing, ``return None``, the seed's own solution."""
    out = [f"def {task.entry_point}(*args, **kwargs):\n    pass\n",
           f"def {task.entry_point}(*args, **kwargs):\n    return None\n"]  # fmt: skip
    if seed is not None and seed.canonical_solution and seed.entry_point == task.entry_point:
        out.append(seed.canonical_solution)
    return out


def _rejection(task: Task, seed: Task | None, sandbox, limits) -> tuple[str, str] | None:
    """None when the reference passes and no stub does; else (why: reference | trivial, the reason)."""
    stubs = _stubs(task, seed)
    verdicts = sandbox.map([job_for(task, code, limits) for code in [task.canonical_solution, *stubs]])
    if not verdicts[0].passed:
        detail = (verdicts[0].feedback or verdicts[0].reason)[:300]
        return "reference", "the reference solution fails its own tests: " + detail
    if any(v.passed for v in verdicts[1:]):
        return "trivial", "the tests are trivial: a function that does nothing (or the example's solution) passes them"
    return None


def validate(task: Task, seed: Task | None, sandbox, limits) -> str | None:
    """None when the reference passes and no stub does; else the reason (for the rewrite request)."""
    rejected = _rejection(task, seed, sandbox, limits)
    return rejected[1] if rejected else None


def _text_records(batch: list[Request], completions: list, seconds: float) -> list[dict]:
    return [
        {"key": r.key, **r.meta, "text": c.text, "prompt_tokens": c.prompt_tokens,
         "completion_tokens": c.completion_tokens}
        for r, c in zip(batch, completions)
    ]  # fmt: skip


def _requests(
    seeds: dict[str, list[Task]], per_seed: dict[str, int], attempts: dict | None = None, version: str | None = None
) -> list[Request]:
    out = []
    for bucket, tasks in seeds.items():
        k = per_seed.get(bucket, 1)
        for seed in tasks:
            attempt = (attempts or {}).get(seed.task_id)
            for j in range(k):
                meta = {"seed_id": seed.task_id, "bucket": bucket, "j": j}
                messages = question_messages(seed, bucket, j, k, attempt, version)
                out.append(Request(f"{seed.task_id}|{bucket}|{j}", seed, messages, meta))
    return out


def _check(text: str, req: Request, round_: int, sandbox, limits, min_tests: int) -> Task | tuple[str, str]:
    """The accepted task, or (why: format | reference | trivial, the reason told to the teacher)."""
    task_id = f"r{round_}/{req.meta['bucket']}/{req.meta['seed_id']}/{req.meta['j']}"
    task = parse_question(text, task_id, min_tests)
    if isinstance(task, str):
        return "format", task
    return _rejection(task, req.task, sandbox, limits) or task


@dataclass
class QuestionWriter:
    """Stage III for one round: ask, validate (one rewrite), de-duplicate, decontaminate, write."""

    teacher: object
    params: object
    sandbox: object
    limits: object
    data_dir: Path
    round_: int = 1
    min_tests: int = 3
    dedup: str = "words2"  # methods.dedup (paraphrase-aware; "words": version 1) or "minhash" (word 5-grams)
    dedup_threshold: float = 0.8
    batch_size: int = 8
    progress: bool = True
    tasks_file: Path | None = None  # where the accepted questions go (default DATA_DIR/new_tasks.jsonl)
    prompt_version: str | None = None  # the question prompt's wording (default: today's, PROMPT_VERSIONS)

    def _stage(self, name: str, requests: list[Request], file: str) -> dict:
        return run_stage(name, self.teacher, requests, self.params, self.data_dir / file, _text_records,
                         batch_size=self.batch_size, progress=self.progress)  # fmt: skip

    def _validated(self, requests: list[Request], stats: QuestionStats) -> list[tuple[Request, Task]]:
        first = self._stage("new questions", requests, "questions.jsonl")
        checked = {r.key: _check(first[r.key]["text"], r, self.round_, self.sandbox, self.limits, self.min_tests)
                   for r in requests}  # fmt: skip
        stats.parsed = sum(not isinstance(c, tuple) or c[0] != "format" for c in checked.values())
        again = [
            follow_up(r, first[r.key]["text"], QUESTION_RETRY.format(reason=checked[r.key][1]))
            for r in requests
            if isinstance(checked[r.key], tuple)
        ]
        retried = self._stage("new questions (rewrite)", again, "questions.retry.jsonl")
        for r in again:
            checked[r.key] = _check(retried[r.key]["text"], r, self.round_, self.sandbox, self.limits, self.min_tests)
            stats.rewritten += isinstance(checked[r.key], Task)
        why = [c[0] for c in checked.values() if isinstance(c, tuple)]
        stats.failed_reference, stats.trivial_tests = why.count("reference"), why.count("trivial")
        return [(r, checked[r.key]) for r in requests if isinstance(checked[r.key], Task)]

    def __call__(self, seeds: dict[str, list[Task]], per_seed: dict[str, int], pool_texts: list[str] = (),
                 attempts: dict[str, tuple[str, str]] | None = None):  # fmt: skip
        """New questions from ``seeds`` (bucket -> seed tasks); ``attempts``: task id -> (the student's failing
        answer, its verdict), shown to the teacher for medium and hard seeds. Returns (accepted tasks,
        QuestionStats) and writes DATA_DIR/new_tasks.jsonl."""
        requests = _requests(seeds, per_seed, attempts, self.prompt_version)
        stats = QuestionStats(asked=len(requests))
        for r in requests:
            stats.by_bucket.setdefault(r.meta["bucket"], {"asked": 0, "accepted": 0})["asked"] += 1
        dedup = near_duplicates(self.dedup, self.dedup_threshold, list(pool_texts))
        accepted = []
        for req, task in self._validated(requests, stats):
            if dedup.seen(task.prompt):
                stats.duplicates += 1
            elif is_contaminated(task.prompt, task.canonical_solution or "", substrings=True):
                stats.contaminated += 1
            else:
                dedup.add(task.prompt)
                accepted.append(task)
                stats.by_bucket[req.meta["bucket"]]["accepted"] += 1
        stats.accepted = len(accepted)
        write_task_file(self.tasks_file or self.data_dir / "new_tasks.jsonl", accepted)
        return accepted, stats
