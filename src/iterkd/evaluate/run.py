"""``iterkd eval`` as a library call: generate (resumable), optional multi-step repair, score."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar, Optional

from pydantic import Field, field_validator, model_validator

from iterkd.config import ConfigModel
from iterkd.errors import UserError
from iterkd.evaluate.check import benchmark_name, score_samples, write_results
from iterkd.evaluate.samples import read_samples
from iterkd.io import atomic_write_text, portable_path, run_lock


class EvalConfig(ConfigModel):
    """One ``iterkd eval`` run (the CLI's options, or a distill config's ``eval:`` section plus model and
    benchmark). Fields may be given by position in this order."""

    where: ClassVar[str] = "eval"

    model: str
    benchmark: str
    split: Optional[str] = None
    limit: Optional[int] = Field(None, gt=0)
    n_samples: int = Field(1, gt=0)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(512, gt=0)
    seed: int = 0
    backend: str = "auto"
    batch_size: int = Field(16, gt=0)
    repair_steps: int = Field(0, ge=0)
    workers: Optional[int] = Field(None, gt=0)
    timeout: Optional[float] = Field(None, gt=0)
    # sampling keeps the k most likely tokens (0 = all). 50 is transformers' own default; over a 49k vocabulary
    # it spares the top_p sort most of its work (llama-server x16: ~18% more tokens/s) and changes nothing
    # measurable at temperature 0.2 (issue 20)
    top_k: int = Field(50, ge=0)
    # OpenAI-compatible endpoints already serving the student (``model`` = the name they serve it under);
    # requests are spread over them. Not a generation setting: a resumed run may use other endpoints.
    base_url: Optional[list[str]] = None

    @field_validator("base_url", mode="before")
    @classmethod
    def _base_url(cls, value):
        from iterkd.teacher.config import base_urls

        return None if value is None else base_urls(value)

    @model_validator(mode="after")
    def _backend(self) -> EvalConfig:
        from iterkd.models.load import NAMES, canonical_backend

        local = ", ".join(n for n in NAMES if n != "openai")
        try:
            backend = canonical_backend(self.backend)
        except UserError:
            raise ValueError(f"unknown backend {self.backend!r}; choose {local}, or openai with --base-url") from None
        if self.base_url and backend not in ("auto", "openai"):
            raise ValueError(f"backend {self.backend!r} cannot reach --base-url endpoints; use auto or openai")
        if not self.base_url and backend == "openai":
            raise ValueError(f"backend 'openai': evaluation runs a local student ({local}), or pass --base-url")
        return self

    def generation_backend(self) -> str:
        """The backend pinned with the generation settings: "openai" for a student behind endpoints."""
        return "openai" if self.base_url else self.backend


def run_eval(cfg: EvalConfig, out: Path, progress: bool = True) -> dict:
    """Generate with ``cfg.model``, optionally self-repair, score; write ``out/results.json``; return it.
    ``out`` is locked while this runs (a second process on it stops at once with a UserError)."""
    with run_lock(out, "eval directory"):
        return _run_eval(cfg, Path(out), progress)


def _repair(cfg: EvalConfig, tasks, by_id, out: Path, score, progress: bool) -> list[dict]:
    """Multi-step repair after generation: per-step pass@k (the last step's samples become samples.jsonl)."""
    from iterkd.evaluate.repair import repair_steps

    first = read_samples(out / "samples.jsonl", by_id)
    step_files = repair_steps(cfg, tasks, [s.solution for s in first], out, progress=progress)
    steps = [
        {"step": k, "pass_at_k": score(f, False)["pass_at_k"], "samples": f.name} for k, f in enumerate(step_files[:-1])
    ]
    atomic_write_text(out / "samples.jsonl", step_files[-1].read_text(encoding="utf-8"))
    return steps


def _run_eval(cfg: EvalConfig, out: Path, progress: bool) -> dict:
    from iterkd.evaluate.generate import GenerationSettings, generate
    from iterkd.tasks import load_tasks

    if cfg.n_samples > 1 and cfg.temperature == 0:
        print("warning: --n-samples > 1 with --temperature 0 draws identical greedy samples", file=sys.stderr)
    all_tasks = load_tasks(cfg.benchmark, cfg.split)
    by_id = {t.task_id: t for t in all_tasks}
    tasks = all_tasks[: cfg.limit] if cfg.limit else all_tasks
    settings = GenerationSettings(
        cfg.model,
        cfg.benchmark,
        cfg.split,
        cfg.n_samples,
        cfg.temperature,
        cfg.top_p,
        cfg.max_tokens,
        cfg.seed,
        cfg.generation_backend(),
        top_k=cfg.top_k if cfg.temperature > 0 else 0,  # ignored when greedy: greedy runs pin 0
    )
    began = time.perf_counter()
    stats = generate(tasks, settings, out, batch_size=cfg.batch_size, progress=progress, base_url=cfg.base_url)
    gen_seconds = time.perf_counter() - began
    name = benchmark_name(cfg.benchmark)

    def score(path: Path, show: bool) -> dict:
        return score_samples(
            name, by_id, read_samples(path, by_id), workers=cfg.workers, timeout=cfg.timeout, progress=show
        )

    steps = _repair(cfg, tasks, by_id, out, score, progress) if cfg.repair_steps else []
    results = score(out / "samples.jsonl", progress)
    shown = {**asdict(settings), "model": portable_path(settings.model, out)}  # no machine paths in results
    results["generation"] = {**stats, "wall_seconds": round(gen_seconds, 2), "settings": shown}
    if cfg.repair_steps:
        steps.append(
            {
                "step": cfg.repair_steps,
                "pass_at_k": results["pass_at_k"],
                "samples": f"samples.step{cfg.repair_steps}.jsonl",
            }
        )
        results["repair_steps"] = steps
    write_results(out, results)
    return results
