"""Parent side: a pool of pre-started sandbox workers (`Sandbox`). Jobs go to idle workers as
length-prefixed JSON over pipes; results stream back as they finish (`imap`). A worker that dies or
stops answering is killed, its processes are swept, the job is reported as `error` and a fresh worker
takes its place."""

from __future__ import annotations

import atexit
import itertools
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator

from . import cgroup as cg
from . import protocol
from .types import Job, Limits, Result

MODES = ("auto", "namespaces", "bwrap", "none")
_SRC_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_WORKER_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/tmp",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def _kept_under_tmp() -> list[str]:
    """Paths below /tmp the worker needs (checkout, virtualenv), bound back over bwrap's private /tmp."""
    from ._linux import interpreter_paths, kept_under_tmp

    return kept_under_tmp(interpreter_paths((_SRC_ROOT,)))


class SandboxError(RuntimeError):
    """The sandbox cannot be set up (no isolation available, workers fail to start, ...)."""


class _WorkerHandle:
    def __init__(self, slot: int, proc: subprocess.Popen, scratch_root: str | None):
        self.slot = slot
        self.proc = proc
        self.scratch_root = scratch_root
        self.report: dict = {}
        self.job_id: int | None = None  # in flight
        self.index: int | None = None  # caller's index; None when the caller stopped listening
        self.deadline = 0.0
        self.started = 0.0

    @property
    def rfd(self) -> int:
        return self.proc.stdout.fileno()

    @property
    def wfd(self) -> int:
        return self.proc.stdin.fileno()


