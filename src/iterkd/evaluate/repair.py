"""Multi-step inference (``iterkd eval --repair-steps N``): the student's answer is run against the task's
*seen* tests (HumanEval: the docstring examples; MBPP: the first assert); on failure the student gets its
code and the feedback and answers again, up to N times. Every step's answers are scored on the hidden tests.

Files: ``DIR/samples.step{k}.jsonl`` (answers after k repair steps), ``DIR/repairs.jsonl`` (each repair call,
resumable), ``DIR/samples.jsonl`` = the final step.
"""

from __future__ import annotations

from pathlib import Path

from iterkd.evaluate.samples import sample_row, write_samples
from iterkd.feedback import execution_feedback, job_for
from iterkd.stages import Request, run_stage
from iterkd.tasks import Task


def _repair_records(batch: list[Request], completions: list, seconds: float) -> list[dict]:
    from iterkd.codegen import sanitize

    return [
        {
            "task_id": r.task.task_id,
            "sample": r.meta["sample"],
            "step": r.meta["step"],
            "feedback": r.meta["feedback"],
            "raw": c.text,
            "code": sanitize(c.text, r.task),
            "completion_tokens": c.completion_tokens,
        }
        for r, c in zip(batch, completions)
    ]


def _failing_on_seen(sandbox, items, current, limits) -> list[tuple[int, str]]:
    """(item index, feedback) of the answers that fail their task's seen tests (tasks without any: skipped)."""
    checkable = [k for k, (t, _) in enumerate(items) if t.seen_tests]
    verdicts = sandbox.map([job_for(items[k][0], current[k], limits, tests=items[k][0].seen_tests) for k in checkable])
    return [(k, execution_feedback(v)) for k, v in zip(checkable, verdicts) if not v.passed]


def _pin_prompt(out: Path) -> None:
    """repairs.jsonl is resumed: pin the wording of the refinement prompt its records were made with."""
    from iterkd.codegen.prompts import PROMPT_VERSIONS
    from iterkd.io import pin_settings

    wanted = {"prompt_version:student-refine": PROMPT_VERSIONS["student-refine"]}
    pin_settings(out / "repair_config.json", wanted, str(out), "use another --out")


def repair_steps(cfg, tasks: list[Task], solutions: list[str], out: Path, progress: bool = True) -> list[Path]:
    """Run ``cfg.repair_steps`` rounds of self-repair on seen tests with ``cfg``'s model, sampling, sandbox
    limits and batching (an ``EvalConfig``); return the per-step sample files (step 0 first).

    ``solutions`` are in task-major order (task 0's samples, then task 1's, ...)."""
    from iterkd.codegen import refine_messages
    from iterkd.models import SamplingParams
    from iterkd.models.base import LazyGenerator
    from iterkd.models.load import student_loader
    from iterkd.sandbox import Limits, Sandbox

    _pin_prompt(out)
    params = SamplingParams(
        temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, max_tokens=cfg.max_tokens, seed=cfg.seed
    )
    limits = Limits() if cfg.timeout is None else Limits(timeout_s=cfg.timeout)
    n_samples, steps, workers, batch_size = cfg.n_samples, cfg.repair_steps, cfg.workers, cfg.batch_size
    items = [(t, i) for t in tasks for i in range(n_samples)]
    current = list(solutions)
    paths = [out / "samples.step0.jsonl"]
    write_samples(paths[0], [sample_row(t, s) for (t, _), s in zip(items, current)])
    generator = LazyGenerator(student_loader(cfg.model, cfg.backend, cfg.batch_size, cfg.base_url)[1])
    try:
        with Sandbox(workers=workers, limits=limits) as sandbox:
            for step in range(1, steps + 1):
                failing = _failing_on_seen(sandbox, items, current, limits)
                requests = [
                    Request(
                        (items[k][0].task_id, items[k][1], step),
                        items[k][0],
                        refine_messages(items[k][0], current[k], fb),
                        {"sample": items[k][1], "step": step, "feedback": fb},
                    )
                    for k, fb in failing
                ]
                done = run_stage(
                    f"repair step {step}",
                    generator,
                    requests,
                    params,
                    out / "repairs.jsonl",
                    _repair_records,
                    key=lambda r: (r["task_id"], r["sample"], r["step"]),
                    batch_size=batch_size,
                    progress=progress,
                )
                for (k, _), req in zip(failing, requests):
                    current[k] = done[req.key]["code"]
                paths.append(out / f"samples.step{step}.jsonl")
                write_samples(paths[-1], [sample_row(t, s) for (t, _), s in zip(items, current)])
    finally:
        generator.close()
    return paths
