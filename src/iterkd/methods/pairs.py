"""IterKD Stage I, Correct-and-Fault Knowledge Delivery: per question, the teacher's correct solution and
``n_faulty`` deliberately faulty ones, every one proven by execution (see ../shared/docs/methods.md, 2.3).

    teacher_direct.jsonl   the correct solution: the student's own prompt (the STAND teacher stage, so a shared
                           stage_dir reuses its records); kept only if it passes the question's tests
    teacher_faulty.jsonl   faulty solution j of a question, asked with an error kind (syntax, logic, type, name,
                           timeout; kind j of the question's rotation); kept only if it fails the tests, with its
                           real verdict (status, error, first failing test) beside the kind the teacher claimed.
                           ``fault_prompt``: ``ask`` writes it from scratch; ``mutate`` gives the teacher its own
                           correct answer (which passed) and asks for a minimal change of the kind
    pairs.jsonl            TRL's conversational preference rows: prompt, chosen (correct), rejected (faulty),
                           and metadata (task_id, claimed kind, actual verdict, source "teacher")

A faulty answer whose comments reveal the fault ("bug", "wrong", "error here", ...) is handled by
``reveal``: ``strip`` (default: comments removed, which cannot change what the code does; dropped if a string
still reveals it), ``drop``, or ``keep``. Everything is counted in ``PairStats``.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from iterkd.codegen.prompts import ERROR_KINDS, code_answer, direct_messages, faulty_messages, mutate_messages
from iterkd.stages import Request, run_stage, verified_records
from iterkd.tasks import Task

REVEAL_POLICIES = ("strip", "drop", "keep")
FAULT_PROMPTS = ("ask", "mutate")  # ask: a faulty solution from scratch; mutate: a minimal change of its correct one
_REVEALING = re.compile(
    r"\b(bug|buggy|wrong|incorrect|intentional(ly)?|deliberate(ly)?|mistake|fault(y)?|typo|"
    r"(syntax|logic|logical|type|name)\s+error|infinite\s+loop|should\s+be|will\s+fail|fix(ed|me)?)\b",
    re.IGNORECASE,
)


@dataclass
class PairStats:
    questions: int = 0
    correct_asked: int = 0
    correct_kept: int = 0
    dropped_correct_failed: int = 0
    faulty_asked: int = 0
    faulty_kept: int = 0
    dropped_faulty_passed: int = 0
    reveals_found: int = 0
    reveals_stripped: int = 0
    dropped_revealing: int = 0
    pairs: int = 0
    teacher_prompt_tokens: int = 0
    teacher_completion_tokens: int = 0
    by_kind: dict = field(default_factory=dict)  # claimed kind -> {asked, failed, actual statuses}


def _text_parts(code: str) -> tuple[list[str], list[str]]:
    """(comments, string literals) of ``code``; code that does not tokenise gives its raw lines as comments."""
    comments, strings = [], []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.COMMENT:
                comments.append(tok.string)
            elif tok.type == tokenize.STRING:
                strings.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        comments = [line for line in code.splitlines() if "#" in line]
    return comments, strings


def reveals_fault(code: str) -> tuple[bool, bool]:
    """(a comment reveals the fault, a string literal or docstring does)."""
    comments, strings = _text_parts(code)
    return any(_REVEALING.search(c) for c in comments), any(_REVEALING.search(s) for s in strings)


def strip_comments(code: str) -> str:
    """``code`` without its comments (lines that held only a comment are removed); code that does not tokenise
    (a syntax fault) loses the ``#...`` tail of each line outside quotes, as far as a simple scan can tell."""
    try:
        toks = [t for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type != tokenize.COMMENT]
        out = tokenize.untokenize(toks)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        out = "\n".join(re.sub(r"\s*#[^'\"]*$", "", line) for line in code.splitlines())
    return "\n".join(line.rstrip() for line in out.splitlines() if line.strip()) + "\n"


def _verdict(rec: dict) -> dict:
    """The real fault of a failing record: status, the error's class (from the feedback) and the test."""
    m = re.search(r"\b([A-Z][A-Za-z]*(Error|Exception)|Timeout|TIMEOUT)\b", rec.get("feedback", ""))
    return {"status": rec["status"], "error": m.group(1) if m else None, "feedback": rec.get("feedback", "")}


def _screen(rec: dict, reveal: str, stats: PairStats) -> dict | None:
    """A failing faulty record made fit for training under ``reveal``, or None if it must be dropped."""
    in_comment, in_string = reveals_fault(rec["code"])
    if not (in_comment or in_string):
        return rec
    stats.reveals_found += 1
    if reveal == "keep":
        return rec
    if reveal == "strip" and not in_string:
        stats.reveals_stripped += 1
        return {**rec, "code": strip_comments(rec["code"]), "stripped": True}
    stats.dropped_revealing += 1
    return None


