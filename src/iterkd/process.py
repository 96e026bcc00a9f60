"""A child process that dies with its parent: the kernel's parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``),
for the processes a run starts (model servers, the ``accelerate launch`` of a training step, its ranks) so that
none outlives a run killed with ``kill -9``."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; elsewhere nothing). Also a
    ``preexec_fn``: then it runs in the child between fork and exec."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        pass


def kill_on_parent_death() -> None:
    """For a process already running (not a ``preexec_fn``): SIGKILL when the parent dies, and if the parent died
    before the call (this process was already handed to init), now."""
    parent = os.getppid()
    die_with_parent(signal.SIGKILL)
    if parent == 1 or os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)
