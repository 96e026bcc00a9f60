"""The IterKD smoke run: `iterkd distill --config experiments/iterkd-smoke/config.yaml` (resumable: rerun after a
kill goes on, and with the committed teacher cache no teacher call is paid twice), then the run's small files
are copied here: `run/config.yaml`, `run/summary.json`, `run/eval/` and per round `summary.json`,
`pool.jsonl`, `new_tasks.jsonl` (the round's validated questions, a task file), `next_pool.jsonl`, `pairs.jsonl`
(TRL preference rows with task ids), `data/*.jsonl` (every stage record: teacher, student, judge, questions)
and `eval/`. The trained checkpoints stay in `runs/iterkd-smoke/` (not committed).

    ITERKD_THREADS=2 python experiments/iterkd-smoke/run.py
"""

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUN = ROOT / "runs" / "iterkd-smoke"
KEEP = ["summary.json", "pool.jsonl", "new_tasks.jsonl", "next_pool.jsonl", "pairs.jsonl", "data", "eval"]


def main() -> int:
    cmd = [sys.executable, "-m", "iterkd", "distill", "--config", str(HERE / "config.yaml"), *sys.argv[1:]]
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc != 0:
        return rc
    out = HERE / "run"
    shutil.rmtree(out, ignore_errors=True)
    for name in ("config.yaml", "summary.json", "eval"):
        _copy(RUN / name, out / name)
    for rdir in sorted((RUN / "rounds").iterdir()):
        for name in KEEP:
            if (rdir / name).exists():
                _copy(rdir / name, out / "rounds" / rdir.name / name)
    print(f"copied to {out.relative_to(ROOT)}")
    return 0


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock", ".lock*"))
    else:
        shutil.copy2(src, dst)


if __name__ == "__main__":
    sys.exit(main())
