"""Hostile programs against iterkd.sandbox. Every test checks the verdict AND that the host is untouched:
canary file unchanged, no new file in a host directory, no connection on a host listener, no process of
the sandbox uids left, and the pool still answers a correct job."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile

import pytest

from iterkd.sandbox import Job, Limits, Sandbox, _linux

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux sandbox")

ROOT = os.geteuid() == 0
GOOD = Job(program="def f(x):\n    return x + 1\n", tests=["assert f(1) == 2"])
CANARY = b"canary: do not touch\n"


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=2, limits=Limits(timeout_s=1.0, memory_bytes=256 << 20)) as s:
        if ROOT:
            assert s.mode == "namespaces"
        yield s


@pytest.fixture
def host():
    """A world-writable host directory (visible inside the sandbox, under /run) with a world-writable
    root-owned canary, a root-only canary, and a listener on the host's 127.0.0.1."""
    base = "/run" if os.access("/run", os.W_OK) else None
    d = tempfile.mkdtemp(prefix="iterkd-sb-host-", dir=base)
    os.chmod(d, 0o777)
    open_canary = os.path.join(d, "canary_open.txt")
    root_canary = os.path.join(d, "canary_root.txt")
    for p, mode in ((open_canary, 0o666), (root_canary, 0o600)):
        with open(p, "wb") as f:
            f.write(CANARY)
        os.chmod(p, mode)
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    lst.setblocking(False)
    info = {"dir": d, "open": open_canary, "root": root_canary, "port": lst.getsockname()[1]}
    before = sorted(os.listdir(d))
    yield info
    try:
        lst.accept()
        connected = True
    except BlockingIOError:
        connected = False
    lst.close()
    after = sorted(os.listdir(d))
    contents = [open(p, "rb").read() for p in (open_canary, root_canary)]
    shutil.rmtree(d, ignore_errors=True)
    assert not connected, "the sandbox reached the host listener"
    assert after == before, f"new files in host dir: {set(after) - set(before)}"
    assert contents == [CANARY, CANARY], "host canary modified"


def assert_host_clean(sb):
    if ROOT:
        for uid in sb.isolation_report()["uids"]:
            assert _linux.pids_of_uid(uid) == [], f"processes of sandbox uid {uid} left"
    r = sb.run(GOOD)
    assert r.status == "passed", r


def run(sb, program, tests=("assert f(1) == 2",), **kw):
    r = sb.run(Job(program=program, tests=list(tests), **kw))
    assert r.status in ("passed", "failed", "timeout", "error")
    assert_host_clean(sb)
    return r


F = "def f(x):\n    return x + 1\n"

# ------------------------------------------------------------------------------------------------ forgeries


@pytest.mark.parametrize(
    "evil",
    [
        "import sys\nsys.exit(0)\n",
        "import os\nos._exit(0)\n",
        "raise SystemExit(0)\n",
        "import atexit, sys\natexit.register(lambda: print('PASSED'))\nsys.exit(0)\n",
        'import os\nfor fd in range(21):\n    for m in (b\'PASSED\\n\', b\'{"status": "passed", "tests_run": 1}\\n\', b\'\\nV{"status":"passed"}\\n\'):\n'
        "        try:\n            os.write(fd, m)\n        except OSError:\n            pass\nos._exit(0)\n",
    ],
)
def test_forged_exit_before_tests(sb, host, evil):
    r = run(sb, evil + F)
    assert r.status == "error" and not r.passed
    assert r.reason


@pytest.mark.parametrize(
    "body", ["sys.exit(0)", "os._exit(0)", "raise SystemExit(0)", "os.kill(os.getpid(), signal.SIGKILL)"]
)
def test_forgery_after_partial_tests(sb, host, body):
    prog = f"import os, sys, signal\ndef f(x):\n    if x == 2:\n        {body}\n    return x + 1\n"
    r = run(sb, prog, ["assert f(1) == 2", "assert f(2) == 3", "assert f(3) == 4"])
    assert not r.passed and r.tests_run == 1 and r.failed_test == 1
    if "kill" in body or "_exit" in body:
        assert r.status == "error"
        assert ("SIGKILL" in r.reason) if "kill" in body else ("code 0 before the tests finished" in r.reason)
    else:
        assert r.status == "failed" and "SystemExit" in r.feedback


