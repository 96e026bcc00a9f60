"""``EvalConfig``: the settings of one evaluation (``iterkd eval``'s options; a distill config's ``eval:``
section). Imports nothing heavy: the command line builds its options from it."""

from __future__ import annotations

from typing import ClassVar, Optional

from pydantic import Field, field_validator, model_validator

from iterkd.config import ConfigModel
from iterkd.errors import UserError


class EvalConfig(ConfigModel):
    """One ``iterkd eval`` run (a distill config's ``eval:`` section plus model and benchmark). The command line's
    options are these fields: their defaults and help come from here (``cli.eval_``), as TRL's parser reads its
    config dataclasses."""

    where: ClassVar[str] = "eval"

    model: str = Field(
        description="Registry name (see `iterkd models list`), a .gguf file, a model directory or a Hugging Face id; "
        "with --base-url, the model name the endpoints serve."
    )
    benchmark: str = Field(description="humaneval, mbpp, or a task JSONL file (see README: 'Task files').")
    split: Optional[str] = Field(
        None,
        description="MBPP split: prompt (1-10), test (11-510), validation (511-600), train (601-974). Default: test.",
    )
    limit: Optional[int] = Field(None, gt=0, description="Only the first N tasks.")
    n_samples: int = Field(1, gt=0, description="Samples per task (pass@k needs n >= k).")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling p (ignored when greedy).")
    max_tokens: int = Field(512, gt=0, description="Most tokens generated per answer.")
    seed: int = Field(0, description="Sampling seed; sample i of each task uses seed + i.")
    backend: str = Field(
        "auto",
        description="One of {backends} (with --base-url: auto or openai). auto: a registry model or .gguf file goes "
        "to llama.cpp's native server when it is built (`iterkd models build-server`; --batch-size requests decoded "
        "together, the fastest CPU path), else to llama.cpp in-process; a Hugging Face model to transformers. vllm: "
        "vLLM's server (a GPU machine with vLLM installed, the vllm extra; a registry name serves its Hugging Face "
        "model).",
    )
    batch_size: int = Field(
        16, gt=0, description="Prompts per generation call (batched on transformers; parallel slots on llama-server)."
    )
    repair_steps: int = Field(
        0,
        ge=0,
        description="Multi-step inference: let the model repair answers that fail the seen tests, up to N times; "
        "pass@1 is reported per step.",
    )
    workers: Optional[int] = Field(None, gt=0, description="Sandbox workers (default: number of CPUs).")
    timeout: Optional[float] = Field(None, gt=0, description="CPU seconds allowed per sample (default 3).")
    # 50 is transformers' own default; over a 49k vocabulary it spares the top_p sort most of its work
    # (llama-server x16: ~18% more tokens/s) and changes nothing measurable at temperature 0.2 (issue 20)
    top_k: int = Field(
        50,
        ge=0,
        description="Sample from the k most likely tokens (0 = all; 50 is transformers' default; ignored when greedy).",
    )
    # not a generation setting: a resumed run may use other endpoints
    base_url: Optional[list[str]] = Field(
        None,
        description="An OpenAI-compatible endpoint (http://host:port/v1) already serving the student (vLLM, "
        "llama-server); repeat it for several replicas: requests are spread over them (--batch-size in flight) and "
        "results.json records how many each received. A resumed run may use other endpoints. Local endpoints need "
        "no key; others read OPENAI_API_KEY.",
    )

    @field_validator("base_url", mode="before")
    @classmethod
    def _base_url(cls, value):
        from iterkd.teacher.config import base_urls

        return None if value is None else base_urls(value)

    @model_validator(mode="after")
    def _backend(self) -> EvalConfig:
        from iterkd.models.load import NAMES, canonical_backend

        local = ", ".join(n for n in NAMES if n != "openai")
        try:
            backend = canonical_backend(self.backend)
        except UserError:
            raise ValueError(f"unknown backend {self.backend!r}; choose {local}, or openai with --base-url") from None
        if self.base_url and backend not in ("auto", "openai"):
            raise ValueError(f"backend {self.backend!r} cannot reach --base-url endpoints; use auto or openai")
        if not self.base_url and backend == "openai":
            raise ValueError(f"backend 'openai': evaluation runs a local student ({local}), or pass --base-url")
        return self

    def generation_backend(self) -> str:
        """The backend pinned with the generation settings: "openai" for a student behind endpoints."""
        return "openai" if self.base_url else self.backend

    def generation_settings(self):
        """What decides the generated samples (pinned in DIR/generation_config.json)."""
        from iterkd.evaluate.generate import GenerationSettings

        return GenerationSettings(
            model=self.model,
            benchmark=self.benchmark,
            split=self.split,
            n_samples=self.n_samples,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            seed=self.seed,
            backend=self.generation_backend(),
            top_k=self.top_k if self.temperature > 0 else 0,  # ignored when greedy: greedy runs pin 0
        )
