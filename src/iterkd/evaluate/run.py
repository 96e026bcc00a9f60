"""``iterkd eval`` as a library call: generate (resumable), optional multi-step repair, score."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

from iterkd.evaluate.check import benchmark_name, score_samples, write_results
from iterkd.evaluate.config import EvalConfig
from iterkd.evaluate.samples import read_samples
from iterkd.io import atomic_write_text, ensure_out_dir, portable_path, run_lock


def run_eval(cfg: EvalConfig, out: Path, progress: bool = True) -> dict:
    """Generate with ``cfg.model``, optionally self-repair, score; write ``out/results.json``; return it.
    ``out`` is locked while this runs (a second process on it stops at once with a UserError).

    The benchmark, the model and ``out`` are checked first: a mistake stops with a UserError before anything is
    written, so the corrected command can use the same ``out``."""
    from iterkd.models.load import check_student
    from iterkd.tasks import load_tasks

    all_tasks = load_tasks(cfg.benchmark, cfg.split)
    check_student(cfg.model, cfg.backend, cfg.base_url)
    out = ensure_out_dir(out, "eval directory")
    with run_lock(out, "eval directory"):
        return _run_eval(cfg, out, all_tasks, progress)


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


def _run_eval(cfg: EvalConfig, out: Path, all_tasks: list, progress: bool) -> dict:
    from iterkd.evaluate.generate import generate

    if cfg.n_samples > 1 and cfg.temperature == 0:
        print("warning: --n-samples > 1 with --temperature 0 draws identical greedy samples", file=sys.stderr)
    by_id = {t.task_id: t for t in all_tasks}
    tasks = all_tasks[: cfg.limit] if cfg.limit else all_tasks
    settings = cfg.generation_settings()
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
