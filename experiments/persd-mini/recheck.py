"""Re-score every committed samples file of this experiment with `iterkd check` and compare the counts with the
committed results file beside it (passed, and each status). Prints one line per file and a summary; exits 1 if
any count differs.

    python experiments/persd-mini/recheck.py [--rows base,stand] [--workers N]

Each check runs the real command line in a fresh process, so this also checks that the committed experiments
still load and score after a change to the library.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = {"humaneval": ("humaneval", None), "mbpp": ("mbpp", None), "mbpp-validation": ("mbpp", "validation")}


def counts(doc: dict) -> dict:
    return {"passed": sum(s["passed"] for s in doc["samples"]), "n": doc["n_samples"], **doc["status_counts"]}


def recheck(samples: Path, workers: int | None) -> tuple[dict, dict]:
    name = samples.name.removesuffix(".samples.jsonl")
    benchmark, split = BENCH[name]
    committed = json.loads(samples.with_name(f"{name}.results.json").read_text())
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "iterkd", "check", "--benchmark", benchmark, str(samples), "--out", out, "-q"]
        cmd += ["--split", split] if split else []
        cmd += ["--workers", str(workers)] if workers else []
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        fresh = json.loads((Path(out) / "results.json").read_text())
    return counts(committed), counts(fresh)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", help="comma-separated row directories (default: every row with samples)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    files = sorted(HERE.glob("*/*.samples.jsonl")) + sorted(HERE.glob("*/*/*.samples.jsonl"))
    if args.rows:
        keep = set(args.rows.split(","))
        files = [f for f in files if f.relative_to(HERE).parts[0] in keep]
    files = [f for f in files if f.name.removesuffix(".samples.jsonl") in BENCH
             and f.with_name(f.name.replace(".samples.jsonl", ".results.json")).exists()]
    bad = 0
    for f in files:
        before, after = recheck(f, args.workers)
        same = before == after
        bad += not same
        print(f"{'same' if same else 'DIFFERS':8} {f.relative_to(HERE)}  committed {before}" + ("" if same else f"  now {after}"))
    print(f"{len(files)} files re-scored, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
