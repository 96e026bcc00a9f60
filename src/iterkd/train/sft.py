"""Supervised fine-tuning of the student with TRL's ``SFTTrainer`` (full weights or LoRA).

How TRL 1.16 treats our rows (``trl/trainer/sft_trainer.py``, ``_prepare_dataset``): a prompt-completion row is
tokenized twice, the prompt alone (chat rows: ``apply_chat_template(prompt, add_generation_prompt=True)``) and
prompt + completion; the tokens past their common prefix form the completion, and with
``completion_only_loss=True`` the ``labels`` of every prompt token are -100 (built during dataset preparation,
so ``trainer.train_dataset`` already holds ``input_ids`` and ``labels``). Plain-text rows get the tokenizer's EOS
appended to the completion; chat rows end with the template's end-of-turn token (e.g. ``<|im_end|>``), which is
inside the completion and therefore trained.

Examples longer than ``max_length`` are dropped by default (``long_examples: drop``) rather than truncated, so the
student never learns cut-off code; ``long_examples: truncate`` keeps TRL's behaviour (keep the start).

Run directory (``output_dir``)::

    train_config.yaml     the resolved configuration (automatic values filled in)
    checkpoint-N/         Trainer checkpoints (model, optimizer, scheduler, RNG); the newest is resumed from
    train_summary.json    steps, loss, runtime, tokens/s of the last invocation
    final/                the trained model + tokenizer (LoRA: merged into a full model when merge_lora)

Torch, transformers, TRL and PEFT are imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import shutil
import sys
import time
from pathlib import Path

from iterkd.errors import UserError
from iterkd.io import atomic_write_json
from iterkd.train.config import CONFIG_FILENAME, TRL_FIELDS, TrainConfig
from iterkd.train.data import CHAT, read_rows

SUMMARY_FILENAME = "train_summary.json"


def _log(msg: str) -> None:
    if is_main_process():
        print(f"iterkd train: {msg}", file=sys.stderr, flush=True)


def _import_stack():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import trl  # noqa: F401
    except ImportError as e:
        raise UserError(
            f"training needs torch, transformers, trl, peft and datasets ({e.name} is missing): "
            "pip install -r requirements-models.txt"
        ) from e


def load_model_and_tokenizer(cfg: TrainConfig):
    """Load ``cfg.model`` (through the registry: GGUF files are de-quantised into transformers; a registry model
    once, then from its cached transformers directory, models/dequantize.py) for training.

    Returns ``(model, tokenizer, ref)``. The tokenizer gets a pad token (its EOS when it has none) and right
    padding."""
    import torch
    import transformers

    from iterkd.models.dequantize import transformers_ref
    from iterkd.models.registry import resolve

    ref = resolve(cfg.model)
    src = transformers_ref(ref)
    kw = {"gguf_file": src.gguf_file} if src.gguf_file else {}
    model_kw = dict(kw)
    if src.gguf_file:
        # Unpack every GGUF block into dense weights; without dequantize=True transformers marks the model as
        # quantized (not trainable, not saveable) even when its layers are plain Linear layers.
        model_kw["quantization_config"] = transformers.GgufConfig(dequantize=True)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(src.location, **kw)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            src.location, dtype=getattr(torch, cfg.dtype), **model_kw
        )
    except (OSError, ValueError) as e:
        raise UserError(f"transformers could not load {src.location}: {e}") from e
    if getattr(model, "is_quantized", False):
        raise UserError(f"{ref.name}: transformers loaded it as a quantized model, which cannot be fine-tuned")
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise UserError(f"{ref.name}: the tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return model, tokenizer, ref


def _peft_config(cfg: TrainConfig):
    try:
        from peft import LoraConfig
    except ImportError as e:
        raise UserError("lora: true needs peft: pip install -r requirements-models.txt") from e
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def sft_config(cfg: TrainConfig):
    """The TRL ``SFTConfig`` for a resolved TrainConfig (UserError for bad values or unknown ``sft_args``)."""
    from trl import SFTConfig

    known = {f.name for f in dataclasses.fields(SFTConfig)}
    for key in cfg.sft_args:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise UserError(f"training config: sft_args key {key!r} is not an SFTConfig field{hint}")
    packing = bool(cfg.sft_args.get("packing", False))
    kwargs = {name: getattr(cfg, name) for name in TRL_FIELDS}  # same names, same meaning
    kwargs.update(
        gradient_accumulation_steps=accumulation_per_process(cfg.gradient_accumulation_steps),
        use_cpu=not _cuda(),  # several CPU processes (torchrun / accelerate launch): gloo, not nccl
        output_dir=str(cfg.output_path),
        # "drop": TRL keeps whole sequences and we drop the long ones after tokenization (packing needs the length)
        max_length=cfg.max_length if (cfg.long_examples == "truncate" or packing) else None,
        bf16=bool(cfg.bf16),
        fp16=False,
        eval_strategy=cfg.eval_strategy if cfg.eval_file else "no",
        dataloader_pin_memory=_cuda(),
        include_num_input_tokens_seen="non_padding",
    )
    kwargs.update(cfg.sft_args)
    try:
        return SFTConfig(**kwargs)
    except (ValueError, TypeError) as e:
        raise UserError(f"invalid training settings: {e}") from e


def world_size() -> int:
    """How many training processes run this job (``WORLD_SIZE``, set by ``accelerate launch`` / torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_main_process() -> bool:
    """Rank 0 of a multi-process job (or the only process): the one that writes run-directory files."""
    return os.environ.get("RANK", "0") == "0"


def accumulation_per_process(steps: int) -> int:
    """``gradient_accumulation_steps`` as each of ``world_size()`` processes runs it, so that the effective batch
    (per-device batch x accumulation x processes) stays the one the config names for a single process."""
    world = world_size()
    if steps % world:
        raise UserError(
            f"gradient_accumulation_steps={steps} is not divisible by the {world} training processes: the effective "
            f"batch (per_device_train_batch_size x gradient_accumulation_steps) is kept when the process count "
            f"changes; choose a multiple of {world}"
        )
    return steps // world


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(rows)


def _drop_long(ds, max_length: int, source: str, what: str):
    """Keep the tokenized examples of at most ``max_length`` tokens; UserError when none is left."""
    lengths = [len(ids) for ids in ds["input_ids"]]
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    if not keep:
        raise UserError(
            f"{source}: all {len(lengths)} {what} examples are longer than max_length={max_length} tokens "
            f"(shortest: {min(lengths)} tokens); raise max_length or shorten the examples"
        )
    if len(keep) < len(lengths):
        _log(
            f"dropped {len(lengths) - len(keep)} of {len(lengths)} {what} examples longer than max_length={max_length} tokens"
        )
        ds = ds.select(keep)
    return ds, len(lengths) - len(keep)


def build_trainer(cfg: TrainConfig, model=None, tokenizer=None):
    """Read the data, load the model (unless given) and build the ``SFTTrainer`` with tokenized, label-masked
    datasets (``trainer.train_dataset`` rows hold ``input_ids`` and ``labels``). ``cfg`` is resolved here.

    Returns ``(trainer, resolved_config, info)``; ``info`` records the model reference, data format, example counts and the
    number of examples dropped as too long."""
    rows, fmt = read_rows(cfg.train_file, "train_file")  # data mistakes surface before the heavy imports
    accumulation_per_process(cfg.gradient_accumulation_steps)  # and a batch that does not split over processes
    eval_rows = None
    if cfg.eval_file:
        eval_rows, eval_fmt = read_rows(cfg.eval_file, "eval_file")
        if eval_fmt != fmt:
            raise UserError(
                f"{cfg.eval_file}: its rows are in another format than {cfg.train_file} (one is conversational)"
            )
    _import_stack()
    import torch

    cfg = cfg.resolved()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    ref = None
    if model is None:
        model, tokenizer, ref = load_model_and_tokenizer(cfg)
    elif tokenizer is None:
        raise UserError("build_trainer: a model passed in needs its tokenizer")
    if fmt == CHAT and not getattr(tokenizer, "chat_template", None):
        raise UserError(
            f"{cfg.model}: the tokenizer has no chat template, but {cfg.train_file} is conversational; "
            "use a chat/instruct model or plain-text prompt/completion rows"
        )
    args = sft_config(cfg)
    peft_config = _peft_config(cfg) if cfg.lora else None

    from trl import SFTTrainer

    try:
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=_dataset(rows),
            eval_dataset=_dataset(eval_rows) if eval_rows else None,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    except ValueError as e:
        raise UserError(f"could not set up training: {e}") from e
    dropped = 0
    if args.max_length is None:
        trainer.train_dataset, dropped = _drop_long(trainer.train_dataset, cfg.max_length, cfg.train_file, "training")
        if trainer.eval_dataset is not None:
            trainer.eval_dataset, _ = _drop_long(trainer.eval_dataset, cfg.max_length, cfg.eval_file, "evaluation")
    else:
        if len(trainer.train_dataset) == 0:
            raise UserError(
                f"{cfg.train_file}: every prompt fills max_length={cfg.max_length} tokens, nothing left to train on; "
                "raise max_length"
            )
        dropped = len(rows) - len(trainer.train_dataset)
    info = {
        "model": ref.name if ref is not None else getattr(model.config, "name_or_path", ""),
        "format": fmt,
        "examples": len(trainer.train_dataset),
        "dropped_long": dropped,
        "eval_examples": len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0,
        "trained_tokens_per_epoch": int(
            sum(sum(1 for t in lab if t != -100) for lab in trainer.train_dataset["labels"])
        ),
        "tokens_per_epoch": int(sum(len(ids) for ids in trainer.train_dataset["input_ids"])),
    }
    return trainer, cfg, info


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest ``checkpoint-N`` directory of a run, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(output_dir)
    if not out.is_dir():
        return None
    found = get_last_checkpoint(str(out))
    return Path(found) if found else None


def _save_final(trainer, tokenizer, cfg: TrainConfig, main: bool = True) -> Path:
    """Save the trained model and tokenizer to ``final/`` (through ``final.tmp`` and a rename); ``main``: this
    process writes (rank 0). DeepSpeed: every rank calls ``trainer.save_model``, which gathers the 16-bit weights
    (rank 0 writes them); LoRA is then saved as an adapter (merging needs the whole model in one process)."""
    final = cfg.final_dir
    tmp = final.with_name(final.name + ".tmp")
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    if getattr(trainer, "is_deepspeed_enabled", False):  # ZeRO-3 shards the weights: every rank joins the save
        trainer.accelerator.wait_for_everyone()
        trainer.save_model(str(tmp))
    elif main:
        model = trainer.model
        if cfg.lora and cfg.merge_lora:
            model = model.merge_and_unload()
        if hasattr(model, "config"):
            model.config.use_cache = True
        model.save_pretrained(str(tmp))
    if main:
        tokenizer.save_pretrained(str(tmp))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    return final


@dataclasses.dataclass
class Fitted:
    """What :func:`fit` hands back: TRL's train output, the checkpoint resumed from, the saved model directory,
    whether this process is rank 0 (the one that writes run-directory files) and the steps of this invocation."""

    result: object
    resumed_from: Path | None
    final: Path
    main: bool
    session_steps: int


def fit(trainer, cfg: TrainConfig, describe: str) -> Fitted:
    """Run a built TRL trainer as every iterkd training does: rank 0 saves the resolved config, training resumes
    from the newest checkpoint of ``output_dir``, ``final/`` is saved and every rank waits until it is on disk
    (several processes under ``accelerate launch``). ``describe`` is the one-line start message."""
    out = cfg.output_path
    main = trainer.is_world_process_zero()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / CONFIG_FILENAME)
    resume = last_checkpoint(out)
    per_process = trainer.args.gradient_accumulation_steps
    _log(
        describe
        + f", effective batch {cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps}"
        + (f" ({world_size()} processes x {per_process} accumulated)" if world_size() > 1 else "")
        + (f"; resuming from {resume.name}" if resume else "")
    )
    try:
        result = trainer.train(resume_from_checkpoint=True if resume else None)
    except ValueError as e:  # e.g. a checkpoint written by an incompatible run
        raise UserError(f"training failed: {e}") from e
    final = _save_final(trainer, trainer.processing_class, cfg, main)
    trainer.accelerator.wait_for_everyone()  # the other ranks return once the model is on disk
    steps = trainer.state.global_step - (int(resume.name.rsplit("-", 1)[-1]) if resume else 0)
    return Fitted(result, resume, final, main, steps)


