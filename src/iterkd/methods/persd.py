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

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from iterkd.codegen.prompts import code_answer, direct_messages, refine_messages, repair_messages
from iterkd.errors import UserError
from iterkd.io import atomic_write_json, atomic_write_lines
from iterkd.methods.decontam import is_contaminated
from iterkd.stages import Request, run_stage, verified_records
from iterkd.tasks import Task


@dataclass(frozen=True)
class Method:
    """What a method asks the teacher (``teacher_stage``, about which tasks) and what it trains on."""

    name: str
    teacher_stage: str  # a key of TEACHER_STAGES
    only_failed: bool  # the teacher sees only the tasks the student failed (needs attempts)
    trains_on: tuple[str, ...]  # example kinds, keys of EXAMPLE_KINDS, in the order they are written


REGISTRY = {m.name: m for m in (
    Method("stand", "teacher-direct", only_failed=False, trains_on=("text-to-code",)),
    Method("inpd", "teacher-direct", only_failed=True, trains_on=("text-to-code",)),
    Method("persd", "teacher-repair", only_failed=True, trains_on=("text-to-code",)),
    Method("persd-refine", "teacher-repair", only_failed=True, trains_on=("refine",)),
    Method("persd-combine", "teacher-repair", only_failed=True, trains_on=("text-to-code", "refine")),
)}  # fmt: skip
METHODS = tuple(REGISTRY)


def _ask_direct(task: Task, attempt: dict | None, reference: str | None) -> list[dict]:
    return direct_messages(task)


def _ask_repair(task: Task, attempt: dict | None, reference: str | None) -> list[dict]:
    return repair_messages(task, attempt["code"], attempt["feedback"], reference)


# teacher stage -> (records file, prompt builder(task, the student's attempt, reference or None))
TEACHER_STAGES = {
    "teacher-direct": ("teacher_direct.jsonl", _ask_direct),
    "teacher-repair": ("teacher_repair.jsonl", _ask_repair),
}
# example kind -> the prompt the student trains on (task, its attempt)
EXAMPLE_KINDS = {
    "text-to-code": lambda task, att: direct_messages(task),
    "refine": lambda task, att: refine_messages(task, att["code"], att["feedback"]),
}


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
        for kind in REGISTRY[method].trains_on:
            prompt = EXAMPLE_KINDS[kind](task, att)
            examples.append({"prompt": prompt, "completion": _assistant(rec["code"]), **meta, "kind": kind})
    return examples


@dataclass
class StageRunner:
    """Runs the code stages of one data collection: the sandbox, limits and batching they share."""

    sandbox: object
    limits: object
    data_dir: Path
    batch_size: int = 8
    progress: bool = True

    def __call__(self, name: str, generator, requests: list[Request], params, file: str) -> dict[str, dict]:
        recs = run_stage(
            name,
            generator,
            requests,
            params,
            self.data_dir / file,
            verified_records(name, self.sandbox, self.limits),
            batch_size=self.batch_size,
            progress=self.progress,
        )
        return {r["task_id"]: r for r in recs.values()}


def _check_references(tasks: list[Task]) -> None:
    missing = [t.task_id for t in tasks if not t.canonical_solution]
    if missing:
        raise UserError(
            f"teacher_sees_reference: {len(missing)} seed tasks have no canonical_solution (first: {missing[0]})"
        )


def _count_teacher(stats: DataStats, recs: dict[str, dict]) -> dict[str, dict]:
    """Book the teacher's records in ``stats``; passing answers that copy benchmark code count as failed."""
    stats.teacher_calls = len(recs)
    stats.teacher_passed = sum(r["passed"] for r in recs.values())
    stats.teacher_prompt_tokens = sum(r["prompt_tokens"] for r in recs.values())
    stats.teacher_completion_tokens = sum(r["completion_tokens"] for r in recs.values())
    out = dict(recs)
    for tid, rec in recs.items():
        if rec["passed"] and is_contaminated(code=rec["code"]):
            out[tid] = {**rec, "passed": False}
            stats.dropped_generated_contaminated += 1
    return out


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
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}")
    spec = REGISTRY[method]
    if teacher_sees_reference:
        _check_references(tasks)
    stats = DataStats(method=method, seed_tasks=len(tasks))
    clean = [t for t in tasks if not is_contaminated(t.prompt, t.canonical_solution or "")]
    stats.dropped_contaminated = len(tasks) - len(clean)
    stage = StageRunner(sandbox, limits, data_dir, batch_size, progress)

    attempts = None
    if spec.only_failed:
        requests = [Request(t.task_id, t, direct_messages(t)) for t in clean]
        attempts = stage("student-attempts", student, requests, student_params, "student_attempts.jsonl")
        stats.attempted = len(attempts)
        stats.student_passed = sum(r["passed"] for r in attempts.values())
        stats.failed = stats.attempted - stats.student_passed
    asked = [t for t in clean if not spec.only_failed or not attempts[t.task_id]["passed"]]
    file, ask = TEACHER_STAGES[spec.teacher_stage]
    requests = [
        Request(
            t.task_id,
            t,
            ask(t, (attempts or {}).get(t.task_id), t.canonical_solution if teacher_sees_reference else None),
        )
        for t in asked
    ]
    teacher_recs = _count_teacher(stats, stage(spec.teacher_stage, teacher, requests, teacher_params, file))
    examples = build_examples(method, clean, attempts, teacher_recs)
    stats.examples = len(examples)
    return examples, stats


def write_dataset(
    examples: list[dict], stats: DataStats, out_dir: Path, extra_card: dict | None = None, parquet: bool = False
) -> Path:
    """Write ``train.jsonl`` (TRL conversational prompt-completion rows), optionally ``train.parquet`` (the same
    rows), and ``data_card.json`` last (it marks the data stage finished); each file atomically."""
    path = atomic_write_lines(Path(out_dir) / "train.jsonl", examples)
    files = [path.name]
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = out_dir / "train.parquet"
        pq.write_table(pa.Table.from_pylist(examples), str(target) + ".tmp")
        os.replace(str(target) + ".tmp", target)
        files.append(target.name)
    card = {
        **asdict(stats),
        **(extra_card or {}),
        "file": path.name,
        "files": files,
        "format": "conversational prompt-completion (TRL)",
    }
    atomic_write_json(out_dir / "data_card.json", card)
    return path
