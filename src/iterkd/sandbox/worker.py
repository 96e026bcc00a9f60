"""Sandbox worker: a fresh interpreter started by the pool (`python -I ... worker <config-json>`).

Start-up (as root, mode "namespaces"): take a unique uid (60000+i, flock'ed), create the worker's cgroup,
unshare mount/net/pid/ipc/uts namespaces, fork the supervisor (pid 1 of the new pid namespace: when it
dies the kernel kills every job process), make / rprivate, hide directories the job uid could not
traverse anyway (e.g. /root) while keeping the interpreter's own files visible, remount every mount
read-only, mount a private /proc and private tmpfs on /tmp (scratch), /var/tmp and /dev/shm.

Loop: read a job from the parent, fork one child per job (setsid, cgroup, rlimits, CPU timer, fd hygiene,
setuid to the worker's uid, no_new_privs), supervise it (pidfd + pipes, wall-clock deadline), kill every
process the job left behind, reply with the result.
"""

from __future__ import annotations

import fcntl
import json
import math
import mmap
import os
import resource
import secrets
import select
import shutil
import signal
import struct
import sys
import time

from . import _linux as L
from . import cgroup as cg
from . import protocol, runner
from .types import Limits

PRELOAD = (
    "abc array ast base64 bisect calendar cmath collections collections.abc copy csv dataclasses datetime decimal "
    "enum fractions functools hashlib heapq io itertools json math numbers operator random re statistics string "
    "struct sys textwrap time typing unicodedata uuid"
).split()

UID_LOCK_DIR = "/run/iterkd-sandbox"
VERDICT_FD = 3
EXIT_SETUP_FAILED = 71


def preload(names) -> list[str]:
    failed = []
    for name in names:
        try:
            __import__(name)
        except Exception:
            failed.append(name)
    return failed


# ----------------------------------------------------------------------------------------------- isolation


def acquire_uid(base: int, span: int = 4096) -> tuple[int, int]:
    """First uid >= base whose lock file we can flock; the lock lives as long as this worker."""
    os.makedirs(UID_LOCK_DIR, mode=0o700, exist_ok=True)
    for uid in range(base, base + span):
        fd = os.open(f"{UID_LOCK_DIR}/{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, fd
        except OSError:
            os.close(fd)
    raise RuntimeError(f"no free sandbox uid in [{base}, {base + span})")


def _traversable_by_other(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o001)
    except OSError:
        return True


def _hidden_ancestors(paths) -> dict[str, set[str]]:
    """{dir the job uid cannot traverse: {child dirs on the way to a path the interpreter needs}}."""
    plan: dict[str, set[str]] = {}
    for p in paths:
        p = os.path.realpath(p)
        parts = p.strip("/").split("/")
        for k in range(1, len(parts)):
            anc = "/" + "/".join(parts[:k])
            if not _traversable_by_other(anc):
                plan.setdefault(anc, set()).add(anc + "/" + parts[k])
                break
    return plan


def setup_namespaces(limits: Limits) -> dict:
    """In the (already forked) pid-namespace init: mounts. Returns report entries."""
    rep: dict = {}
    L.mount(None, "/", None, L.MS_REC | L.MS_PRIVATE)
    need = L.interpreter_paths()
    # paths below /tmp (a checkout or virtualenv there) survive the private /tmp: hold them open, then bind
    # them back read-only on top of the new tmpfs
    kept = [(p, os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)) for p in L.kept_under_tmp(need)]
    tmp_opts = f"size={limits.scratch_bytes},nr_inodes=65536,mode=0711"
    L.mount("tmpfs", "/tmp", "tmpfs", L.MS_NOSUID | L.MS_NODEV, tmp_opts)
    for p, fd in kept:
        os.makedirs(p, 0o755, exist_ok=True)
        L.mount(f"/proc/self/fd/{fd}", p, None, L.MS_BIND | L.MS_REC)
        L.mount(None, p, None, L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY)
        os.close(fd)
    rep["kept_under_tmp"] = [p for p, _ in kept]

    # directories the sandbox uid could not traverse (e.g. /root, 0700) are replaced by an empty tmpfs,
    # with only the paths the interpreter needs (sys.prefix, site-packages, this package) bound back
    need = {p for p in need if not (p == "/tmp" or p.startswith("/tmp/"))}
    hidden = []
    for k, (anc, kids) in enumerate(sorted(_hidden_ancestors(need).items())):
        stage = []
        for j, kid in enumerate(sorted(kids)):
            st = f"/tmp/.stage{k}_{j}"
            os.mkdir(st)
            L.mount(kid, st, None, L.MS_BIND | L.MS_REC)
            stage.append((kid, st))
        L.mount("tmpfs", anc, "tmpfs", L.MS_NOSUID | L.MS_NODEV, "size=64k,mode=0755")
        for kid, st in stage:
            os.mkdir(kid, 0o755)
            L.mount(st, kid, None, L.MS_MOVE)
            os.rmdir(st)
        hidden.append(anc)
    rep["hidden_dirs"] = hidden

    ro_ok, ro_failed = 0, []
    for target, flags in L.mounts():
        if target == "/tmp" or target.startswith("/tmp/") or target == "/proc" or target.startswith("/proc/"):
            continue
        try:
            L.mount(None, target, None, L.MS_REMOUNT | L.MS_BIND | L.MS_RDONLY | (flags & ~L.MS_RDONLY))
            ro_ok += 1
        except OSError:
            ro_failed.append(target)
    rep["readonly_mounts"] = ro_ok
    rep["readonly_failed"] = ro_failed
    L.mount("proc", "/proc", "proc", L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC | L.MS_RDONLY)
    for d in ("/var/tmp", "/dev/shm"):
        if os.path.isdir(d):
            L.mount("tmpfs", d, "tmpfs", L.MS_NOSUID | L.MS_NODEV, "size=16m,nr_inodes=4096,mode=1777")
    return rep


