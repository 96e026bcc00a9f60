"""Issue 31, second step: does Stage III write questions worth learning from? On MBPP validation seeds only.

    ITERKD_THREADS=2 python experiments/iterkd-mini/stage3.py [--prompt v2|v3] [--limit N]

One Stage II + III pass as an IterKD round runs it, with the protocol's models: the untrained student
(SmolLM2-135M-Instruct, llama.cpp's native server) answers each seed (T 0.3, top_p 0.95, 512 tokens, seed 0);
execution and the static view bucket the seeds (no judge: it scored at chance in the smoke run); the teacher
(Qwen2.5-Coder-1.5B-Instruct, T 0.7, 512 tokens) writes one new question per seed with the v2 prompt (the seed, its
verified solution, for medium and hard seeds the student's failing answer and its verdict); questions are
validated by execution, rewritten once, de-duplicated (methods.dedup, threshold 0.8) and decontaminated. Then the
student answers every accepted question 5 times (T 0.2, top_p 0.95): its pass rate per bucket of origin says
whether hard-bucket questions are harder for it than easy-bucket ones.

--prompt picks the question prompt's wording (codegen/prompts.py): v2 (the default, the pipeline's) writes into
stage3/, v3 (the variation prompt, measured and set aside) into stage3-v3/; both use the student's answers to the
seeds in stage3/ (the same buckets).

Resumable: stage records under stage3/ (student answers, questions, rewrites, the student's answers to the new
questions), the teacher cache teacher-cache.sqlite beside this file. Writes stage3/results.json, prints the
table, and writes stage3/sample.md: 40 (parent, new question) pairs drawn at random (seed 0) for hand labels
(same domain, same task type), which go into stage3/labels.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "stage3"  # v2; v3 writes into stage3-v3/
STUDENT = "smollm2-135m-instruct"
TEACHER = {"served_model": "qwen2.5-coder-1.5b-instruct", "temperature": 0.0, "max_tokens": 512, "concurrency": 8,
           "cache_path": str(HERE / "teacher-cache.sqlite")}  # fmt: skip
PER_SEED = {"easy": 1, "medium": 1, "hard": 1}
TRIES = 5  # the student's samples per new question


def student_answers(tasks, box, limits, path: Path, n: int = 1, temperature: float = 0.3) -> dict:
    from iterkd.codegen.prompts import direct_messages
    from iterkd.models import SamplingParams, load_generator
    from iterkd.stages import Request, run_stage, verified_records

    params = SamplingParams(temperature=temperature, top_p=0.95, max_tokens=512, seed=0)
    requests = [Request(f"{t.task_id}#{i}", t, direct_messages(t), {"sample": i}) for t in tasks for i in range(n)]
    model = load_generator(STUDENT, backend="llama-server", parallel=16)
    try:
        return run_stage(path.stem.replace("_", "-"), model, requests, params, path,
                         verified_records(path.stem, box, limits), batch_size=32)  # fmt: skip
    finally:
        model.close()


def _lines(code: str | None) -> int:
    return sum(bool(line.strip()) and not line.strip().startswith("#") for line in (code or "").splitlines())


def _mean(xs: list) -> float | None:
    return round(sum(xs) / len(xs), 2) if xs else None


def main() -> int:
    from iterkd.feedback.views import ExecutionView, StaticView, score_answers
    from iterkd.io import atomic_write_json
    from iterkd.methods.questions import QuestionWriter, bucket
    from iterkd.models import SamplingParams
    from iterkd.sandbox import Limits, Sandbox
    from iterkd.tasks import load_tasks
    from iterkd.teacher import TeacherConfig, load_teacher

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N validation tasks")
    ap.add_argument("--prompt", default="v2", choices=["v2", "v3"], help="the question prompt's wording")
    args = ap.parse_args()
    out = OUT if args.prompt == "v2" else HERE / f"stage3-{args.prompt}"
    out.mkdir(parents=True, exist_ok=True)
    seeds = [t for t in load_tasks("mbpp", "validation") if t.tests][: args.limit]
    limits = Limits(timeout_s=3.0)
    with Sandbox(limits=limits) as box:
        recs = student_answers(seeds, box, limits, OUT / "student_answers.jsonl")
        answers = {r["task_id"]: r for r in recs.values()}
        scores, _ = score_answers([ExecutionView(), StaticView()], seeds, answers)
        buckets = {k: bucket(s) for k, s in scores.items()}
        attempts = {k: (a["code"], a["feedback"]) for k, a in answers.items() if not a["passed"]}
        by_bucket = {b: [t for t in seeds if buckets[t.task_id] == b] for b in PER_SEED}
        teacher = load_teacher(TeacherConfig(**TEACHER))
        try:
            params = SamplingParams(temperature=0.7, max_tokens=512)
            write = QuestionWriter(teacher, params, box, limits, out, prompt_version=args.prompt)
            new, stats = write({b: s for b, s in by_bucket.items() if s}, PER_SEED, [t.prompt for t in seeds], attempts)
        finally:
            teacher.close()
        tries = student_answers(new, box, limits, out / "student_on_new.jsonl", n=TRIES, temperature=0.2)
    origin = {t.task_id: t.task_id.split("/")[1] for t in new}  # r1/<bucket>/<seed>/<j>
    parents = {t.task_id: t for t in seeds}
    parent = {t.task_id: parents[t.task_id.split("/", 2)[2].rsplit("/", 1)[0]] for t in new}
    rates = {}
    for b in PER_SEED:
        got = [r["passed"] for r in tries.values() if origin[r["task_id"]] == b]
        solved = {r["task_id"] for r in tries.values() if origin[r["task_id"]] == b and r["passed"]}
        mine = [t for t in new if origin[t.task_id] == b]
        rates[b] = {"questions": len(mine), "answers": len(got),
                    "pass_rate": round(sum(got) / len(got), 3) if got else None, "solved_at_least_once": len(solved),
                    # a difficulty proxy: lines of the reference solution, the new question's against its parent's
                    "solution_lines": _mean([_lines(t.canonical_solution) for t in mine]),
                    "parent_solution_lines": _mean([_lines(parent[t.task_id].canonical_solution) for t in mine])}  # fmt: skip
    rng = random.Random(0)
    sample = rng.sample(new, min(40, len(new)))
    lines = ["# 40 new questions and their parents, drawn at random (seed 0): label same domain / same task type\n"]
    for i, t in enumerate(sample):
        p = parent[t.task_id]
        lines += [f"## {i + 1}. {t.task_id}", f"- parent ({p.task_id}): {' '.join(p.prompt.split())}",
                  f"- new: {t.prompt}", ""]  # fmt: skip
    (out / "sample.md").write_text("\n".join(lines))
    doc = {"prompt": args.prompt, "split": "mbpp validation", "seeds": len(seeds), "buckets": {b: len(s) for b, s in by_bucket.items()},
           "student_passed": sum(a["passed"] for a in answers.values()), "questions": stats.__dict__,
           "student_on_new": rates, "sample": [t.task_id for t in sample]}  # fmt: skip
    atomic_write_json(out / "results.json", doc)
    print(json.dumps({k: v for k, v in doc.items() if k != "sample"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
