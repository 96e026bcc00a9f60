"""Chat prompts, one family per job. The exact templates are part of the results' contract: each family has a
version in ``PROMPT_VERSIONS`` that a change of its wording must bump. Eval results record the student's
(``PROMPT_VERSION``); a shared stage directory pins them all (``iterkd.pipeline.distill``), so records made
with an old wording are never mixed with new ones.

Student prompts (evaluation, student attempts, teacher direct answers: the student trains on exactly the
shape it is scored on):

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

Teacher faulty solution (IterKD Stage I; ``{kind}`` is one line of ``ERROR_KINDS``: syntax, logic, type, name,
timeout)::

    You are helping build a dataset of realistic programming mistakes. Write a solution to the task below that
    looks plausible but contains {kind}.
    - write it the way a programmer who believes the code is correct would write it;
    - do not explain, mark or hint at the error anywhere: no comment or text may say what is wrong;
    - reply with the complete function, with the imports it needs, in a single ```python code block.

    TASK:
    {student prompt}

Teacher minimal fault (``fault_prompt: mutate``): the student prompt, the teacher's own answer that passed the
tests as its turn, then::

    Your solution above is correct. For a dataset of realistic programming mistakes, make the smallest change to
    it that introduces {kind}.
    - change as little as possible: one line or one expression; keep the function's name and arguments;
    - keep it looking correct, the way a programmer who believes it works would write it;
    - do not explain, mark or hint at the change anywhere: no comment or text may say what is wrong;
    - reply with the complete changed function, with the imports it needs, in a single ```python code block.
"""

from __future__ import annotations

import ast

# one version per prompt family; bump a family's version when its wording changes
PROMPT_VERSIONS = {
    "student": "v1",
    "student-refine": "v1",
    "teacher-repair": "v1",
    "teacher-faulty": "v1",
    "teacher-mutate": "v1",
    "judge": "v1",
    # v2: the seed's verified solution and the student's failing answer; SODA's directions. v3 (every seed test;
    # medium and hard: a variation under the seed's name) was measured and lost (experiments/iterkd-mini/stage3-v3:
    # 10 questions accepted of 90 against v2's 35, 4 of them rewordings); question_messages(version="v3") keeps it
    "question": "v2",
}
PROMPT_VERSION = PROMPT_VERSIONS["student"]  # what eval results record (generation.settings.prompt_version)

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


# IterKD Stage I: a plausible solution with one error of a named kind (SODA's five kinds; our wording)
ERROR_KINDS = {
    "syntax": "a syntax error, such as a missing colon, an unclosed bracket or a wrong indentation",
    "logic": "a logic error: the code runs but computes a wrong result for some inputs (an off-by-one, a wrong "
    "comparison, a wrong operator, a missed case)",
    "type": "a type error: a value of the wrong type is used, e.g. a string added to a number",
    "name": "a name error: a variable, function or module is used that is not defined or misspelt",
    "timeout": "an infinite loop or a computation that does not finish in reasonable time",
}
TEACHER_FAULTY = (
    "You are helping build a dataset of realistic programming mistakes. Write a solution to the task below that "
    "looks plausible but contains {kind}.\n"
    "- write it the way a programmer who believes the code is correct would write it;\n"
    "- do not explain, mark or hint at the error anywhere: no comment or text may say what is wrong;\n"
    "- reply with the complete function, with the imports it needs, in a single ```python code block.\n\n"
    "TASK:\n{task}"
)


def faulty_messages(task, kind: str) -> list[dict]:
    """The teacher is asked for a plausible solution of ``task`` with an error of ``kind`` (ERROR_KINDS)."""
    return user(TEACHER_FAULTY.format(kind=ERROR_KINDS[kind], task=build_user_prompt(task)))


# IterKD Stage I, fault_prompt "mutate": the teacher's own answer that passed the tests, changed minimally
TEACHER_MUTATE = (
    "Your solution above is correct. For a dataset of realistic programming mistakes, make the smallest change "
    "to it that introduces {kind}.\n"
    "- change as little as possible: one line or one expression; keep the function's name and arguments;\n"
    "- keep it looking correct, the way a programmer who believes it works would write it;\n"
    "- do not explain, mark or hint at the change anywhere: no comment or text may say what is wrong;\n"
    "- reply with the complete changed function, with the imports it needs, in a single ```python code block."
)


