"""Sandbox for untrusted generated Python: a pool of isolated, pre-started workers.

    from iterkd.sandbox import Sandbox, Limits, Job, Result
    with Sandbox(workers=None, limits=Limits(timeout_s=3.0)) as sb:
        r = sb.run(Job(program="def f(x):\\n    return x+1\\n", tests=["assert f(1) == 2"]))
        for i, r in sb.imap(jobs): ...
        sb.isolation_report()

Importing this package is cheap: the worker machinery loads lazily.
"""

from .types import Job, Limits, Result

__all__ = ["Job", "Limits", "Result", "Sandbox", "SandboxError"]


def __getattr__(name):
    if name in ("Sandbox", "SandboxError"):
        from . import pool

        return getattr(pool, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
