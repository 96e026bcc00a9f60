"""Does the rubric judge carry information? ROC AUC of its score against execution, per prompt variant.

    python experiments/judge-probe/run.py [--per-class 20] [--judge qwen2.5-coder-1.5b-instruct] [--variants plain,trace]

Answers: the untrained Qwen2.5-Coder-0.5B student's greedy answers to the MBPP validation split (committed in
experiments/persd-mini/qwen05-base/), the first ``per-class`` passing and failing ones in task order. The
judge runs greedy through this project's llama.cpp server; its records (judgements, parsed scores) are written
to experiments/judge-probe/VARIANT.jsonl, so every number in results.json is re-scorable from them:
``python experiments/judge-probe/run.py --score-only``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ANSWERS = ROOT / "experiments" / "persd-mini" / "qwen05-base"


def _answers(per_class: int):
    from iterkd.tasks import load_mbpp

    tasks = {t.task_id: t for t in load_mbpp("validation")}
    results = json.loads((ANSWERS / "mbpp-validation.results.json").read_text())
    passed = {s["task_id"]: s["passed"] for s in results["samples"]}
    rows = [json.loads(line) for line in (ANSWERS / "mbpp-validation.samples.jsonl").read_text().splitlines()]
    chosen = [r for r in rows if passed[r["task_id"]]][:per_class] + [r for r in rows if not passed[r["task_id"]]][
        :per_class
    ]
    return [(r["task_id"], tasks[r["task_id"]], r["solution"]) for r in chosen], passed


def _bootstrap_ci(scores: list, ok: list, n: int = 2000) -> list:
    """95% interval of the AUC over answers resampled with replacement (percentiles; fixed seed)."""
    import random

    from iterkd.feedback.judge import roc_auc

    rng = random.Random(0)
    values = []
    for _ in range(n):
        idx = [rng.randrange(len(scores)) for _ in scores]
        v = roc_auc([scores[i] for i in idx], [ok[i] for i in idx])
        if v is not None:
            values.append(v)
    values.sort()
    return [round(values[int(0.025 * len(values))], 3), round(values[int(0.975 * len(values)) - 1], 3)]


def score(variant: str, passed: dict) -> dict:
    from iterkd.feedback.judge import roc_auc

    recs = [json.loads(line) for line in (HERE / f"{variant}.jsonl").read_text().splitlines()]
    retries = HERE / f"{variant}.retry.jsonl"
    retry = (
        {json.loads(line)["key"]: json.loads(line) for line in retries.read_text().splitlines()}
        if retries.exists()
        else {}
    )
    final = {
        r["key"]: (retry[r["key"]]["score"] if r["score"] is None and r["key"] in retry else r["score"]) for r in recs
    }
    parsed = {k: s for k, s in final.items() if s is not None}
    fails = [s for k, s in parsed.items() if not passed[k]]
    return {
        "answers": len(recs),
        "passing": sum(passed[k] for k in final),
        "parsed_first_time": sum(r["score"] is not None for r in recs),
        "retried": len(retry),
        "parsed": len(parsed),
        "roc_auc": roc_auc(list(parsed.values()), [passed[k] for k in parsed]),
        "roc_auc_95ci": _bootstrap_ci(list(parsed.values()), [passed[k] for k in parsed]),
        "failing_scored_5_or_more": f"{sum(s >= 5 for s in fails)} of {len(fails)}",
        "mean_score_passing": round(
            sum(s for k, s in parsed.items() if passed[k]) / max(1, len(parsed) - len(fails)), 2
        ),
        "mean_score_failing": round(sum(fails) / max(1, len(fails)), 2),
        "judge_tokens": sum(r["prompt_tokens"] + r["completion_tokens"] for r in [*recs, *retry.values()]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--judge", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--variants", default="plain,trace")
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--score-only", action="store_true")
    args = parser.parse_args()
    answers, passed = _answers(args.per_class)
    out = {"judge": args.judge, "answers_from": str(ANSWERS.relative_to(ROOT)), "per_class": args.per_class,
           "max_tokens": args.max_tokens, "variants": {}}  # fmt: skip
    for variant in args.variants.split(","):
        began = time.perf_counter()
        if not args.score_only:
            from iterkd.feedback.judge import judge_answers
            from iterkd.models import SamplingParams
            from iterkd.teacher import load_teacher

            judge = load_teacher(
                served_model=args.judge, concurrency=8, cache_path=str(ROOT / "runs" / "judge-probe.sqlite")
            )
            try:
                judge_answers(answers, judge, SamplingParams(temperature=0.0, max_tokens=args.max_tokens),
                              HERE / f"{variant}.jsonl", variant=variant)  # fmt: skip
            finally:
                judge.close()
        seconds = {"judge_seconds": round(time.perf_counter() - began, 1)}
        if args.score_only and (HERE / "results.json").exists():  # keep the timing of the run that judged
            kept = json.loads((HERE / "results.json").read_text())["variants"].get(variant, {})
            seconds = {k: v for k, v in kept.items() if k in ("judge_seconds", "seconds_this_call")}
        out["variants"][variant] = {**score(variant, passed), **seconds}
        print(variant, json.dumps(out["variants"][variant]), flush=True)
    (HERE / "results.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
