"""Issue 31, first step: which fault prompt makes Stage I produce teacher pairs? `ask` (a faulty solution written
from scratch, today's) against `mutate` (the teacher's own answer that passed, changed minimally), on MBPP
validation only (never a test set), with the protocol's teacher: Qwen2.5-Coder-1.5B-Instruct served by llama.cpp,
greedy, 384 tokens, 2 faulty answers per question, comments that reveal the fault stripped.

    ITERKD_THREADS=2 python experiments/iterkd-mini/fault_prompts.py [--limit N]

Resumable (stage records under fault-prompts/<prompt>/, the teacher cache teacher-cache.sqlite beside this file:
a rerun asks the teacher nothing it answered before; both prompts share the correct answers through the cache).
Writes fault-prompts/results.json and prints the table: per prompt, faulty answers asked, really failing, kept
(after the reveal screen), pairs, teacher tokens, pairs per 1,000 teacher tokens, and per error kind.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "fault-prompts"
TEACHER = {"served_model": "qwen2.5-coder-1.5b-instruct", "temperature": 0.0, "max_tokens": 384, "concurrency": 8,
           "cache_path": str(HERE / "teacher-cache.sqlite")}  # fmt: skip
PROMPTS = ("ask", "mutate")


def measure(prompt: str, tasks, teacher, box, limits) -> dict:
    from iterkd.methods.pairs import collect_pairs

    pairs, stats = collect_pairs(tasks, teacher, teacher.config.sampling(), box, limits, OUT / prompt, n_faulty=2,
                                 reveal="strip", fault_prompt=prompt)  # fmt: skip
    tokens = stats.teacher_prompt_tokens + stats.teacher_completion_tokens
    failing = stats.faulty_asked - stats.dropped_faulty_passed
    return {
        "prompt": prompt,
        "questions": stats.questions,
        "correct_kept": stats.correct_kept,
        "faulty_asked": stats.faulty_asked,
        "faulty_failing": failing,
        "failing_share": round(failing / stats.faulty_asked, 3) if stats.faulty_asked else None,
        "pairs": stats.pairs,
        "teacher_tokens": tokens,
        "pairs_per_1k_tokens": round(1000 * stats.pairs / tokens, 3) if tokens else None,
        "stats": asdict(stats),
    }


def table(rows: list[dict]) -> str:
    lines = ["| prompt | questions | correct kept | faulty asked | really fail | share | pairs | teacher tokens | pairs / 1k tokens |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['prompt']} | {r['questions']} | {r['correct_kept']} | {r['faulty_asked']} | "
                     f"{r['faulty_failing']} | {r['failing_share']} | {r['pairs']} | {r['teacher_tokens']} | "
                     f"{r['pairs_per_1k_tokens']} |")  # fmt: skip
    lines += ["", "| prompt | kind | asked | really fail | statuses |", "|---|---|---|---|---|"]
    for r in rows:
        for kind, k in sorted(r["stats"]["by_kind"].items()):
            lines.append(f"| {r['prompt']} | {kind} | {k['asked']} | {k['failed']} | {k['statuses']} |")
    return "\n".join(lines)


def main() -> int:
    from iterkd.io import atomic_write_json
    from iterkd.sandbox import Limits, Sandbox
    from iterkd.tasks import load_tasks
    from iterkd.teacher import TeacherConfig, load_teacher

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N validation tasks")
    args = ap.parse_args()
    tasks = [t for t in load_tasks("mbpp", "validation") if t.tests][: args.limit]
    limits = Limits(timeout_s=3.0)
    teacher = load_teacher(TeacherConfig(**TEACHER))
    try:
        with Sandbox(limits=limits) as box:
            rows = [measure(p, tasks, teacher, box, limits) for p in PROMPTS]
    finally:
        teacher.close()
    doc = {"split": "mbpp validation", "tasks": len(tasks), "teacher": TEACHER, "n_faulty": 2, "rows": rows}
    atomic_write_json(OUT / "results.json", doc)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
