"""``load_generator``: a model name and a backend name -> a ``Generator`` (the one factory of the backends)."""

from __future__ import annotations

from iterkd.errors import UserError
from iterkd.models.base import Generator

BACKENDS = ("auto", "llamacpp", "hf", "openai", "llama-server")  # canonical names
NAMES = ("auto", "llama.cpp", "transformers", "llama-server", "openai")  # what users are told to choose from
_ALIASES = {
    "llama.cpp": "llamacpp",
    "llama_cpp": "llamacpp",
    "llama-cpp": "llamacpp",
    "transformers": "hf",
    "server": "llama-server",
    "llama_server": "llama-server",
}


def canonical_backend(backend: str) -> str:
    """The backend's canonical name (aliases resolved); UserError for an unknown one."""
    b = _ALIASES.get(backend.lower(), backend.lower())
    if b not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of: {', '.join(NAMES)}")
    return b


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _servable(model: str) -> bool:
    """A registry name or a .gguf path (what the embedded llama.cpp server can serve)."""
    from iterkd.models.registry import MODELS

    return model.strip().lower() in MODELS or model.strip().lower().endswith(".gguf")


def load_generator(model: str, backend: str = "auto", **kw) -> Generator:
    """Load ``model`` (registry name, .gguf path, HF directory or hub id) with a backend.

    backend: ``"auto"`` (GGUF -> llama.cpp, falling back to transformers if llama-cpp-python is not
    installed; HF directory / hub id -> transformers), ``"llamacpp"`` or ``"hf"`` (aliases
    ``"llama.cpp"``, ``"transformers"``), or ``"openai"`` (an OpenAI-compatible endpoint, see
    ``iterkd.teacher``: ``model`` is the endpoint's model name and the keyword arguments are
    ``TeacherConfig`` fields such as base_url; a registry name or .gguf path without base_url is served by an
    embedded llama.cpp server), or ``"llama-server"`` (alias ``"server"``: a registry name or .gguf path served
    by llama.cpp's native llama-server, ``parallel`` requests decoded together -- the fast path for many prompts
    on a CPU; answers are not cached, callers keep them). Extra keyword arguments go to the backend's
    constructor (llama.cpp: n_ctx, n_threads, n_gpu_layers, seed, verbose; transformers: device, dtype,
    batch_size; llama-server: parallel, server_threads, server_n_ctx).
    """
    from iterkd.models.registry import resolve

    b = canonical_backend(backend)
    if b == "llama-server":
        from iterkd.teacher import TeacherConfig, load_teacher

        if not _servable(model):
            raise UserError(f"{model}: the llama-server backend serves a registry model or a .gguf file")
        parallel = int(kw.pop("parallel", 8))
        cfg = {
            "served_model": model,
            "server_impl": "native",
            "server_parallel": parallel,
            "concurrency": parallel,
            "cache_path": ":memory:",
            **kw,
        }
        return load_teacher(TeacherConfig.from_dict(cfg))
    if b == "openai":
        from iterkd.teacher import TeacherConfig, load_teacher

        if "base_url" not in kw and "served_model" not in kw and _servable(model):
            return load_teacher(TeacherConfig.from_dict({"served_model": model, **kw}))
        return load_teacher(TeacherConfig.from_dict({"model": model, **kw}))
    ref = resolve(model)
    if b == "auto":
        b = "llamacpp" if ref.is_gguf and llama_cpp_available() else "hf"
    if b == "llamacpp":
        if not ref.is_gguf:
            raise UserError(f"{model}: the llama.cpp backend needs a GGUF file; use --backend hf for this model")
        from iterkd.models.backends.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(ref, **kw)
    from iterkd.models.backends.hf import HFGenerator

    return HFGenerator(ref, **kw)
