"""Data types of the sandbox API: `Limits`, `Job`, `Result` (plain dataclasses, JSON-friendly)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

STATUSES = ("passed", "failed", "timeout", "error")


@dataclass(frozen=True)
class Limits:
    """Per-job resource limits.

    `timeout_s` is a CPU-time budget (process CPU time of the job's main process, enforced with a
    CPU timer and RLIMIT_CPU), so a busy machine does not turn passes into timeouts. `wall_s` is the
    wall-clock limit enforced from outside (default `2 * timeout_s + 2`), so a sleeping or blocked
    program still ends.
    """

    timeout_s: float = 3.0
    wall_s: Optional[float] = None
    memory_bytes: int = 1 << 30  # whole process tree via cgroup; RLIMIT_AS fallback
    address_space_bytes: Optional[int] = None  # None: 4 GiB when a memory cgroup is active, else memory_bytes
    max_procs: int = 64  # processes+threads (RLIMIT_NPROC per worker uid, cgroup pids.max)
    file_size_bytes: int = 16 << 20  # RLIMIT_FSIZE
    open_files: int = 256  # RLIMIT_NOFILE
    scratch_bytes: int = 64 << 20  # size of the worker's tmpfs scratch (job working directory)
    output_keep_bytes: int = 2048  # per stream: head + tail kept in the Result
    feedback_chars: int = 1000  # cap on Result.feedback

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(f"timeout_s must be a positive number, got {self.timeout_s!r}")
        if self.wall_s is not None and not self.wall_s > 0:
            raise ValueError(f"wall_s must be positive, got {self.wall_s!r}")
        for name in ("memory_bytes", "max_procs", "file_size_bytes", "open_files", "scratch_bytes"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive")

    @property
    def wall_limit_s(self) -> float:
        return self.wall_s if self.wall_s is not None else 2.0 * self.timeout_s + 2.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Limits:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Job:
    """A program plus tests. Inside the child: exec(program) in a fresh globals dict, then exec(setup)
    in the same dict, then each test (a statement or a multi-line block) in order, stopping at the
    first failing one. `limits` overrides the sandbox's limits for this job only (memory excepted
    where a cgroup enforces it per worker: the cgroup limit is updated when it differs)."""

    program: str
    tests: list = field(default_factory=list)
    setup: str = ""
    limits: Optional[Limits] = None

    def to_wire(self) -> dict:
        return {
            "program": str(self.program),
            "tests": [str(t) for t in self.tests],
            "setup": str(self.setup or ""),
        }


@dataclass
class Result:
    """Outcome of one job. `status`: passed | failed | timeout | error.

    failed  = a test raised or asserted (feedback shows the first failing test);
    error   = syntax error, exception at top level of the program or setup, crash, out of memory,
              killed, exited before the verdict, or a sandbox failure (see `reason`);
    timeout = CPU budget or wall-clock limit exceeded.
    """

    status: str
    passed: bool = False
    wall_s: float = 0.0
    cpu_s: float = 0.0
    n_tests: int = 0
    tests_run: int = 0
    failed_test: Optional[int] = None
    feedback: str = ""
    reason: str = ""
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"bad status {self.status!r}")
        self.passed = self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
