"""Tasks: the task model, benchmark loaders (HumanEval, MBPP) and user task files."""

from iterkd.tasks.loaders import (
    BENCHMARKS,
    MBPP_SPLITS,
    load_humaneval,
    load_mbpp,
    load_task_file,
    load_tasks,
    write_task_file,
)
from iterkd.tasks.model import Task

__all__ = [
    "BENCHMARKS",
    "MBPP_SPLITS",
    "Task",
    "load_humaneval",
    "load_mbpp",
    "load_task_file",
    "load_tasks",
    "write_task_file",
]