def test_token_not_in_user_globals_or_env(sb, host):
    prog = (
        "import os, sys\nLEAK = [k for k in globals() if 'token' in k.lower() or 'verdict' in k.lower()]\n"
        "ENV = dict(os.environ)\nARGV = list(sys.argv)\n" + F
    )
    r = run(
        sb,
        prog,
        [
            "assert LEAK == []",
            "assert set(ENV) <= {'PATH', 'HOME', 'TMPDIR', 'LANG', 'OMP_NUM_THREADS', "
            "'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'}",
        ],
    )
    assert r.status == "passed", r


# ------------------------------------------------------------------------------------------------- escapes


def test_filesystem_escape(sb, host):
    prog = (
        f"""
import os
ESCAPED = []
def attempt(name, fn):
    try:
        fn()
        ESCAPED.append(name)
    except Exception:
        pass
attempt("new file in host dir", lambda: open({os.path.join(host["dir"], "pwned.txt")!r}, "w").write("x"))
attempt("write world-writable canary", lambda: open({host["open"]!r}, "a").write("x"))
attempt("unlink root canary", lambda: os.unlink({host["root"]!r}))
attempt("read root canary", lambda: open({host["root"]!r}).read())
attempt("write /etc", lambda: open("/etc/iterkd-pwned", "w").write("x"))
attempt("write project", lambda: open({os.path.abspath(__file__) + ".pwned"!r}, "w").write("x"))
attempt("list /root", lambda: os.listdir("/root/.ssh") if os.path.exists("/root/.ssh") else 1/0)
attempt("write /tmp outside scratch", lambda: open("/tmp/pwned", "w").write("x"))
attempt("chmod host dir", lambda: os.chmod({host["dir"]!r}, 0o700))
"""
        + F
    )
    r = run(sb, prog, ["assert ESCAPED == []", "assert f(1) == 2"])
    assert r.status == "passed", r.feedback
    assert not os.path.exists("/etc/iterkd-pwned") and not os.path.exists(os.path.abspath(__file__) + ".pwned")
    assert (os.stat(host["dir"]).st_mode & 0o777) == 0o777


def test_network_escape(sb, host):
    prog = (
        f"""
import socket
ESCAPED = []
for addr in [("127.0.0.1", {host["port"]}), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
    try:
        socket.create_connection(addr, timeout=1).close()
        ESCAPED.append(addr)
    except OSError:
        pass
"""
        + F
    )
    r = run(sb, prog, ["assert ESCAPED == []"])
    assert r.status == "passed", r.feedback


def test_daemon_is_killed(sb, host):
    prog = (
        f"""
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(1.5)
        try:
            open({os.path.join(host["dir"], "daemon_was_here")!r}, "w").write("x")
        finally:
            os._exit(0)
    os._exit(0)
"""
        + F
    )
    r = run(sb, prog)
    assert r.status == "passed"
    import time

    time.sleep(1.8)  # the daemon would have written by now; the host fixture checks the directory


@pytest.mark.parametrize("fork", ["os.fork", "posix.fork"])
def test_fork_bomb(sb, host, fork):
    prog = (
        f"import os, posix\nfor _ in range(10000):\n    try:\n        {fork}()\n    except OSError:\n        pass\n" + F
    )
    r = run(sb, prog)
    assert r.status in ("passed", "error", "timeout")  # each copy may even finish; none survives
    r = run(sb, f"import os, posix\nwhile True:\n    {fork}()\n" + F)
    assert r.status in ("error", "timeout")


@pytest.mark.parametrize(
    "evil",
    [
        "os.kill(os.getppid(), signal.SIGKILL)",
        "os.kill(1, signal.SIGKILL)",
        "os.killpg(0, signal.SIGKILL)",
        "os.kill(-1, signal.SIGKILL)",
    ],
)
def test_kill_parent_group_all(sb, host, evil):
    r = run(sb, f"import os, signal\n{evil}\n" + F)
    assert r.status == "error", r  # EPERM at top level, or the program killed itself
    assert len(sb._workers) == 2


# ------------------------------------------------------------------------------------------ resource abuse


def test_allocate_50gb_at_once(sb, host):
    r = run(sb, "x = bytearray(50 * 10**9)\n" + F)
    assert r.status == "error" and "memory" in r.reason.lower()


def test_memory_grows_gradually(sb, host):
    r = run(sb, "chunks = []\nwhile True:\n    chunks.append(b'x' * (16 << 20))\n" + F)
    assert r.status == "error" and "memory" in r.reason.lower(), r


