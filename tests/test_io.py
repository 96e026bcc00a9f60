"""iterkd.io: atomic writes, cut files read as "not finished", append-only logs, pinned settings, run locks
(with a real second process), and the CLI's behaviour on a locked run directory and a bad config section."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iterkd.errors import UserError
from iterkd.io import (
    ProgressLog,
    atomic_write_json,
    atomic_write_lines,
    pin_settings,
    read_json,
    read_progress_log,
    run_lock,
    write_with_tool,
)

SRC = Path(__file__).resolve().parents[1] / "src"
DEMO = Path(__file__).resolve().parents[1] / "configs" / "distill" / "demo.yaml"


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "a" / "card.json", {"x": 1})
    atomic_write_lines(tmp_path / "a" / "rows.jsonl", [{"k": 1}, {"k": 2}])
    assert read_json(tmp_path / "a" / "card.json") == {"x": 1}
    assert (tmp_path / "a" / "rows.jsonl").read_text() == '{"k": 1}\n{"k": 2}\n'
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["card.json", "rows.jsonl"]


def test_a_cut_finished_file_reads_as_missing(tmp_path):
    path = tmp_path / "summary.json"
    text = json.dumps({"method": "stand", "data": {"examples": 3}}, indent=1)
    path.write_text(text[: len(text) // 2])  # what a crash mid-write used to leave
    assert read_json(path) is None and read_json(tmp_path / "missing.json") is None
    path.write_text("[1, 2]")  # whole JSON, but not an object
    assert read_json(path) is None


def test_progress_log_skips_a_cut_line_and_appends_after_it(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"key": "a", "v": 1}\n{"key": "b", "v"')  # cut by a crash
    assert list(read_progress_log(path, lambda r: r["key"])) == ["a"]
    with ProgressLog(path) as log:
        log.append([{"key": "b", "v": 2}])
    assert read_progress_log(path, lambda r: r["key"]) == {"a": {"key": "a", "v": 1}, "b": {"key": "b", "v": 2}}


def test_pin_settings_refuses_other_settings_and_assumes_old_defaults(tmp_path):
    path = tmp_path / "pin.json"
    pin_settings(path, {"a": 1, "v": "v1"}, "dir", "use another")
    pin_settings(path, {"a": 1, "v": "v1"}, "dir", "use another")
    with pytest.raises(UserError, match=r"dir holds outputs made with other settings \(v: 'v1' -> 'v2'\); use another"):
        pin_settings(path, {"a": 1, "v": "v2"}, "dir", "use another")
    # an old pin file without a newer key: that key had the assumed value
    pin_settings(path, {"a": 1, "v": "v1", "family": "v1"}, "dir", "x", assumed={"family": "v1"})
    with pytest.raises(UserError, match="family: 'v1' -> 'v2'"):
        pin_settings(path, {"a": 1, "v": "v1", "family": "v2"}, "dir", "x", assumed={"family": "v1"})
    path.write_text('{"a": 1, "v"')  # cut: the settings are this run's
    pin_settings(path, {"a": 2}, "dir", "x")
    assert read_json(path) == {"a": 2}


def _holder(directory: Path) -> subprocess.Popen:
    """A second process that takes the run lock of ``directory`` and keeps it until killed."""
    code = (
        "import sys, time\nfrom iterkd.io import run_lock\nwith run_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n    time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_run_lock_names_the_holder_and_dies_with_it(tmp_path):
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(UserError, match=rf"run directory .*run is in use by pid {proc.pid} on "):
            with run_lock(tmp_path / "run"):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)  # kill -9: no cleanup runs
        proc.wait()
    with run_lock(tmp_path / "run"):  # the OS released the lock with the process
        pass


def _iterkd(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run(
        [sys.executable, "-m", "iterkd", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_distill_on_a_locked_run_dir_is_one_line_and_exit_2(tmp_path):
    run = tmp_path / "run"
    proc = _holder(run)
    try:
        began = time.monotonic()
        res = _iterkd("distill", "--config", DEMO, f"run_dir={run}", cwd=tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert res.returncode == 2, res.stderr
    assert f"is in use by pid {proc.pid}" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert time.monotonic() - began < 60  # refused at once: no student, no teacher server started
    assert sorted(p.name for p in run.iterdir()) == [".lock", ".lock.holder"]


@pytest.mark.parametrize("override, message", [
    ("train.learning_rate=abc", "train: 'learning_rate' must be a valid number"),
    ("eval.max_tokens=0", "eval: 'max_tokens' must be greater than 0"),
    ("teacher.temprature=0.2", "teacher: unknown setting 'temprature' (did you mean temperature?)"),
    ("student_sampling.top_p=0", "student_sampling: 'top_p' must be greater than 0"),
    ("eval.benchmarks=humaneval", "eval: 'benchmarks' must be a list, got 'humaneval'"),
])  # fmt: skip
def test_distill_checks_every_section_before_any_work(tmp_path, override, message):
    run = tmp_path / "run"
    res = _iterkd("distill", "--config", DEMO, f"run_dir={run}", override, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not run.exists()  # nothing started


def test_write_with_tool_renames_the_tools_file_or_raises_with_its_stderr(tmp_path):
    out = tmp_path / "model.gguf"
    writer = "import sys; open(sys.argv[1], 'w').write('weights')"
    assert write_with_tool(out, lambda tmp: [sys.executable, "-c", writer, str(tmp)], "writing") == out
    assert out.read_text() == "weights"
    failing = "import sys; open(sys.argv[1], 'w').write('half'); sys.stderr.write('bad tensor 7'); sys.exit(3)"
    with pytest.raises(UserError, match="converting failed: bad tensor 7"):
        write_with_tool(tmp_path / "b.gguf", lambda tmp: [sys.executable, "-c", failing, str(tmp)], "converting")
    silent = "pass"  # exit 0 but no file written: also a failure
    with pytest.raises(UserError, match="^quantising failed"):
        write_with_tool(tmp_path / "c.gguf", lambda tmp: [sys.executable, "-c", silent], "quantising")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]  # nothing half-written left behind
