"""``TeacherConfig``: the settings of a teacher endpoint (a config file's ``teacher:`` section)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Optional, Union
from urllib.parse import urlparse

from pydantic import Field, model_validator

from iterkd.config import ConfigModel
from iterkd.models.base import SamplingParams

DEFAULT_TEACHER = "qwen2.5-coder-1.5b-instruct"
OPENAI_BASE_URL = "https://api.openai.com/v1"


def base_urls(value: str | list[str]) -> list[str]:
    """One base URL or a list of them -> the list, trailing slashes dropped; ValueError for an empty list or
    anything but an http(s) URL (config validators turn it into a one-line error)."""
    urls = [str(u).rstrip("/") for u in ([value] if isinstance(value, str) else value)]
    if not urls:
        raise ValueError("base_url: an empty list (give one URL or several)")
    for u in urls:
        url = urlparse(u)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {u!r}")
    return urls


class TeacherConfig(ConfigModel):
    """Settings of a teacher endpoint.

    base_url: the OpenAI-compatible base URL (``.../v1``), or a list of them serving the same model: requests
    are spread over them in turn, and a retried request goes to the next one; None with a ``model`` = the OpenAI
    API; None with neither ``model`` nor ``served_model`` = the embedded default teacher (``DEFAULT_TEACHER``).
    model: the model name on the endpoint (for ``served_model``: set automatically).
    api_key_env: name of the environment variable holding the key; None / "" = send no key. Local endpoints
    (127.0.0.1, localhost) work without the variable being set.
    cache_path: SQLite file of the call cache; None = ``<iterkd cache>/teacher-cache.sqlite``; ":memory:" =
    nothing persists.
    served_model: a registry name or ``.gguf`` path that iterkd serves itself (``LlamaServer`` or ``VllmServer``,
    started by ``load_teacher``; ``server_*`` settings); excludes ``base_url``. server_impl: "auto" (llama.cpp's
    native llama-server if built, else ``llama_cpp.server``), "native", "python", or "vllm" (vLLM's OpenAI server,
    when vLLM is installed: a registry name serves its Hugging Face model, otherwise a model directory or hub id;
    ``server_tensor_parallel`` and ``server_data_parallel`` spread it over GPUs). server_parallel: requests the
    native server decodes together (None = ``concurrency``). server_flash_attn: the native server's
    ``--flash-attn`` ("auto" leaves llama.cpp's choice, which is off on a CPU; "on" is ~5% faster for 16 slots of a
    small student).
    extra_body: extra JSON fields sent with every request (e.g. ``{"min_p": 0}`` for vLLM); part of the
    cache key.
    max_tokens_param: the request field for the token limit ("max_tokens", or "max_completion_tokens" for
    OpenAI reasoning models).
    timeout_s: seconds before a request is abandoned and retried; None (default) = fitted to the request:
    ``request_timeout_s(max_tokens)`` from ``expected_tokens_per_s`` (the slowest speed expected of the
    endpoint) with a floor of ``min_timeout_s``.
    """

    where: ClassVar[str] = "teacher"

    base_url: Optional[Union[str, list[str]]] = None
    model: Optional[str] = None
    api_key_env: Optional[str] = "OPENAI_API_KEY"
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1)
    seed: int = 0
    top_k: int = Field(0, ge=0)
    concurrency: int = Field(4, ge=1)
    timeout_s: Optional[float] = Field(None, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    price_input_per_mtok: float = Field(0.0, ge=0)
    price_output_per_mtok: float = Field(0.0, ge=0)
    budget_usd: Optional[float] = Field(None, gt=0)
    cache_path: Optional[str] = None
    served_model: Optional[str] = None
    server_n_ctx: int = Field(4096, ge=256)
    server_threads: Optional[int] = Field(None, ge=1)
    server_log: Optional[str] = None
    server_startup_timeout_s: float = Field(300.0, gt=0)
    server_impl: Literal["auto", "native", "python", "vllm"] = "auto"
    server_tensor_parallel: int = Field(1, ge=1)  # vLLM: GPUs per model replica
    server_data_parallel: int = Field(1, ge=1)  # vLLM: model replicas
    server_parallel: Optional[int] = Field(None, ge=1)
    server_flash_attn: Literal["auto", "on", "off"] = "auto"
    extra_body: Optional[dict] = None
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    expected_tokens_per_s: float = Field(2.0, gt=0)
    min_timeout_s: float = Field(60.0, gt=0)

    @model_validator(mode="after")
    def _endpoint(self) -> TeacherConfig:
        if self.served_model is not None and self.base_url is not None:
            raise ValueError(f"give either base_url ({self.base_url}) or served_model ({self.served_model}), not both")
        if self.served_model is None and self.base_url is None:
            # defaults chosen here are written with object.__setattr__ (validate_assignment would re-enter)
            if self.model is None:
                object.__setattr__(self, "served_model", DEFAULT_TEACHER)
            else:
                object.__setattr__(self, "base_url", OPENAI_BASE_URL)
        if self.served_model is not None:
            if not str(self.served_model).strip():
                raise ValueError("served_model is empty")
            _check_served(str(self.served_model), self.server_impl)
        else:
            base_urls(self.base_url)
            if not self.model or not str(self.model).strip():
                raise ValueError(f"model is required with base_url {self.base_url}")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must be >= backoff_base_s")
        return self

    def base_urls(self) -> list[str]:
        """The endpoint's base URLs (one or several; none for ``served_model``)."""
        return [] if self.base_url is None else base_urls(self.base_url)

    def request_timeout_s(self, max_tokens: int) -> float:
        """Seconds one request may take before it is retried: ``timeout_s`` when set, else the time ``max_tokens``
        take at ``expected_tokens_per_s`` (the slowest per-request speed expected: about 2 tokens/s for a 1.5B
        model on 2 CPU cores with 8 busy slots), at least ``min_timeout_s``. 512 tokens: 256 s; 64: 60 s.
        A ``served_model`` (a server of our own on this machine) gets 8x that: its requests slow down with
        whatever else the machine runs, and a retry would only redo the same work on the same cores (a dead
        server fails the connection at once)."""
        if self.timeout_s is not None:
            return self.timeout_s
        slack = 8.0 if self.served_model else 1.0
        return max(self.min_timeout_s, slack * max_tokens / self.expected_tokens_per_s)

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed, top_k=self.top_k
        )

    def resolved_cache_path(self) -> str | None:
        """The cache file (None = in memory)."""
        if self.cache_path == ":memory:":
            return None
        if self.cache_path:
            return str(Path(self.cache_path).expanduser())
        from iterkd.models.registry import cache_dir

        return str(cache_dir() / "teacher-cache.sqlite")

    def as_dict(self) -> dict:
        """For data cards (no secrets: only the *name* of the key's variable)."""
        return self.to_dict()


def _check_served(model: str, impl: str) -> None:
    """A model iterkd serves itself: a registry name or a local file or directory (vLLM also takes a hub id)."""
    from iterkd.config import suggest
    from iterkd.models.registry import MODELS

    if model in MODELS or Path(model).expanduser().exists() or (impl == "vllm" and "/" in model):
        return
    raise ValueError(
        f"served_model: unknown model {model!r}: not a registry name{suggest(model, list(MODELS))}, nor an "
        "existing .gguf file or model directory"
    )