def process_summary(trainer) -> dict:
    """The summary keys that say how the job ran: device, process count, accumulation per process."""
    return {
        "device": str(trainer.args.device),
        "processes": world_size(),
        "gradient_accumulation_steps_per_process": trainer.args.gradient_accumulation_steps,
    }


def train(config: TrainConfig, model=None, tokenizer=None) -> Path:
    """Fine-tune the student as ``config`` says and return ``output_dir/final``.

    Resumes from the newest checkpoint in ``output_dir`` when there is one (a rerun with a larger ``max_steps``
    continues the step count). ``model``/``tokenizer``: an already loaded transformers model to train instead
    of loading ``config.model`` (it is trained in place). Writes ``train_config.yaml`` (resolved) before
    training and ``train_summary.json`` after.
    """
    trainer, cfg, info = build_trainer(config, model=model, tokenizer=tokenizer)
    began = time.perf_counter()
    done = fit(
        trainer,
        cfg,
        f"{info['model']}: {info['examples']} {info['format']} examples "
        f"({info['tokens_per_epoch']} tokens, {info['trained_tokens_per_epoch']} trained), "
        f"{'LoRA r=' + str(cfg.lora_r) if cfg.lora else 'full fine-tuning'}, lr {cfg.learning_rate:g}, "
        f"{'bf16' if cfg.bf16 else cfg.dtype}",
    )
    if not done.main:
        return done.final
    state, result = trainer.state, done.result
    tokens = int(state.num_input_tokens_seen - getattr(trainer, "_initial_num_input_tokens_seen", 0))
    runtime = float(result.metrics.get("train_runtime", time.perf_counter() - began))
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    eval_losses = [h["eval_loss"] for h in state.log_history if "eval_loss" in h]
    summary = {
        **info,
        "final": done.final.name,  # relative to output_dir
        "resumed_from": done.resumed_from.name if done.resumed_from else None,  # relative to output_dir
        "global_step": state.global_step,
        "session_steps": done.session_steps,
        "train_loss": result.training_loss if math.isfinite(result.training_loss) else None,
        "last_logged_loss": losses[-1] if losses else None,
        "eval_loss": eval_losses[-1] if eval_losses else None,
        "train_runtime_s": round(runtime, 2),
        "steps_per_second": round(done.session_steps / runtime, 4) if runtime > 0 else None,
        "tokens_seen": tokens,
        "tokens_per_second": round(tokens / runtime, 1) if runtime > 0 else None,
        **process_summary(trainer),
    }
    atomic_write_json(cfg.output_path / SUMMARY_FILENAME, summary, indent=2)
    _log(
        f"{done.session_steps} steps in {runtime:.1f}s ({summary['tokens_per_second']} tokens/s), "
        f"global step {state.global_step}, loss {summary['train_loss']}; model saved to {done.final}"
    )
    return done.final