def mutate_messages(task, code: str, kind: str) -> list[dict]:
    """The teacher's own verified answer (``code``) as its earlier turn, then the request to break it minimally
    with an error of ``kind`` (ERROR_KINDS); execution decides whether it really fails."""
    answered = [*direct_messages(task), {"role": "assistant", "content": code_answer(code)}]
    return [*answered, *user(TEACHER_MUTATE.format(kind=ERROR_KINDS[kind]))]


# IterKD Stage II: the rubric judge (6 points, SODA's rubric; our wording). "plain" scores directly; "trace"
# first runs the task's example test by hand, so that a wrong answer has a chance to show before scoring.
JUDGE_RUBRIC = (
    "Score the code on this rubric (half points allowed):\n"
    "- basic functionality (0-2): does it solve the task correctly?\n"
    "- boundary checks (0-1): does it handle edge cases (empty input, zero, negative numbers)?\n"
    "- requirement coverage (0-1): does it meet every requirement of the task (name, arguments, return value)?\n"
    "- readability and documentation (0-1)\n"
    "- coding practices (0-1)"
)
JUDGE_STEPS = {
    "plain": "Reply with 'Code Analysis:' and a short analysis, then one line per rubric item as 'item: score', "
    "then 'Total: X' (out of 6).",
    "trace": "First write 'Trace:' and run the example test from the task by hand, step by step, and say what the "
    "code returns and whether that equals the expected value. Then write 'Code Analysis:' and a short analysis, "
    "then one line per rubric item as 'item: score', then 'Total: X' (out of 6). Code that fails the example "
    "test cannot score more than 1 for basic functionality.",
}
JUDGE = "You are reviewing a student's Python code.\n\nTASK:\n{task}\n\nCODE:\n```python\n{code}\n```\n\n{rubric}\n\n{steps}"
JUDGE_FORMAT_REMINDER = (
    "Give your scores again in exactly this form, nothing else: one line 'Total: X' with X from 0 to 6."
)


def task_statement(task) -> str:
    """The task as a reviewer reads it: its prompt (code in a block) and its seen tests, without the answer
    format instruction the student gets."""
    if prompt_is_code(task):
        return f"```python\n{task.prompt.rstrip()}\n```"
    seen = [t.strip() for t in (getattr(task, "seen_tests", None) or []) if t and t.strip()]
    tests = "\nExample test:\n" + "\n".join(seen) if seen else ""
    return f"{task.prompt.strip()}\nFunction name: {task.entry_point}{tests}"


def judge_messages(task, code: str, variant: str = "trace") -> list[dict]:
    """The judge is asked to score ``code`` for ``task`` on the 6-point rubric (variant: JUDGE_STEPS key)."""
    steps = JUDGE_STEPS[variant]
    return user(JUDGE.format(task=task_statement(task), code=code.strip(), rubric=JUDGE_RUBRIC, steps=steps))


