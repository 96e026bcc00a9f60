"""Feedback on a program: execution (sandbox verdicts as text for a teacher or student) and the static view
(a linter's findings per category, ``iterkd.feedback.static``)."""

from iterkd.feedback.execution import execution_feedback, job_for

__all__ = ["execution_feedback", "job_for"]