def _pair(task: Task, good: dict, bad: dict, source: str, kind: str | None) -> dict:
    """One TRL conversational preference row: the task's prompt, the verified correct and the failing answer."""
    return {
        "prompt": direct_messages(task),
        "chosen": [{"role": "assistant", "content": code_answer(good["code"])}],
        "rejected": [{"role": "assistant", "content": code_answer(bad["code"])}],
        "task_id": task.task_id,
        "source": source,
        "claimed_kind": kind,
        "actual": _verdict(bad),
        "stripped": bad.get("stripped", False),
    }


def build_pairs(tasks: list[Task], correct: dict, faulty: dict, n_faulty: int, reveal: str, stats: PairStats):
    """Preference rows from the verified records (``correct``: by task id; ``faulty``: by ``task_id#fj``)."""
    pairs = []
    for task in tasks:
        good = correct.get(task.task_id)
        for j in range(n_faulty):
            rec = faulty.get(f"{task.task_id}#f{j}")
            if rec is None:
                continue
            kind = stats.by_kind.setdefault(rec["claimed_kind"], {"asked": 0, "failed": 0, "statuses": {}})
            kind["asked"] += 1
            if rec["passed"]:
                stats.dropped_faulty_passed += 1
                continue
            kind["failed"] += 1
            kind["statuses"][rec["status"]] = kind["statuses"].get(rec["status"], 0) + 1
            rec = _screen(rec, reveal, stats)
            if rec is None:
                continue
            stats.faulty_kept += 1
            if good is None or not good["passed"]:
                continue
            pairs.append(_pair(task, good, rec, "teacher", rec["claimed_kind"]))
    stats.pairs = len(pairs)
    return pairs


def _faulty_requests(tasks: list[Task], n_faulty: int, correct: dict | None = None) -> list[Request]:
    """``n_faulty`` requests per question, error kinds in turn. With ``correct`` (fault_prompt mutate: the verified
    teacher answers by task id) each asks for a minimal change of the question's correct answer; a question
    without one is not asked (it could make no pair)."""
    kinds = list(ERROR_KINDS)
    out = []
    for i, task in enumerate(tasks):
        good = (correct or {}).get(task.task_id)
        if correct is not None and not (good and good["passed"]):
            continue
        for j in range(n_faulty):
            kind = kinds[(i + j) % len(kinds)]  # every kind in turn, across questions and within one
            ask = mutate_messages(task, good["code"], kind) if correct is not None else faulty_messages(task, kind)
            out.append(Request(f"{task.task_id}#f{j}", task, ask, {"claimed_kind": kind}))
    return out


def collect_pairs(
    tasks: list[Task],
    teacher,
    params,
    sandbox,
    limits,
    data_dir: Path,
    n_faulty: int = 1,
    reveal: str = "strip",
    batch_size: int = 8,
    progress: bool = True,
    fault_prompt: str = "ask",
) -> tuple[list[dict], PairStats]:
    """Ask, verify and pair (module docstring); resumable through the stage files in ``data_dir``.
    ``fault_prompt``: ``ask`` (a faulty solution from scratch) or ``mutate`` (a minimal change of the teacher's
    own verified answer, asked after it)."""
    if reveal not in REVEAL_POLICIES:
        raise ValueError(f"reveal must be one of {REVEAL_POLICIES}, got {reveal!r}")
    if fault_prompt not in FAULT_PROMPTS:
        raise ValueError(f"fault_prompt must be one of {FAULT_PROMPTS}, got {fault_prompt!r}")
    stats = PairStats(questions=len(tasks))
    common = {"batch_size": batch_size, "progress": progress}
    direct = [Request(t.task_id, t, direct_messages(t)) for t in tasks]
    correct = run_stage("teacher-direct", teacher, direct, params, data_dir / "teacher_direct.jsonl",
                        verified_records("teacher-direct", sandbox, limits), **common)  # fmt: skip
    asked = _faulty_requests(tasks, n_faulty, correct if fault_prompt == "mutate" else None)
    faulty = run_stage("teacher-faulty", teacher, asked, params,
                       data_dir / "teacher_faulty.jsonl", verified_records("teacher-faulty", sandbox, limits), **common)  # fmt: skip
    stats.correct_asked, stats.faulty_asked = len(correct), len(faulty)
    stats.correct_kept = sum(r["passed"] for r in correct.values())
    stats.dropped_correct_failed = stats.correct_asked - stats.correct_kept
    every = [*correct.values(), *faulty.values()]
    stats.teacher_prompt_tokens = sum(r["prompt_tokens"] for r in every)
    stats.teacher_completion_tokens = sum(r["completion_tokens"] for r in every)
    return build_pairs(tasks, correct, faulty, n_faulty, reveal, stats), stats


def student_pairs(tasks: list[Task], correct: dict, attempts: dict) -> list[dict]:
    """On-policy negatives: the student's own failed answers (Stage II records by task id) paired with the
    teacher's verified correct answer to the same question (``negatives: student``)."""
    pairs = []
    for task in tasks:
        good, bad = correct.get(task.task_id), attempts.get(task.task_id)
        if good is None or not good["passed"] or bad is None or bad["passed"]:
            continue
        pairs.append(_pair(task, good, bad, "student", None))
    return pairs
