"""``DistillConfig``: one distillation run (method, seed tasks, student, teacher, training, evaluation),
loaded from YAML plus ``key=value`` overrides (dotted keys reach into sections: ``teacher.served_model=...``,
``train.max_steps=50``, ``eval.limit=20``). The resolved config is saved as ``RUN_DIR/config.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional

from pydantic import Field, field_validator, model_validator

from iterkd.config import ConfigModel, load_yaml, parse_override, suggest, validate_with_origin
from iterkd.errors import UserError
from iterkd.models.base import SamplingParams
from iterkd.pipeline.iterkd_config import IterKDConfig
from iterkd.teacher.config import DEFAULT_TEACHER, TeacherConfig

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
    # typed sections (validated objects, named by their own field names): student_sampling, teacher, iterkd
    student_sampling: SamplingParams = Field(
        default_factory=lambda: SamplingParams(temperature=0.3, top_p=0.95, max_tokens=512, seed=0)
    )
    teacher: TeacherConfig = Field(
        default_factory=lambda: TeacherConfig(served_model=DEFAULT_TEACHER, temperature=0.0, max_tokens=512)
    )
    iterkd: IterKDConfig = Field(default_factory=IterKDConfig)  # method iterkd only
    # sections completed per use (the model, files and benchmark a step fills in): train_config(), eval_configs()
    train: dict = Field(default_factory=dict)  # TrainConfig fields (IterKD rounds: PreferenceConfig's too)
    eval: dict = Field(
        default_factory=lambda: {"benchmarks": ["humaneval", "mbpp"], "backend": "transformers", "max_tokens": 512}
    )

    @field_validator("student_sampling", "teacher", "iterkd", mode="before")
    @classmethod
    def _section(cls, value, info):
        kind = cls.model_fields[info.field_name].annotation
        return value if isinstance(value, kind) else kind.from_dict(value, info.field_name)

    @field_validator("train_launcher")
    @classmethod
    def _launcher_exists(cls, value):
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{value}: no such accelerate config file (see configs/accelerate/)")
        return value

    @field_validator("seed_tasks")
    @classmethod
    def _seed_tasks(cls, value: str) -> str:
        _check_benchmark(value, "'seed_tasks'")
        return value

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        from iterkd.pipeline.registry import pipelines

        if value not in pipelines():
            raise ValueError(f"unknown method {value!r}; choose one of {', '.join(pipelines())}")
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
        from iterkd.pipeline.registry import pipeline

        self.train_config(pipeline(self.method).objective)
        self.eval_configs()
        return self

    def train_config(self, objective: str = "sft", **fill):
        """The ``train:`` section as a validated training config (``objective`` sft: TrainConfig, preference:
        PreferenceConfig) for this run's student, data and output directory (``fill`` overrides them)."""
        from iterkd.train import OBJECTIVES

        run = Path(self.run_dir)
        where = {
            "model": self.student,
            "train_file": str(run / "data" / "train.jsonl"),
            "output_dir": str(run / "train"),
        }
        return OBJECTIVES[objective].from_dict({**self.train, **where, **fill}, "train")

    def eval_configs(self) -> list:
        """One EvalConfig per ``eval.benchmarks`` entry (model: the untrained student; a step evaluating another
        model copies it with that model)."""
        from iterkd.evaluate.run import EvalConfig

        if "base_url" in self.eval:  # the trained student is a checkpoint of this run: no endpoint serves it
            raise UserError("eval: 'base_url' is not a distill setting (distill evaluates the checkpoint it trains)")
        settings = {k: v for k, v in self.eval.items() if k not in ("benchmarks", "export_gguf")}
        benchmarks = self.eval.get("benchmarks", ["humaneval", "mbpp"])
        if not isinstance(benchmarks, list):  # [] = train only (e.g. tuning rows scored separately)
            raise UserError(f"eval: 'benchmarks' must be a list, got {benchmarks!r}")
        for b in benchmarks:
            _check_benchmark(str(b), "eval: 'benchmarks'")
        return [EvalConfig.from_dict({**settings, "model": self.student, "benchmark": b}, "eval") for b in benchmarks]

    # --- what decides each stage's records (its pinned settings), as dotted config keys --------------------------

    def student_settings(self, model: bool = True) -> dict:
        """What decides a student answer: sampling, backend, prompt wording, sandbox limit, and (``model``) the
        student model itself with its identity (a round's trained student is pinned by its training instead)."""
        from iterkd.codegen.prompts import PROMPT_VERSIONS
        from iterkd.models.registry import identity

        who = {"student": self.student, "student identity": identity(self.student)} if model else {}
        return {**who, "student_backend": self.student_backend,
                **{f"student_sampling.{k}": v for k, v in self.student_sampling.to_dict().items()},
                "prompt_version:student": PROMPT_VERSIONS["student"], "sandbox_timeout": self.sandbox_timeout}  # fmt: skip

    def teacher_settings(self) -> dict:
        """What decides a teacher (or judge) answer: the model, its identity, the sampling; not where it is served."""
        from iterkd.models.registry import identity

        t = self.teacher.to_dict()
        pinned = {f"teacher.{k}": t.get(k) for k in TEACHER_KEYS}
        return {**pinned, "teacher identity": identity(t["served_model"]) if t.get("served_model") else None}

    def seed_settings(self) -> dict:
        return {"seed_tasks": self.seed_tasks, "seed_split": self.seed_split if self.seed_tasks == "mbpp" else None,
                "limit": self.limit}  # fmt: skip

    def train_settings(self, tcfg) -> dict:
        """A training config's settings, but where it reads and writes (its data is pinned by its own stage)."""
        from iterkd.models.registry import identity

        values = {f"train.{k}": v for k, v in tcfg.to_dict().items() if k not in ("output_dir", "train_file", "model")}
        return {"train.model": tcfg.model, "train.model identity": identity(tcfg.model), **values}


def _check_benchmark(name: str, where: str) -> None:
    """A benchmark name or a task file, checked when the config is read (not at the stage that uses it)."""
    if name in BENCHMARKS or Path(name).is_file():
        return
    if Path(name).is_dir():
        raise UserError(f"{where}: {name} is a directory, expected a task .jsonl file")
    hint = suggest(name, list(BENCHMARKS)) if not name.endswith(".jsonl") else ": no such task file"
    raise UserError(f"{where}: unknown benchmark {name!r}{hint} (or a task .jsonl file)")


BENCHMARKS = ("humaneval", "mbpp")
# teacher settings that decide its answers (base_url, cache_path, concurrency and server sizes only say where and
# how fast it is served)
TEACHER_KEYS = ("served_model", "model", "temperature", "top_p", "max_tokens", "seed", "top_k", "extra_body")


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
    value = DistillConfig.model_fields[section].get_default(call_default_factory=True)
    return value.model_dump(exclude_unset=True) if isinstance(value, ConfigModel) else value


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
    cfg = validate_with_origin(DistillConfig, values, origin, "config")
    own = [o for o in overrides if o.startswith("iterkd.")]
    if own and cfg.method != "iterkd":  # e.g. --rounds 3 with persd: never ignored without a word
        raise UserError(f"override {own[0]!r}: iterkd settings (and --rounds) apply to method iterkd, not {cfg.method}")
    return cfg
