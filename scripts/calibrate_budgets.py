"""Measure each benchmark task's reference-solution CPU time in the sandbox and write the slow ones to
src/iterkd/tasks/data/reference_cpu.json. A task's CPU budget in `iterkd check` is then at least
4x its reference time, so a slow-but-correct task never times out (evalplus uses the same rule).

    python scripts/calibrate_budgets.py
"""

from __future__ import annotations

import json
from pathlib import Path

from iterkd.sandbox import Job, Limits, Sandbox
from iterkd.tasks import load_humaneval, load_mbpp

THRESHOLD_S = 0.3
OUT = Path(__file__).resolve().parent.parent / "src" / "iterkd" / "tasks" / "data" / "reference_cpu.json"


def main() -> None:
    tasks = load_humaneval() + load_mbpp("all")
    jobs = [Job(program=t.canonical_solution, tests=t.tests, setup=t.setup) for t in tasks]
    slow = {}
    with Sandbox(limits=Limits(timeout_s=120)) as sb:
        for i, r in sb.imap(jobs):
            if r.cpu_s >= THRESHOLD_S:
                slow[tasks[i].task_id] = round(r.cpu_s, 2)
            if not r.passed:
                print(f"{tasks[i].task_id}: {r.status} {r.reason or r.feedback[:200]}")
    OUT.write_text(json.dumps(dict(sorted(slow.items())), indent=1) + "\n")
    print(f"{len(slow)} tasks at >= {THRESHOLD_S}s CPU: {slow}")


if __name__ == "__main__":
    main()
