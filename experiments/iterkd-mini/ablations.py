"""Issue 31's ablations: the base student retrained on everything the IterKD run's rounds collected, no new
teacher call. They compare with each other and with iterkd-all.

    ITERKD_THREADS=2 python experiments/iterkd-mini/ablations.py ROW [ROW ...] [--data-only] [--run DIR] [--out DIR]

Rows (the training set of each goes to experiments/iterkd-mini/ROW/train.jsonl with a data card):
- iterkd-all: every pair of every round (teacher and student negatives), IterKD's loss (DPO + NLL, iterkd.yaml);
- iterkd-all-sft: the same pairs, the NLL on the chosen answer only (loss [sft]: does the contrastive term help?);
- iterkd-all-teacher-neg: the pairs whose rejected answer is the teacher's, IterKD's loss (do the student's own
  failures help?);
- stand-all: STAND: SFT on the teacher's passing direct answer to every question any round's pool held (seeds and
  validated new questions, each once), no pairs (is the gain more than data volume?).
Training settings: iterkd.yaml's train section (= the PERsD miniature's), seed 0; checkpoints in
runs/iterkd-mini/train/ROW. `--data-only` writes the training sets and stops. Then `rows.py ROW` scores a row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
RUN = HERE / "iterkd-run"  # the IterKD run's committed copy (run.py)
TRAINED = ROOT / "runs" / "iterkd-mini" / "train"
ROWS = ("iterkd-all", "iterkd-all-sft", "iterkd-all-teacher-neg", "stand-all")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def rounds(run: Path) -> list[Path]:
    """The run's rounds whose Stage I finished (pairs.jsonl is written once, when it has), in order: a round the
    budget stopped later (the miniature's round 2) gave its pairs, and its student trained on them."""
    found = sorted((run / "rounds").glob("r*/pairs.jsonl"), key=lambda p: int(p.parent.name[1:]))
    return [p.parent for p in found]


def pairs(run: Path, source: str | None = None) -> list[dict]:
    """Every round's preference pairs (``source``: only those whose rejected answer is the teacher's / student's)."""
    out = []
    for rdir in rounds(run):
        out += [{**p, "round": int(rdir.name[1:])} for p in _jsonl(rdir / "pairs.jsonl")]
    return [p for p in out if source is None or p["source"] == source]


def stand_examples(run: Path) -> list[dict]:
    """STAND rows: the teacher's passing direct answer to each question a round's pool held, once per question."""
    from iterkd.methods.persd import build_examples
    from iterkd.tasks import load_task_file

    seen, out = set(), []
    for rdir in rounds(run):
        teacher = {r["task_id"]: r for r in _jsonl(rdir / "data" / "teacher_direct.jsonl")}
        tasks = [t for t in load_task_file(rdir / "pool.jsonl") if t.task_id not in seen]
        seen.update(t.task_id for t in tasks)
        out += build_examples("stand", tasks, None, teacher, round_=int(rdir.name[1:]))
    return out


def training_set(row: str, run: Path) -> tuple[list[dict], str]:
    """(rows, objective) of ``row``."""
    if row == "stand-all":
        return stand_examples(run), "sft"
    return pairs(run, "teacher" if row == "iterkd-all-teacher-neg" else None), "preference"


def card(row: str, rows: list[dict], run: Path) -> dict:
    """The row's data card: what it holds, its student, and the teacher tokens its data cost (everything the run's
    rounds spent, as for the last round's student: the same records)."""
    from rows import STUDENT, run_spent

    by = lambda key: {v: sum(str(r.get(key)) == v for r in rows) for v in sorted({str(r.get(key)) for r in rows})}  # noqa: E731
    prompt, completion, by_round = run_spent(run, int(rounds(run)[-1].name[1:]))
    return {"row": row, "method": row, "student": STUDENT, "examples": len(rows),
            "tasks": len({r["task_id"] for r in rows}), "rounds": [d.name for d in rounds(run)],
            "by_round": by("round"), **({"by_source": by("source")} if rows and "source" in rows[0] else {}),
            "teacher_prompt_tokens": prompt, "teacher_completion_tokens": completion,
            "teacher_tokens_by_round": by_round,
            "from": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run)}  # fmt: skip


def train_args(row: str) -> list[str]:
    """iterkd.yaml's train section, and for the preference rows IterKD's loss (or its NLL alone)."""
    import yaml

    cfg = yaml.safe_load((HERE / "iterkd.yaml").read_text())
    args = [f"{k}={json.dumps(v)}" for k, v in cfg["train"].items()]  # parse_override reads JSON ("cosine" too)
    if row == "stand-all":
        return args
    ic = cfg["iterkd"]
    loss = (
        (["sft"], [1.0]) if row == "iterkd-all-sft" else (["sigmoid", "sft"], [1.0, float(ic.get("nll_weight", 1.0))])
    )
    return [
        *args,
        f"beta={ic.get('beta', 0.1)}",
        f"loss_type={json.dumps(loss[0])}",
        f"loss_weights={json.dumps(loss[1])}",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+", choices=ROWS)
    ap.add_argument("--run", type=Path, default=RUN, help="the IterKD run (a run directory or its committed copy)")
    ap.add_argument("--out", type=Path, default=HERE, help="where the rows' training sets go")
    ap.add_argument("--data-only", action="store_true", help="write the training sets, train nothing")
    args = ap.parse_args()
    run = args.run.resolve()
    if not rounds(run):
        ap.error(f"{args.run}: no finished round of an IterKD run")
    for row in args.rows:
        rows, objective = training_set(row, run)
        dst = args.out / row
        dst.mkdir(parents=True, exist_ok=True)
        (dst / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (dst / "data_card.json").write_text(
            json.dumps({**card(row, rows, run), "objective": objective}, indent=1) + "\n"
        )
        print(f"{row}: {len(rows)} {objective} rows -> {dst / 'train.jsonl'}")
        if args.data_only:
            continue
        cmd = [sys.executable, "-m", "iterkd", "train", "model=smollm2-135m-instruct", f"train_file={dst / 'train.jsonl'}",
               *train_args(row), "--objective", objective, "--out", str(TRAINED / row)]  # fmt: skip
        subprocess.run(cmd, cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
