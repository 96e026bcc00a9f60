"""Data construction for STAND, INPD and the PERsD variants (see ../shared/docs/methods.md, section 1).

    stand          teacher answers every task            -> (task -> teacher code), passing answers only
    inpd           teacher answers the failed tasks      -> (task -> teacher code), passing answers only
    persd          teacher repairs the failed attempts   -> (task -> repaired code), passing repairs only
    persd-refine   same repairs                          -> (task + wrong code + error -> repaired code)
    persd-combine  both of the above, same tasks

Student attempts: one sample per task at temperature 0.3 (the PD code's setting). Stage outputs are JSONL files
in ``data_dir`` (resumable, shareable between methods); the teacher's cache makes repeated calls free.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from iterkd.errors import UserError
from iterkd.methods.decontam import is_contaminated
from iterkd.methods.prompts import code_answer, direct_messages, refine_messages, repair_messages
from iterkd.methods.stage import Request, run_stage
from iterkd.tasks import Task

METHODS = ("stand", "inpd", "persd", "persd-refine", "persd-combine")


@dataclass
class DataStats:
    method: str
    seed_tasks: int = 0
    dropped_contaminated: int = 0
    attempted: int = 0
    student_passed: int = 0
    failed: int = 0
    teacher_calls: int = 0
    teacher_passed: int = 0
    dropped_generated_contaminated: int = 0
    examples: int = 0
    teacher_prompt_tokens: int = 0
    teacher_completion_tokens: int = 0


def _assistant(code: str) -> list[dict]:
    return [{"role": "assistant", "content": code_answer(code)}]


def _teacher_meta(rec: dict) -> dict:
    return {"teacher_prompt_tokens": rec["prompt_tokens"], "teacher_completion_tokens": rec["completion_tokens"]}


def build_examples(method: str, tasks: list[Task], attempts: dict | None, teacher: dict, round_: int = 0) -> list[dict]:
    """Training examples (TRL conversational prompt-completion rows with metadata) for one method."""
    examples = []
    for task in tasks:
        rec = teacher.get(task.task_id)
        if rec is None or not rec["passed"]:
            continue
        att = (attempts or {}).get(task.task_id)
        meta = {"task_id": task.task_id, "method": method, "round": round_, **_teacher_meta(rec)}
        if att is not None:
            meta.update(student_code=att["code"], student_status=att["status"], student_feedback=att["feedback"])
        if method in ("stand", "inpd", "persd", "persd-combine"):
            examples.append({"prompt": direct_messages(task), "completion": _assistant(rec["code"]), **meta, "kind": "text-to-code"})
        if method in ("persd-refine", "persd-combine"):
            prompt = refine_messages(task, att["code"], att["feedback"])
            examples.append({"prompt": prompt, "completion": _assistant(rec["code"]), **meta, "kind": "refine"})
    return examples


def collect(
    method: str,
    tasks: list[Task],
    student,
    teacher,
    student_params,
    teacher_params,
    sandbox,
    limits,
    data_dir: Path,
    batch_size: int = 8,
    progress: bool = True,
    teacher_sees_reference: bool = False,
) -> tuple[list[dict], DataStats]:
    """Run the stages ``method`` needs and return its training examples and counts. ``teacher_sees_reference``:
    repairs are asked with the task's reference solution in context (tasks without one: UserError)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    if teacher_sees_reference:
        missing = [t.task_id for t in tasks if not t.canonical_solution]
        if missing:
            raise UserError(f"teacher_sees_reference: {len(missing)} seed tasks have no canonical_solution "
                            f"(first: {missing[0]})")
    stats = DataStats(method=method, seed_tasks=len(tasks))
    clean = [t for t in tasks if not is_contaminated(t.prompt, t.canonical_solution or "")]
    stats.dropped_contaminated = len(tasks) - len(clean)
    common = dict(sandbox=sandbox, limits=limits, batch_size=batch_size, progress=progress)

    attempts = None
    if method != "stand":
        recs = run_stage(
            "student-attempts", student, [Request(t.task_id, t, direct_messages(t)) for t in clean],
            student_params, path=data_dir / "student_attempts.jsonl", **common,
        )
        attempts = {r["task_id"]: r for r in recs.values()}
        stats.attempted = len(attempts)
        stats.student_passed = sum(r["passed"] for r in attempts.values())
        stats.failed = stats.attempted - stats.student_passed
    failed = [t for t in clean if attempts is not None and not attempts[t.task_id]["passed"]]

    if method == "stand":
        requests = [Request(t.task_id, t, direct_messages(t)) for t in clean]
        name, file = "teacher-direct", "teacher_direct.jsonl"
    elif method == "inpd":
        requests = [Request(t.task_id, t, direct_messages(t)) for t in failed]
        name, file = "teacher-direct", "teacher_direct.jsonl"
    else:
        requests = [
            Request(t.task_id, t, repair_messages(t, attempts[t.task_id]["code"], attempts[t.task_id]["feedback"],
                                                  t.canonical_solution if teacher_sees_reference else None))
            for t in failed
        ]
        name, file = "teacher-repair", "teacher_repair.jsonl"
    recs = run_stage(name, teacher, requests, teacher_params, path=data_dir / file, **common)
    teacher_recs = {r["task_id"]: r for r in recs.values()}
    stats.teacher_calls = len(teacher_recs)
    stats.teacher_passed = sum(r["passed"] for r in teacher_recs.values())
    stats.teacher_prompt_tokens = sum(r["prompt_tokens"] for r in teacher_recs.values())
    stats.teacher_completion_tokens = sum(r["completion_tokens"] for r in teacher_recs.values())
    for tid, rec in list(teacher_recs.items()):
        if rec["passed"] and is_contaminated(code=rec["code"]):
            teacher_recs[tid] = {**rec, "passed": False}
            stats.dropped_generated_contaminated += 1
    examples = build_examples(method, clean, attempts, teacher_recs)
    stats.examples = len(examples)
    return examples, stats


def write_dataset(
    examples: list[dict], stats: DataStats, out_dir: Path, extra_card: dict | None = None, parquet: bool = False
) -> Path:
    """Write ``train.jsonl`` (TRL conversational prompt-completion rows), optionally ``train.parquet`` (the same
    rows), and ``data_card.json``; each file atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "train.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex) + "\n")
    os.replace(tmp, path)
    files = [path.name]
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = out_dir / "train.parquet"
        pq.write_table(pa.Table.from_pylist(examples), str(target) + ".tmp")
        os.replace(str(target) + ".tmp", target)
        files.append(target.name)
    card = {**asdict(stats), **(extra_card or {}), "file": path.name, "files": files,
            "format": "conversational prompt-completion (TRL)"}
    (out_dir / "data_card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return path
