"""Feedback on a program: execution (sandbox verdicts as text for a teacher or student)."""

from iterkd.feedback.execution import execution_feedback, job_for

__all__ = ["execution_feedback", "job_for"]
