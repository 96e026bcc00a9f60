"""``IterKDConfig``: the ``iterkd:`` section of a distill config (read by ``iterkd.pipeline.iterkd``)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional

from pydantic import Field

from iterkd.config import ConfigModel


class Budget(ConfigModel):
    """Teacher tokens (prompt + completion, the judge's included) a round and the whole run may spend, counted
    from the stage records on disk (so a resumed run means the same budget); None = no limit. Reaching one
    stops the run cleanly (exit 3); rerun with a higher budget to go on from there."""

    where: ClassVar[str] = "iterkd.budget"

    round_tokens: Optional[int] = Field(None, gt=0)
    run_tokens: Optional[int] = Field(None, gt=0)


class IterKDConfig(ConfigModel):
    """The ``iterkd:`` section of a distill config (all our choices where the paper is silent)."""

    where: ClassVar[str] = "iterkd"

    rounds: int = Field(2, ge=1)
    n_faulty: int = Field(1, ge=1)
    fault_prompt: Literal["ask", "mutate"] = "ask"  # mutate: a minimal change of the teacher's own correct answer
    reveal: Literal["strip", "drop", "keep"] = "strip"
    negatives: Literal["teacher", "student", "both"] = "both"
    loss: Literal["dpo", "sft"] = "dpo"  # dpo: TRL loss_type [sigmoid, sft]; sft: [sft] only (the ablation)
    beta: float = Field(0.1, gt=0)
    nll_weight: float = Field(1.0, ge=0)  # the weight of the NLL on the correct answer (RPO's alpha)
    judge: bool = True
    judge_variant: Literal["plain", "trace"] = "plain"
    judge_in_buckets: bool = False  # the judge is measured every round; buckets use it only when this is true
    judge_max_tokens: int = Field(384, ge=16)
    easy_min: float = Field(5.0, ge=0, le=6)
    hard_max: float = Field(3.0, ge=0, le=6)
    # new questions asked per seed of each bucket (a bucket left out: 1; 0: none for that bucket)
    per_seed: dict[Literal["easy", "medium", "hard"], Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {"easy": 1, "medium": 1, "hard": 2}
    )
    question_temperature: float = Field(0.7, ge=0)
    question_max_tokens: int = Field(512, ge=64)
    # near-duplicates of the pool and earlier questions: words2 / words = methods.dedup (paraphrase-aware, statement
    # words of version 2 / 1; threshold 0.8 chosen on hand-labelled pairs, experiments/iterkd-mini/dedup/),
    # minhash = word 5-grams of the text (the first one)
    dedup: Literal["words2", "words", "minhash"] = "words2"
    dedup_threshold: float = Field(0.8, gt=0, le=1)
    keep_hard_seeds: bool = True
    train_from: Literal["previous", "base"] = "previous"  # base: each round trains the base on all pairs so far
    budget: Budget = Field(default_factory=Budget)