# --------------------------------------------------------------------------------------------- per-job child


class Capture:
    """Keeps head + tail of a stream and counts the rest."""

    def __init__(self, keep: int):
        self.half = max(1, keep // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, b: bytes) -> None:
        self.total += len(b)
        room = self.half - len(self.head)
        if room > 0:
            self.head += b[:room]
            b = b[room:]
        if b:
            self.tail += b[-self.half :]
            if len(self.tail) > self.half:
                del self.tail[: len(self.tail) - self.half]

    def text(self) -> str:
        omitted = self.total - len(self.head) - len(self.tail)
        mid = f"\n...[{omitted} bytes omitted]...\n" if omitted > 0 else ""
        return bytes(self.head).decode("utf-8", "replace") + mid + bytes(self.tail).decode("utf-8", "replace")


class VerdictScanner:
    """Finds `\\n<token><kind><json>\\n` records in whatever arrives on the verdict pipe."""

    def __init__(self, token: str):
        self.tok = token.encode()
        self.buf = b""
        self.verdict: dict | None = None

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            i = self.buf.find(self.tok)
            if i < 0:
                self.buf = self.buf[-(len(self.tok) - 1) :]
                return
            j = self.buf.find(b"\n", i)
            if j < 0:
                self.buf = self.buf[i:] if len(self.buf) - i < (1 << 20) else b""
                return
            rec, self.buf = self.buf[i + len(self.tok) : j], self.buf[j + 1 :]
            try:
                payload = json.loads(rec[1:])
            except ValueError:
                continue
            if rec[:1] == b"V" and self.verdict is None:
                self.verdict = payload


def _set_rlimits(lim: Limits, cgroup_active: bool) -> None:
    cpu = max(1, math.ceil(lim.timeout_s))
    aspace = lim.address_space_bytes or (max(4 << 30, 2 * lim.memory_bytes) if cgroup_active else lim.memory_bytes)
    for res, val in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (aspace, aspace)),
        (resource.RLIMIT_NPROC, (lim.max_procs, lim.max_procs)),
        (resource.RLIMIT_FSIZE, (lim.file_size_bytes, lim.file_size_bytes)),
        (resource.RLIMIT_NOFILE, (lim.open_files, lim.open_files)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(res, val)


def _child(ctx: Worker, job: dict, box: list, lim: Limits, scratch: str, w_out: int, w_err: int, w_v: int) -> None:
    try:
        os.setsid()
        if ctx.cgroup is not None:
            ctx.cgroup.enter()
        devnull = os.open("/dev/null", os.O_RDWR)
        for src, dst in ((devnull, 0), (w_out, 1), (w_err, 2), (w_v, VERDICT_FD)):
            os.dup2(src, dst)
        os.closerange(VERDICT_FD + 1, 1 << 20)
        os.chdir(scratch)
        _set_rlimits(lim, ctx.cgroup is not None)
        if ctx.uid is not None:
            os.setgroups([])
            os.setresgid(ctx.uid, ctx.uid, ctx.uid)
            os.setresuid(ctx.uid, ctx.uid, ctx.uid)
        L.prctl(L.PR_SET_NO_NEW_PRIVS, 1)
        L.prctl(L.PR_SET_PDEATHSIG, signal.SIGKILL)
        # the environment (PATH, LANG, HOME=TMPDIR=/tmp, one BLAS thread) and the text streams on fds 0-2 were
        # prepared once in the worker (see Worker.__init__): nothing to build per job
        sys.stdin = sys.__stdin__ = ctx.std[0]
        sys.stdout = sys.__stdout__ = ctx.std[1]
        sys.stderr = sys.__stderr__ = ctx.std[2]
        import random

        random.seed()
        signal.signal(signal.SIGPROF, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_PROF, lim.timeout_s)
        word = ctx.progress_word
        runner.run_job(
            job,
            box.pop(),
            VERDICT_FD,
            lim.feedback_chars,
            progress=lambda k, _pack=struct.pack_into, _w=word: _pack("<q", _w, 0, k),
        )
    except BaseException as e:
        try:
            os.write(2, f"sandbox child setup failed: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(EXIT_SETUP_FAILED)
    os._exit(EXIT_SETUP_FAILED)


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


class Worker:
    def __init__(self, cfg: dict, uid: int | None, cgroup: cg.WorkerCgroup | None, report: dict):
        self.cfg = cfg
        self.limits = Limits.from_dict(cfg["limits"])
        self.uid = uid
        self.cgroup = cgroup
        self.report = report
        self.scratch_root = cfg.get("scratch_root") or "/tmp"
        self.n = 0
        # shared with each job child: how many tests completed (-1: program/setup not finished)
        self.progress_word = mmap.mmap(-1, 8)
        os.environ.clear()
        os.environ.update(
            {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": "/tmp",
                "TMPDIR": "/tmp",
                "LANG": "C.UTF-8",
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            }
        )
        # text streams for a job's fds 0/1/2 (the child dup2s its pipes there); never used in the worker itself
        enc = dict(encoding="utf-8", errors="backslashreplace", closefd=False)
        self.std = (open(0, **enc), open(1, "w", **enc), open(2, "w", **enc))
        # top-level names in /tmp holding a read-only checkout/virtualenv (never cleaned)
        self.kept_tmp_names = {p.split("/")[2] for p in L.kept_under_tmp(L.interpreter_paths())}

    # one job ---------------------------------------------------------------------------------------------
    def run(self, job: dict) -> dict:
        lim = Limits.from_dict(job["limits"]) if job.get("limits") else self.limits
        if self.cgroup is not None:
            self.cgroup.set_memory(lim.memory_bytes)
        self.n += 1
        scratch = f"{self.scratch_root}/job{self.n}"
        os.mkdir(scratch, 0o700)
        if self.uid is not None:
            os.chown(scratch, self.uid, self.uid)
        struct.pack_into("<q", self.progress_word, 0, -1)
        runner.warm(job.get("tests") or [])  # parse/compile the (trusted) tests once per worker, not per child
        token = secrets.token_hex(16)
        box = [token]
        scanner = VerdictScanner(token)
        del token
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        r_v, w_v = os.pipe()
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(self, job, box, lim, scratch, w_out, w_err, w_v)
        box.clear()
        for fd in (w_out, w_err, w_v):
            os.close(fd)
        out, err = Capture(lim.output_keep_bytes), Capture(lim.output_keep_bytes)
        sinks = {r_out: out.feed, r_err: err.feed, r_v: scanner.feed}
        try:
            status, rusage, timed_out = self._supervise(pid, sinks, t0 + lim.wall_limit_s)
        finally:
            L.kill_and_reap_all_children(pid)
            self._drain(sinks)
            self._clean(scratch)
        wall = time.monotonic() - t0
        cpu = rusage.ru_utime + rusage.ru_stime if rusage is not None else 0.0
        return self._result(job, lim, scanner, status, cpu, wall, timed_out, out, err)

    def _supervise(self, pid: int, sinks: dict, deadline: float):
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in sinks:
            poller.register(fd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        os.kill(pid, signal.SIGKILL)
                    _, status, rusage = os.wait4(pid, 0)
                    return status, rusage, True
                for fd, _ev in poller.poll(left * 1000 + 1):
                    if fd == pidfd:
                        _, status, rusage = os.wait4(pid, 0)
                        return status, rusage, False
                    data = os.read(fd, 65536)
                    if data:
                        sinks[fd](data)
                    else:
                        poller.unregister(fd)
        finally:
            os.close(pidfd)

    @staticmethod
    def _drain(sinks: dict) -> None:
        for fd, feed in sinks.items():
            os.set_blocking(fd, False)
            try:
                for _ in range(4096):
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    feed(data)
            except BlockingIOError:
                pass
            finally:
                os.close(fd)

    def _clean(self, scratch: str) -> None:
        try:
            os.rmdir(scratch)
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)
        private = self.cfg["mode"] in ("namespaces", "bwrap")  # /tmp, /var/tmp, /dev/shm are our own tmpfs
        keep = self.kept_tmp_names if private else set()
        for d in ("/var/tmp", "/dev/shm", self.scratch_root):
            if not private and d != self.scratch_root:
                continue
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                if (not private and not name.startswith("job")) or (d == "/tmp" and name in keep):
                    continue
                p = os.path.join(d, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    try:
                        os.unlink(p)
                    except OSError:
                        pass

    def _result(self, job, lim, scanner, status, cpu, wall, timed_out, out, err) -> dict:
        tests = job.get("tests") or []
        progress = min(max(struct.unpack_from("<q", self.progress_word, 0)[0], -1), len(tests))
        r = {
            "wall_s": round(wall, 4),
            "cpu_s": round(cpu, 4),
            "n_tests": len(tests),
            "tests_run": max(0, progress),
            "stdout": out.text(),
            "stderr": err.text(),
            "stdout_bytes": out.total,
            "stderr_bytes": err.total,
            "failed_test": None,
            "feedback": "",
            "reason": "",
        }
        v = scanner.verdict
        if v is not None and v.get("status") in ("passed", "failed", "error"):
            r.update(
                status=v["status"],
                tests_run=int(v.get("tests_run") or 0),
                failed_test=v.get("failed_test"),
                feedback=str(v.get("feedback") or ""),
                reason=str(v.get("reason") or ""),
            )
            return r
        oom = self.cgroup is not None and self.cgroup.new_oom_kill()
        if timed_out:
            r.update(status="timeout", reason=f"exceeded {lim.wall_limit_s:g}s wall-clock time (cpu {cpu:.2f}s)")
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig in (signal.SIGPROF, signal.SIGXCPU) or (
                sig == signal.SIGKILL and cpu >= lim.timeout_s * 0.98 and not oom
            ):
                r.update(status="timeout", reason=f"exceeded {lim.timeout_s:g}s CPU time")
            elif oom:
                r.update(status="error", reason=f"out of memory (over {lim.memory_bytes >> 20} MiB, killed)")
            else:
                r.update(status="error", reason=f"killed by {_signame(sig)}")
        else:
            code = os.WEXITSTATUS(status)
            if code == EXIT_SETUP_FAILED and "sandbox child setup failed" in r["stderr"]:
                r.update(status="error", reason="sandbox failure: " + r["stderr"].strip()[-300:])
            else:
                r.update(
                    status="error",
                    reason=f"exited with code {code} before the tests finished"
                    if progress >= 0
                    else f"exited with code {code} before the program finished",
                )
            if oom:
                r["reason"] += " (a process was killed: out of memory)"
        if 0 <= progress < len(tests):
            i = progress
            r["failed_test"] = i
            src = runner._cut(str(tests[i]).strip(), 400)
            r["feedback"] = runner._cut(f"INPUT: {src}\nERROR: {r['reason']}", lim.feedback_chars)
        else:
            r["feedback"] = "ERROR: " + r["reason"]
        return r

    # loop ------------------------------------------------------------------------------------------------
    def serve(self, fin: int, fout: int) -> None:
        protocol.send(fout, {"ready": True, "report": self.report})
        while True:
            msg = protocol.recv(fin)
            if msg is None or msg.get("op") == "exit":
                return
            try:
                res = self.run(msg["job"])
            except Exception as e:
                reason = f"sandbox failure: {type(e).__name__}: {e}"
                res = {
                    "status": "error",
                    "reason": reason,
                    "feedback": "ERROR: " + reason,
                    "n_tests": len(msg.get("job", {}).get("tests") or []),
                }
            res["id"] = msg.get("id")
            protocol.send(fout, res)


def _ready_fail(fout: int, what: str) -> None:
    try:
        protocol.send(fout, {"ready": False, "error": what})
    finally:
        os._exit(EXIT_SETUP_FAILED)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    # protocol on private fds; fds 0/1 point to /dev/null so nothing can corrupt the stream
    fin, fout = os.dup(0), os.dup(1)
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = open(1, "w", closefd=False)
    mode = cfg["mode"]
    limits = Limits.from_dict(cfg["limits"])
    report: dict = {"mode": mode, "preload_failed": preload(cfg.get("preload", PRELOAD))}
    uid = None
    cgroup = None
    try:
        L.prctl(L.PR_SET_PDEATHSIG, signal.SIGKILL)
        if mode != "bwrap" and os.getppid() != cfg["parent_pid"]:  # parent died before prctl
            os._exit(1)
        if mode == "namespaces":
            uid, lock_fd = acquire_uid(cfg["uid_base"])
            report["uid"] = uid
            report["stale_killed"] = L.kill_uid(uid)
            report["cgroup"] = None
            if cfg.get("cgroup"):
                try:
                    cgroup = cg.WorkerCgroup(cfg["cgroup"], f"uid{uid}", limits.memory_bytes, limits.max_procs)
                    report["cgroup"] = cfg["cgroup"]
                except OSError as e:
                    report["cgroup_error"] = str(e)
            L.unshare(L.CLONE_NEWNS | L.CLONE_NEWNET | L.CLONE_NEWPID | L.CLONE_NEWIPC | L.CLONE_NEWUTS)
            pid = os.fork()
            if pid:  # outer process: wait for the namespace init, exit with its status
                for fd in (fin, fout):
                    os.close(fd)
                while True:
                    try:
                        _, st = os.waitpid(pid, 0)
                        break
                    except InterruptedError:
                        continue
                os._exit(os.waitstatus_to_exitcode(st) & 0xFF)
            L.prctl(L.PR_SET_PDEATHSIG, signal.SIGKILL)
            report.update(setup_namespaces(limits))
            report.update(netns=True, mountns=True, pidns=True, ipcns=True, tmpfs_scratch=True, uid_drop=True)
        else:
            report.update(
                netns=mode == "bwrap",
                mountns=mode == "bwrap",
                pidns=mode == "bwrap",
                tmpfs_scratch=mode == "bwrap",
                uid_drop=False,
                cgroup=None,
            )
            L.prctl(L.PR_SET_CHILD_SUBREAPER, 1)
        report["subreaper"] = True
        report["rlimits"] = True
    except Exception as e:
        _ready_fail(fout, f"worker isolation setup failed: {type(e).__name__}: {e}")
    import gc

    gc.collect()
    gc.freeze()
    Worker(cfg, uid, cgroup, report).serve(fin, fout)
    os._exit(0)


if __name__ == "__main__":
    main()
