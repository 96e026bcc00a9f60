"""The training stage: supervised fine-tuning of the student on TRL-ready prompt-completion JSONL.

``load_config`` reads a YAML file plus ``key=value`` overrides into a ``TrainConfig``; ``train(config)`` runs TRL's
``SFTTrainer`` (completion-only loss, optional LoRA, automatic resume) and returns ``output_dir/final``, a model
directory that ``iterkd eval --model`` loads with the transformers backend.

Importing this package is cheap: torch / transformers / trl / peft are imported when training starts.
"""

from iterkd.train.config import TrainConfig, config_from_dict, describe_keys, load_config
from iterkd.train.data import read_rows


def train(config, model=None, tokenizer=None):
    """See :func:`iterkd.train.sft.train`."""
    from iterkd.train.sft import train as _train

    return _train(config, model=model, tokenizer=tokenizer)


def build_trainer(config, model=None, tokenizer=None):
    """See :func:`iterkd.train.sft.build_trainer`."""
    from iterkd.train.sft import build_trainer as _build

    return _build(config, model=model, tokenizer=tokenizer)


__all__ = ["TrainConfig", "build_trainer", "config_from_dict", "describe_keys", "load_config", "read_rows", "train"]
