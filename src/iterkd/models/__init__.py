"""Student models: the small-model registry, the generation backends behind one interface, llama.cpp servers.

    base.py              the interface (Generator, SamplingParams, Completion) and its helpers
    load.py              load_generator: model + backend name -> Generator
    backends/            llama.cpp in process (llamacpp.py), transformers (hf.py)
    registry.py          built-in models fetched from PyPI packages (GGUF)
    server.py            one managed server process (started explicitly, health wait, stop, log tail in errors)
    llama_server.py      llama.cpp's server on it (native llama-server or llama_cpp.server)
    vllm_server.py       vLLM's OpenAI server on it
    llamacpp_source.py   building the native llama-server

OpenAI-compatible endpoints (and the llama-server backend) are served by ``iterkd.teacher``'s endpoint client.
Importing this package is cheap: torch / transformers / llama_cpp / openai are imported when a backend loads.
"""

from iterkd.models.base import Completion, Generator, GenStats, SamplingParams
from iterkd.models.load import load_generator
from iterkd.models.registry import MODELS, ModelRef, ModelSpec, cache_dir, cached_path, fetch, list_models, resolve

__all__ = [
    "MODELS",
    "Completion",
    "GenStats",
    "Generator",
    "ModelRef",
    "ModelSpec",
    "SamplingParams",
    "cache_dir",
    "cached_path",
    "fetch",
    "list_models",
    "load_generator",
    "resolve",
]
