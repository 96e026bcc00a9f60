"""``load_teacher``: a ``TeacherConfig`` -> the teacher as a ``Generator``, put together from the parts:

    server    with ``served_model``: a ``LlamaServer`` or ``VllmServer`` (``server_impl``), started here
    client    ``EndpointClient`` on the configured base URLs or that server (stops it on ``close``)
    cache     ``CachedGenerator`` around the client (``cache_path``)
    budget    ``Budget`` around that when ``budget_usd`` is set

The same function builds the judge, a student behind endpoints and a served student (``load_generator``).
"""

from __future__ import annotations

from iterkd.teacher.budget import Budget
from iterkd.teacher.cache import CachedGenerator, CompletionCache
from iterkd.teacher.config import TeacherConfig
from iterkd.teacher.endpoint import EndpointClient, openai_module


def start_server(config: TeacherConfig):
    """The server of ``config.served_model``, started (llama.cpp's, or vLLM's for ``server_impl: vllm``)."""
    common = dict(
        n_ctx=config.server_n_ctx,
        log_path=config.server_log,
        startup_timeout_s=config.server_startup_timeout_s,
        parallel=config.server_parallel or config.concurrency,
    )
    if config.server_impl == "vllm":
        from iterkd.models.vllm_server import VllmServer

        server = VllmServer(
            config.served_model,
            tensor_parallel=config.server_tensor_parallel,
            data_parallel=config.server_data_parallel,
            **common,
        )
    else:
        from iterkd.models.llama_server import LlamaServer

        server = LlamaServer(
            config.served_model,
            n_threads=config.server_threads,
            impl=config.server_impl,
            flash_attn=config.server_flash_attn,
            **common,
        )
    return server.start()


def load_teacher(config: TeacherConfig | None = None, **overrides):
    """The teacher generator for ``config`` (default: the embedded ``DEFAULT_TEACHER``); fields can be
    overridden by keyword. With ``served_model`` the server is started now and stopped by ``close()``."""
    if config is None:
        config = TeacherConfig.from_dict(overrides)
    elif overrides:
        config = TeacherConfig.from_dict({**config.to_dict(), **overrides})
    openai_module()  # before a server is started for nothing
    cache = CompletionCache(config.resolved_cache_path())
    server = None
    try:
        server = start_server(config) if config.served_model is not None else None
        gen = CachedGenerator(EndpointClient(config, server=server), cache)
    except BaseException:
        if server is not None:
            server.stop()
        cache.close()
        raise
    return Budget(gen, usd=config.budget_usd) if config.budget_usd is not None else gen
