"""Prompts of the distillation methods. The student's text-to-code prompt is the evaluation prompt
(``iterkd.models.prompts``), so training examples have exactly the shape the student is scored on.

Teacher repair (PERsD; after the PD code's rectification prompt, one user turn)::

    You are a Python expert. A student wrote code for the task below, but it fails a unit test.
    Rectify the INCORRECT CODE based on the ERROR from unit testing:
    - fix the logic so that the function solves the task;
    - stay as close as possible to the student's code, unless it is badly wrong, in which case rewrite it;
    - reply with the complete corrected function, with the imports it needs, in a single ```python code block.

    TASK:
    {student prompt}

    INCORRECT CODE:
    ```python
    {code}
    ```

    ERROR:
    {feedback}

With ``teacher_sees_reference`` the teacher first "answered" the task with its reference solution (the PD
code's v1 prompt: its gold code is injected as the assistant's first turn), then gets the request above.

Student refinement (PERsD-refine training and multi-step inference; same text in both): see
``iterkd.models.prompts.refine_messages``.
"""

from __future__ import annotations

from iterkd.models.prompts import build_user_prompt, refine_messages  # noqa: F401  (student refinement prompt)

PROMPTS_VERSION = "v1"

TEACHER_REPAIR = (
    "You are a Python expert. A student wrote code for the task below, but it fails a unit test.\n"
    "Rectify the INCORRECT CODE based on the ERROR from unit testing:\n"
    "- fix the logic so that the function solves the task;\n"
    "- stay as close as possible to the student's code, unless it is badly wrong, in which case rewrite it;\n"
    "- reply with the complete corrected function, with the imports it needs, in a single ```python code block.\n\n"
    "TASK:\n{task}\n\nINCORRECT CODE:\n```python\n{code}\n```\n\nERROR:\n{feedback}"
)

def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def direct_messages(task) -> list[dict]:
    """Text-to-code: the evaluation prompt (used for student attempts and teacher direct answers)."""
    return user(build_user_prompt(task))


def repair_messages(task, code: str, feedback: str, reference: str | None = None) -> list[dict]:
    """The teacher is asked to repair the student's code, staying close to it. With ``reference`` (the task's
    reference solution) the PD code's default two-turn form is used: the task, the reference as the teacher's
    own earlier answer, then the repair request -- the teacher fixes the student's code knowing a solution."""
    ask = TEACHER_REPAIR.format(task=build_user_prompt(task), code=code.strip(), feedback=feedback.strip())
    if reference is None:
        return user(ask)
    return [*direct_messages(task), {"role": "assistant", "content": code_answer(reference)}, *user(ask)]


def code_answer(code: str) -> str:
    """A training target in the shape the student answers at evaluation: one python code block."""
    return f"```python\n{code.strip()}\n```"