# IterKD Stage III: a new exercise from a seed question, by the seed's difficulty bucket (SODA's directions, read in
# ../shared/docs/methods.md 2.5: easy -> a rarer, different problem of the same domain; medium and hard -> the same
# domain and task type, similar length and difficulty; our wording) in the project's task format, which the answer
# parser (iterkd.methods.questions) reads back. The teacher sees what it needs to aim: the seed, its verified
# solution, and for medium and hard seeds the student's failing answer with its verdict.
QUESTION_DIRECTIONS = {
    "easy": "The student already solves exercises like this one. Draw inspiration from it to write a brand-new "
    "exercise in the same domain that is rarer and different: another idea, not a rewording or a variation of this "
    "one, with similar length and difficulty.",
    "medium": "Write a new exercise of the same domain and the same task type as this one, with similar length and "
    "difficulty, that practises what the student's answer got wrong: a different function and different details, "
    "not a rewording of this exercise.",
    "hard": "The student fails exercises like this one. Write a new exercise of the same domain and the same task "
    "type, with similar length and difficulty, that practises the skill the student's answer got wrong: a different "
    "function and different details, not a rewording of this exercise.",
}
TEACHER_QUESTION = (
    "You write Python programming exercises with tests for a student.\n\nEXAMPLE EXERCISE:\n{seed}\n\n{context}"
    "{direction}\n\nAnswer in exactly this format:\n"
    "QUESTION: <the exercise in one or two sentences>\n"
    "FUNCTION: <the function name>\n"
    "SOLUTION:\n```python\n<a correct reference solution>\n```\n"
    "TESTS:\n```python\n<at least 3 lines, each one assert that calls the function>\n```"
)
# v3 (issue 31, measured and not the default): v2's exercises drift to short textbook problems easier than their
# seeds, so v3 shows every test of the seed and asks medium and hard seeds for a concrete operation: a variation with
# one changed requirement under the seed's function name (the validation then rejects tests the seed's own solution
# passes). With the 1.5B teacher it was worse (experiments/iterkd-mini/results.md): its references failed their own
# tests far more often, and 4 of the 10 accepted questions were the parent reworded.
QUESTION_DIRECTIONS_V3 = {
    "easy": "The student already solves this exercise. Write a different exercise on the same topic, with the same "
    "kind of input and output, that is rarer and at least as hard: its solution needs at least as many steps as "
    "the verified solution above. Not a rewording or a small variation of this exercise, and not a generic "
    "textbook exercise unrelated to it. Give the function a new name.",
    "medium": "Write a variation of this exercise for the student to practise what its answer got wrong. Keep the "
    "topic, the kind of input and output, and the difficulty (a solution about as long as the verified one); "
    "change one requirement (a condition, the data structure, an extra parameter or the value to return) so that "
    "the verified solution above no longer passes your tests. Keep the function name {name}.",
    "hard": "The student fails this exercise. Write a variation of it for the student to practise the skill its "
    "answer got wrong. Keep the topic, the kind of input and output, and the difficulty (a solution about as long "
    "as the verified one); change one requirement (a condition, the data structure, an extra parameter or the "
    "value to return) so that the verified solution above no longer passes your tests. Keep the function name "
    "{name}.",
}
QUESTION_SOLUTION = "ITS VERIFIED SOLUTION:\n```python\n{code}\n```\n\n"
QUESTION_ATTEMPT = "THE STUDENT'S ANSWER, WHICH FAILED:\n```python\n{code}\n```\nVerdict:\n{verdict}\n\n"
QUESTION_RETRY = "This exercise was rejected: {reason}\nWrite it again, correct, in exactly the same format."


def _seed_with_tests(task) -> str:
    """The seed as v3 shows it: its statement with every test (the difficulty to match is in the tests)."""
    if prompt_is_code(task) or not task.tests:
        return task_statement(task)
    return f"{task.prompt.strip()}\nFunction name: {task.entry_point}\nTests:\n" + "\n".join(
        t.strip() for t in task.tests
    )


def question_messages(
    seed_task, bucket: str, j: int = 0, k: int = 1, attempt: tuple[str, str] | None = None, version: str | None = None
) -> list[dict]:
    """The teacher is asked for new exercise ``j`` (of ``k`` from this seed) from ``seed_task`` for ``bucket``,
    shown the seed's verified solution (when it has one) and, for medium and hard seeds, ``attempt``: the
    student's failing answer and its verdict (code, verdict text). ``version``: the wording (default:
    ``PROMPT_VERSIONS["question"]``; "v3" reproduces issue 31's measurement of the variation prompt)."""
    version = version or PROMPT_VERSIONS["question"]
    if version not in ("v2", "v3"):
        raise ValueError(f"unknown question prompt version {version!r} (v2 or v3)")
    directions = QUESTION_DIRECTIONS_V3 if version == "v3" else QUESTION_DIRECTIONS
    direction = directions[bucket].format(name=seed_task.entry_point)
    if k > 1:  # distinct conversations: distinct samples (and cache keys) for each of the k exercises
        direction += f" This is exercise {j + 1} of {k} written from this example: make it differ from the others."
    solution = (getattr(seed_task, "canonical_solution", None) or "").strip()
    context = QUESTION_SOLUTION.format(code=solution) if solution else ""
    if attempt is not None and bucket != "easy" and attempt[0].strip():
        context += QUESTION_ATTEMPT.format(
            code=attempt[0].strip(), verdict=attempt[1].strip()[:600] or "it fails the tests"
        )
    seed = _seed_with_tests(seed_task) if version == "v3" else task_statement(seed_task)
    return user(TEACHER_QUESTION.format(seed=seed, context=context, direction=direction))
