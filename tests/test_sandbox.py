"""Normal behaviour of iterkd.sandbox: verdicts, feedback, limits, parallel imap, pool management."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from iterkd.sandbox import Job, Limits, Result, Sandbox, SandboxError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux sandbox")

ROOT = os.geteuid() == 0
ADD = "def f(x):\n    return x + 1\n"


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=2, limits=Limits(timeout_s=1.0)) as s:
        yield s


def test_pass(sb):
    r = sb.run(Job(program=ADD, tests=["assert f(1) == 2", "assert f(2) == 3"]))
    assert isinstance(r, Result)
    assert (r.status, r.passed, r.tests_run, r.n_tests, r.failed_test) == ("passed", True, 2, 2, None)
    assert r.wall_s > 0 and r.cpu_s >= 0
    json.dumps(r.to_dict())


def test_assert_feedback_input_output_expected(sb):
    r = sb.run(
        Job(
            program="def candidate(xs):\n    return sum(xs) + 1\n",
            tests=["assert candidate([1, 2]) == 3", "assert candidate([1, 2, 3]) == 6"],
        )
    )
    assert r.status == "failed" and not r.passed
    assert r.failed_test == 0 and r.tests_run == 0
    assert r.feedback == "INPUT: candidate([1, 2])\nOUTPUT: 4\nEXPECTED: 3"


def test_feedback_expected_on_left_and_setup(sb):
    r = sb.run(
        Job(
            program="def g(s):\n    return s.upper()\n",
            setup="candidate = g",
            tests=["assert candidate('ab') == 'AB'", "assert 'xY' == candidate('xy')"],
        )
    )
    assert r.status == "failed" and r.failed_test == 1 and r.tests_run == 1
    assert r.feedback == "INPUT: candidate('xy')\nOUTPUT: 'XY'\nEXPECTED: 'xY'"


def test_exception_feedback(sb):
    r = sb.run(Job(program="def f(x):\n    return 1 // x\n", tests=["assert f(1) == 1", "assert f(0) == 0"]))
    assert r.status == "failed" and r.failed_test == 1
    assert r.feedback == "INPUT: f(0)\nERROR: ZeroDivisionError: integer division or modulo by zero"


def test_generic_assert_forms(sb):
    prog = "def f(x):\n    return x / 3\n"
    r = sb.run(Job(program=prog, tests=["assert abs(f(1) - 0.5) < 1e-6"]))
    assert r.status == "failed"
    assert r.feedback.startswith("INPUT: f(1)\nOUTPUT: 0.333") and "EXPECTED: 0.5 (tolerance 1e-06)" in r.feedback
    r = sb.run(Job(program=prog, tests=["assert not f(3)"]))
    assert r.status == "failed" and r.feedback.startswith("INPUT: f(3)\nOUTPUT: 1.0\nEXPECTED: a falsy value")
    r = sb.run(Job(program=prog, tests=["assert f(0)"]))
    assert r.status == "failed" and r.feedback.startswith("INPUT: f(0)\nOUTPUT: 0.0\nEXPECTED:")
    r = sb.run(Job(program=prog, tests=["import math\nassert math.isclose(f(3), 2.0)"]))
    assert r.status == "failed" and "INPUT: f(3)" in r.feedback
    r = sb.run(Job(program=prog, tests=["assert f(3) < 0.5"]))
    assert r.status == "failed" and r.feedback == "INPUT: f(3)\nOUTPUT: 1.0\nEXPECTED: a value < 0.5"
    r = sb.run(Job(program=prog, tests=["assert abs(f(3) - 1.0) < 1e-9", "assert f(3) > 0.5", "assert f(6) in (1, 2)"]))
    assert r.status == "passed" and r.tests_run == 3


def test_block_test_feedback_shows_loop_values(sb):
    tests = ["for x, y in [(1, 2), (2, 3), (5, 7)]:\n    assert f(x) == y\n"]
    r = sb.run(Job(program=ADD, tests=tests))
    assert r.status == "failed"
    assert r.feedback == "INPUT: f(5)\nOUTPUT: 6\nEXPECTED: 7"
    r = sb.run(Job(program=ADD, tests=["def check(c):\n    assert c(1) == 2\n    assert c(2) == 3\ncheck(f)\n"]))
    assert r.status == "passed"
    r = sb.run(Job(program=ADD, tests=["def check(c):\n    assert c(1) == 3\ncheck(f)\n"]))
    assert r.status == "failed" and r.feedback == "INPUT: c(1)\nOUTPUT: 2\nEXPECTED: 3"
    r = sb.run(
        Job(
            program=ADD,
            tests=[
                "def check(candidate):\n    for x in range(3):\n        assert candidate(x) == x + 1 - (x == 2)\ncheck(f)\n"
            ],
        )
    )
    assert r.status == "failed" and r.feedback == "INPUT: candidate(2)\nOUTPUT: 3\nEXPECTED: 2"


HE_SETUP = """
METADATA = {}

