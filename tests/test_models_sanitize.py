"""Prompt building and answer sanitising (no model needed)."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import pytest

from iterkd.codegen.prompts import PROMPT_VERSION, build_messages, prompt_is_code
from iterkd.codegen.sanitize import extract_code, fenced_blocks, sanitize


@dataclass
class T:
    task_id: str
    prompt: str
    entry_point: str
    benchmark: str = "custom"
    tests: list[str] = field(default_factory=list)
    seen_tests: list[str] = field(default_factory=list)
    setup: str = ""
    canonical_solution: str | None = None


HE_PROMPT = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    """
'''
HE = T("HumanEval/0", HE_PROMPT, "has_close_elements", "humaneval")
HE_TESTS = [
    "assert has_close_elements([1.0, 2.0, 3.0], 0.5) is False",
    "assert has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) is True",
]

HE_HELPER_PROMPT = '''

def encode_cyclic(s: str):
    """returns encoded string by cycling groups of three characters."""
    groups = [s[(3 * i):min((3 * i + 3), len(s))] for i in range((len(s) + 2) // 3)]
    groups = [(group[1:] + group[0]) if len(group) == 3 else group for group in groups]
    return "".join(groups)


def decode_cyclic(s: str):
    """
    takes as input string encoded with encode_cyclic function. Returns decoded string.
    """
'''
HE_HELPER = T("HumanEval/38", HE_HELPER_PROMPT, "decode_cyclic", "humaneval")

MBPP = T(
    "Mbpp/2",
    "Write a function to find the shared elements from the given two lists.",
    "similar_elements",
    "mbpp",
    seen_tests=["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))"],
)
MBPP_TESTS = MBPP.seen_tests + ["assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))"]

GOOD_HE = """def has_close_elements(numbers: List[float], threshold: float) -> bool:
    for i, a in enumerate(numbers):
        for j, b in enumerate(numbers):
            if i != j and abs(a - b) < threshold:
                return True
    return False"""

GOOD_MBPP = """def similar_elements(a, b):
    return tuple(set(a) & set(b))"""


def run(program: str, tests: list[str], setup: str = "") -> None:
    ns: dict = {}
    exec(compile(program, "<program>", "exec"), ns)
    if setup:
        exec(setup, ns)
    for t in tests:
        exec(t, ns)


def ok_he(answer: str) -> str:
    prog = sanitize(answer, HE)
    run(prog, HE_TESTS)
    return prog


def ok_mbpp(answer: str) -> str:
    prog = sanitize(answer, MBPP)
    run(prog, MBPP_TESTS)
    return prog


# --------------------------------------------------------------------------------------------- prompts


def test_prompt_humaneval_exact():
    msgs = build_messages(HE)
    assert PROMPT_VERSION == "v1"
    assert msgs == [
        {
            "role": "user",
            "content": "Complete the following Python function. Reply with the complete function, including the "
            "imports it needs, in a single ```python code block.\n\n```python\n" + HE_PROMPT.rstrip() + "\n```",
        }
    ]


def test_prompt_mbpp_exact():
    msgs = build_messages(MBPP)
    assert msgs[0]["role"] == "user" and len(msgs) == 1
    assert msgs[0]["content"] == (
        "Write a function to find the shared elements from the given two lists.\n"
        "Your code should pass these tests:\n\n"
        "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n\n"
        "Write a Python function named `similar_elements`. Reply with the complete function, including the "
        "imports it needs, in a single ```python code block."
    )


def test_prompt_custom_detects_code_or_prose():
    code_task = T("c/1", "def f(x):\n    '''double x'''\n", "f")
    prose_task = T("c/2", "Write f that doubles x.", "f")
    assert prompt_is_code(code_task) and not prompt_is_code(prose_task)
    assert "```python\ndef f(x):" in build_messages(code_task)[0]["content"]
    text = build_messages(prose_task)[0]["content"]
    assert text.startswith("Write f that doubles x.\n\nWrite a Python function named `f`.")
    assert "Your code should pass" not in text


# --------------------------------------------------------------------------------------------- fences


def test_fenced_blocks_variants():
    text = "a\n```python\nx = 1\n```\nb\n```\ny = 2\n```\n~~~py\nz = 3\n~~~\n```js\nq\n```\n```python\nopen"
    assert fenced_blocks(text) == [("python", "x = 1"), ("", "y = 2"), ("py", "z = 3"), ("js", "q"), ("python", "open")]


def test_python_fence_with_prose_around():
    ok_he(f"Sure! Here is the implementation:\n\n```python\n{GOOD_HE}\n```\n\nThis checks every pair of numbers.")


def test_py_fence_and_plain_fence():
    ok_he(f"```py\n{GOOD_HE}\n```")
    ok_mbpp(f"```\n{GOOD_MBPP}\n```")


def test_unclosed_fence_at_eos():
    ok_mbpp(f"Here you go:\n```python\n{GOOD_MBPP}\n")


def test_unclosed_fence_truncated_mid_function():
    # max_tokens hit inside a second (example) function: the complete first function survives
    ans = f"```python\n{GOOD_MBPP}\n\n\ndef helper_example(x):\n    if x >"
    prog = ok_mbpp(ans)
    assert "helper_example" not in prog


def test_no_fences_raw_code():
    ok_mbpp(GOOD_MBPP)
    ok_he("from typing import List\n\n" + GOOD_HE)


def test_no_fences_prose_around_code():
    ans = f"Here is the function you asked for:\n\n{GOOD_MBPP}\n\nIt uses a set intersection. Hope this helps!"
    prog = ok_mbpp(ans)
    assert "Hope" not in prog


def test_indented_fence_in_markdown_list():
    ans = "1. First, the code:\n\n   ```python\n   def similar_elements(a, b):\n       return tuple(set(a) & set(b))\n   ```\n"
    ok_mbpp(ans)


def test_crlf_and_special_tokens():
    ans = "```python\r\n" + GOOD_MBPP.replace("\n", "\r\n") + "\r\n```<|im_end|>"
    ok_mbpp(ans)


def test_think_block_is_ignored():
    ans = "<think>maybe def similar_elements(a, b): return 1</think>\n```python\n" + GOOD_MBPP + "\n```"
    ok_mbpp(ans)


# --------------------------------------------------------------------------------------------- multiple blocks


def test_multiple_blocks_prefers_entry_point_and_drops_usage_block():
    ans = (
        "First import:\n```python\nimport math\n```\n"
        "Usage:\n```python\nprint(similar_elements((1, 2), (2, 3)))\n```\n"
        f"Solution:\n```python\n{GOOD_MBPP}\n```\n"
    )
    prog = ok_mbpp(ans)
    assert "print" not in prog


def test_multiple_blocks_merges_needed_imports_and_helpers():
    ans = (
        "```python\nimport math\nfrom collections import Counter\nimport numpy_not_installed_pkg\n```\n"
        "```python\ndef similar_elements(a, b):\n    return tuple(_common(a, b))\n```\n"
        "```python\ndef _common(a, b):\n    c = Counter(a)\n    return [x for x in set(b) if c[x] and math.isfinite(x)]\n```"
    )
    prog = ok_mbpp(ans)
    assert "numpy_not_installed_pkg" not in prog
    assert "import math" in prog and "from collections import Counter" in prog


def test_non_python_blocks_ignored_when_python_present():
    ans = f"Run:\n```bash\npython solve.py\n```\n```python\n{GOOD_MBPP}\n```\nOutput:\n```text\n(4, 5)\n```"
    ok_mbpp(ans)


def test_function_repeated_keeps_one_definition_last_wins():
    wrong = "def similar_elements(a, b):\n    return ()"
    ans = f"```python\n{wrong}\n\n# corrected version\n{GOOD_MBPP}\n```"
    prog = ok_mbpp(ans)
    assert prog.count("def similar_elements") == 1


def test_same_function_in_two_blocks_first_block_wins():
    ans = f"```python\n{GOOD_MBPP}\n```\nOr, with a loop:\n```python\ndef similar_elements(a, b):\n    return [x for x in a if x in b]\n```"
    prog = ok_mbpp(ans)
    assert prog.count("def similar_elements") == 1 and "set(a) & set(b)" in prog


# --------------------------------------------------------------------------------------------- pruning


def test_drops_main_block_prints_asserts_and_calls():
    ans = f"""```python
import sys
MOD = 10 ** 9 + 7
CACHE = {{}}
{GOOD_MBPP}

result = similar_elements((1, 2), (2,))
print(result)
assert similar_elements((1,), (1,)) == (1,)
for x in range(3):
    print(x)
similar_elements((1,), (2,))

if __name__ == "__main__":
    print(similar_elements((3, 4), (4,)))
    sys.exit(0)
```"""
    prog = ok_mbpp(ans)
    tree = ast.parse(prog)
    kinds = [type(n).__name__ for n in tree.body]
    assert kinds == ["Import", "Assign", "Assign", "FunctionDef"], prog
    assert "MOD = 10 ** 9 + 7" in prog and "__main__" not in prog and "result" not in prog


def test_keeps_classes_decorators_and_comments_in_bodies():
    ans = """```python
import functools

class Helper:
    def go(self, a, b):
        return set(a) & set(b)

@functools.lru_cache(maxsize=None)
def _unused(n):
    return n

def similar_elements(a, b):
    # intersection via a helper class
    return tuple(Helper().go(a, b))
```"""
    prog = ok_mbpp(ans)
    assert "@functools.lru_cache" in prog and "# intersection via a helper class" in prog


def test_try_import_block_kept():
    ans = "```python\ntry:\n    from math import gcd\nexcept ImportError:\n    gcd = None\n\n" + GOOD_MBPP + "\n```"
    prog = ok_mbpp(ans)
    assert "from math import gcd" in prog


# --------------------------------------------------------------------------------------------- HumanEval specifics


def test_missing_prompt_imports_are_prepended():
    prog = ok_he(f"```python\n{GOOD_HE}\n```")
    assert prog.startswith("from typing import List")


def test_prompt_import_not_duplicated():
    prog = ok_he(f"```python\nfrom typing import List\n\n{GOOD_HE}\n```")
    assert prog.count("from typing import List") == 1


def test_body_only_indented_continuation():
    body = "    for i, a in enumerate(numbers):\n        for b in numbers[i + 1:]:\n            if abs(a - b) < threshold:\n                return True\n    return False\n"
    prog = ok_he(body)
    assert prog.count("def has_close_elements") == 1
    ok_he(f"```python\n{body}```")
    ok_he("Here is the completion:\n" + body + "\nThat's it.")


def test_body_only_at_column_zero_in_fence():
    body = "for i, a in enumerate(numbers):\n    for b in numbers[i + 1:]:\n        if abs(a - b) < threshold:\n            return True\nreturn False"
    ok_he(f"```python\n{body}\n```")


def test_prompt_helper_functions_are_kept():
    ans = "```python\ndef decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))\n```"
    prog = sanitize(ans, HE_HELPER)
    run(prog, ["assert decode_cyclic(encode_cyclic('abcdefgh')) == 'abcdefgh'"])
    assert prog.count("def encode_cyclic") == 1


def test_answer_redefining_prompt_helper_is_not_duplicated():
    helper = HE_HELPER_PROMPT.split("def decode_cyclic")[0].strip()
    ans = f"```python\n{helper}\n\n\ndef decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))\n```"
    prog = sanitize(ans, HE_HELPER)
    assert prog.count("def encode_cyclic") == 1
    run(prog, ["assert decode_cyclic(encode_cyclic('abcdefgh')) == 'abcdefgh'"])


def test_echoed_prompt_plus_completion():
    ok_he("```python\n" + HE_PROMPT + GOOD_HE.split("\n", 1)[1] + "\n```")


def test_typing_names_without_import_in_mbpp():
    ans = "```python\ndef similar_elements(a: Tuple[int, ...], b: Tuple[int, ...]) -> Tuple[int, ...]:\n    return tuple(set(a) & set(b))\n```"
    prog = ok_mbpp(ans)
    assert prog.startswith("from typing import Tuple")


# --------------------------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   \n\n",
        "I don't know.",
        "```python\n```",
        "```",
        "def broken(:\n    pass",
        "```python\ndef similar_elements(a, b)\n    return\n```",
        "((((((((((" * 200,
        "\x00\x01 weird bytes ```python\n\x00\n```",
        "def f():\n" + "    x = 1\n" * 3000,
        "\n".join(f"line {i} of prose: x = {i}" for i in range(1500)),
    ],
)
def test_never_raises(answer):
    for task in (HE, MBPP, None):
        out = sanitize(answer, task)
        assert isinstance(out, str)
    assert isinstance(extract_code(answer), str)


def test_raw_text_returned_when_nothing_parses():
    assert sanitize("I cannot help with that.", MBPP) == "I cannot help with that."


def test_wrong_function_name_still_returns_code():
    prog = sanitize("```python\ndef common(a, b):\n    return set(a) & set(b)\n```", MBPP)
    assert "def common" in prog


def test_sanitize_without_task():
    prog = sanitize(f"Text\n```python\n{GOOD_MBPP}\nprint(similar_elements((1,), (1,)))\n```")
    assert "print" not in prog and "def similar_elements" in prog


def test_extract_code_unpruned():
    code = extract_code(f"Hi\n```python\n{GOOD_MBPP}\nprint(1)\n```", "similar_elements")
    assert code.endswith("print(1)")
