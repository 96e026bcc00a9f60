"""Canonical solutions under `iterkd check`: HumanEval (164) and MBPP test split (500).

Expected: 164/164 and 499/500 (Mbpp/367's tests reference an undefined name).

    python bench/canonical.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, table

from iterkd.tasks import load_tasks


def main() -> None:
    iterkd = str(Path(sys.executable).parent / "iterkd")
    rows, payload = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for bench in ("humaneval", "mbpp"):
            tasks = load_tasks(bench)
            samples = Path(tmp) / f"{bench}.jsonl"
            samples.write_text(
                "".join(json.dumps({"task_id": t.task_id, "solution": t.canonical_solution}) + "\n" for t in tasks)
            )
            start = time.perf_counter()
            subprocess.run(
                [iterkd, "check", "--benchmark", bench, str(samples), "--out", f"{tmp}/{bench}", "-q"], check=True
            )
            seconds = time.perf_counter() - start
            doc = json.loads(Path(f"{tmp}/{bench}/results.json").read_text())
            failing = {s["task_id"]: s.get("reason") or s.get("feedback") for s in doc["samples"] if not s["passed"]}
            passed = doc["n_samples"] - len(failing)
            rows.append([bench, f"{passed}/{doc['n_samples']}", f"{seconds:.2f}", ", ".join(failing) or "-"])
            payload[bench] = {
                "passed": passed,
                "total": doc["n_samples"],
                "seconds": round(seconds, 3),
                "failing": failing,
            }
    print(table(["benchmark", "canonical passed", "seconds", "failing"], rows))
    print(f"wrote {save('canonical', payload)}")


if __name__ == "__main__":
    main()
