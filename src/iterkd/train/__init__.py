"""The training stage: supervised fine-tuning of the student on TRL-ready prompt-completion JSONL, or preference
training on correct/faulty pairs (IterKD Stage I).

``load_config`` reads a YAML file plus ``key=value`` overrides into a ``TrainConfig`` (``objective="preference"``:
a ``PreferenceConfig``); ``train(config)`` runs TRL's ``SFTTrainer`` (completion-only loss, optional LoRA,
automatic resume), or its ``DPOTrainer`` for a ``PreferenceConfig``, and returns ``output_dir/final``, a model
directory that ``iterkd eval --model`` loads with the transformers backend.

Importing this package is cheap: torch / transformers / trl / peft are imported when training starts.
"""

from iterkd.errors import UserError
from iterkd.train.config import TrainConfig, config_from_dict, describe_keys
from iterkd.train.config import load_config as _load_config
from iterkd.train.data import read_rows
from iterkd.train.preference import PreferenceConfig

OBJECTIVES = {cls.objective: cls for cls in (TrainConfig, PreferenceConfig)}


def load_config(path=None, overrides=(), objective: str = "sft") -> TrainConfig:
    """The training config of ``objective`` (``sft`` or ``preference``) from a YAML file and overrides."""
    if objective not in OBJECTIVES:
        raise UserError(f"unknown training objective {objective!r}; choose {' or '.join(OBJECTIVES)}")
    return _load_config(path, overrides, OBJECTIVES[objective])


def train(config, model=None, tokenizer=None):
    """See :func:`iterkd.train.sft.train`; a ``PreferenceConfig`` goes to
    :func:`iterkd.train.preference.train_preference`."""
    if isinstance(config, PreferenceConfig):
        from iterkd.train.preference import train_preference

        return train_preference(config, model=model, tokenizer=tokenizer)
    from iterkd.train.sft import train as _train

    return _train(config, model=model, tokenizer=tokenizer)


def build_trainer(config, model=None, tokenizer=None):
    """See :func:`iterkd.train.sft.build_trainer`."""
    from iterkd.train.sft import build_trainer as _build

    return _build(config, model=model, tokenizer=tokenizer)


__all__ = ["OBJECTIVES", "PreferenceConfig", "TrainConfig", "build_trainer", "config_from_dict", "describe_keys",
           "load_config", "read_rows", "train"]  # fmt: skip
