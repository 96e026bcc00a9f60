"""Thin ctypes wrappers for the Linux calls Python 3.11 lacks (unshare, mount, prctl) and /proc helpers."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

_MOUNT_OPT_FLAGS = {
    "ro": MS_RDONLY,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        _libc.unshare.argtypes = [ctypes.c_int]
        _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    _check(libc().unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    _check(libc().mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def prctl(option: int, arg2: int = 0) -> None:
    _check(libc().prctl(option, arg2, 0, 0, 0), f"prctl({option})")


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and i + 3 < len(path) + 1 and path[i + 1 : i + 4].isdigit():
            out.append(chr(int(path[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def mounts() -> list[tuple[str, int]]:
    """(mount point, per-mount flags) for every mount of this mount namespace, in mountinfo order."""
    res = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 6:
                continue
            flags = 0
            for opt in parts[5].split(","):
                flags |= _MOUNT_OPT_FLAGS.get(opt, 0)
            res.append((_unescape(parts[4]), flags))
    return res


def children(pid: str = "self") -> list[int]:
    """Direct children of a process (all its threads), from /proc/<pid>/task/*/children."""
    kids: list[int] = []
    base = f"/proc/{pid}/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"{base}/{tid}/children", "rb") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return kids


def kill_and_reap_all_children(first_group: int | None = None, max_rounds: int = 10000) -> int:
    """SIGKILL every descendant of this (subreaper) process and reap them all. Returns how many were reaped.

    Orphans re-parent to us as their parents die, so loop "list children -> SIGKILL -> reap" until
    waitpid says there are no children left at all.
    """
    if first_group is not None:
        try:
            os.killpg(first_group, signal.SIGKILL)
        except OSError:
            pass
    reaped = 0
    for _ in range(max_rounds):
        kids = children()
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        except InterruptedError:
            continue
        if pid:
            reaped += 1
            continue
        if not kids:  # /proc children list raced with a fork: look again shortly
            time.sleep(0.001)
            continue
        try:  # every listed child was just SIGKILLed: block until one of them is gone
            os.waitpid(-1, 0)
            reaped += 1
        except ChildProcessError:
            return reaped
        except InterruptedError:
            pass
    return reaped


def pids_of_uid(uid: int) -> list[int]:
    """Processes (in this /proc) whose real uid is `uid`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Uid:"):
                        if int(line.split()[1]) == uid:
                            out.append(int(name))
                        break
        except OSError:
            pass
    return out


def kill_uid(uid: int, rounds: int = 50) -> int:
    """SIGKILL every process of `uid` (repeat until none is left or `rounds` is spent)."""
    total = 0
    for _ in range(rounds):
        pids = pids_of_uid(uid)
        if not pids:
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
                total += 1
            except OSError as e:
                if e.errno not in (errno.ESRCH, errno.EPERM):
                    raise
    return total


def interpreter_paths(extra: tuple[str, ...] = ()) -> set[str]:
    """Real paths the worker interpreter needs to see: its prefixes, its executable's directory, its
    site-packages and sys.path entries (this package included), plus ``extra``."""
    import site

    need = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    need.update(p for p in sys.path if p and os.path.isdir(p))
    try:
        need.update(p for p in site.getsitepackages() if os.path.isdir(p))
    except AttributeError:
        pass
    need.update(extra)
    return {os.path.realpath(p) for p in need}


def kept_under_tmp(paths) -> list[str]:
    """The outermost of ``paths`` that lie below /tmp (but not /tmp itself): they must stay visible,
    read-only, when a private tmpfs covers /tmp (e.g. a checkout or virtualenv under /tmp)."""
    below = sorted(p for p in paths if p.startswith("/tmp/"))
    kept: list[str] = []
    for p in below:
        if not any(p == k or p.startswith(k + "/") for k in kept):
            kept.append(p)
    return kept
