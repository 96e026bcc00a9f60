"""Multi-step inference (``iterkd eval --repair-steps N``): the student's answer is run against the task's
*seen* tests (HumanEval: the docstring examples; MBPP: the first assert); on failure the student gets its
code and the feedback and answers again, up to N times. Every step's answers are scored on the hidden tests.

Files: ``DIR/samples.step{k}.jsonl`` (answers after k repair steps), ``DIR/repairs.jsonl`` (each repair call,
resumable), ``DIR/samples.jsonl`` = the final step.
"""

from __future__ import annotations

import json
from pathlib import Path

from iterkd.evaluate.samples import humaneval_completion, write_samples
from iterkd.feedback import execution_feedback, job_for
from iterkd.tasks import Task
from iterkd.tasks.loaders import read_progress_log


def _row(task: Task, solution: str) -> dict:
    row = {"task_id": task.task_id, "solution": solution}
    if task.benchmark == "humaneval":
        row["completion"] = humaneval_completion(solution)
    return row


def repair_steps(
    generator_factory,
    tasks: list[Task],
    n_samples: int,
    solutions: list[str],
    steps: int,
    params,
    limits,
    out: Path,
    workers: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> list[Path]:
    """Run ``steps`` rounds of self-repair on seen tests; return the per-step sample files (step 0 first).

    ``solutions`` are in task-major order (task 0's samples, then task 1's, ...)."""
    from tqdm import tqdm

    from iterkd.models import refine_messages, sanitize
    from iterkd.sandbox import Sandbox

    items = [(t, i) for t in tasks for i in range(n_samples)]
    current = list(solutions)
    log_path = out / "repairs.jsonl"
    done = read_progress_log(log_path, lambda r: (r["task_id"], r["sample"], r["step"]))
    paths = [out / "samples.step0.jsonl"]
    write_samples(paths[0], [_row(t, s) for (t, _), s in zip(items, current)])
    generator = None
    try:
        with Sandbox(workers=workers, limits=limits) as sandbox, log_path.open("a", encoding="utf-8") as log:
            for step in range(1, steps + 1):
                checkable = [k for k, (t, _) in enumerate(items) if t.seen_tests]
                verdicts = sandbox.map([job_for(items[k][0], current[k], limits, tests=items[k][0].seen_tests) for k in checkable])
                failing = [(k, v) for k, v in zip(checkable, verdicts) if not v.passed]
                todo = [(k, v) for k, v in failing if (items[k][0].task_id, items[k][1], step) not in done]
                bar = tqdm(total=len(todo), desc=f"repair step {step}", unit="sample", disable=not progress or not todo)
                for start in range(0, len(todo), batch_size):
                    batch = todo[start : start + batch_size]
                    if generator is None:
                        generator = generator_factory()
                    msgs = [refine_messages(items[k][0], current[k], execution_feedback(v)) for k, v in batch]
                    outs = generator.chat(msgs, params, n=1)
                    for (k, v), o in zip(batch, outs):
                        task, i = items[k]
                        rec = {"task_id": task.task_id, "sample": i, "step": step, "feedback": execution_feedback(v),
                               "raw": o[0].text, "code": sanitize(o[0].text, task),
                               "completion_tokens": o[0].completion_tokens}
                        log.write(json.dumps(rec) + "\n")
                        done[(task.task_id, i, step)] = rec
                    log.flush()
                    bar.update(len(batch))
                bar.close()
                for k, _ in failing:
                    current[k] = done[(items[k][0].task_id, items[k][1], step)]["code"]
                path = out / f"samples.step{step}.jsonl"
                write_samples(path, [_row(t, s) for (t, _), s in zip(items, current)])
                paths.append(path)
    finally:
        if generator is not None:
            generator.close()
    return paths
