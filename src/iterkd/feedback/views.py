"""IterKD Stage II's views of the student's answers, behind one small protocol.

A view scores each answer: ``view(tasks, answers)`` takes the pool's tasks and the student's stage records by
task id (``code``, ``passed``, ``status``, ``feedback``) and returns, per task id, a dict of named scores; the
scores of every view are merged into one dict per answer, from which ``questions.bucket`` picks a difficulty.
``view.summary(scores, answers)`` is what the round records about the view (the round summary's ``feedback``).

    execution   passed, crashed                   the sandbox verdicts (already in the records)
    static      static_clean, static_findings     ruff and our AST pass (``feedback.static``)
    judge       judge                             the teacher's rubric total, 0-6 (None: unparsed)

A new view is one class with ``name``, ``__call__`` and ``summary``, listed in ``pipeline.iterkd.views_for``
(with its settings in ``IterKDConfig``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from iterkd.tasks import Task


class View(Protocol):
    name: str

    def __call__(self, tasks: list[Task], answers: dict[str, dict]) -> dict[str, dict]: ...

    def summary(self, scores: dict[str, dict], answers: dict[str, dict]) -> dict: ...


class ExecutionView:
    name = "execution"

    def __call__(self, tasks: list[Task], answers: dict[str, dict]) -> dict[str, dict]:
        from iterkd.feedback.execution import crashed

        return {k: {"passed": a["passed"], "crashed": crashed(a)} for k, a in answers.items()}

    def summary(self, scores: dict[str, dict], answers: dict[str, dict]) -> dict:
        return {"answers": len(answers), "passed": sum(s["passed"] for s in scores.values())}


class StaticView:
    name = "static"

    def __call__(self, tasks: list[Task], answers: dict[str, dict]) -> dict[str, dict]:
        from iterkd.feedback.static import lint

        reports = lint([a["code"] for a in answers.values()])
        return {k: {"static_clean": r.clean, "static_findings": dict(r.counts)} for k, r in zip(answers, reports)}

    def summary(self, scores: dict[str, dict], answers: dict[str, dict]) -> dict:
        from iterkd.feedback.static import CATEGORIES

        with_findings = {c: sum(s["static_findings"].get(c, 0) > 0 for s in scores.values()) for c in CATEGORIES}
        return {"static_answers_with_findings": with_findings}


class JudgeView:
    """The teacher as a rubric judge (``feedback.judge``), measured against execution every round."""

    name = "judge"

    def __init__(self, teacher, params, path: Path, variant: str = "plain", progress: bool = True) -> None:
        self.teacher, self.params, self.path, self.variant, self.progress = teacher, params, path, variant, progress

    def __call__(self, tasks: list[Task], answers: dict[str, dict]) -> dict[str, dict]:
        from iterkd.feedback.judge import judge_answers

        items = [(t.task_id, t, answers[t.task_id]["code"]) for t in tasks]
        judged = judge_answers(items, self.teacher, self.params, self.path, variant=self.variant,
                               progress=self.progress)  # fmt: skip
        return {k: {"judge": r["score"]} for k, r in judged.items()}

    def summary(self, scores: dict[str, dict], answers: dict[str, dict]) -> dict:
        from iterkd.feedback.judge import roc_auc_ci

        usable = [k for k, s in scores.items() if s["judge"] is not None]
        passed = [answers[k]["passed"] for k in usable]
        auc = roc_auc_ci([scores[k]["judge"] for k in usable], passed)
        return {
            "judge_parsed": len(usable),
            "judge_roc_auc": auc[0] if auc else None,
            "judge_roc_auc_ci": [round(auc[1], 4), round(auc[2], 4)] if auc else None,  # 95%, bootstrap over answers
            "judge_fail_scored_5_plus": sum(not answers[k]["passed"] and scores[k]["judge"] >= 5 for k in usable),
        }


def score_answers(views: list[View], tasks: list[Task], answers: dict[str, dict]) -> tuple[dict, dict]:
    """Every view over the answers: (merged scores per task id, the views' summaries merged)."""
    scores: dict[str, dict] = {k: {} for k in answers}
    summary: dict = {}
    for view in views:
        mine = view(tasks, answers)
        for k in answers:
            scores[k].update(mine[k])
        summary.update(view.summary(mine, answers))
    return scores, summary
