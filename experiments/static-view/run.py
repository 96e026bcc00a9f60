"""The static view (iterkd.feedback.static.lint) on committed student attempts: how many passing and failing
answers have findings, per category.

    python experiments/static-view/run.py [ATTEMPTS.jsonl ...]

Default: the 350 MBPP-train attempts of SmolLM2-135M and of Qwen2.5-Coder-0.5B committed with persd-mini.
"""

import collections
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = [ROOT / "experiments/persd-mini/stages/student_attempts.jsonl",
           ROOT / "experiments/persd-mini/stages-qwen05/student_attempts.jsonl"]  # fmt: skip


def main(paths: list[Path]) -> None:
    from iterkd.feedback.static import lint

    for path in paths:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        began = time.perf_counter()
        reports = lint([r["code"] for r in rows])
        seconds = time.perf_counter() - began
        for ok in (True, False):
            mine = [rep for r, rep in zip(rows, reports) if r["passed"] == ok]
            flagged = sum(not rep.clean for rep in mine)
            cats = collections.Counter(c for rep in mine for c, n in rep.counts.items() if n)
            print(
                f"{path.relative_to(ROOT)}  {'passing' if ok else 'failing'}: {flagged} of {len(mine)} flagged {dict(cats)}"
            )
        print(f"  {len(rows)} answers linted in {seconds:.2f} s")


if __name__ == "__main__":
    main([Path(p).resolve() for p in sys.argv[1:]] or DEFAULT)
