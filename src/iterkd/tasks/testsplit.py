"""Turn test code into individual checks, and docstring examples into seen tests."""

from __future__ import annotations

import ast
import doctest
import re
import warnings


def parse(source: str, mode: str = "exec") -> ast.AST:
    """ast.parse without the DeprecationWarnings old code (invalid escapes) raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(source, mode=mode)


def _segment(source: str, nodes: list[ast.stmt]) -> str:
    """Source text of consecutive statements, dedented to column 0."""
    lines = source.splitlines()
    start, end = nodes[0].lineno, nodes[-1].end_lineno
    if getattr(nodes[0], "decorator_list", None):
        start = nodes[0].decorator_list[0].lineno
    chunk = lines[start - 1 : end]
    indent = nodes[0].col_offset
    return "\n".join(line[indent:] if line[:indent].strip() == "" else line for line in chunk)


def split_statements(source: str, body: list[ast.stmt]) -> list[str]:
    """Group a function body into tests: each assert or compound statement is one test, and the
    plain statements before it (imports, assignments) travel with it. Trailing plain statements join
    the last test. Tests run in order in one namespace, so state carries over."""
    tests: list[str] = []
    pending: list[ast.stmt] = []
    for node in body:
        if isinstance(node, (ast.Pass,)) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        ):
            continue
        pending.append(node)
        if isinstance(node, (ast.Assert, ast.For, ast.While, ast.If, ast.With, ast.Try)):
            tests.append(_segment(source, pending))
            pending = []
    if pending:
        tail = _segment(source, pending)
        if tests:
            tests[-1] = tests[-1] + "\n" + tail
        else:
            tests.append(tail)
    return tests


def split_check_function(test_source: str, entry_point: str) -> tuple[str, list[str]]:
    """Split a HumanEval-style test module (``def check(candidate): ...``) into (setup, tests).

    setup holds the module-level code besides ``check`` plus ``candidate = <entry_point>``.
    """
    tree = parse(test_source)
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None:
        return "", [test_source + f"\ncheck({entry_point})\n"]
    others = [n for n in tree.body if n is not check]
    setup_parts = [_segment(test_source, [n]) for n in others]
    setup_parts.append(f"{check.args.args[0].arg if check.args.args else 'candidate'} = {entry_point}")
    tests = split_statements(test_source, check.body)
    return "\n".join(setup_parts) + "\n", tests


_ARROW = re.compile(r"^\s*(?P<call>.+?\))\s*(?:==|➞|=>|->|➠|should return|returns?)\s*(?P<want>.+?)\s*$")


def _is_expr(text: str) -> bool:
    try:
        parse(text, mode="eval")
        return True
    except SyntaxError:
        return False


def docstring_examples(prompt: str, entry_point: str, limit: int = 3) -> list[str]:
    """Examples stated in a HumanEval prompt's docstring, as asserts (best effort)."""
    tests: list[str] = []
    try:
        examples = doctest.DocTestParser().get_examples(prompt)
    except ValueError:
        examples = []
    for ex in examples:
        call = ex.source.strip()
        want = ex.want.split('"""')[0].split("'''")[0].strip()  # the docstring's closing quotes
        if entry_point in call and want and "\n" not in call and _is_expr(call) and _is_expr(want):
            tests.append(f"assert {call} == {want}")
    if not tests:
        for line in prompt.splitlines():
            if f"{entry_point}(" not in line:
                continue
            m = _ARROW.match(line.strip().lstrip(">").strip())
            if m and _is_expr(m["call"]) and _is_expr(m["want"]) and m["call"].lstrip().startswith(entry_point):
                tests.append(f"assert {m['call']} == {m['want']}")
    return tests[:limit]
