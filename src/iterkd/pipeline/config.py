"""``DistillConfig``: one distillation run (method, seed tasks, student, teacher, training, evaluation),
loaded from YAML plus ``key=value`` overrides (dotted keys reach into sections: ``teacher.served_model=...``,
``train.max_steps=50``, ``eval.limit=20``). The resolved config is saved as ``RUN_DIR/config.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional

from pydantic import Field, field_validator, model_validator

from iterkd.config import ConfigModel, load_yaml, parse_override, suggest, validate_with_origin
from iterkd.errors import UserError

SECTIONS = ("student_sampling", "teacher", "train", "eval", "iterkd")


class DistillConfig(ConfigModel):
    """One ``iterkd distill`` run. Every section is checked when the config is built (so before any work)."""

    where: ClassVar[str] = "config"

    method: str = "persd-combine"
    run_dir: str = ""
    seed_tasks: str = "mbpp"  # benchmark name or a task JSONL file
    seed_split: Optional[str] = "train"  # MBPP split (ignored for task files)
    limit: Optional[int] = Field(None, gt=0)  # only the first N seed tasks
    student: str = "smollm2-135m-instruct"  # registry name, .gguf, model dir or hub id
    student_backend: str = "auto"  # generation backend for student attempts (llama-server: parallel)
    stage_dir: Optional[str] = None  # stage records (attempts, teacher answers); None = RUN/data
    teacher_sees_reference: bool = False  # PERsD repairs with the task's reference solution in context (PD code)
    sandbox_timeout: float = Field(3.0, gt=0)  # CPU seconds per program (at least 4x a task's reference time)
    batch_size: int = Field(8, gt=0)  # prompts per generation call (servers, APIs: 4x their slots)
    eval_base: bool = True  # also evaluate the untrained student (before/after table)
    parquet: bool = False  # also write data/train.parquet (same rows as train.jsonl)
    # an accelerate config file (configs/accelerate/): the training step runs as `accelerate launch --config_file
    # FILE -m iterkd train` (several processes / GPUs, DeepSpeed); None = in this process
    train_launcher: Optional[str] = None
    # sections: SamplingParams, TeacherConfig, TrainConfig and EvalConfig by their own field names
    student_sampling: dict = Field(
        default_factory=lambda: {"temperature": 0.3, "top_p": 0.95, "max_tokens": 512, "seed": 0}
    )
    teacher: dict = Field(
        default_factory=lambda: {"served_model": "qwen2.5-coder-1.5b-instruct", "temperature": 0.0, "max_tokens": 512}
    )
    train: dict = Field(default_factory=dict)
    iterkd: dict = Field(default_factory=dict)  # IterKDConfig (method iterkd only)
    eval: dict = Field(
        default_factory=lambda: {"benchmarks": ["humaneval", "mbpp"], "backend": "transformers", "max_tokens": 512}
    )

    @field_validator("train_launcher")
    @classmethod
    def _launcher_exists(cls, value):
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{value}: no such accelerate config file (see configs/accelerate/)")
        return value

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        from iterkd.methods import METHODS

        if value not in (*METHODS, "iterkd"):
            raise ValueError(f"unknown method {value!r}; choose one of {', '.join(METHODS)}, iterkd")
        return value

    @field_validator("student_backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        from iterkd.models.load import canonical_backend

        canonical_backend(value)  # UserError naming the known backends
        return value

    @model_validator(mode="after")
    def _sections(self) -> DistillConfig:
        if not self.run_dir:
            raise ValueError("run_dir is not set (in the config or as run_dir=PATH)")
        self.sections()
        if self.method == "iterkd":
            from iterkd.pipeline.iterkd import IterKDConfig

            IterKDConfig.from_dict(self.iterkd, "iterkd")
        return self

    def sections(self) -> tuple:
        """The sections as typed configs (SamplingParams, TeacherConfig, TrainConfig, [EvalConfig per
        benchmark]); a bad value in any of them is a UserError naming the section."""
        from iterkd.evaluate.run import EvalConfig
        from iterkd.models.base import SamplingParams
        from iterkd.teacher import TeacherConfig
        from iterkd.train import config_from_dict

        run = Path(self.run_dir)
        train = config_from_dict(
            {
                **self.train,
                "model": self.student,
                "train_file": str(run / "data" / "train.jsonl"),
                "output_dir": str(run / "train"),
            },
            "train",
        )
        if "base_url" in self.eval:  # the trained student is a checkpoint of this run: no endpoint serves it
            raise UserError("eval: 'base_url' is not a distill setting (distill evaluates the checkpoint it trains)")
        settings = {k: v for k, v in self.eval.items() if k not in ("benchmarks", "export_gguf")}
        benchmarks = self.eval.get("benchmarks", ["humaneval", "mbpp"])
        if not isinstance(benchmarks, list):  # [] = train only (e.g. tuning rows scored separately)
            raise UserError(f"eval: 'benchmarks' must be a list, got {benchmarks!r}")
        evals = [EvalConfig.from_dict({**settings, "model": self.student, "benchmark": b}, "eval") for b in benchmarks]
        return (
            SamplingParams.from_dict(self.student_sampling, "student_sampling"),
            TeacherConfig.from_dict(self.teacher, "teacher"),
            train,
            evals,
        )


def _set(values: dict, key: str, value: Any, where: str) -> None:
    top = DistillConfig.field_names()
    head, _, rest = key.partition(".")
    if head not in top:
        raise UserError(f"{where}: unknown key {head!r}{suggest(head, top)}")
    if rest:
        if head not in SECTIONS:
            raise UserError(f"{where}: {head!r} is not a section; {key!r} cannot be set")
        section = dict(values.get(head) or _default(head))
        *outer, last = rest.split(".")  # deeper keys reach into a section's own sections (iterkd.budget.run_tokens)
        inner = section
        for part in outer:
            inner[part] = dict(inner.get(part) or {}) if isinstance(inner.get(part, {}), dict) else {}
            inner = inner[part]
        inner[last] = value
        values[head] = section
    else:
        values[head] = value


def _default(section: str) -> dict:
    return DistillConfig.model_fields[section].get_default(call_default_factory=True)


def load_distill_config(path: str | Path | None, overrides: list[str], method: str | None = None) -> DistillConfig:
    """The config file (optional) + ``key=value`` overrides (dotted keys reach into sections) + ``--method``,
    validated -- sections included -- before anything runs."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}  # top-level key -> where it was set, for error messages
    if path is not None:
        for key, value in load_yaml(path).items():
            if str(key) in SECTIONS and isinstance(value, dict):
                values[str(key)] = {**_default(str(key)), **value}
            else:
                _set(values, str(key), value, str(path))
            origin[str(key)] = str(path)
    for text in overrides:
        key, value = parse_override(text)
        _set(values, key, value, f"override {text!r}")
        origin[key.partition(".")[0]] = f"override {text!r}"
    if method is not None:
        values["method"] = method
        origin["method"] = "--method"
    return validate_with_origin(DistillConfig, values, origin, "config")
