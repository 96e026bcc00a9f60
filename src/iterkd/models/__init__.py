"""Model backends: the small-model registry, generation backends (llama.cpp, transformers, and the teacher
client for OpenAI-compatible endpoints), prompts and answer sanitising.

Importing this package is cheap: torch / transformers / llama_cpp / openai are imported only when a backend is
loaded (``load_generator``).
"""

from iterkd.models.base import Completion, Generator, GenStats, SamplingParams, load_generator
from iterkd.models.openai_client import (
    BudgetExceeded,
    Ledger,
    OpenAIChatGenerator,
    TeacherConfig,
    TeacherRequestError,
    Usage,
    load_teacher,
)
from iterkd.models.prompts import PROMPT_VERSION, build_messages, refine_messages
from iterkd.models.registry import MODELS, ModelRef, ModelSpec, cache_dir, cached_path, fetch, list_models, resolve
from iterkd.models.sanitize import extract_code, sanitize

__all__ = [
    "MODELS",
    "BudgetExceeded",
    "Ledger",
    "OpenAIChatGenerator",
    "TeacherConfig",
    "TeacherRequestError",
    "Usage",
    "load_teacher",
    "PROMPT_VERSION",
    "Completion",
    "GenStats",
    "Generator",
    "ModelRef",
    "ModelSpec",
    "SamplingParams",
    "build_messages",
    "refine_messages",
    "cache_dir",
    "cached_path",
    "extract_code",
    "fetch",
    "list_models",
    "load_generator",
    "resolve",
    "sanitize",
]