def test_memory_across_forked_children(sb, host):
    prog = (
        """
import os, time
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        x = b'x' * (100 << 20)
        time.sleep(0.5)
        os._exit(0)
    kids.append(pid)
STATUSES = [os.waitpid(p, 0)[1] for p in kids]
"""
        + F
    )
    r = run(sb, prog, ["assert STATUSES == [0, 0, 0, 0]"])
    if ROOT:  # 4 x 100 MiB > 256 MiB cgroup: some child is OOM-killed
        assert r.status in ("failed", "error"), r


@pytest.mark.parametrize(
    "stream",
    [
        "print('y' * 1000000, end='')",
        "os.write(1, b'y' * 1000000)",
        "sys.stderr.write('y' * 1000000)",
        "os.write(2, b'y' * 1000000)",
    ],
)
def test_output_flood(sb, host, stream):
    prog = f"import os, sys\nfor _ in range(100):\n    {stream}\n" + F
    r = run(sb, prog)
    assert r.status == "passed", r
    got = r.stdout_bytes + r.stderr_bytes
    assert got >= 100_000_000 and len(r.stdout) + len(r.stderr) < 3000


def test_disk_fill(sb, host):
    prog = (
        """
import os
ERRORS = set()
for i in range(200):
    try:
        with open(f'fill{i}', 'wb') as fh:
            for _ in range(32):
                fh.write(b'z' * (1 << 20))
    except OSError as e:
        ERRORS.add(e.errno)
"""
        + F
    )
    r = run(sb, prog, ["import errno\nassert ERRORS and ERRORS <= {errno.EFBIG, errno.ENOSPC}, ERRORS"])
    assert r.status == "passed", r
    r = run(sb, "import os\nLEFT = os.listdir('.')\n" + F, ["assert LEFT == []"])
    assert r.status == "passed", r


def test_thousand_threads(sb, host):
    prog = (
        "import threading, time\nts = [threading.Thread(target=time.sleep, args=(5,)) for _ in range(1000)]\nfor t in ts:\n    t.start()\n"
        + F
    )
    r = run(sb, prog)
    assert r.status in ("error", "timeout"), r


def test_deep_recursion(sb, host):
    r = run(sb, "def f(x):\n    return f(x)\n")
    assert r.status == "failed" and "RecursionError" in r.feedback
    r = run(sb, "import sys\nsys.setrecursionlimit(10**7)\ndef f(x):\n    return f(x) + 1\n")
    assert r.status in ("error", "failed", "timeout") and not r.passed


def test_segfault(sb, host):
    r = run(sb, "import ctypes\nctypes.string_at(0)\n" + F)
    assert r.status == "error" and r.reason == "killed by SIGSEGV"


def test_ignore_signals_and_loop(sb, host):
    prog = (
        "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGPROF, signal.SIGXCPU):\n"
        "    signal.signal(s, signal.SIG_IGN)\nsignal.setitimer(signal.ITIMER_PROF, 0)\nwhile True:\n    pass\n"
    )
    r = run(sb, prog, limits=Limits(timeout_s=0.5))
    assert r.status == "timeout" and "CPU" in r.reason and r.wall_s < 4


def test_sleep_forever(sb, host):
    r = run(sb, "import time\ntime.sleep(10**6)\n", limits=Limits(timeout_s=0.5, wall_s=1.0))
    assert r.status == "timeout" and "wall-clock" in r.reason and r.wall_s < 2.5


def test_read_stdin(sb, host):
    r = run(sb, "def f(x):\n    return int(input()) + x\n")
    assert r.status == "failed" and "EOFError" in r.feedback
    r = run(sb, "import sys\nDATA = sys.stdin.read()\n" + F, ["assert DATA == ''"])
    assert r.status == "passed"


def test_close_stdio_and_sleep(sb, host):
    r = run(
        sb,
        "import os, time\nfor fd in (0, 1, 2):\n    os.close(fd)\ntime.sleep(100)\n",
        limits=Limits(timeout_s=0.5, wall_s=1.0),
    )
    assert r.status == "timeout"


def test_pool_survives_everything(sb):
    assert len(sb._workers) == 2
    res = list(sb.imap([GOOD] * 20))
    assert all(r.status == "passed" for _, r in res)
