"""``load_generator``: a model name and a backend name -> a ``Generator`` (the one factory of the backends)."""

from __future__ import annotations

from collections.abc import Callable

from iterkd.errors import UserError
from iterkd.models.base import Generator

BACKENDS = ("auto", "llamacpp", "hf", "openai", "llama-server", "vllm")  # canonical names
NAMES = ("auto", "llama.cpp", "transformers", "llama-server", "vllm", "openai")  # what users are told to choose from
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


def _servable(model: str) -> bool:
    """A registry name or a .gguf path (what the embedded llama.cpp server can serve)."""
    from iterkd.models.registry import MODELS

    return model.strip().lower() in MODELS or model.strip().lower().endswith(".gguf")


def native_server_built() -> bool:
    from iterkd.models.llamacpp_source import native_server

    return native_server() is not None


def resolve_backend(model: str, backend: str = "auto") -> str:
    """The concrete backend ``load_generator`` uses for ``model``: ``"auto"`` -> ``"llama-server"`` for a
    registry name or .gguf path when llama.cpp's native server is built (``iterkd models build-server``; it
    decodes many requests together), else ``"llamacpp"`` for a GGUF when llama-cpp-python is installed, else
    ``"hf"``; any other name is returned in its canonical form."""
    from iterkd.models.registry import llama_cpp_available, resolve

    b = canonical_backend(backend)
    if b != "auto":
        return b
    if _servable(model) and native_server_built():
        return "llama-server"
    return "llamacpp" if resolve(model).is_gguf and llama_cpp_available() else "hf"


def server_kw(model: str, backend: str, batch_size: int) -> dict:
    """Backend arguments for ``load_generator``: the llama-server backend (also what "auto" picks when it is
    built) decodes ``batch_size`` requests together."""
    return {"parallel": batch_size} if resolve_backend(model, backend) in ("llama-server", "vllm") else {}


def student_loader(
    model: str, backend: str, batch_size: int, base_url: list[str] | None = None
) -> tuple[str, Callable[[], Generator]]:
    """(the concrete backend, a function that loads the generator) for a student: with ``base_url``, endpoints
    already serving it as ``model``, reached by the OpenAI client with ``batch_size`` requests in flight and no
    call cache (callers keep their own records); else ``model`` loaded here with ``backend`` (``server_kw``)."""
    if base_url:
        kw = {"base_url": list(base_url), "cache_path": ":memory:", "concurrency": batch_size}
        return "openai", lambda: load_generator(model, backend="openai", **kw)
    b = resolve_backend(model, backend)
    kw = server_kw(model, b, batch_size)
    return b, lambda: load_generator(model, backend=b, **kw)


def check_student(model: str, backend: str = "auto", base_url: list[str] | None = None) -> None:
    """Refuse, before any file is written or model loaded, a student that ``student_loader`` could not load: an
    unknown registry name, a missing path, a model the chosen backend cannot run, a Hugging Face id that is
    neither cached nor on the Hub (UserError). Fetches nothing but a hub model's config.json. With ``base_url``,
    ``model`` is the name the endpoints serve: nothing to check here."""
    from iterkd.models.registry import resolve

    if base_url:
        return
    b = canonical_backend(backend)
    ref = resolve(model, fetch_missing=False)
    if b == "llama-server" and not _servable(model):
        raise UserError(f"{model}: the llama-server backend serves a registry model or a .gguf file")
    if b == "llamacpp" and not ref.is_gguf:
        raise UserError(f"{model}: the llama.cpp backend needs a GGUF file; use --backend transformers for this model")
    if ref.kind == "hf_hub":
        _check_hub_model(ref.hf_id)


def _check_hub_model(hf_id: str) -> None:
    """The hub model ``hf_id`` is in the local Hugging Face cache, or on the Hub (one metadata request, no
    retries: an unreachable Hub is reported at once, not after a minute of backing off)."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.utils import RepositoryNotFoundError

    try:
        if isinstance(try_to_load_from_cache(hf_id, "config.json"), str):
            return
        if constants.HF_HUB_OFFLINE:
            raise UserError(f"{hf_id}: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set")
        HfApi().model_info(hf_id, timeout=10)
    except UserError:
        raise
    except RepositoryNotFoundError:
        raise UserError(f"{hf_id}: no such model on the Hugging Face Hub (or a private one: set HF_TOKEN)") from None
    except Exception as exc:  # no network, an id the hub refuses
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(
            f"{hf_id}: not in the local Hugging Face cache, and the Hub could not be asked ({first})"
        ) from None


def load_generator(model: str, backend: str = "auto", **kw) -> Generator:
    """Load ``model`` (registry name, .gguf path, HF directory or hub id) with a backend.

    backend: ``"auto"`` (see ``resolve_backend``: a registry name or .gguf path -> llama-server when it is built,
    else llama.cpp in-process, falling back to transformers if llama-cpp-python is not installed; HF directory /
    hub id -> transformers), ``"llamacpp"`` or ``"hf"`` (aliases
    ``"llama.cpp"``, ``"transformers"``), or ``"openai"`` (an OpenAI-compatible endpoint, see
    ``iterkd.teacher``: ``model`` is the endpoint's model name and the keyword arguments are
    ``TeacherConfig`` fields such as base_url; a registry name or .gguf path without base_url is served by an
    embedded llama.cpp server), or ``"llama-server"`` (alias ``"server"``: a registry name or .gguf path served
    by llama.cpp's native llama-server, or ``"vllm"`` (vLLM's server, when installed; registry names serve their
    Hugging Face model), ``parallel`` requests decoded together (default 16) with flash
    attention, a registry model in its ``serve_quant`` type -- the fast path for many prompts on a CPU; answers
    are not cached, callers keep them). Extra keyword arguments go to the backend's
    constructor (llama.cpp: n_ctx, n_threads, n_gpu_layers, seed, verbose; transformers: device, dtype,
    batch_size; llama-server: parallel, server_threads, server_n_ctx).
    """
    from iterkd.models.registry import MODELS, resolve, serving_path

    b = resolve_backend(model, backend)
    if b in ("llama-server", "vllm"):  # a server of our own, its requests decoded together
        from iterkd.teacher import TeacherConfig, load_teacher

        if b == "llama-server" and not _servable(model):
            raise UserError(f"{model}: the llama-server backend serves a registry model or a .gguf file")
        parallel = int(kw.pop("parallel", 16))
        name = model.strip().lower()
        if b == "vllm":  # registry names serve their Hugging Face model
            server = {"served_model": model, "server_impl": "vllm"}
        else:
            served = str(serving_path(name)) if name in MODELS else model
            server = {"served_model": served, "server_impl": "native", "server_flash_attn": "on"}
        cfg = {**server, "server_parallel": parallel, "concurrency": parallel, "cache_path": ":memory:", **kw}
        return load_teacher(TeacherConfig.from_dict(cfg))
    if b == "openai":
        from iterkd.teacher import TeacherConfig, load_teacher

        if "base_url" not in kw and "served_model" not in kw and _servable(model):
            return load_teacher(TeacherConfig.from_dict({"served_model": model, **kw}))
        return load_teacher(TeacherConfig.from_dict({"model": model, **kw}))
    ref = resolve(model)
    if b == "llamacpp":
        if not ref.is_gguf:
            raise UserError(f"{model}: the llama.cpp backend needs a GGUF file; use --backend hf for this model")
        from iterkd.models.backends.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(ref, **kw)
    from iterkd.models.backends.hf import HFGenerator

    return HFGenerator(ref, **kw)
