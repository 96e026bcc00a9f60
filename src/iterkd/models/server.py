"""``ManagedServer``: an OpenAI-compatible server that iterkd runs as a child process -- start it, wait until it
is healthy, stop it -- whatever the server program is. Two subclasses name the program: ``LlamaServer``
(llama_server.py: llama.cpp's native ``llama-server`` or ``llama_cpp.server``) and ``VllmServer``
(vllm_server.py); each names itself in its errors ("llama.cpp server ...", "vLLM server ...").

Whoever owns a server starts it explicitly (``start()``: ``load_teacher`` for a served teacher or student) and
stops it (``stop()``; ``with`` blocks do both). ``start`` runs the child on 127.0.0.1 and a free port, waits
until ``GET /v1/models`` answers and raises a ``UserError`` quoting the tail of the server's log when the child
dies or is not ready in time. ``stop`` sends SIGTERM to the child's process group and SIGKILL after a grace
period; servers still running at interpreter exit are stopped (``atexit``). The child also dies with its
parent (e.g. SIGKILL): a program without a watcher of its own gets the kernel's parent-death signal
(``PR_SET_PDEATHSIG``). That signal fires when the *thread* that forked the child ends, so every child is
forked by one thread that lives as long as the process (``_spawner``): a server may be started from any thread
-- a worker thread that ends later does not take the server with it.

The server's output goes to ``log_path`` (default: a temporary file, deleted by ``stop`` unless the server
crashed).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

from iterkd.errors import UserError
from iterkd.process import die_with_parent

# Servers still running, stopped at interpreter exit if their owner forgot (weak: no leak of stopped ones).
_LIVE: weakref.WeakSet[ManagedServer] = weakref.WeakSet()
_SPAWNER: ThreadPoolExecutor | None = None
_SPAWNER_LOCK = threading.Lock()


def _stop_all_at_exit() -> None:
    for srv in list(_LIVE):
        try:
            srv.stop(grace_s=3.0)
        except Exception:
            pass


atexit.register(_stop_all_at_exit)


def _spawner() -> ThreadPoolExecutor:
    """The one thread that forks every server child (see the module docstring); started on first use."""
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None:
            _SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iterkd-server-spawner")
        return _SPAWNER


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


class _PortInUse(Exception):
    pass


class ManagedServer:
    """An OpenAI-compatible server child process serving one model (see the module docstring).

    model: what the subclass serves (a registry name, a file, a Hugging Face id). port: None = a free port.
    n_ctx: context per request. parallel: requests decoded together. log_path: None = a temporary file.
    startup_timeout_s: deadline for ``/v1/models`` to answer. extra_args: more command-line arguments.

    After ``start``: ``base_url`` (``http://127.0.0.1:<port>/v1``), ``model_name`` (the name to send as
    ``model``), ``identity`` (what a call cache keys the answers on: the model name, or more when the name
    does not say which weights answer), ``pid``.

    Subclasses set ``name`` and implement ``_prepare`` (resolve the model and the program; UserError for what
    cannot start) and ``_command``; ``die_with_parent`` says whether the child needs the kernel's parent-death
    signal (programs without a watcher of their own).
    """

    name: ClassVar[str] = "server"
    die_with_parent: bool = True

    def __init__(
        self,
        model: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 4096,
        parallel: int = 1,
        log_path: str | Path | None = None,
        startup_timeout_s: float = 300.0,
        extra_args: tuple[str, ...] | list[str] = (),
    ) -> None:
        if parallel < 1:
            raise UserError(f"{self.name}: parallel must be >= 1, got {parallel}")
        self.model = str(model)
        self.host, self.port = host, port
        self.n_ctx, self.parallel = n_ctx, parallel
        self.log_path: Path | None = Path(log_path) if log_path else None
        self._temp_log = log_path is None
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = list(extra_args)
        self.model_name: str = ""
        self.identity: str = ""
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------- subclass hooks

    def _prepare(self) -> None:  # pragma: no cover - overridden
        """Resolve the model (``model_name``) and the program; raise UserError for what cannot start."""
        raise NotImplementedError

    def _command(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _environment(self, env: dict) -> dict:
        """The child's environment (``env``: this process's, with iterkd on PYTHONPATH)."""
        return env

    def _identity(self) -> str:
        """What a cache keys this server's answers on (called once the server is ready)."""
        return self.model_name

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

    def start(self) -> ManagedServer:
        """Start the server and wait until it answers; raise UserError (with the log's tail) if it does not."""
        with self._lock:
            if self.running:
                return self
            self._prepare()
            if self.log_path is None:
                fd, name = tempfile.mkstemp(prefix="iterkd-server-", suffix=".log")
                os.close(fd)
                self.log_path = Path(name)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            fixed_port = self.port is not None
            for attempt in range(3):  # a free port may be taken between our check and the server's bind
                if not fixed_port:
                    self.port = free_port(self.host)
                try:
                    _spawner().submit(self._spawn).result()
                    self._wait_ready()
                    self.identity = self._identity()
                    return self
                except _PortInUse:
                    self._kill()
                    if fixed_port or attempt == 2:
                        raise UserError(
                            f"{self.name}: port {self.port} on {self.host} is in use; log {self.log_path}:\n"
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
        env = self._environment(env)
        cmd = self._command()
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            try:
                self.proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # own process group: Ctrl-C goes to us, we stop it; killpg reaps all
                    preexec_fn=die_with_parent if self.die_with_parent else None,
                )
            except OSError as e:
                raise UserError(f"{self.name}: could not start {cmd[0]}: {e}") from e
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
                    f"{self.name} for {self.model} exited during start-up (exit code {code}); "
                    f"last lines of its log {self.log_path}:\n{log}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2.0) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise UserError(
                    f"{self.name} for {self.model} did not answer {url} within {self.startup_timeout_s:g} s; "
                    f"last lines of its log {self.log_path}:\n{self.log_tail()}"
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
        # Anything the server left in its group (e.g. vLLM's engine processes).
        self._signal(signal.SIGKILL)
        _LIVE.discard(self)
        if self._temp_log and not crashed and self.log_path is not None:
            try:
                self.log_path.unlink()
            except OSError:
                pass

    close = stop

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid} {self.base_url}" if self.running else "stopped"
        return f"{type(self).__name__}({self.model!r}, {state})"