def check(candidate):
    assert candidate([1.0, 2.0], 0.5) == False
    assert abs(candidate([3.0], 0.0) - 0.5) < 1e-6 or candidate([3.0], 0.0) is True
    for n in range(3):
        assert candidate([float(n)], 1.0) is not None
"""


def test_humaneval_style_check_in_setup(sb):
    prog = "def close(xs, t):\n    return any(abs(a - b) < t for a in xs for b in xs)\n"
    r = sb.run(Job(program=prog, setup=HE_SETUP, tests=["check(close)"]))
    assert r.status == "failed" and r.failed_test == 0
    assert r.feedback == "INPUT: candidate([1.0, 2.0], 0.5)\nOUTPUT: True\nEXPECTED: False"
    prog2 = "def close(xs, t):\n    if not xs[0]:\n        raise KeyError(t)\n    return len(xs) == 1\n"
    r = sb.run(Job(program=prog2, setup=HE_SETUP, tests=["check(close)"]))
    assert r.status == "failed" and r.feedback == "INPUT: candidate([float(n)], 1.0)\nERROR: KeyError: 1.0"
    prog3 = "def close(xs, t):\n    return 0.25 if len(xs) == 1 else False\n"
    r = sb.run(Job(program=prog3, setup=HE_SETUP, tests=["check(close)"]))
    assert r.status == "failed" and r.feedback.startswith("INPUT: candidate([3.0], 0.0)\nOUTPUT: 0.25\nEXPECTED: ")
    prog4 = "def close(xs, t):\n    return 0.5 if len(xs) == 1 else False\n"
    assert sb.run(Job(program=prog4, setup=HE_SETUP, tests=["check(close)"])).status == "passed"


def test_block_abs_feedback(sb):
    tests = ["for x, y in [(1, 2.0), (2, 2.5)]:\n    assert abs(f(x) - y) < 1e-3\n"]
    r = sb.run(Job(program=ADD, tests=tests))
    assert r.status == "failed" and r.feedback == "INPUT: f(2)\nOUTPUT: 3\nEXPECTED: 2.5 (tolerance 0.001)"


def test_syntax_error_is_error(sb):
    r = sb.run(Job(program="def f(x)\n    return x\n", tests=["assert f(1) == 1"]))
    assert r.status == "error" and "SyntaxError" in r.reason and "line 1" in r.reason
    assert r.tests_run == 0


def test_top_level_exception_is_error(sb):
    r = sb.run(Job(program="x = 1\nraise ValueError('boom')\n", tests=["assert True"]))
    assert r.status == "error" and r.reason.startswith("ValueError: boom") and "line 2" in r.reason


def test_system_exit_in_test_is_failure(sb):
    r = sb.run(Job(program="import sys\ndef f():\n    sys.exit(0)\n", tests=["assert f() is None"]))
    assert r.status == "failed" and "SystemExit" in r.feedback


def test_always_equal_object_does_not_pass(sb):
    prog = "class A:\n    def __eq__(self, o):\n        return True\ndef f(x):\n    return A()\n"
    r = sb.run(Job(program=prog, tests=["assert f(1) == 2"]))
    assert r.status == "failed" and "overrides __eq__" in r.feedback


def test_timeout_cpu(sb):
    r = sb.run(Job(program="def f():\n    while True:\n        pass\n", tests=["assert f() == 1"]))
    assert r.status == "timeout" and "CPU" in r.reason and r.failed_test == 0
    assert 0.5 <= r.cpu_s < 3.0, r  # CPU timer at 1.0 s (rusage sampling can read a little lower)
    assert r.feedback.startswith("INPUT: assert f() == 1\nERROR: exceeded")


def test_timeout_is_cpu_not_wall(sb):
    # 0.6 s of sleeping + a little CPU passes a 0.3 s CPU budget: sleeping is judged by the wall limit only
    r = sb.run(
        Job(
            program="import time\ndef f():\n    time.sleep(0.6)\n    return 1\n",
            tests=["assert f() == 1"],
            limits=Limits(timeout_s=0.3),
        )
    )
    assert r.status == "passed" and r.wall_s >= 0.6


def test_stdout_stderr_captured(sb):
    r = sb.run(
        Job(program="import sys\nprint('hello')\nprint('oops', file=sys.stderr)\n" + ADD, tests=["assert f(1) == 2"])
    )
    assert r.status == "passed" and r.stdout == "hello\n" and r.stderr == "oops\n"


def test_common_imports_work(sb):
    mods = [
        "math",
        "re",
        "collections",
        "itertools",
        "heapq",
        "functools",
        "typing",
        "string",
        "hashlib",
        "bisect",
        "random",
        "statistics",
        "fractions",
        "decimal",
        "datetime",
        "json",
        "copy",
        "operator",
        "array",
        "sys",
        "os",
        "time",
        "cmath",
        "dataclasses",
        "enum",
        "textwrap",
        "unicodedata",
        "struct",
        "io",
        "string",
        "queue",
        "threading",
        "subprocess",
        "tempfile",
        "pathlib",
        "pickle",
        "zlib",
        "sqlite3",
        "csv",
        "ast",
    ]
    prog = "".join(f"import {m}\n" for m in mods) + (
        "import tempfile, pathlib\n"
        "def f():\n"
        "    p = pathlib.Path(tempfile.mkdtemp()) / 'x.txt'\n"
        "    p.write_text('hi')\n"
        "    return hashlib.md5(p.read_text().encode()).hexdigest()[:4], math.gcd(12, 18)\n"
    )
    r = sb.run(Job(program=prog, tests=["assert f() == ('49f6', 6)"]))
    assert r.status == "passed", r
    try:
        import numpy  # noqa: F401
    except ImportError:
        return
    r = sb.run(
        Job(program="import numpy as np\ndef f(n):\n    return int(np.arange(n).sum())\n", tests=["assert f(5) == 10"])
    )
    assert r.status == "passed", r


def test_imap_parallel_index_mapping(sb):
    jobs = [
        Job(program=f"def f(x):\n    return x * {k}\n", tests=[f"assert f(2) == {2 * k if k % 3 else -1}"])
        for k in range(60)
    ]
    seen = {}
    for i, r in sb.imap(jobs):
        assert i not in seen
        seen[i] = r
    assert sorted(seen) == list(range(60))
    for k, r in seen.items():
        assert r.status == ("passed" if k % 3 else "failed"), (k, r)
        if k % 3 == 0:
            assert r.feedback == f"INPUT: f(2)\nOUTPUT: {2 * k}\nEXPECTED: -1"
    assert [r.status for r in sb.map(jobs[:4])] == ["failed", "passed", "passed", "failed"]


def test_imap_uses_all_workers(sb):
    jobs = [Job(program="import time\ntime.sleep(0.3)\n", tests=["assert True"]) for _ in range(6)]
    t = time.monotonic()
    res = list(sb.imap(jobs))
    assert all(r.status == "passed" for _, r in res)
    assert time.monotonic() - t < 1.5  # 6 x 0.3 s: 1.8 s on one worker, 0.9 s on two


def test_abandoned_imap_does_not_leak_results(sb):
    jobs = [Job(program="import time\ntime.sleep(0.2)\n" + ADD, tests=["assert f(1) == 2"]) for _ in range(6)]
    for _i, _r in sb.imap(jobs):
        break
    r = sb.run(Job(program=ADD, tests=["assert f(1) == 3"]))
    assert r.status == "failed" and r.n_tests == 1


def test_scratch_is_private_and_fresh(sb):
    prog = "import os\nFILES = os.listdir('.')\nopen('mine.txt', 'w').write('x')\nCWD = os.getcwd()\n"
    r1 = sb.run(Job(program=prog, tests=["assert FILES == []"]))
    r2 = sb.run(Job(program=prog, tests=["assert FILES == []"]))
    assert r1.status == r2.status == "passed"


def test_isolation_report(sb):
    rep = sb.isolation_report()
    assert rep["mode"] in ("namespaces", "bwrap", "none") and rep["workers"] == 2
    if ROOT:
        lay = rep["layers"]
        assert rep["mode"] == "namespaces"
        assert lay["network_namespace"] and lay["mount_namespace"] and lay["readonly_system"] and lay["tmpfs_scratch"]
        assert lay["uid_per_worker"] and len(set(rep["uids"])) == 2 and all(u >= 60000 for u in rep["uids"])
    json.dumps(rep)


def test_import_is_cheap():
    code = "import sys, iterkd.sandbox as s; print(sorted(m for m in ('subprocess', 'iterkd.sandbox.pool', 'torch', 'numpy') if m in sys.modules))"
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "src"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"


def test_limits_validation():
    with pytest.raises(ValueError):
        Limits(timeout_s=0)
    assert Limits(timeout_s=3.0).wall_limit_s == 8.0
    assert Limits(timeout_s=3.0, wall_s=5).wall_limit_s == 5


def _worker_pids(s: Sandbox) -> list[int]:
    return [w.proc.pid for w in s._workers]


def test_worker_death_is_reported_and_replaced():
    with Sandbox(workers=1, limits=Limits(timeout_s=2.0)) as s:
        pid = _worker_pids(s)[0]
        threading.Timer(0.4, lambda: os.kill(pid, signal.SIGKILL)).start()
        r = s.run(Job(program="import time\ntime.sleep(3)\n", tests=["assert True"]))
        assert r.status == "error" and r.reason == "sandbox worker died"
        assert _worker_pids(s)[0] != pid and s.isolation_report()["workers_replaced"] == 1
        assert s.run(Job(program=ADD, tests=["assert f(1) == 2"])).status == "passed"


def test_hung_worker_is_replaced():
    with Sandbox(workers=1, limits=Limits(timeout_s=0.2, wall_s=0.5), watchdog_grace_s=0.5) as s:
        pid = _worker_pids(s)[0]
        stopped = []

        def stop():
            from iterkd.sandbox import _linux

            for p in [pid] + _linux.children(str(pid)):
                os.kill(p, signal.SIGSTOP)
                stopped.append(p)

        threading.Timer(0.1, stop).start()
        t = time.monotonic()
        r = s.run(Job(program="import time\ntime.sleep(0.3)\n", tests=["assert True"]))
        assert r.status == "error" and "hung" in r.reason and time.monotonic() - t < 5
        assert s.run(Job(program=ADD, tests=["assert f(1) == 2"])).status == "passed"
        for p in stopped:
            assert not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split()[2] == "Z"


def test_close_leaves_nothing_behind():
    s = Sandbox(workers=2, limits=Limits(timeout_s=1.0))
    rep = s.isolation_report()
    pids = _worker_pids(s)
    assert (
        s.run(Job(program="import os, time\nif os.fork() == 0:\n    time.sleep(100)\n", tests=["assert True"])).status
        == "passed"
    )
    s.close()
    s.close()
    for p in pids:
        assert not os.path.exists(f"/proc/{p}")
    if ROOT:
        from iterkd.sandbox import _linux

        for uid in rep["uids"]:
            assert _linux.pids_of_uid(uid) == []
        for uid in rep["uids"]:
            assert not os.path.exists(f"/sys/fs/cgroup/memory/iterkd-sandbox/uid{uid}")
    with pytest.raises(SandboxError):
        s.run(Job(program=ADD, tests=[]))


def test_isolation_none_warns_and_bwrap_missing_raises(tmp_path):
    with pytest.warns(RuntimeWarning, match="WITHOUT"):
        s = Sandbox(workers=1, isolation="none")
    with s:
        assert s.isolation_report()["mode"] == "none"
        assert s.run(Job(program=ADD, tests=["assert f(1) == 2"])).status == "passed"
        assert s.run(Job(program="import sys\nsys.exit(0)\n", tests=["assert True"])).status == "error"
    import shutil

    if not shutil.which("bwrap"):
        with pytest.raises(SandboxError, match="bubblewrap"):
            Sandbox(workers=1, isolation="bwrap")


@pytest.mark.skipif(not ROOT or not os.path.exists("/usr/bin/setpriv"), reason="needs root and setpriv")
def test_non_root_without_bwrap_refuses():
    import shutil

    if shutil.which("bwrap"):
        pytest.skip("bwrap installed: non-root would use it")
    src = _readable_by_nobody(os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))
    code = (
        "from iterkd.sandbox import Sandbox, SandboxError\n"
        "try:\n    Sandbox(workers=1)\nexcept SandboxError as e:\n    print('REFUSED', e)\n"
    )
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", py, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
        cwd="/",
    )
    assert "REFUSED" in out.stdout and "isolation='none'" in out.stdout, out


BWRAP_SCRIPT = """
import json, os, sys
from iterkd.sandbox import Sandbox, Job, Limits
out = {}
with Sandbox(workers=2, limits=Limits(timeout_s=0.5)) as sb:
    out["mode"] = sb.mode
    run = lambda p, t=("assert True",), **kw: sb.run(Job(program=p, tests=list(t), **kw))
    out["pass"] = run("def f(x):\\n    return x + 1\\n", ["assert f(1) == 2"]).status
    out["net"] = run("import socket\\nsocket.create_connection(('127.0.0.1', %(port)d), timeout=1)\\n").status
    out["write"] = run("open(%(target)r, 'w').write('x')\\n").status
    out["exit0"] = run("import os\\nos._exit(0)\\n").status
    out["loop"] = run("while True:\\n    pass\\n").status
    out["tmp1"] = run("open('/tmp/left', 'w').write('x')\\n").status
    out["tmp2"] = run("import os\\nL = os.listdir('/tmp')\\nme = os.path.basename(os.getcwd())\\n",
                      ["assert me in L, L",
                       # anything else in /tmp is a read-only checkout/venv kept visible (when under /tmp)
                       "for n in L:\\n    for sub in (os.listdir('/tmp/' + n) if n != me else []):\\n        assert not os.access(f'/tmp/{n}/{sub}', os.W_OK), sub"]).status
    out["daemon"] = run("import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    time.sleep(60)\\n").status
