"""``DistillConfig``: one distillation run (method, seed tasks, student, teacher, training, evaluation),
loaded from YAML plus ``key=value`` overrides (dotted keys reach into sections: ``teacher.served_model=...``,
``train.max_steps=50``, ``eval.limit=20``). The resolved config is saved as ``RUN_DIR/config.yaml``."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from iterkd.errors import UserError

SECTIONS = ("student_sampling", "teacher", "train", "eval")


@dataclass
class DistillConfig:
    method: str = "persd-combine"
    run_dir: str = ""
    seed_tasks: str = "mbpp"                 # benchmark name or a task JSONL file
    seed_split: str | None = "train"         # MBPP split (ignored for task files)
    limit: int | None = None                 # only the first N seed tasks
    student: str = "smollm2-135m-instruct"   # registry name, .gguf, model dir or hub id
    student_backend: str = "auto"            # generation backend for student attempts (llama-server: parallel)
    stage_dir: str | None = None             # stage records (attempts, teacher answers); None = RUN/data
    teacher_sees_reference: bool = False     # PERsD repairs with the task's reference solution in context (PD code)
    sandbox_timeout: float = 3.0             # CPU seconds per program (at least 4x a task's reference time)
    batch_size: int = 8                      # prompts per generation call (servers, APIs: 4x their slots)
    eval_base: bool = True                   # also evaluate the untrained student (before/after table)
    parquet: bool = False                    # also write data/train.parquet (same rows as train.jsonl)
    # sections: TeacherConfig, SamplingParams, TrainConfig and eval settings by their own field names
    student_sampling: dict = field(default_factory=lambda: {"temperature": 0.3, "top_p": 0.95, "max_tokens": 512, "seed": 0})
    teacher: dict = field(default_factory=lambda: {"served_model": "qwen2.5-coder-1.5b-instruct", "temperature": 0.0, "max_tokens": 512})
    train: dict = field(default_factory=dict)
    eval: dict = field(default_factory=lambda: {"benchmarks": ["humaneval", "mbpp"], "backend": "transformers", "max_tokens": 512})

    def validate(self) -> "DistillConfig":
        from iterkd.methods import METHODS

        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not self.run_dir:
            raise UserError("run_dir is not set (in the config or as run_dir=PATH)")
        if self.limit is not None and self.limit <= 0:
            raise UserError(f"limit must be > 0, got {self.limit}")
        from iterkd.models.base import canonical_backend

        canonical_backend(self.student_backend)
        for name in SECTIONS:
            if not isinstance(getattr(self, name), dict):
                raise UserError(f"{name} must be a mapping of settings")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def _set(values: dict, key: str, value: Any, where: str) -> None:
    top = [f.name for f in fields(DistillConfig)]
    head, _, rest = key.partition(".")
    if head not in top:
        close = difflib.get_close_matches(head, top, n=3)
        raise UserError(f"{where}: unknown key {head!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    if rest:
        if head not in SECTIONS:
            raise UserError(f"{where}: {head!r} is not a section; {key!r} cannot be set")
        section = dict(values.get(head) or getattr(DistillConfig(), head))
        section[rest] = value
        values[head] = section
    else:
        values[head] = value


def load_distill_config(path: str | Path | None, overrides: list[str], method: str | None = None) -> DistillConfig:
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise UserError(f"{path}{f':{mark.line + 1}' if mark else ''}: not valid YAML") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping of settings")
        for key, value in data.items():
            if str(key) in SECTIONS and isinstance(value, dict):
                values[str(key)] = {**getattr(DistillConfig(), str(key)), **value}
            else:
                _set(values, str(key), value, str(path))
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise UserError(f"override {text!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _set(values, key.strip(), value, f"override {text!r}")
    if method is not None:
        values["method"] = method
    try:
        return DistillConfig(**values).validate()
    except TypeError as e:
        raise UserError(f"bad config: {e}") from None
