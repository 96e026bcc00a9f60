"""Issue 31: the IterKD run of the miniature (3 rounds, budget 600k teacher tokens; settings in iterkd.yaml).

    ITERKD_THREADS=2 nohup python experiments/iterkd-mini/run.py > runs/iterkd-mini/iterkd.log 2>&1 &
    python experiments/iterkd-mini/run.py --copy     # only copy what the run has so far (before a commit)

Runs `iterkd distill --config experiments/iterkd-mini/iterkd.yaml` (resumable: a rerun after a kill goes on, the
committed teacher cache answers every request already paid), then copies the run directory, without the
checkpoints (rounds/rK/train/) and locks, into experiments/iterkd-mini/iterkd-run/: the resolved config, every
stage record (teacher answers, faulty answers, student answers, judge, questions), each round's pool, pairs, new
questions and summary. It copies after a stop too (budget: exit 3; an error), so unfinished rounds are committed.
In a checkout without runs/iterkd-mini/iterkd/, the committed copy is put back first and the run goes on from it
(a finished round whose checkpoint is missing is trained again from its committed pairs).
The rows iterkd-r1..r3 are scored by rows.py from runs/iterkd-mini/iterkd/rounds/rK/train/final.q8_0.gguf.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUN = ROOT / "runs" / "iterkd-mini" / "iterkd"
COPY = HERE / "iterkd-run"
SKIP = shutil.ignore_patterns("train", "*.lock", ".lock*", "*.gguf", "__pycache__")


def copy(src: Path, dst: Path) -> None:
    if not src.exists():
        return
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=SKIP)


def main() -> int:
    if "--copy" not in sys.argv[1:]:
        if not RUN.exists() and COPY.exists():
            copy(COPY, RUN)
            print(f"restored {RUN.relative_to(ROOT)} from {COPY.relative_to(ROOT)}")
        cmd = [sys.executable, "-m", "iterkd", "distill", "--config", str(HERE / "iterkd.yaml")]
        rc = subprocess.call(cmd, cwd=ROOT)
    else:
        rc = 0
    copy(RUN, COPY)
    print(f"copied to {COPY.relative_to(ROOT)} (rc {rc})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