print(json.dumps(out))
"""


def _readable_by_nobody(src: str) -> str:
    """``src``, or a world-readable copy of its iterkd package when a parent directory shuts others out (e.g. a
    checkout in a ``mktemp -d`` directory, mode 0700); the copy is removed at exit."""
    import atexit
    import shutil
    import stat
    import tempfile

    parts = src.split(os.sep)
    dirs = [os.sep.join(parts[:i]) or os.sep for i in range(1, len(parts) + 1)]
    if all(os.stat(d).st_mode & stat.S_IXOTH for d in dirs):
        return src
    pub = tempfile.mkdtemp(prefix="iterkd-src-")
    os.chmod(pub, 0o755)
    shutil.copytree(
        os.path.join(src, "iterkd"), os.path.join(pub, "iterkd"), ignore=shutil.ignore_patterns("__pycache__")
    )
    for root, subdirs, files in os.walk(pub):
        for name in subdirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    atexit.register(shutil.rmtree, pub, True)
    return pub


@pytest.mark.skipif(
    not ROOT or not os.path.exists("/usr/bin/setpriv") or not os.path.exists("/usr/bin/python3"),
    reason="needs root (to become nobody), setpriv and a system python3",
)
def test_bwrap_mode_as_non_root(tmp_path):
    import shutil
    import socket as so

    if not shutil.which("bwrap"):
        pytest.skip("bubblewrap not installed")
    lst = so.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    lst.setblocking(False)
    os.chmod(tmp_path, 0o777)
    target = str(tmp_path / "pwned")
    src = _readable_by_nobody(os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))
    code = BWRAP_SCRIPT % {"port": lst.getsockname()[1], "target": target}
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        cwd="/",
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res == {
        "mode": "bwrap",
        "pass": "passed",
        "net": "error",
        "write": "error",
        "exit0": "error",
        "loop": "timeout",
        "tmp1": "passed",
        "tmp2": "passed",
        "daemon": "passed",
    }
    with pytest.raises(BlockingIOError):
        lst.accept()
    assert not os.path.exists(target)
    lst.close()
    from iterkd.sandbox import _linux

    def ours(p):
        try:
            return (
                b"iterkd" in open(f"/proc/{p}/cmdline", "rb").read()
                and open(f"/proc/{p}/stat").read().split()[2] != "Z"
            )
        except OSError:
            return False

    assert [p for p in _linux.pids_of_uid(65534) if ours(p)] == []
