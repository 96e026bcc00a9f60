"""``LlamaServer``: llama.cpp's OpenAI-compatible server for a GGUF model, run by iterkd (a ``ManagedServer``,
server.py): llama.cpp's native ``llama-server`` when it is built (``iterkd models build-server``; it decodes
``parallel`` requests together), else llama-cpp-python's ``llama_cpp.server`` (one request at a time).
``impl`` picks: "auto" (native if built), "native" or "python". vLLM is ``VllmServer`` (vllm_server.py).

Greedy answers of the native server with several requests in flight may differ from one request at a time in a
few tokens (batched matrix products sum in another order); the teacher cache keeps whatever was answered first.

    with LlamaServer("qwen2.5-coder-1.5b-instruct") as srv:
        srv.base_url     # "http://127.0.0.1:<port>/v1"
        srv.model_name   # the name to send as ``model`` (the registry name or the GGUF file's stem)

The model is a registry name (fetched if missing) or a ``.gguf`` path. Settings: ``n_ctx`` 4096 per request
(the native server: ``n_ctx`` per slot, one KV stream each), threads = ``$ITERKD_THREADS`` or the CPU count,
chat format = the GGUF's own template (``tokenizer.chat_template``; llama-cpp-python's default when no
``chat_format`` is given). A ``.gguf`` path is served under its stem, and answers are cached under the file's
identity (path, size, modification time: every trained student is ``final.q8_0.gguf``).

The native server dies with its owner through the kernel's parent-death signal; the python server watches its
parent itself (``--iterkd-parent-pid``).

AMX workaround: ``llama_cpp.server`` has no option for llama.cpp's ``use_extra_bufts`` model parameter, which
must be off on CPUs with Intel AMX (see ``llamacpp.py``). The child is therefore started as
``python -m iterkd.models.llama_server`` -- a thin wrapper that sets ``use_extra_bufts = False`` on the
default model parameters (as ``LlamaCppGenerator`` does) and then runs ``llama_cpp.server``'s own ``main``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from iterkd.errors import UserError
from iterkd.models.server import ManagedServer, free_port

__all__ = ["IMPLS", "LlamaServer", "free_port"]

_NO_EXTRA_BUFTS = "--iterkd-no-extra-bufts"
_PARENT_PID = "--iterkd-parent-pid"

IMPLS = ("auto", "native", "python")


class LlamaServer(ManagedServer):
    """A llama.cpp server child process serving one GGUF model (see the module docstring and ``ManagedServer``).

    model: registry name or ``.gguf`` path. n_threads: None = ``$ITERKD_THREADS`` or the CPU count.
    extra_bufts: None = off on AMX CPUs, on elsewhere. chat_format: None = the GGUF's template (python server
    only). parallel: slots of the native server (requests decoded together). impl: "auto", "native" or
    "python". kv_unified: one KV pool shared by the native server's slots instead of one stream per slot
    (slower for many long answers). flash_attn: the native server's ``--flash-attn`` (auto, on, off).
    """

    name = "llama.cpp server"

    def __init__(
        self,
        model: str | Path,
        *,
        n_threads: int | None = None,
        extra_bufts: bool | None = None,
        chat_format: str | None = None,
        verbose: bool = True,
        impl: str = "auto",
        kv_unified: bool = False,
        flash_attn: str = "auto",
        **common,
    ) -> None:
        if impl not in IMPLS:
            hint = " (vLLM is VllmServer)" if impl == "vllm" else ""
            raise UserError(f"{self.name}: unknown impl {impl!r}; choose one of {', '.join(IMPLS)}{hint}")
        if flash_attn not in ("auto", "on", "off"):
            raise UserError(f"{self.name}: flash_attn must be auto, on or off, got {flash_attn!r}")
        super().__init__(model, **common)
        self.n_threads = n_threads or int(os.environ.get("ITERKD_THREADS", 0)) or os.cpu_count() or 1
        self.extra_bufts = extra_bufts
        self.chat_format = chat_format
        self.verbose = verbose
        self.impl = impl
        self.kv_unified = kv_unified
        self.flash_attn = flash_attn
        self.binary: Path | None = None  # the native llama-server, when that is what runs
        self.model_path: Path | None = None

    def _prepare(self) -> None:
        from iterkd.models.llamacpp_source import native_server
        from iterkd.models.registry import MODELS, resolve

        text = self.model.strip()
        if text.lower() in MODELS:
            ref = resolve(text)
            self.model_path, self.model_name = ref.path, ref.name
        else:
            # A path: passed through unchecked on purpose, so a bad path fails in the server with its log.
            p = Path(text).expanduser()
            self.model_path, self.model_name = p, p.stem or text
        binary = native_server() if self.impl in ("auto", "native") else None
        if self.impl == "native" and binary is None:
            raise UserError(
                f"{self.name}: no native llama-server is built; run `iterkd models build-server` (or make llama-server)"
            )
        self.binary = binary
        self.die_with_parent = binary is not None  # the python server watches its parent itself

    def _identity(self) -> str:
        if self.model_path is not None and self.model.strip().lower().endswith(".gguf"):
            # a file's name says nothing of its weights (every trained student is final.q8_0.gguf)
            st = Path(self.model_path).stat()
            return f"{self.model_name}@{Path(self.model_path).resolve()}:{st.st_size}:{st.st_mtime_ns}"
        return self.model_name

    def _environment(self, env: dict) -> dict:
        if self.binary is not None:  # the native server's libraries are beside it
            env["LD_LIBRARY_PATH"] = str(self.binary.parent) + (
                os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else ""
            )
        return env

    def _command(self) -> list[str]:
        from iterkd.models.backends.llamacpp import use_extra_bufts

        extra_bufts = use_extra_bufts(self.extra_bufts)
        if self.binary is not None:
            cmd = [
                str(self.binary), "--model", str(self.model_path), "--alias", self.model_name,
                "--host", self.host, "--port", str(self.port),
                "--ctx-size", str(self.n_ctx * self.parallel), "--parallel", str(self.parallel),
                # one KV stream per slot: with a unified pool every sequence attends over all slots' cells
                "--kv-unified" if self.kv_unified else "--no-kv-unified",
                "--threads", str(self.n_threads), "--threads-batch", str(self.n_threads),
                "--jinja", "--no-webui", "--cont-batching", "--flash-attn", self.flash_attn,
            ]  # fmt: skip
            if not extra_bufts:
                cmd.append("--no-repack")
            return cmd + self.extra_args
        cmd = [
            sys.executable, "-m", "iterkd.models.llama_server",
            "--model", str(self.model_path), "--model_alias", self.model_name,
            "--host", self.host, "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads),
            "--verbose", str(bool(self.verbose)),
            _PARENT_PID, str(os.getpid()),
        ]  # fmt: skip
        if self.chat_format:
            cmd += ["--chat_format", self.chat_format]
        if not extra_bufts:
            cmd.append(_NO_EXTRA_BUFTS)
        return cmd + self.extra_args


# --------------------------------------------------------------------------------------------- child side


def _watch_parent(parent: int) -> None:
    """Exit when the process that started us is gone (re-parented), so no server outlives a killed run."""

    def loop() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=loop, daemon=True, name="iterkd-parent-watch").start()


def _serve(argv: list[str]) -> None:
    """Run ``llama_cpp.server`` with iterkd's extra options removed from ``argv`` and applied."""
    no_extra_bufts = _NO_EXTRA_BUFTS in argv
    argv = [a for a in argv if a != _NO_EXTRA_BUFTS]
    if _PARENT_PID in argv:
        i = argv.index(_PARENT_PID)
        _watch_parent(int(argv[i + 1]))
        del argv[i : i + 2]
    import llama_cpp
    from llama_cpp.server.__main__ import main

    from iterkd.models.backends.llamacpp import model_params_override

    sys.argv = ["llama_cpp.server", *argv]
    with model_params_override(llama_cpp, **({"use_extra_bufts": False} if no_extra_bufts else {})):
        main()


if __name__ == "__main__":
    _serve(sys.argv[1:])
