"""``TrainConfig``: the settings of one supervised fine-tuning run, loaded from YAML plus ``key=value`` overrides.

Field names are TRL's own ``SFTConfig`` / transformers ``TrainingArguments`` names where one exists
(``learning_rate``, ``num_train_epochs``, ``max_steps``, ``per_device_train_batch_size``, ...), so a value means
exactly what the TRL documentation says. Our own fields: ``model``, ``train_file``, ``eval_file``, ``output_dir``,
``dtype``, ``long_examples``, the LoRA block (``lora``, ``lora_r``, ``lora_alpha``, ``lora_dropout``,
``lora_target_modules``, ``merge_lora``) and ``sft_args`` (any other SFTConfig field, passed through as is).

``None`` in a few fields means "pick for me" and is filled in by :meth:`TrainConfig.resolved`:
``learning_rate`` (2e-5 full fine-tuning, 2e-4 LoRA) and ``bf16`` (on when CUDA supports bf16, else float32).

This module imports nothing heavy (torch only inside ``resolved`` to look at the device).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from iterkd.config import ConfigModel, load_yaml, parse_override, validate_with_origin
from iterkd.io import atomic_write_text

FULL_FT_LR = 2e-5
LORA_LR = 2e-4
LONG_EXAMPLE_POLICIES = ("drop", "truncate")
Strategy = Literal["steps", "epoch", "no"]
CONFIG_FILENAME = "train_config.yaml"
# fields passed to TRL's SFTConfig under the same name (the rest are ours, or adjusted in train.sft.sft_config)
TRL_FIELDS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "optim",
    "completion_only_loss",
    "gradient_checkpointing",
    "seed",
    "logging_steps",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "eval_steps",
    "report_to",
    "dataloader_num_workers",
)


class TrainConfig(ConfigModel):
    where: ClassVar[str] = "training config"
    objective: ClassVar[str] = "sft"  # `iterkd train --objective` of this config

    # --- ours: what to train on what
    model: str = Field(
        "", description="student: registry name (iterkd models list), .gguf file, model directory or HF hub id"
    )
    train_file: str = Field(
        "", description="training JSONL: {prompt, completion} rows, strings or chat messages (TRL format)"
    )
    eval_file: Optional[str] = Field(
        None, description="optional evaluation JSONL in the same format (eval loss per eval_strategy)"
    )
    output_dir: str = Field("", description="run directory: checkpoints, train_config.yaml, train_summary.json, final/")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype of the weights being trained (float32 or bfloat16); bf16 is autocast on top"
    )
    long_examples: Literal["drop", "truncate"] = Field(
        "drop", description="examples longer than max_length: drop (never train on cut code) or truncate"
    )
    # --- TRL SFTConfig / TrainingArguments names
    learning_rate: Optional[float] = Field(
        None, gt=0, description="peak learning rate (default 2e-5 full fine-tuning, 2e-4 LoRA)"
    )
    num_train_epochs: float = Field(2.0, gt=0, description="epochs over the training file (ignored when max_steps > 0)")
    max_steps: int = Field(-1, description="optimizer steps to run; -1 = use num_train_epochs")
    per_device_train_batch_size: int = Field(1, gt=0, description="sequences per forward pass")
    per_device_eval_batch_size: int = Field(4, gt=0, description="sequences per forward pass during evaluation")
    gradient_accumulation_steps: int = Field(
        8, gt=0, description="forward passes per optimizer step (effective batch = this x batch)"
    )
    lr_scheduler_type: str = Field("cosine", description="linear, cosine, constant, constant_with_warmup, ...")
    warmup_steps: float = Field(
        0.03, ge=0, description="linear warm-up: steps, or a fraction of all steps when < 1 (TRL's warmup_ratio)"
    )
    weight_decay: float = Field(0.0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, description="gradient clipping norm")
    optim: str = Field("adamw_torch", description="optimizer name (transformers' optim values)")
    max_length: int = Field(
        1024, gt=0, description="longest tokenized prompt+completion, in tokens (see long_examples)"
    )
    completion_only_loss: bool = Field(
        True, description="train on completion tokens only (prompt labels = -100), as PERsD does"
    )
    bf16: Optional[bool] = Field(
        None, description="bf16 mixed precision (default: on when CUDA supports it, off on CPU)"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward: less memory, ~25% slower"
    )
    seed: int = Field(42, description="seed for data order, dropout and LoRA initialisation")
    logging_steps: float = Field(10, gt=0, description="log loss every N optimizer steps")
    save_strategy: Strategy = Field(
        "steps", description="checkpoints: steps, epoch or no (no checkpoints means no resume)"
    )
    save_steps: float = Field(100, gt=0, description="checkpoint every N optimizer steps (save_strategy: steps)")
    save_total_limit: Optional[int] = Field(2, description="keep only the newest N checkpoints (null = all)")
    eval_strategy: Strategy = Field("epoch", description="when eval_file is set: steps, epoch or no")
    eval_steps: Optional[float] = Field(None, description="evaluate every N steps (eval_strategy: steps)")
    report_to: str = Field("none", description="experiment tracker (none, tensorboard, wandb, ...)")
    dataloader_num_workers: int = Field(0, description="data loader worker processes")
    num_threads: Optional[int] = Field(
        None, gt=0, description="CPU threads for torch (default: torch's choice; 1 helps on a busy machine)"
    )
    # --- ours: LoRA (PEFT LoraConfig names after the lora_ prefix)
    lora: bool = Field(False, description="train a LoRA adapter instead of all weights")
    lora_r: int = Field(16, gt=0, description="LoRA rank")
    lora_alpha: int = Field(32, gt=0, description="LoRA alpha (scale = alpha / r)")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA path")
    lora_target_modules: Union[list[str], str] = Field(
        "all-linear", description="modules to adapt: all-linear or a list (q_proj,v_proj)"
    )
    merge_lora: bool = Field(
        True, description="save final/ as a merged full model (loadable by iterkd eval); else the adapter"
    )
    # --- anything else SFTConfig accepts
    sft_args: dict = Field(
        default_factory=dict,
        description="other SFTConfig/TrainingArguments fields passed through, e.g. {eval_accumulation_steps: 2}",
    )

    @field_validator("save_strategy", "eval_strategy", mode="before")
    @classmethod
    def _no_is_no(cls, value):
        return "no" if value is False else value  # YAML 1.1 reads an unquoted `no` as false

    @field_validator("lora_target_modules", mode="before")
    @classmethod
    def _module_list(cls, value):
        if isinstance(value, str) and "," in value:
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            value = [str(v).strip() for v in value if str(v).strip()]
            if not value:
                raise ValueError("'lora_target_modules' is empty")
            return "all-linear" if value == ["all-linear"] else value
        return value.strip() if isinstance(value, str) else value

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, value: str) -> str:
        path = Path(value).expanduser() if value.strip() else None
        if path is not None and path.is_file():
            raise ValueError(f"output_dir {value} is a file; give a directory")
        if path is not None and path.exists() and not path.is_dir():
            raise ValueError(f"output_dir {value} exists and is not a directory")
        return value

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("must be > 0 or -1 (use epochs)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        for key in ("model", "train_file", "output_dir"):
            if not str(getattr(self, key) or "").strip():
                raise ValueError(f"'{key}' is required (set it in the YAML or as {key}=...)")
        clash = sorted(set(self.sft_args) & set(type(self).model_fields))
        if clash:
            raise ValueError(f"sft_args sets {', '.join(clash)}; set it as a top-level key instead")
        return self

    # ------------------------------------------------------------------------------------------ derived

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser()

    @property
    def final_dir(self) -> Path:
        return self.output_path / "final"

    def resolved(self) -> TrainConfig:
        """A copy with the automatic values filled in (learning rate by LoRA or not, bf16 by device)."""
        auto = {
            "learning_rate": self.learning_rate or (LORA_LR if self.lora else FULL_FT_LR),
            "bf16": _cuda_bf16() if self.bf16 is None else self.bf16,
        }
        return type(self)(**{**self.model_dump(), **auto})

    def save(self, path: Path) -> Path:
        import yaml

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = f"# Resolved training configuration written by `iterkd train` (rerun: iterkd train --objective {self.objective} --config THIS_FILE)\n"
        return atomic_write_text(
            path, header + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        )


def _cuda_bf16() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception:  # pragma: no cover - torch missing: training fails later with a clear message
        return False


# ---------------------------------------------------------------------------------------------- loading


def field_names() -> list[str]:
    return TrainConfig.field_names()


def describe_keys(cls: type[TrainConfig] | None = None, only_new: bool = False) -> str:
    """One line per key of ``cls`` (TrainConfig by default): name, default, help (for ``iterkd train --help``);
    ``only_new``: the keys a subclass adds to TrainConfig."""
    lines = []
    for name, f in (cls or TrainConfig).model_fields.items():
        if only_new and name in TrainConfig.model_fields:
            continue
        default = f.get_default(call_default_factory=True)
        if default == "":
            shown = "required"
        elif default is None:
            shown = "auto" if name in ("learning_rate", "bf16") else "none"
        else:
            shown = json.dumps(default)
        lines.append(f"{name} = {shown}: {f.description}")
    return "\n".join(lines)


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), cls: type[TrainConfig] | None = None
) -> TrainConfig:
    """Read the YAML file (optional), apply ``key=value`` overrides in order, validate; return the config (a
    ``cls``: TrainConfig by default, or a subclass such as ``PreferenceConfig``).

    Unknown keys (in the file or the overrides) raise UserError naming the key and the closest known keys.
    The automatic values (learning rate, bf16) are filled in later by :meth:`TrainConfig.resolved`.
    """
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path is not None:
        data = load_yaml(path)
        values.update({str(k): v for k, v in data.items()})
        origin.update({str(k): str(path) for k in data})
    for text in overrides:
        key, value = parse_override(text)
        key = key.replace("-", "_")
        values[key] = value
        origin[key] = f"override {text!r}"
    where = str(path) if path is not None else "training config"
    return validate_with_origin(cls or TrainConfig, values, origin, where)


def config_from_dict(data: dict, where: str = "training config") -> TrainConfig:
    """A validated TrainConfig from a mapping (e.g. the ``train:`` section of another YAML file), with the same
    typing and unknown-key errors as :func:`load_config`; ``where`` prefixes the error messages."""
    return TrainConfig.from_dict(data, where)
