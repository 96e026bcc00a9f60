"""Generate samples with a model (``iterkd eval``): prompts -> chat answers -> sanitised programs.

Generation is resumable: every finished batch is appended to ``DIR/generations.jsonl``; a rerun with the
same settings skips what is there. The final ``DIR/samples.jsonl`` is written once generation is complete.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from iterkd.evaluate.samples import sample_row, write_samples
from iterkd.io import pin_settings
from iterkd.stages import Request, StageStats, run_stage
from iterkd.tasks import Task


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
    top_k: int = 0

    def __post_init__(self) -> None:
        from iterkd.codegen.prompts import PROMPT_VERSION

        self.prompt_version = self.prompt_version or PROMPT_VERSION


def _check_settings(out: Path, settings: GenerationSettings) -> None:
    # runs from before top_k was a setting sampled without it
    pin_settings(out / "generation_config.json", asdict(settings), str(out), "use another --out", {"top_k": 0})


def _raw_records(batch: list[Request], completions: list, seconds: float) -> list[dict]:
    """Evaluation keeps the raw answer (sanitised when samples.jsonl is written) and its share of the call time."""
    return [
        {
            "task_id": r.task.task_id,
            "sample": r.meta["sample"],
            "raw": c.text,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "finish_reason": c.finish_reason,
            "seconds": round(seconds / len(batch), 4),
        }  # its share of the call: totals survive resumes
        for r, c in zip(batch, completions)
    ]


def _requests(tasks: list[Task], settings: GenerationSettings) -> list[Request]:
    """Sample-major (every task's sample 0, then sample 1, ...); sample i of every task uses seed + i, so reruns
    and resumed runs draw the same samples."""
    from iterkd.codegen import build_messages
    from iterkd.models import SamplingParams

    out = []
    for i in range(settings.n_samples):
        params = SamplingParams(
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,
            max_tokens=settings.max_tokens,
            seed=settings.seed + i,
        )
        out += [Request((t.task_id, i), t, build_messages(t), {"sample": i}, params) for t in tasks]
    return out


def _write_samples(tasks: list[Task], n_samples: int, done: dict, out: Path) -> None:
    from iterkd.codegen import sanitize

    rows = [sample_row(t, sanitize(done[(t.task_id, i)]["raw"], t)) for t in tasks for i in range(n_samples)]
    write_samples(out / "samples.jsonl", rows)


def _totals(stats: StageStats, rows: list[dict]) -> dict:
    doc = asdict(stats)
    doc["total_completion_tokens"] = sum(r["completion_tokens"] for r in rows)
    timed = [r for r in rows if "seconds" in r]  # rows written before timing was recorded have none
    if timed and len(timed) == len(rows):
        total_s = sum(r["seconds"] for r in timed)
        doc["total_seconds"] = round(total_s, 1)
        doc["total_tokens_per_second"] = round(doc["total_completion_tokens"] / total_s, 2) if total_s else None
    doc["tokens_per_second"] = round(stats.completion_tokens / stats.seconds, 2) if stats.seconds else None
    return doc


def generate(
    tasks: list[Task],
    settings: GenerationSettings,
    out: Path,
    batch_size: int = 8,
    progress: bool = True,
    base_url: list[str] | None = None,
) -> dict:
    """Generate ``n_samples`` answers per task into ``out/samples.jsonl``; return generation stats. ``base_url``:
    endpoints already serving ``settings.model`` (not a pinned setting: a resumed run may use others)."""
    from iterkd.models.base import LazyGenerator
    from iterkd.models.load import student_loader

    _check_settings(out, settings)
    backend, load = student_loader(settings.model, settings.backend, batch_size, base_url)
    generator = LazyGenerator(load)
    stats = StageStats()
    try:
        done = run_stage(
            "generating",
            generator,
            _requests(tasks, settings),
            None,
            out / "generations.jsonl",
            _raw_records,
            key=lambda r: (r["task_id"], r["sample"]),
            batch_size=batch_size,
            progress=progress,
            stats=stats,
        )
        sent = _requests_by_endpoint(generator, base_url or [])
    finally:
        generator.close()
    _write_samples(tasks, settings.n_samples, done, out)
    return {"backend": backend, **sent, **_totals(stats, list(done.values()))}


def _requests_by_endpoint(generator, base_url: list[str]) -> dict:
    """The endpoints of this run and the requests each received (retries included; none when every answer was
    already on disk); nothing for a local student."""
    if not base_url:
        return {}
    sent = generator.requests_by_endpoint if generator.loaded else {}
    return {"requests_by_endpoint": {u: sent.get(i, 0) for i, u in enumerate(base_url)}}
