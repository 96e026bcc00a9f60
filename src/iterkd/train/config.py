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

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from iterkd.errors import UserError

FULL_FT_LR = 2e-5
LORA_LR = 2e-4
LONG_EXAMPLE_POLICIES = ("drop", "truncate")
CONFIG_FILENAME = "train_config.yaml"


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainConfig:
    # --- ours: what to train on what
    model: str = _f("", "student: registry name (iterkd models list), .gguf file, model directory or HF hub id")
    train_file: str = _f("", "training JSONL: {prompt, completion} rows, strings or chat messages (TRL format)")
    eval_file: Optional[str] = _f(None, "optional evaluation JSONL in the same format (eval loss per eval_strategy)")
    output_dir: str = _f("", "run directory: checkpoints, train_config.yaml, train_summary.json, final/")
    dtype: str = _f("float32", "dtype of the weights being trained (float32 or bfloat16); bf16 is autocast on top")
    long_examples: str = _f("drop", "examples longer than max_length: drop (never train on cut code) or truncate")
    # --- TRL SFTConfig / TrainingArguments names
    learning_rate: Optional[float] = _f(None, "peak learning rate (default 2e-5 full fine-tuning, 2e-4 LoRA)")
    num_train_epochs: float = _f(2.0, "epochs over the training file (ignored when max_steps > 0)")
    max_steps: int = _f(-1, "optimizer steps to run; -1 = use num_train_epochs")
    per_device_train_batch_size: int = _f(1, "sequences per forward pass")
    per_device_eval_batch_size: int = _f(4, "sequences per forward pass during evaluation")
    gradient_accumulation_steps: int = _f(8, "forward passes per optimizer step (effective batch = this x batch)")
    lr_scheduler_type: str = _f("cosine", "linear, cosine, constant, constant_with_warmup, ...")
    warmup_steps: float = _f(0.03, "linear warm-up: steps, or a fraction of all steps when < 1 (TRL's warmup_ratio)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping norm")
    optim: str = _f("adamw_torch", "optimizer name (transformers' optim values)")
    max_length: int = _f(1024, "longest tokenized prompt+completion, in tokens (see long_examples)")
    completion_only_loss: bool = _f(True, "train on completion tokens only (prompt labels = -100), as PERsD does")
    bf16: Optional[bool] = _f(None, "bf16 mixed precision (default: on when CUDA supports it, off on CPU)")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward: less memory, ~25% slower")
    seed: int = _f(42, "seed for data order, dropout and LoRA initialisation")
    logging_steps: float = _f(10, "log loss every N optimizer steps")
    save_strategy: str = _f("steps", "checkpoints: steps, epoch or no (no checkpoints means no resume)")
    save_steps: float = _f(100, "checkpoint every N optimizer steps (save_strategy: steps)")
    save_total_limit: Optional[int] = _f(2, "keep only the newest N checkpoints (null = all)")
    eval_strategy: str = _f("epoch", "when eval_file is set: steps, epoch or no")
    eval_steps: Optional[float] = _f(None, "evaluate every N steps (eval_strategy: steps)")
    report_to: str = _f("none", "experiment tracker (none, tensorboard, wandb, ...)")
    dataloader_num_workers: int = _f(0, "data loader worker processes")
    num_threads: Optional[int] = _f(None, "CPU threads for torch (default: torch's choice; 1 helps on a busy machine)")
    # --- ours: LoRA (PEFT LoraConfig names after the lora_ prefix)
    lora: bool = _f(False, "train a LoRA adapter instead of all weights")
    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: int = _f(32, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = _f(0.05, "dropout on the LoRA path")
    lora_target_modules: Union[list, str] = _f("all-linear", "modules to adapt: all-linear or a list (q_proj,v_proj)")
    merge_lora: bool = _f(True, "save final/ as a merged full model (loadable by iterkd eval); else the adapter")
    # --- anything else SFTConfig accepts
    sft_args: dict = _f({}, "other SFTConfig/TrainingArguments fields passed through, e.g. {eval_accumulation_steps: 2}")

    # ------------------------------------------------------------------------------------------ derived

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser()

    @property
    def final_dir(self) -> Path:
        return self.output_path / "final"

    def validate(self) -> "TrainConfig":
        """Raise UserError for missing required keys and out-of-range values."""
        for key in ("model", "train_file", "output_dir"):
            if not str(getattr(self, key) or "").strip():
                raise UserError(f"training config: '{key}' is required (set it in the YAML or as {key}=...)")
        positive = (
            "num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size",
            "gradient_accumulation_steps", "max_length", "logging_steps", "save_steps", "lora_r", "lora_alpha",
        )  # fmt: skip
        for key in positive:
            if getattr(self, key) <= 0:
                raise UserError(f"training config: '{key}' must be > 0, got {getattr(self, key)}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise UserError(f"training config: 'learning_rate' must be > 0, got {self.learning_rate}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise UserError(f"training config: 'max_steps' must be > 0 or -1 (use epochs), got {self.max_steps}")
        if self.num_threads is not None and self.num_threads <= 0:
            raise UserError(f"training config: 'num_threads' must be > 0, got {self.num_threads}")
        if self.warmup_steps < 0:
            raise UserError(f"training config: 'warmup_steps' must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.lora_dropout < 1:
            raise UserError(f"training config: 'lora_dropout' must be in [0, 1), got {self.lora_dropout}")
        if self.long_examples not in LONG_EXAMPLE_POLICIES:
            raise UserError(
                f"training config: 'long_examples' must be one of {', '.join(LONG_EXAMPLE_POLICIES)}, got {self.long_examples!r}"
            )
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise UserError(f"training config: 'dtype' must be float32, bfloat16 or float16, got {self.dtype!r}")
        for key in ("save_strategy", "eval_strategy"):
            if getattr(self, key) not in ("steps", "epoch", "no"):
                raise UserError(f"training config: '{key}' must be steps, epoch or no, got {getattr(self, key)!r}")
        if isinstance(self.lora_target_modules, list) and not self.lora_target_modules:
            raise UserError("training config: 'lora_target_modules' is empty")
        clash = sorted(set(self.sft_args) & {f.name for f in dataclasses.fields(self)})
        if clash:
            raise UserError(f"training config: sft_args sets {', '.join(clash)}; set it as a top-level key instead")
        return self

    def resolved(self) -> "TrainConfig":
        """A copy with the automatic values filled in (learning rate by LoRA or not, bf16 by device)."""
        out = dataclasses.replace(self, sft_args=dict(self.sft_args))
        if out.learning_rate is None:
            out.learning_rate = LORA_LR if out.lora else FULL_FT_LR
        if out.bf16 is None:
            out.bf16 = _cuda_bf16()
        if isinstance(out.lora_target_modules, list) and out.lora_target_modules == ["all-linear"]:
            out.lora_target_modules = "all-linear"
        return out.validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> Path:
        import yaml

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "# Resolved training configuration written by `iterkd train` (rerun: iterkd train --config THIS_FILE)\n"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(header + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None))
        tmp.replace(path)
        return path


def _cuda_bf16() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception:  # pragma: no cover - torch missing: training fails later with a clear message
        return False


# ---------------------------------------------------------------------------------------------- loading

_TYPES = None


def _field_types() -> dict[str, Any]:
    global _TYPES
    if _TYPES is None:
        _TYPES = typing.get_type_hints(TrainConfig)
    return _TYPES


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def describe_keys() -> str:
    """One line per key: name, default, help (for ``iterkd train --help``)."""
    lines = []
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if default == "":
            shown = "required"
        elif default is None:
            shown = "auto" if f.name in ("learning_rate", "bf16") else "none"
        else:
            shown = json.dumps(default)
        lines.append(f"{f.name} = {shown}: {f.metadata['help']}")
    return "\n".join(lines)


def _unknown(key: str, where: str) -> UserError:
    close = difflib.get_close_matches(key, field_names(), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; see `iterkd train --help` for the keys"
    return UserError(f"{where}: unknown training config key {key!r}{hint}")


def _coerce(key: str, value: Any, where: str) -> Any:
    """Convert ``value`` (from YAML) to the declared type of field ``key``; UserError when impossible."""
    tp = _field_types()[key]
    args = typing.get_args(tp)
    optional = type(None) in args
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none") and optional):
        if optional:
            return None
        raise UserError(f"{where}: '{key}' cannot be null")
    if typing.get_origin(tp) is Union:
        choices = [a for a in args if a is not type(None)]
    else:
        choices = [tp]

    def bad(expected: str) -> UserError:
        return UserError(f"{where}: '{key}' must be {expected}, got {value!r}")

    for t in choices:
        if t is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
                return value.strip().lower() in ("true", "yes", "1", "on")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise bad("true or false")
        if t is int:
            if isinstance(value, bool):
                raise bad("an integer")
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                try:
                    return int(value.strip())
                except ValueError:
                    try:
                        f = float(value.strip())
                    except ValueError:
                        raise bad("an integer") from None
                    if f.is_integer():
                        return int(f)
            raise bad("an integer")
        if t is float:
            if isinstance(value, bool):
                raise bad("a number")
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):  # YAML 1.1 reads 2e-5 (no dot) as a string
                try:
                    return float(value.strip())
                except ValueError:
                    raise bad("a number") from None
            raise bad("a number")
        if t is dict:
            if isinstance(value, dict):
                return dict(value)
            raise bad("a mapping, e.g. {eval_steps: 50}")
        if t is list:
            if isinstance(value, (list, tuple)):
                items = [str(v).strip() for v in value]
            elif isinstance(value, str) and len(choices) == 2 and "," not in value:
                return value.strip()  # the string alternative (e.g. all-linear)
            elif isinstance(value, str):
                items = [v.strip() for v in value.split(",")]
            else:
                raise bad("a list of names")
            items = [v for v in items if v]
            if not items:
                raise bad("a non-empty list of names")
            return items
        if t is str:
            if isinstance(value, bool) and key.endswith("_strategy") and not value:
                return "no"  # YAML 1.1 reads an unquoted `no` as false
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return str(value)
            raise bad("a string")
    raise bad(" or ".join(getattr(c, "__name__", str(c)) for c in choices))  # pragma: no cover


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, typed value); the value is read as YAML (``[a, b]``, ``{k: v}``, ``null``...)."""
    import yaml

    if "=" not in text:
        raise UserError(f"override {text!r}: expected key=value (e.g. max_steps=100)")
    key, _, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if key not in field_names():
        raise _unknown(key, f"override {text!r}")
    if _field_types()[key] is str:
        return key, _coerce(key, raw.strip(), f"override {text!r}")  # strings exactly as typed (no YAML 'no' -> false)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # an unquoted string YAML cannot read: keep it verbatim
    if isinstance(value, (dict, list)) or value is None or isinstance(value, (bool, int, float)):
        pass
    else:
        value = raw.strip()  # keep strings exactly as typed (YAML would rewrite e.g. dates)
    return key, _coerce(key, value, f"override {text!r}")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read the YAML file (optional), apply ``key=value`` overrides in order, validate; return the config.

    Unknown keys (in the file or the overrides) raise UserError naming the key and the closest known keys.
    The automatic values (learning rate, bf16) are filled in later by :meth:`TrainConfig.resolved`.
    """
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise UserError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{path}: cannot read: {e}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping of training config keys, got {type(data).__name__}")
        values.update(_typed(data, str(path)))
    for text in overrides:
        key, value = parse_override(text)
        values[key] = value
    return TrainConfig(**values).validate()


def _typed(data: dict, where: str) -> dict[str, Any]:
    values = {}
    for key, value in data.items():
        key = str(key)
        if key not in field_names():
            raise _unknown(key, where)
        values[key] = _coerce(key, value, f"{where}: {key}")
    return values


def config_from_dict(data: dict, where: str = "training config") -> TrainConfig:
    """A validated TrainConfig from a mapping (e.g. the ``train:`` section of another YAML file), with the same
    typing and unknown-key errors as :func:`load_config`; ``where`` prefixes the error messages."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of training config keys, got {type(data).__name__}")
    return TrainConfig(**_typed(data, where)).validate()
