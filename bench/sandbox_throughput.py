"""Throughput of iterkd.sandbox on trivial correct programs, with 1 and 2 workers (or --workers).

    PYTHONPATH=src python bench/sandbox_throughput.py [-n 1000] [--workers 1 2] [--rounds 3]

Prints a table (programs/s) and writes bench/results/sandbox_throughput.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from iterkd.sandbox import Job, Limits, Sandbox

TEMPLATES = [
    (
        "from typing import List\ndef f(xs: List[int]) -> int:\n    return sum(x * x for x in xs) + {k}\n",
        ["assert f([1, 2]) == {k} + 5", "assert f([]) == {k}"],
    ),
    (
        "import re\ndef f(s: str) -> int:\n    return len(re.findall(r'a', s)) + {k}\n",
        ["assert f('banana') == {k} + 3", "assert f('') == {k}"],
    ),
    (
        "from collections import Counter\ndef f(s):\n    return Counter(s).most_common(1)[0][1] + {k}\n",
        ["assert f('aab') == {k} + 2"],
    ),
    (
        "import heapq\ndef f(xs):\n    return heapq.nsmallest(2, xs)[-1] + {k}\n",
        ["assert f([5, 1, 3]) == {k} + 3", "assert f([2, 2]) == {k} + 2"],
    ),
    (
        "import math\ndef f(n):\n    return math.factorial(n) % 7 + {k}\n",
        ["assert f(3) == {k} + 6", "assert f(0) == {k} + 1"],
    ),
]


def corpus(n: int) -> list[Job]:
    jobs = []
    for i in range(n):
        prog, tests = TEMPLATES[i % len(TEMPLATES)]
        k = i // len(TEMPLATES)
        jobs.append(Job(program=prog.format(k=k), tests=[t.format(k=k) for t in tests]))
    return jobs


def measure(workers: int, jobs: list[Job]) -> dict:
    t0 = time.perf_counter()
    with Sandbox(workers=workers, limits=Limits(timeout_s=3.0)) as sb:
        start_s = time.perf_counter() - t0
        mode = sb.mode
        c0 = os.times()
        t1 = time.perf_counter()
        statuses = [r.status for _, r in sb.imap(jobs)]
        run_s = time.perf_counter() - t1
        c1 = os.times()
    total_s = time.perf_counter() - t0
    bad = sum(s != "passed" for s in statuses)
    return {
        "workers": workers,
        "mode": mode,
        "programs": len(jobs),
        "not_passed": bad,
        "start_s": round(start_s, 3),
        "run_s": round(run_s, 3),
        "total_s": round(total_s, 3),
        "programs_per_s": round(len(jobs) / run_s, 1),
        "programs_per_s_incl_startup": round(len(jobs) / total_s, 1),
        "parent_cpu_ms_per_program": round(1000 * ((c1.user - c0.user) + (c1.system - c0.system)) / len(jobs), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sandbox_throughput.json")
    )
    a = ap.parse_args()
    jobs = corpus(a.n)
    runs = {w: [] for w in a.workers}
    for _ in range(a.rounds):  # interleaved rounds
        for w in a.workers:
            runs[w].append(measure(w, jobs))
    rows = []
    print(
        f"{'workers':>7} {'mode':>10} {'programs':>8} {'prog/s (median)':>16} {'runs':>24} {'incl. start-up':>15} {'not passed':>10}"
    )
    for w, rs in runs.items():
        med = statistics.median(r["programs_per_s"] for r in rs)
        row = {"workers": w, "median_programs_per_s": med, "runs": rs}
        rows.append(row)
        print(
            f"{w:>7} {rs[0]['mode']:>10} {a.n:>8} {med:>16.1f} {', '.join(str(r['programs_per_s']) for r in rs):>24} "
            f"{statistics.median(r['programs_per_s_incl_startup'] for r in rs):>15.1f} {sum(r['not_passed'] for r in rs):>10}"
        )
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    out = {
        "benchmark": "sandbox_throughput",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "loadavg_at_end": load,
        },
        "programs": a.n,
        "rounds": a.rounds,
        "results": rows,
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
