"""Model view (IterKD Stage II): a rubric judge scores each answer out of 6, through any OpenAI-compatible
endpoint (default: the teacher), cached and counted like every teacher call; and how far its scores agree
with execution.

    judge_answers(...)   one stage (``iterkd.stages``) of judge calls -> records with the parsed score; an
                         answer whose judgement does not parse is asked once more (the judgement plus a format
                         reminder); still unparseable: score None, counted
    parse_total(text)    the total out of 6 ("Total: 4.5", "Total score: 5/6", or the sum of the item lines)
    roc_auc(scores, ok)  how well the scores separate passing from failing answers (0.5 = chance; ties count
                         half), the measure the judge's prompt is chosen by
    roc_auc_ci(...)      that AUC with a 95% percentile bootstrap interval over the answers
"""

from __future__ import annotations

import re
from pathlib import Path

from iterkd.codegen.prompts import JUDGE_FORMAT_REMINDER, judge_messages
from iterkd.stages import Request, follow_up, run_stage

_TOTAL = re.compile(r"total(?:\s+score)?\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)(?:\s*/\s*6)?", re.IGNORECASE)
_ITEM = re.compile(
    r"^\W*(basic functionality|boundary checks|requirement coverage|readability and documentation|coding practices)"
    r"\W*[:=-]\s*\**\s*(\d+(?:\.\d+)?)",
    re.IGNORECASE | re.MULTILINE,
)
_ITEM_MAX = {"basic functionality": 2.0, "boundary checks": 1.0, "requirement coverage": 1.0,
             "readability and documentation": 1.0, "coding practices": 1.0}  # fmt: skip


def parse_total(text: str) -> float | None:
    """The judgement's total out of 6: its last "Total: X" line, else the sum of its five item lines; None when
    neither is there or the number is outside 0..6."""
    totals = _TOTAL.findall(text)
    if totals:
        value = float(totals[-1])
        return value if 0 <= value <= 6 else None
    items = {name.lower(): float(v) for name, v in _ITEM.findall(text)}
    if len(items) == len(_ITEM_MAX) and all(items[k] <= _ITEM_MAX[k] for k in items):
        return sum(items.values())
    return None


def roc_auc(scores: list[float], passed: list[bool]) -> float | None:
    """P(score of a passing answer > score of a failing one), ties half (Mann-Whitney); None without both."""
    pos = [s for s, ok in zip(scores, passed) if ok]
    neg = [s for s, ok in zip(scores, passed) if not ok]
    return _auc(pos, neg) if pos and neg else None


def _auc(pos, neg) -> float:
    import numpy as np

    cmp = np.asarray(pos, dtype=float)[:, None] - np.asarray(neg, dtype=float)[None, :]
    return float(((cmp > 0).sum() + 0.5 * (cmp == 0).sum()) / cmp.size)


def roc_auc_ci(
    scores: list[float], passed: list[bool], n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float] | None:
    """(AUC, low, high): ``roc_auc`` and a percentile bootstrap interval over the answers (resampled with
    replacement; a resample without both passing and failing answers is drawn again). None without both."""
    import numpy as np

    auc = roc_auc(scores, passed)
    if auc is None:
        return None
    s, ok = np.asarray(scores, dtype=float), np.asarray(passed, dtype=bool)
    rng = np.random.default_rng(seed)
    aucs = []
    while len(aucs) < n_boot:
        i = rng.integers(0, len(s), size=len(s))
        pos, neg = s[i][ok[i]], s[i][~ok[i]]
        if len(pos) and len(neg):
            aucs.append(_auc(pos, neg))
    low, high = np.percentile(aucs, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return auc, float(low), float(high)


def _records(batch: list[Request], completions: list, seconds: float) -> list[dict]:
    return [
        {"key": r.key, "task_id": r.task.task_id, **r.meta, "judgement": c.text, "score": parse_total(c.text),
         "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}
        for r, c in zip(batch, completions)
    ]  # fmt: skip


def judge_answers(
    answers: list[tuple[str, object, str]],
    judge,
    params,
    path: Path,
    variant: str = "trace",
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, dict]:
    """Score ``answers`` ((key, task, code) triples) with ``judge``; records by key in ``path`` (resumable;
    the format retries in ``path``'s ``.retry.jsonl`` sibling). A record's ``score`` is None when neither the
    judgement nor its retry parsed; ``retried`` says whether a retry was asked."""
    first = [Request(k, task, judge_messages(task, code, variant), {"variant": variant}) for k, task, code in answers]
    done = run_stage("judge", judge, first, params, path, _records, batch_size=batch_size, progress=progress)
    again = [
        follow_up(r, done[r.key]["judgement"], JUDGE_FORMAT_REMINDER) for r in first if done[r.key]["score"] is None
    ]
    retry_path = path.with_name(path.stem + ".retry.jsonl")
    retried = run_stage("judge (format retry)", judge, again, params, retry_path, _records, batch_size=batch_size,
                        progress=progress)  # fmt: skip
    out = {}
    for k, rec in done.items():
        out[k] = {**rec, "retried": k in retried}
        if k in retried:
            r = retried[k]
            out[k].update(score=r["score"], retry_tokens=r["prompt_tokens"] + r["completion_tokens"])
    return out
