"""``iterkd eval`` as a library call: generate (resumable), optional multi-step repair, score."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from iterkd.errors import UserError
from iterkd.evaluate.check import score_samples, write_results
from iterkd.evaluate.samples import read_samples

BACKENDS = ("auto", "llama.cpp", "transformers", "llama-server")


@dataclass
class EvalConfig:
    model: str
    benchmark: str
    split: str | None = None
    limit: int | None = None
    n_samples: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int = 0
    backend: str = "auto"
    batch_size: int = 8
    repair_steps: int = 0
    workers: int | None = None
    timeout: float | None = None

    def validate(self) -> None:
        for name in ("limit", "n_samples", "max_tokens", "batch_size", "workers", "timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        for name in ("temperature", "repair_steps"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")
        from iterkd.models.base import canonical_backend

        try:
            known = canonical_backend(self.backend) != "openai"
        except UserError:
            known = False
        if not known:
            raise UserError(f"unknown --backend {self.backend!r}; choose {', '.join(BACKENDS)}")


def benchmark_name(benchmark: str) -> str:
    return benchmark if benchmark in ("humaneval", "mbpp") else Path(benchmark).stem


def run_eval(cfg: EvalConfig, out: Path, progress: bool = True) -> dict:
    """Generate with ``cfg.model``, optionally self-repair, score; write ``out/results.json``; return it."""
    from iterkd.evaluate.generate import GenerationSettings, generate
    from iterkd.tasks import load_tasks

    cfg.validate()
    if cfg.n_samples > 1 and cfg.temperature == 0:
        print("warning: --n-samples > 1 with --temperature 0 draws identical greedy samples", file=sys.stderr)
    all_tasks = load_tasks(cfg.benchmark, cfg.split)
    by_id = {t.task_id: t for t in all_tasks}
    tasks = all_tasks[: cfg.limit] if cfg.limit else all_tasks
    settings = GenerationSettings(cfg.model, cfg.benchmark, cfg.split, cfg.n_samples, cfg.temperature, cfg.top_p,
                                  cfg.max_tokens, cfg.seed, cfg.backend)
    began = time.perf_counter()
    stats = generate(tasks, settings, out, batch_size=cfg.batch_size, progress=progress)
    gen_seconds = time.perf_counter() - began
    name = benchmark_name(cfg.benchmark)
    score = lambda path, show: score_samples(  # noqa: E731
        name, by_id, read_samples(path, by_id), workers=cfg.workers, timeout=cfg.timeout, progress=show
    )
    steps = []
    if cfg.repair_steps:
        from iterkd.evaluate.repair import repair_steps
        from iterkd.evaluate.generate import server_kw
        from iterkd.models import SamplingParams, load_generator
        from iterkd.sandbox import Limits

        first = read_samples(out / "samples.jsonl", by_id)
        step_files = repair_steps(
            lambda: load_generator(cfg.model, backend=cfg.backend, **server_kw(cfg.backend, cfg.batch_size)), tasks, cfg.n_samples, [s.solution for s in first],
            cfg.repair_steps,
            SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed),
            Limits() if cfg.timeout is None else Limits(timeout_s=cfg.timeout), out, workers=cfg.workers,
            batch_size=cfg.batch_size, progress=progress,
        )
        for k, step_file in enumerate(step_files[:-1]):
            steps.append({"step": k, "pass_at_k": score(step_file, False)["pass_at_k"], "samples": step_file.name})
        (out / "samples.jsonl").write_text(step_files[-1].read_text(encoding="utf-8"), encoding="utf-8")
    results = score(out / "samples.jsonl", progress)
    results["generation"] = {**stats, "wall_seconds": round(gen_seconds, 2), "settings": asdict(settings)}
    if cfg.repair_steps:
        steps.append({"step": cfg.repair_steps, "pass_at_k": results["pass_at_k"],
                      "samples": f"samples.step{cfg.repair_steps}.jsonl"})
        results["repair_steps"] = steps
    write_results(out, results)
    return results
