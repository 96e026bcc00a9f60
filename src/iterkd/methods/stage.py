"""One resumable stage: ask a model (student or teacher) for code, sanitise it, verify it in the sandbox.

Each finished batch is appended to the stage's JSONL file; a rerun skips the keys already there, so a crash or
Ctrl-C loses at most one batch (and the teacher's cache makes even that free to redo).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from iterkd.feedback import execution_feedback, job_for
from iterkd.tasks import Task
from iterkd.tasks.loaders import read_progress_log


@dataclass
class Request:
    key: str                    # unique within the stage, e.g. "Mbpp/601#0"
    task: Task
    messages: list[dict]
    meta: dict = field(default_factory=dict)


def run_stage(
    name: str,
    generator,
    requests: list[Request],
    params,
    sandbox,
    limits,
    path: Path,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, dict]:
    """Generate one answer per request, verify each against its task's tests; return records by key.

    Requests go to the generator ``queue_size(generator, batch_size)`` at a time (see iterkd.models.base)."""
    from tqdm import tqdm

    from iterkd.models import sanitize
    from iterkd.models.base import queue_size

    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_progress_log(path, lambda r: r["key"])
    todo = [r for r in requests if r.key not in done]
    if todo:
        bar = tqdm(total=len(todo), desc=name, unit="task", disable=not progress)
        with path.open("a", encoding="utf-8") as fh:
            chunk = queue_size(generator, batch_size)
            for start in range(0, len(todo), chunk):
                batch = todo[start : start + chunk]
                outs = generator.chat([r.messages for r in batch], params, n=1)
                codes = [sanitize(o[0].text, r.task) for r, o in zip(batch, outs)]
                verdicts = sandbox.map([job_for(r.task, c, limits) for r, c in zip(batch, codes)])
                for r, o, code, v in zip(batch, outs, codes, verdicts):
                    c = o[0]
                    row = {
                        "key": r.key,
                        "task_id": r.task.task_id,
                        "stage": name,
                        **r.meta,
                        "raw": c.text,
                        "code": code,
                        "status": v.status,
                        "passed": v.passed,
                        "feedback": execution_feedback(v),
                        "prompt_tokens": c.prompt_tokens,
                        "completion_tokens": c.completion_tokens,
                    }
                    fh.write(json.dumps(row) + "\n")
                    done[r.key] = row
                fh.flush()
                bar.update(len(batch))
        bar.close()
    return {r.key: done[r.key] for r in requests}
