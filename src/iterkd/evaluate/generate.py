"""Generate samples with a model (``iterkd eval``): prompts -> chat answers -> sanitised programs.

Generation is resumable: every finished batch is appended to ``DIR/generations.jsonl``; a rerun with the
same settings skips what is there. The final ``DIR/samples.jsonl`` is written once generation is complete.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from iterkd.evaluate.samples import humaneval_completion, write_samples
from iterkd.tasks import Task
from iterkd.tasks.loaders import pin_settings, read_progress_log


@dataclass
class GenerationSettings:
    model: str
    benchmark: str
    split: str | None
    n_samples: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    backend: str
    prompt_version: str = ""

    def __post_init__(self) -> None:
        from iterkd.models.prompts import PROMPT_VERSION

        self.prompt_version = self.prompt_version or PROMPT_VERSION


def _check_settings(out: Path, settings: GenerationSettings) -> None:
    pin_settings(out / "generation_config.json", asdict(settings), str(out), "use another --out")


def server_kw(backend: str, batch_size: int) -> dict:
    """Backend arguments: the llama-server backend decodes ``batch_size`` requests together."""
    from iterkd.models.base import canonical_backend

    return {"parallel": batch_size} if canonical_backend(backend) == "llama-server" else {}


def generate(
    tasks: list[Task],
    settings: GenerationSettings,
    out: Path,
    batch_size: int = 8,
    progress: bool = True,
) -> dict:
    """Generate ``n_samples`` answers per task into ``out/samples.jsonl``; return generation stats."""
    from tqdm import tqdm

    from iterkd.models import SamplingParams, build_messages, load_generator, sanitize
    from iterkd.models.base import queue_size

    _check_settings(out, settings)
    partial_path = out / "generations.jsonl"
    done = read_progress_log(partial_path, lambda r: (r["task_id"], r["sample"]))
    stats = {"generated_now": 0, "completion_tokens": 0, "prompt_tokens": 0, "seconds": 0.0}
    todo = {i: [t for t in tasks if (t.task_id, i) not in done] for i in range(settings.n_samples)}
    n_todo = sum(len(v) for v in todo.values())
    if n_todo:
        kw = server_kw(settings.backend, batch_size)
        generator = load_generator(settings.model, backend=settings.backend, **kw)
        batch_size = queue_size(generator, batch_size)  # a server: more prompts queued than slots
        bar = tqdm(total=n_todo, desc="generating", unit="sample", disable=not progress)
        try:
            with partial_path.open("a", encoding="utf-8") as fh:
                for i, pending in todo.items():
                    # sample i of every task uses seed + i: reruns and resumed runs draw the same samples
                    params = SamplingParams(
                        temperature=settings.temperature,
                        top_p=settings.top_p,
                        max_tokens=settings.max_tokens,
                        seed=settings.seed + i,
                    )
                    for start in range(0, len(pending), batch_size):
                        batch = pending[start : start + batch_size]
                        began = time.perf_counter()
                        outs = generator.chat([build_messages(t) for t in batch], params, n=1)
                        spent = time.perf_counter() - began
                        stats["seconds"] += spent
                        for task, completions in zip(batch, outs):
                            c = completions[0]
                            row = {
                                "task_id": task.task_id,
                                "sample": i,
                                "raw": c.text,
                                "prompt_tokens": c.prompt_tokens,
                                "completion_tokens": c.completion_tokens,
                                "finish_reason": c.finish_reason,
                                "seconds": round(spent / len(batch), 4),  # its share of the call: totals survive resumes
                            }
                            fh.write(json.dumps(row) + "\n")
                            done[(task.task_id, i)] = row
                            stats["completion_tokens"] += c.completion_tokens
                            stats["prompt_tokens"] += c.prompt_tokens
                        fh.flush()
                        stats["generated_now"] += len(batch)
                        bar.update(len(batch))
        finally:
            bar.close()
            generator.close()
    rows = []
    for task in tasks:
        for i in range(settings.n_samples):
            raw = done[(task.task_id, i)]["raw"]
            solution = sanitize(raw, task)
            row = {"task_id": task.task_id, "solution": solution}
            if task.benchmark == "humaneval":
                row["completion"] = humaneval_completion(solution)
            rows.append(row)
    write_samples(out / "samples.jsonl", rows)
    all_rows = [done[(t.task_id, i)] for t in tasks for i in range(settings.n_samples)]
    stats["total_completion_tokens"] = sum(r["completion_tokens"] for r in all_rows)
    timed = [r for r in all_rows if "seconds" in r]  # rows written before timing was recorded have none
    if timed and len(timed) == len(all_rows):
        total_s = sum(r["seconds"] for r in timed)
        stats["total_seconds"] = round(total_s, 1)
        stats["total_tokens_per_second"] = round(stats["total_completion_tokens"] / total_s, 2) if total_s else None
    stats["tokens_per_second"] = (
        round(stats["completion_tokens"] / stats["seconds"], 2) if stats["seconds"] else None
    )
    return stats
