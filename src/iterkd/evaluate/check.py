"""Score samples by execution in the sandbox and write ``results.json`` (the ``iterkd check`` contract)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from iterkd.evaluate.samples import Sample
from iterkd.evaluate.stats import pass_at_k_table
from iterkd.io import atomic_write_json
from iterkd.sandbox.types import STATUSES
from iterkd.tasks import Task

# the results document's layout; a reader refuses another one (files without the key are format 1)
RESULTS_FORMAT = 1


def benchmark_name(benchmark: str) -> str:
    """The name results carry: a built-in benchmark's, or a tasks file's stem."""
    return benchmark if benchmark in ("humaneval", "mbpp") else Path(benchmark).stem


def score_samples(
    benchmark: str,
    tasks: dict[str, Task],
    samples: list[Sample],
    workers: int | None = None,
    timeout: float | None = None,
    progress: bool = True,
    sandbox=None,
) -> dict:
    """Run every sample against its task's hidden tests; return the results document. ``sandbox``: an open
    ``Sandbox`` to use (its limits apply); by default one is started and closed here."""
    from tqdm import tqdm

    from iterkd.feedback import job_for
    from iterkd.sandbox import Limits, Sandbox

    own = sandbox is None
    if own:
        sandbox = Sandbox(workers=workers, limits=Limits() if timeout is None else Limits(timeout_s=timeout))
    jobs = [job_for(tasks[s.task_id], s.solution, sandbox.limits) for s in samples]
    verdicts: list[dict | None] = [None] * len(jobs)
    start = time.perf_counter()
    try:
        bar = tqdm(total=len(jobs), desc="executing", unit="sample", disable=not progress, leave=False)
        for i, result in sandbox.imap(jobs):
            verdicts[i] = result.to_dict()
            bar.update()
        bar.close()
    finally:
        if own:
            sandbox.close()
    elapsed = time.perf_counter() - start
    rows = []
    counts: dict[str, list[int]] = {}
    for sample, verdict in zip(samples, verdicts):
        rows.append({"index": sample.index, "task_id": sample.task_id, **verdict})
        n_c = counts.setdefault(sample.task_id, [0, 0])
        n_c[0] += 1
        n_c[1] += bool(verdict["passed"])
    return {
        "format": RESULTS_FORMAT,
        "benchmark": benchmark,
        "n_tasks": len(counts),
        "n_samples": len(samples),
        "pass_at_k": pass_at_k_table({t: (n, c) for t, (n, c) in counts.items()}),
        "status_counts": {s: sum(1 for r in rows if r["status"] == s) for s in STATUSES},
        "execution_seconds": round(elapsed, 3),
        "samples": rows,
    }


def write_results(out_dir: str | Path, results: dict, name: str = "results.json") -> Path:
    """Write the results document atomically into out_dir."""
    return atomic_write_json(Path(out_dir) / name, results)


def format_table(results: dict) -> str:
    """A short human-readable summary of a results document."""
    counts = results.get("status_counts") or Counter(r["status"] for r in results["samples"])
    lines = [
        f"benchmark  {results['benchmark']}",
        f"tasks      {results['n_tasks']}",
        f"samples    {results['n_samples']}  (" + ", ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES) + ")",
    ]
    for key, value in results["pass_at_k"].items():
        lines.append(f"{key:<10} {100 * value:.2f}%")
    return "\n".join(lines)


def print_table(results: dict, file=sys.stdout) -> None:
    print(format_table(results), file=file)
