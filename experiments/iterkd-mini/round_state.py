"""What one round of the IterKD run did, read from its committed records, finished or stopped (a round the budget
stopped has no summary.json): pool, pairs by the negative's source, the student's answers passed by where the
question came from, the judge's ROC AUC against execution with its 95% bootstrap interval (feedback.judge, as the
round summary computes it), and teacher tokens by stage file.

    python experiments/iterkd-mini/round_state.py 2 [--run experiments/iterkd-mini/iterkd-run]

Writes experiments/iterkd-mini/questions/r<K>-state.json and prints it.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def origin(task_id: str) -> str:
    """'seed' for an MBPP seed, else the bucket of the round that wrote the question ('r1/hard', ...)."""
    parts = task_id.split("/")
    return "seed" if parts[0] == "Mbpp" else f"{parts[0]}/{parts[1]}"


def main() -> None:
    from iterkd.feedback.judge import roc_auc_ci
    from iterkd.pipeline.iterkd import round_tokens

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("round", type=int)
    ap.add_argument("--run", type=Path, default=HERE / "iterkd-run")
    args = ap.parse_args()
    rdir = args.run / "rounds" / f"r{args.round}"
    if not (rdir / "pool.jsonl").is_file():
        raise SystemExit(f"{rdir}: no such round (run.py --copy copies the run here)")
    data = rdir / "data"
    answers = {r["key"]: r for r in _rows(data / "student_answers.jsonl")}
    by_origin = collections.defaultdict(lambda: [0, 0])
    for r in answers.values():
        by_origin[origin(r["task_id"])][0] += 1
        by_origin[origin(r["task_id"])][1] += bool(r["passed"])
    retry = {r["key"]: r for r in _rows(data / "judge.retry.jsonl")}
    judged = {k: r["score"] if r["score"] is not None else retry.get(k, {}).get("score")
              for k, r in ((r["key"], r) for r in _rows(data / "judge.jsonl"))}  # fmt: skip
    usable = [k for k in answers if judged.get(k) is not None]
    auc = roc_auc_ci([judged[k] for k in usable], [answers[k]["passed"] for k in usable]) if usable else None
    pairs = _rows(rdir / "pairs.jsonl")
    doc = {
        "round": args.round,
        "finished": (rdir / "summary.json").is_file(),
        "pool": len(_rows(rdir / "pool.jsonl")),
        "pairs": dict(collections.Counter(p["source"] for p in pairs)),
        "student_answers": {k: {"answers": n, "passed": p} for k, (n, p) in sorted(by_origin.items())},
        "judge_parsed": len(usable),
        "judge_roc_auc": None if auc is None else round(auc[0], 4),
        "judge_roc_auc_ci": None if auc is None else [round(auc[1], 4), round(auc[2], 4)],
        "judge_fail_scored_5_plus": sum(not answers[k]["passed"] and judged[k] >= 5 for k in usable),
        "questions_first_answers": len(_rows(data / "questions.jsonl")),
        "questions_accepted": len(_rows(rdir / "new_tasks.jsonl")),
        "teacher_tokens": round_tokens(rdir),  # as the round summary and the budget count them
    }
    out = HERE / "questions" / f"r{args.round}-state.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