class Sandbox:
    """Pool of isolated workers running untrusted Python jobs. See `iterkd.sandbox` for the API."""

    def __init__(
        self,
        workers: int | None = None,
        limits: Limits | None = None,
        isolation: str = "auto",
        uid_base: int = 60000,
        preload: Iterable[str] | None = None,
        watchdog_grace_s: float = 10.0,
        start_timeout_s: float = 60.0,
    ):
        if isolation not in MODES:
            raise ValueError(f"isolation must be one of {MODES}, got {isolation!r}")
        self.limits = limits or Limits()
        self.n_workers = max(1, int(workers or os.cpu_count() or 1))
        self.uid_base = uid_base
        self.preload = list(preload) if preload is not None else None
        self.grace = watchdog_grace_s
        self.start_timeout = start_timeout_s
        self.warnings: list[str] = []
        self.cgroup_version = cg.detect() if isolation in ("auto", "namespaces") else None
        self._workers: list[_WorkerHandle] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._closed = False
        self._dead_uids: set[int] = set()
        self.replaced = 0
        self.mode = self._start(isolation)
        self._finalizer = weakref.finalize(self, Sandbox._cleanup, self._workers, self.cgroup_version, os.getpid())
        atexit.register(self._finalizer)

    # ------------------------------------------------------------------------------------------- start-up
    def _start(self, isolation: str) -> str:
        if sys.platform != "linux":
            raise SandboxError("the sandbox needs Linux")
        root = os.geteuid() == 0
        bwrap = shutil.which("bwrap")
        if isolation == "auto":
            candidates = (["namespaces"] if root else []) + (["bwrap"] if bwrap else [])
            if not candidates:
                raise SandboxError(
                    "no isolation available for untrusted code: not running as root (needed for namespaces, "
                    "per-worker uids and cgroups) and bubblewrap ('bwrap') is not installed. Install bubblewrap "
                    "(apt-get install bubblewrap), run as root, or pass isolation='none' to run generated code "
                    "WITHOUT any isolation (unsafe)."
                )
        else:
            candidates = [isolation]
        if "namespaces" in candidates and not root:
            raise SandboxError("isolation='namespaces' needs root (use 'bwrap' or 'auto')")
        if "bwrap" in candidates and not bwrap:
            raise SandboxError("isolation='bwrap' but bubblewrap ('bwrap') is not installed")
        errors = []
        for mode in candidates:
            if mode == "none":
                msg = (
                    "iterkd.sandbox: isolation='none' - untrusted code runs WITHOUT namespaces, read-only "
                    "filesystem, separate uid or cgroup: it can read/modify your files and use the network"
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
                print("WARNING: " + msg, file=sys.stderr)
                self.warnings.append(msg)
            if mode == "namespaces" and self.cgroup_version is None:
                msg = "iterkd.sandbox: no writable cgroup (v1 memory+pids or v2) - memory is bounded per process only (RLIMIT_AS)"
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
                self.warnings.append(msg)
            self.mode = mode
            try:
                self._workers[:] = self._spawn_many(list(range(self.n_workers)))
                return mode
            except SandboxError as e:
                errors.append(f"{mode}: {e}")
                self._kill_workers(self._workers)
                self._workers.clear()
        raise SandboxError("could not start sandbox workers: " + "; ".join(errors))

    def _command(self, cfg: dict) -> list[str]:
        code = f"import sys; sys.path.insert(0, {_SRC_ROOT!r}); from iterkd.sandbox.worker import main; main()"
        cmd = [sys.executable, "-I", "-c", code, json.dumps(cfg)]
        if self.mode == "bwrap":
            size = ["--size", str(self.limits.scratch_bytes)]
            cmd = [
                "bwrap",
                "--unshare-all",
                "--die-with-parent",
                "--new-session",
                "--ro-bind",
                "/",
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                *size,
                "--tmpfs",
                "/tmp",
                "--tmpfs",
                "/var/tmp",
                "--tmpfs",
                "/dev/shm",
                *[arg for p in _kept_under_tmp() for arg in ("--ro-bind", p, p)],
                "--chdir",
                "/tmp",
                "--",
                *cmd,
            ]
        return cmd

    def _spawn_many(self, slots: list[int]) -> list[_WorkerHandle]:
        ws = []
        for slot in slots:
            scratch = tempfile.mkdtemp(prefix=f"iterkd-sandbox-w{slot}-") if self.mode == "none" else None
            cfg = {
                "mode": self.mode,
                "limits": self.limits.to_dict(),
                "uid_base": self.uid_base,
                "parent_pid": os.getpid(),
                "cgroup": self.cgroup_version if self.mode == "namespaces" else None,
                "scratch_root": scratch,
            }
            if self.preload is not None:
                cfg["preload"] = self.preload
            proc = subprocess.Popen(
                self._command(cfg),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=dict(_WORKER_ENV),
                cwd="/",
                start_new_session=True,
                bufsize=0,
            )
            ws.append(_WorkerHandle(slot, proc, scratch))
        deadline = time.monotonic() + self.start_timeout
        waiting = {w.rfd: w for w in ws}
        try:
            while waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SandboxError(f"workers did not start within {self.start_timeout:g}s")
                ready, _, _ = select.select(list(waiting), [], [], left)
                for fd in ready:
                    w = waiting.pop(fd)
                    msg = protocol.recv(fd)
                    if msg is None:
                        raise SandboxError(f"worker exited during start-up (exit code {w.proc.wait()})")
                    if not msg.get("ready"):
                        raise SandboxError(msg.get("error", "worker failed to start"))
                    w.report = msg["report"]
        except BaseException:
            self._kill_workers(ws)
            raise
        return ws

    # -------------------------------------------------------------------------------------------- running
    def run(self, job: Job) -> Result:
        for _, r in self.imap([job]):
            return r
        raise SandboxError("no result")  # pragma: no cover

    def imap(self, jobs: Iterable[Job]) -> Iterator[tuple[int, Result]]:
        """Unordered stream of (index into jobs, Result); keeps every worker busy."""
        self._acquire()
        try:
            yield from self._imap(jobs)
        finally:
            for w in self._workers:  # results of jobs nobody waits for any more are dropped later
                w.index = None
            self._release()

    def map(self, jobs: Iterable[Job]) -> list[Result]:
        jobs = list(jobs)
        out: list[Result | None] = [None] * len(jobs)
        for i, r in self.imap(jobs):
            out[i] = r
        return out  # type: ignore[return-value]

    def _imap(self, jobs: Iterable[Job]) -> Iterator[tuple[int, Result]]:
        if self._closed:
            raise SandboxError("sandbox is closed")
        todo = enumerate(jobs)
        exhausted = False
        while True:
            for w in list(self._workers):
                if exhausted:
                    break
                if w.job_id is None:
                    try:
                        i, job = next(todo)
                    except StopIteration:
                        exhausted = True
                        break
                    bad = self._dispatch(w, i, job)
                    if bad is not None:
                        yield bad
            busy = [w for w in self._workers if w.job_id is not None]
            if not busy:
                if exhausted:
                    return
                continue
            if exhausted and all(w.index is None for w in busy):
                return  # only leftovers of an abandoned earlier call remain: don't wait for them
            now = time.monotonic()
            timeout = max(0.0, min(w.deadline for w in busy) - now)
            ready, _, _ = select.select([w.rfd for w in busy], [], [], timeout)
            by_fd = {w.rfd: w for w in busy}
            for fd in ready:
                w = by_fd[fd]
                try:
                    msg = protocol.recv(fd)
                except (OSError, ValueError):
                    msg = None
                if msg is None:
                    out = self._replace(w, "sandbox worker died")
                elif msg.get("id") != w.job_id:
                    continue
                else:
                    index, w.job_id, w.index = w.index, None, None
                    out = (index, Result.from_dict(msg)) if index is not None else None
                if out is not None and out[0] is not None:
                    yield out
            now = time.monotonic()
            for w in busy:
                if w.job_id is not None and now > w.deadline and w.rfd not in ready:
                    out = self._replace(w, "sandbox worker hung (no answer after the wall-clock limit)")
                    if out[0] is not None:
                        yield out

    def _dispatch(self, w: _WorkerHandle, i: int, job: Job):
        if not isinstance(job, Job):
            raise TypeError(f"expected a Job, got {type(job).__name__}")
        lim = job.limits or self.limits
        wire = job.to_wire()
        if job.limits is not None:
            wire["limits"] = job.limits.to_dict()
        w.job_id, w.index = next(self._ids), i
        w.started = time.monotonic()
        w.deadline = w.started + lim.wall_limit_s + self.grace
        try:
            protocol.send(w.wfd, {"id": w.job_id, "job": wire})
        except OSError:
            return self._replace(w, "sandbox worker died")
        return None

    def _replace(self, w: _WorkerHandle, reason: str) -> tuple[int | None, Result]:
        """Kill a broken worker and everything it started; start a fresh one in its slot."""
        index, started = w.index, w.started
        w.job_id = w.index = None
        self._kill_workers([w])
        self.replaced += 1
        res = Result(
            status="error", reason=reason, feedback=f"ERROR: {reason}", wall_s=round(time.monotonic() - started, 4)
        )
        try:
            (new,) = self._spawn_many([w.slot])
        except SandboxError as e:
            self._workers.remove(w)
            if not self._workers:
                raise SandboxError(f"{reason}; could not start a replacement: {e}") from e
            warnings.warn(f"iterkd.sandbox: could not replace worker {w.slot}: {e}", RuntimeWarning, stacklevel=2)
            return index, res
        self._workers[self._workers.index(w)] = new
        return index, res

    # ------------------------------------------------------------------------------------------ reporting
    def isolation_report(self) -> dict:
        reps = [w.report for w in self._workers]
        r0 = reps[0] if reps else {}
        ns = self.mode == "namespaces"
        layers = {
            "network_namespace": bool(r0.get("netns")),
            "mount_namespace": bool(r0.get("mountns")),
            "pid_namespace": bool(r0.get("pidns")),
            "readonly_system": ns and bool(r0.get("readonly_mounts")) or self.mode == "bwrap",
            "tmpfs_scratch": bool(r0.get("tmpfs_scratch")),
            "hidden_dirs": r0.get("hidden_dirs", []),
            "uid_per_worker": ns,
            "cgroup": f"{self.cgroup_version} memory+pids" if ns and r0.get("cgroup") else None,
            "rlimits": True,
            "cpu_timer": True,
            "subreaper_sweep": True,
            "unforgeable_verdict": True,
            "seccomp": False,
        }
        return {
            "mode": self.mode,
            "workers": len(self._workers),
            "uids": [r.get("uid") for r in reps],
            "layers": layers,
            "limits": self.limits.to_dict(),
            "wall_limit_s": self.limits.wall_limit_s,
            "readonly_failed": r0.get("readonly_failed", []),
            "preload_failed": r0.get("preload_failed", []),
            "warnings": list(self.warnings) + ([r0["cgroup_error"]] if r0.get("cgroup_error") else []),
            "workers_replaced": self.replaced,
        }

    # ------------------------------------------------------------------------------------------- shutdown
    def _acquire(self) -> None:
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError("Sandbox.run/imap called while an imap() of the same thread is still open")
        self._lock.acquire()
        self._owner = me

    def _release(self) -> None:
        self._owner = None
        self._lock.release()

    def _kill_workers(self, ws: list[_WorkerHandle]) -> None:
        Sandbox._terminate(ws, self.cgroup_version, graceful=False)

    @staticmethod
    def _terminate(ws: list[_WorkerHandle], cgroup_version: str | None, graceful: bool) -> None:
        from . import _linux as L

        if graceful:
            for w in ws:
                try:
                    w.proc.stdin.close()  # worker sees EOF and exits; its pid namespace goes with it
                except OSError:
                    pass
            end = time.monotonic() + 2.0
            for w in ws:
                try:
                    w.proc.wait(max(0.01, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for w in ws:
            if w.proc.poll() is None:
                try:
                    os.killpg(w.proc.pid, 9)
                except OSError:
                    w.proc.kill()
            try:
                w.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            for f in (w.proc.stdin, w.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            uid = w.report.get("uid")
            if cgroup_version and w.report.get("cgroup"):
                name = f"uid{uid}"
                for _ in range(100):
                    if not cg.kill_all(cgroup_version, name):
                        break
                    time.sleep(0.005)
                for _ in range(100):
                    cg.remove(cgroup_version, name)
                    if not any(os.path.isdir(p) for p in cg.paths(cgroup_version, name)):
                        break
                    time.sleep(0.005)
            if uid is not None and os.geteuid() == 0:
                L.kill_uid(uid)
            if w.scratch_root:
                shutil.rmtree(w.scratch_root, ignore_errors=True)

    @staticmethod
    def _cleanup(workers: list[_WorkerHandle], cgroup_version: str | None, owner_pid: int) -> None:
        if os.getpid() != owner_pid:  # a forked copy of the parent must not tear down the real pool
            return
        Sandbox._terminate(list(workers), cgroup_version, graceful=True)
        workers.clear()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._finalizer()
            atexit.unregister(self._finalizer)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
