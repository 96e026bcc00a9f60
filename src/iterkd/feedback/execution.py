"""Execution feedback: a task + a program -> a sandbox job, and a sandbox result -> feedback text."""

from __future__ import annotations

from iterkd.sandbox import Job, Limits, Result
from iterkd.tasks import Task


def job_for(task: Task, program: str, limits: Limits, tests: list[str] | None = None) -> Job:
    """The sandbox job that judges ``program`` on ``task`` (hidden tests unless ``tests`` is given), with
    the task's CPU budget (at least 4x its reference solution's CPU time)."""
    budget = task.cpu_budget(limits.timeout_s)
    own = Limits(**{**limits.to_dict(), "timeout_s": budget}) if budget != limits.timeout_s else None
    return Job(program=program, tests=list(task.tests if tests is None else tests), setup=task.setup, limits=own)


def _words(text: str, limit: int) -> str:
    words = text.split(" ")
    return text if len(words) <= limit else " ".join(words[:limit]) + " ..."


def execution_feedback(result: Result | dict, words_per_line: int = 50) -> str:
    """The first failing test as INPUT/OUTPUT/EXPECTED (or the error), each line cut to ``words_per_line``
    words (the PD code's 50-word rule). Empty for a passing result."""
    r = result if isinstance(result, dict) else result.to_dict()
    if r["status"] == "passed":
        return ""
    if r["status"] == "timeout":
        text = "TIMEOUT: " + (r.get("reason") or "the code did not finish in time")
        if r.get("feedback"):
            text += "\n" + r["feedback"]
    else:
        text = r.get("feedback") or ("ERROR: " + (r.get("reason") or r["status"]))
    return "\n".join(_words(line, words_per_line) for line in text.splitlines())


def crashed(record: dict) -> bool:
    """A failing stage record (``status``, ``feedback`` as ``execution_feedback`` writes it) whose program did not
    even run to a wrong value: an exception (an ``ERROR:`` line), a syntax error, a timeout."""
    return not record["passed"] and (record["status"] != "failed" or "\nERROR:" in "\n" + record.get("feedback", ""))
