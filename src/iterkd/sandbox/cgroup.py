"""Per-worker cgroup (v1 memory + pids, or v2 memory.max + pids.max): bounds the memory and the number
of tasks of a job's whole process tree. Created by the worker (as root) before it leaves the host's
mount namespace; the files it needs later stay open as fds (the sandbox's /sys becomes read-only)."""

from __future__ import annotations

import os
import signal

V1_ROOT = "/sys/fs/cgroup"
GROUP = "iterkd-sandbox"


def detect() -> str | None:
    """'v2', 'v1' or None (not available / not writable)."""
    if os.geteuid() != 0:
        return None
    try:
        with open(f"{V1_ROOT}/cgroup.controllers") as f:
            ctrl = f.read().split()
        if "memory" in ctrl and "pids" in ctrl:
            return "v2"
    except OSError:
        pass
    if all(os.access(f"{V1_ROOT}/{c}/cgroup.procs", os.W_OK) for c in ("memory", "pids")):
        return "v1"
    return None


def _write(path: str, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def paths(version: str, name: str) -> list[str]:
    if version == "v2":
        return [f"{V1_ROOT}/{GROUP}/{name}"]
    return [f"{V1_ROOT}/memory/{GROUP}/{name}", f"{V1_ROOT}/pids/{GROUP}/{name}"]


def kill_all(version: str, name: str) -> int:
    """SIGKILL every process still in the group (used by the parent when a worker died)."""
    n = 0
    for d in paths(version, name):
        try:
            with open(f"{d}/cgroup.procs") as f:
                pids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
                n += 1
            except OSError:
                pass
    return n


def remove(version: str, name: str) -> None:
    for d in paths(version, name):
        try:
            os.rmdir(d)
        except OSError:
            pass


class WorkerCgroup:
    """Open handles on one worker's cgroup. `enter()` (in the job child, still root) moves the child in."""

    def __init__(self, version: str, name: str, memory_bytes: int, max_procs: int):
        self.version, self.name = version, name
        self.procs_fds: list[int] = []
        if version == "v2":
            base = f"{V1_ROOT}/{GROUP}"
            os.makedirs(base, exist_ok=True)
            for ctl in (f"{V1_ROOT}/cgroup.subtree_control", f"{base}/cgroup.subtree_control"):
                try:
                    _write(ctl, "+memory +pids")
                except OSError:
                    pass
            d = f"{base}/{name}"
            os.makedirs(d, exist_ok=True)
            _write(f"{d}/pids.max", max_procs)
            try:
                _write(f"{d}/memory.swap.max", 0)
            except OSError:
                pass
            self.mem_limit_fd = os.open(f"{d}/memory.max", os.O_RDWR | os.O_CLOEXEC)
            self.oom_fd = os.open(f"{d}/memory.events", os.O_RDONLY | os.O_CLOEXEC)
            self.procs_fds.append(os.open(f"{d}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        else:
            mem, pids = paths("v1", name)
            os.makedirs(mem, exist_ok=True)
            os.makedirs(pids, exist_ok=True)
            _write(f"{pids}/pids.max", max_procs)
            self.mem_limit_fd = os.open(f"{mem}/memory.limit_in_bytes", os.O_RDWR | os.O_CLOEXEC)
            self.oom_fd = os.open(f"{mem}/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            self.procs_fds.append(os.open(f"{mem}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
            self.procs_fds.append(os.open(f"{pids}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
            try:  # exists only with swap accounting; kept equal to the memory limit (no swap for jobs)
                self.memsw_fd = os.open(f"{mem}/memory.memsw.limit_in_bytes", os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                self.memsw_fd = None
        if version == "v2":
            self.memsw_fd = None
        self.memory_bytes = None
        self.set_memory(memory_bytes)
        self.oom_seen = self.oom_kills()

    def set_memory(self, memory_bytes: int) -> None:
        if memory_bytes == self.memory_bytes:
            return
        value = str(int(memory_bytes)).encode()
        if self.memsw_fd is None:
            os.pwrite(self.mem_limit_fd, value, 0)
        else:  # v1 requires memsw >= memory at every step: order the two writes accordingly
            growing = self.memory_bytes is None or memory_bytes > self.memory_bytes
            order = (self.memsw_fd, self.mem_limit_fd) if growing else (self.mem_limit_fd, self.memsw_fd)
            for fd in order:
                try:
                    os.pwrite(fd, value, 0)
                except OSError:
                    if fd == self.mem_limit_fd:
                        raise
        self.memory_bytes = memory_bytes

    def oom_kills(self) -> int:
        try:
            data = os.pread(self.oom_fd, 4096, 0).decode()
        except OSError:
            return 0
        for line in data.splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
        return 0

    def new_oom_kill(self) -> bool:
        n = self.oom_kills()
        seen, self.oom_seen = self.oom_seen, n
        return n > seen

    def enter(self) -> None:
        pid = str(os.getpid()).encode()
        for fd in self.procs_fds:
            os.write(fd, pid)
