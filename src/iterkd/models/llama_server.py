"""An embedded OpenAI-compatible server for a GGUF model, run by iterkd: llama.cpp's native ``llama-server``
when it is built (``iterkd models build-server``; it decodes ``parallel`` requests together), else
llama-cpp-python's ``llama_cpp.server`` (one request at a time). ``impl`` picks: "auto" (native if built),
"native" or "python"; or "vllm": vLLM's OpenAI server for transformers weights (an optional extra for GPU
machines), started, watched and stopped the same way.

``LlamaServer`` starts the server as a child process on 127.0.0.1 and a free port, waits until
``GET /v1/models`` answers, and stops it again (SIGTERM to its process group, SIGKILL after a grace period)
when the ``with`` block ends -- normally, on an exception or on Ctrl-C -- and, as a fallback, at interpreter
exit (``atexit``). The child also watches its parent and exits if the parent disappears (e.g. SIGKILL), so a
crashed run leaves no server behind (the native server gets SIGTERM from the kernel through
``PR_SET_PDEATHSIG``, which fires when the *thread* that started it ends: start servers from the main thread).

Greedy answers of the native server with several requests in flight may differ from one request at a time in a
few tokens (batched matrix products sum in another order); the teacher cache keeps whatever was answered first.

    with LlamaServer("qwen2.5-coder-1.5b-instruct") as srv:
        srv.base_url     # "http://127.0.0.1:<port>/v1"
        srv.model_name   # the name to send as ``model`` (the registry name or the GGUF file's stem)

The model is a registry name (fetched if missing) or a ``.gguf`` path. Settings: ``n_ctx`` 4096 per request
(the native server: ``n_ctx`` per slot, one KV stream each), threads = ``$ITERKD_THREADS`` or the CPU count,
chat format = the GGUF's own template (``tokenizer.chat_template``; llama-cpp-python's default when no
``chat_format`` is given). The server's output goes to ``log_path`` (default: a temporary file,
deleted by ``stop`` unless the server crashed); when the server dies or is not ready in time, the
``UserError`` quotes the tail of that log.

AMX workaround: ``llama_cpp.server`` has no option for llama.cpp's ``use_extra_bufts`` model parameter, which
must be off on CPUs with Intel AMX (see ``llamacpp.py``). The child is therefore started as
``python -m iterkd.models.llama_server`` -- a thin wrapper that sets ``use_extra_bufts = False`` on the
default model parameters (as ``LlamaCppGenerator`` does) and then runs ``llama_cpp.server``'s own ``main``.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from iterkd.errors import UserError

_NO_EXTRA_BUFTS = "--iterkd-no-extra-bufts"
_PARENT_PID = "--iterkd-parent-pid"

IMPLS = ("auto", "native", "python", "vllm")

# Servers still running, stopped at interpreter exit if their owner forgot (weak: no leak of stopped ones).
_LIVE: weakref.WeakSet[LlamaServer] = weakref.WeakSet()


def _stop_all_at_exit() -> None:
    for srv in list(_LIVE):
        try:
            srv.stop(grace_s=3.0)
        except Exception:
            pass


atexit.register(_stop_all_at_exit)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS picks it; a small race with other processes remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tail(path: str | Path | None, lines: int = 20, max_chars: int = 4000) -> str:
    """The last ``lines`` lines of a text file ('' if unreadable)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    out = "\n".join(text.rstrip().splitlines()[-lines:])
    return out[-max_chars:]


