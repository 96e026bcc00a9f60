'''Chat prompts, one per benchmark. The exact templates are part of the results' contract: results record
``PROMPT_VERSION`` and a change of wording must bump it.

No system message is sent: each model's chat template applies its own default (if any).

HumanEval (and custom tasks whose prompt is code defining ``entry_point``) -- one user message::

    Complete the following Python function. Reply with the complete function, including the imports it
    needs, in a single ```python code block.

    ```python
    {prompt}
    ```

(the first paragraph is a single line in the real message; ``{prompt}`` is the task's prompt with trailing
whitespace removed.)

MBPP (and custom tasks whose prompt is prose) -- one user message::

    {prompt}
    Your code should pass these tests:

    {seen_tests, one per line}

    Write a Python function named `{entry_point}`. Reply with the complete function, including the imports it
    needs, in a single ```python code block.

(again the last paragraph is one line; without seen tests the "Your code should pass these tests:" part and
its blank line are left out.)

Refinement (multi-step inference, and PERsD-refine training examples) -- one user message::

    {the task's prompt above}

    Your previous code:
    ```python
    {code}
    ```

    It fails a unit test:
    {feedback}

    Rectify the code based on the error. Reply with the complete corrected function in a single ```python code block.
'''

from __future__ import annotations

import ast

PROMPT_VERSION = "v1"

CODE_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function, including the imports it needs, "
    "in a single ```python code block."
)
CODE_TEMPLATE = "{instruction}\n\n```python\n{prompt}\n```"

TEXT_ASK = (
    "Write a Python function named `{entry_point}`. Reply with the complete function, including the imports it "
    "needs, in a single ```python code block."
)
TEXT_TEMPLATE = "{prompt}\nYour code should pass these tests:\n\n{tests}\n\n{ask}"
TEXT_TEMPLATE_NO_TESTS = "{prompt}\n\n{ask}"


def prompt_is_code(task) -> bool:
    """True when the task's prompt is Python code that defines ``entry_point`` (HumanEval style)."""
    bench = getattr(task, "benchmark", "custom")
    if bench == "humaneval":
        return True
    if bench == "mbpp":
        return False
    try:
        tree = ast.parse(task.prompt)
    except (SyntaxError, ValueError):
        return False
    return any(
        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == task.entry_point for n in ast.walk(tree)
    )


def build_user_prompt(task) -> str:
    """The text of the single user message for ``task`` (duck-typed: prompt, entry_point, seen_tests, benchmark)."""
    if prompt_is_code(task):
        return CODE_TEMPLATE.format(instruction=CODE_INSTRUCTION, prompt=task.prompt.rstrip())
    ask = TEXT_ASK.format(entry_point=task.entry_point)
    seen = [t.strip() for t in (getattr(task, "seen_tests", None) or []) if t and t.strip()]
    if seen:
        return TEXT_TEMPLATE.format(prompt=task.prompt.strip(), tests="\n".join(seen), ask=ask)
    return TEXT_TEMPLATE_NO_TESTS.format(prompt=task.prompt.strip(), ask=ask)


def build_messages(task) -> list[dict]:
    """The chat messages for ``task``: one user message (see the module docstring for the templates)."""
    return [{"role": "user", "content": build_user_prompt(task)}]


STUDENT_REFINE = (
    "{task}\n\nYour previous code:\n```python\n{code}\n```\n\nIt fails a unit test:\n{feedback}\n\n"
    "Rectify the code based on the error. Reply with the complete corrected function in a single ```python code block."
)


def refine_messages(task, code: str, feedback: str) -> list[dict]:
    """The student repairs its own code given execution feedback (multi-step inference, PERsD-refine data)."""
    text = STUDENT_REFINE.format(task=build_user_prompt(task), code=code.strip(), feedback=feedback.strip())
    return [{"role": "user", "content": text}]
