"""Contrastive training for IterKD Stage I: rank the correct answer above the faulty one with TRL's
``DPOTrainer``, keeping an NLL term on the correct answer so that both log-probabilities do not fall together.

``PreferenceConfig`` is ``TrainConfig`` plus TRL's ``DPOConfig`` names: ``beta``, ``loss_type`` (default
``[sigmoid, sft]``: DPO's loss plus the NLL of the chosen answer, the RPO form), ``loss_weights`` (default
``[1.0, 1.0]``; the second is the NLL weight, RPO's alpha), ``precompute_ref_log_probs`` (default true: the
frozen reference model's log-probs are computed once before training instead of at every step, which saves a
forward pass per step on a CPU). ``loss_type: [sft]`` is the SFT-only ablation on the same rows.

Rows: TRL's conversational preference format, ``{prompt: [messages], chosen: [assistant], rejected:
[assistant]}`` (``iterkd.methods.pairs`` writes them); other keys are metadata and ignored. Checkpoints,
resume, LoRA (the reference is the adapter-free model) and the saved ``final/`` work as in ``iterkd train``, also
under ``accelerate launch ... -m iterkd train --objective preference`` (several processes, the same effective batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Optional

from pydantic import Field, field_validator

from iterkd.errors import UserError
from iterkd.io import atomic_write_json, atomic_write_lines, read_jsonl
from iterkd.train.config import TRL_FIELDS, TrainConfig

PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust", "sft")


class PreferenceConfig(TrainConfig):
    where: ClassVar[str] = "preference training config"
    objective: ClassVar[str] = "preference"

    beta: float = Field(0.1, gt=0, description="DPO's beta: how far the policy may move from the reference")
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid", "sft"], description="TRL loss types, summed")
    loss_weights: Optional[list[float]] = Field(default_factory=lambda: [1.0, 1.0], description="one per loss type")
    precompute_ref_log_probs: bool = Field(True, description="reference log-probs computed once, before training")

    @field_validator("loss_type")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v not in LOSS_TYPES]
        if not value or bad:
            raise ValueError(f"must be a non-empty list of {', '.join(LOSS_TYPES)}, got {value}")
        return value


def read_pairs(path: str) -> list[dict]:
    """The preference rows of ``path`` (metadata dropped); UserError naming the file and line of a bad row."""
    rows = []
    for lineno, row in read_jsonl(Path(path)):
        for key in PREFERENCE_KEYS:
            if not isinstance(row.get(key), list) or not row[key]:
                raise UserError(f"{path}:{lineno}: {key!r} must be a non-empty list of chat messages")
        rows.append({k: row[k] for k in PREFERENCE_KEYS})
    if not rows:
        raise UserError(f"{path}: contains no preference rows")
    return rows


def pairs_dataset(rows: list[dict], out: Path):
    """The rows as a dataset backed by files under ``out/pairs_dataset/``. TRL stores the precomputed reference
    log-probs next to the dataset's files under a name rank 0 chooses; an in-memory dataset would put them in a
    temporary directory of each process, where the other ranks of an ``accelerate launch`` do not find them."""
    import datasets

    data = atomic_write_lines(out / "pairs_dataset" / "pairs.jsonl", rows)  # every rank writes the same bytes
    return datasets.load_dataset("json", data_files=str(data), split="train", cache_dir=str(data.parent / "cache"))


def dpo_config(cfg: PreferenceConfig):
    from trl import DPOConfig

    from iterkd.train.sft import _cuda, accumulation_per_process

    kwargs = {name: getattr(cfg, name) for name in TRL_FIELDS if name != "completion_only_loss"}
    kwargs.update(output_dir=str(cfg.output_path), max_length=cfg.max_length, bf16=bool(cfg.bf16), beta=cfg.beta,
                  loss_type=cfg.loss_type, loss_weights=cfg.loss_weights,
                  precompute_ref_log_probs=cfg.precompute_ref_log_probs,
                  # the effective batch of the config, whatever the process count (as in iterkd train)
                  gradient_accumulation_steps=accumulation_per_process(cfg.gradient_accumulation_steps),
                  use_cpu=not _cuda(), dataloader_pin_memory=_cuda(), **cfg.sft_args)  # fmt: skip
    try:
        return DPOConfig(**kwargs)
    except (ValueError, TypeError) as e:
        raise UserError(f"invalid preference training settings: {e}") from e


def train_preference(config: PreferenceConfig, model=None, tokenizer=None):
    """Train on the preference rows of ``config.train_file``; return ``output_dir/final`` (resumes from the newest
    checkpoint like ``iterkd train``, and runs under ``accelerate launch`` the same way: only rank 0 writes).
    Writes ``train_config.yaml`` and ``train_summary.json``."""
    from iterkd.train import sft

    rows = read_pairs(config.train_file)  # data mistakes surface before the heavy imports
    sft.accumulation_per_process(config.gradient_accumulation_steps)  # and a batch that does not split over processes
    sft._import_stack()
    from trl import DPOTrainer

    cfg = config.resolved()
    if model is None:
        model, tokenizer, _ = sft.load_model_and_tokenizer(cfg)
    trainer = DPOTrainer(model=model, args=dpo_config(cfg), train_dataset=pairs_dataset(rows, cfg.output_path),
                         processing_class=tokenizer, peft_config=sft._peft_config(cfg) if cfg.lora else None)  # fmt: skip
    done = sft.fit(trainer, cfg, f"{cfg.model}: {len(rows)} preference pairs, loss {'+'.join(cfg.loss_type)}, "
                             f"beta {cfg.beta:g}, lr {cfg.learning_rate:g}")  # fmt: skip
    if not done.main:
        return done.final
    summary = {
        "pairs": len(rows),
        "global_step": trainer.state.global_step,
        "session_steps": done.session_steps,
        "resumed_from": done.resumed_from.name if done.resumed_from else None,
        "train_loss": done.result.training_loss,
        "log_history": [h for h in trainer.state.log_history if "loss" in h],
        "final": done.final.name,
        **sft.process_summary(trainer),
    }
    atomic_write_json(cfg.output_path / sft.SUMMARY_FILENAME, summary)
    return done.final