class LlamaServer:
    """A llama.cpp server child process serving one GGUF model (see the module docstring).

    model: registry name or ``.gguf`` path. port: None = a free port. n_threads: None = ``$ITERKD_THREADS`` or
    the CPU count. extra_bufts: None = off on AMX CPUs, on elsewhere. log_path: None = a temporary file.
    chat_format: None = the GGUF's template (python server only). startup_timeout_s: deadline for
    ``/v1/models`` to answer. extra_args: more command-line arguments for the server. parallel: slots of the
    native server (requests decoded together). impl: "auto", "native" or "python". kv_unified: one KV pool
    shared by the native server's slots instead of one stream per slot (slower for many long answers).
    flash_attn: the native server's ``--flash-attn`` (auto, on, off).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        extra_bufts: bool | None = None,
        chat_format: str | None = None,
        log_path: str | Path | None = None,
        startup_timeout_s: float = 300.0,
        verbose: bool = True,
        extra_args: tuple[str, ...] | list[str] = (),
        parallel: int = 1,
        impl: str = "auto",
        kv_unified: bool = False,
        flash_attn: str = "auto",
        tensor_parallel: int = 1,
        data_parallel: int = 1,
    ) -> None:
        if impl not in IMPLS:
            raise UserError(f"llama.cpp server: unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")
        if parallel < 1:
            raise UserError(f"llama.cpp server: parallel must be >= 1, got {parallel}")
        if flash_attn not in ("auto", "on", "off"):
            raise UserError(f"llama.cpp server: flash_attn must be auto, on or off, got {flash_attn!r}")
        self.model = str(model)
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads or int(os.environ.get("ITERKD_THREADS", 0)) or os.cpu_count() or 1
        self.extra_bufts = extra_bufts
        self.chat_format = chat_format
        self.log_path: Path | None = Path(log_path) if log_path else None
        self._temp_log = log_path is None
        self.startup_timeout_s = startup_timeout_s
        self.verbose = verbose
        self.extra_args = list(extra_args)
        self.parallel = parallel
        self.kv_unified = kv_unified
        self.flash_attn = flash_attn
        self.impl = impl
        self.tensor_parallel, self.data_parallel = tensor_parallel, data_parallel  # vLLM only
        self.vllm_model = ""  # vLLM: the Hugging Face model (id or directory) it serves
        self.binary: Path | None = None  # the native llama-server, when that is what runs
        self.model_name: str = ""
        self.model_path: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------- properties

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``.../v1``)."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return tail(self.log_path, lines)

    # ----------------------------------------------------------------------------------------- start / stop

    def _resolve_model(self) -> None:
        from iterkd.models.registry import MODELS, resolve

        text = self.model.strip()
        if self.impl == "vllm":  # vLLM serves transformers weights: a registry name means its Hugging Face model
            spec = MODELS.get(text.lower())
            self.model_path, self.model_name = None, spec.name if spec else text
            self.vllm_model = spec.hf_id if spec else text
            return
        if text.lower() in MODELS:
            ref = resolve(text)
            self.model_path, self.model_name = ref.path, ref.name
        else:
            # A path: passed through unchecked on purpose, so a bad path fails in the server with its log.
            p = Path(text).expanduser()
            self.model_path, self.model_name = p, p.stem or text

    def _resolve_impl(self) -> None:
        from iterkd.models.llamacpp_source import native_server

        if self.impl == "vllm":
            import importlib.util

            if importlib.util.find_spec("vllm") is None:
                raise UserError(
                    "server_impl vllm: vLLM is not installed in this environment (pip install vllm, on a machine "
                    "with a GPU; it is an optional extra, never part of the CPU setup)"
                )
            self.binary = None
            return
        binary = native_server() if self.impl in ("auto", "native") else None
        if self.impl == "native" and binary is None:
            raise UserError("no native llama-server is built; run `iterkd models build-server` (or make llama-server)")
        self.binary = binary

    def _command(self) -> list[str]:
        from iterkd.models.backends.llamacpp import use_extra_bufts

        if self.impl == "vllm":
            return self._vllm_command()
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

    def _vllm_command(self) -> list[str]:
        """vLLM's OpenAI-compatible server: ``parallel`` sequences batched, tensor/data parallel over GPUs."""
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.vllm_model, "--served-model-name", self.model_name,
            "--host", self.host, "--port", str(self.port),
            "--max-model-len", str(self.n_ctx), "--max-num-seqs", str(self.parallel), "--seed", "0",
            "--tensor-parallel-size", str(self.tensor_parallel), "--data-parallel-size", str(self.data_parallel),
        ] + self.extra_args  # fmt: skip

    def start(self) -> LlamaServer:
        """Start the server and wait until it answers; raise UserError (with the log's tail) if it does not."""
        with self._lock:
            if self.running:
                return self
            self._resolve_model()
            self._resolve_impl()
            if self.log_path is None:
                fd, name = tempfile.mkstemp(prefix="iterkd-llama-server-", suffix=".log")
                os.close(fd)
                self.log_path = Path(name)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            fixed_port = self.port is not None
            for attempt in range(3):  # a free port may be taken between our check and the server's bind
                if not fixed_port:
                    self.port = free_port(self.host)
                self._spawn()
                try:
                    self._wait_ready()
                    return self
                except _PortInUse:
                    self._kill()
                    if fixed_port or attempt == 2:
                        raise UserError(
                            f"llama.cpp server: port {self.port} on {self.host} is in use; log {self.log_path}:\n"
                            + self.log_tail()
                        ) from None
                except BaseException:
                    self._kill()
                    raise
        return self  # pragma: no cover

    def _spawn(self) -> None:
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])  # so the child imports this iterkd, installed or not
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        preexec = None
        if self.binary is not None:
            # libraries beside the binary; and no watcher thread in C++: the kernel signals it when we die
            env["LD_LIBRARY_PATH"] = str(self.binary.parent) + (
                os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else ""
            )
            preexec = _die_with_parent
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self._command())}\n".encode())
            log.flush()
            try:
                self.proc = subprocess.Popen(
                    self._command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # own process group: Ctrl-C goes to us, we stop it; killpg reaps all
                    preexec_fn=preexec,
                )
            except OSError as e:
                raise UserError(f"could not start the llama.cpp server ({self._command()[0]}): {e}") from e
        _LIVE.add(self)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"{self.base_url}/models"
        delay = 0.1
        while True:
            code = self.proc.poll()
            if code is not None:
                log = self.log_tail()
                if "address already in use" in log.lower() or "couldn't bind" in log.lower():
                    raise _PortInUse()
                raise UserError(
                    f"the llama.cpp server for {self.model} exited during start-up (exit code {code}); "
                    f"last lines of its log {self.log_path}:\n{log}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2.0) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                log = self.log_tail()
                raise UserError(
                    f"the llama.cpp server for {self.model} did not answer {url} within "
                    f"{self.startup_timeout_s:g} s; last lines of its log {self.log_path}:\n{log}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # the group id is the child's pid (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - unkillable
                pass

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``grace_s``; idempotent. A temporary log is
        deleted unless the server had died on its own."""
        proc = self.proc
        if proc is None:
            return
        crashed = proc.poll() is not None and proc.returncode != 0  # died on its own: keep its log
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:  # uvicorn waits for requests in flight; do not wait for them
                self._kill()
        # Anything the server left in its group (it starts no children, but be sure).
        self._signal(signal.SIGKILL)
        _LIVE.discard(self)
        if self._temp_log and not crashed and self.log_path is not None:
            try:
                self.log_path.unlink()
            except OSError:
                pass

    close = stop

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid} {self.base_url}" if self.running else "stopped"
        return f"LlamaServer({self.model!r}, {state})"


class _PortInUse(Exception):
    pass


def _die_with_parent() -> None:  # runs in the child between fork and exec
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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
