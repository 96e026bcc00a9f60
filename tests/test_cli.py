"""The command line as a user meets it: one clear line and exit 2 for mistakes, light commands stay light."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EASY_TASKS, STUDENT, TEACHER

HEAVY = ("torch", "transformers", "llama_cpp")


def iterkd(*args, cwd=None, importtime=False):
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "iterkd", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def children(pid: int) -> list[int]:
    """Pids of ``pid``'s live child processes (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def heavy_imports(stderr: str) -> set[str]:
    names = {
        line.rsplit("|", 1)[-1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")
    }
    return names & set(HEAVY)


def test_help_explains_every_command():
    top = iterkd("--help")
    assert top.returncode == 0
    for cmd in ("check", "eval", "models"):
        assert cmd in top.stdout
    for sub in (["check"], ["eval"], ["models", "list"], ["models", "fetch"]):
        res = iterkd(*sub, "--help")
        assert res.returncode == 0 and "Usage" in res.stdout, sub


@pytest.mark.parametrize(
    "lines, message",
    [
        (None, "no such file"),
        (['{"task_id": "HumanEval/0", "solution": "x = 1"}', "{broken"], "samples.jsonl:2: not valid JSON"),
        (['{"task_id": "HumanEval/999", "solution": "x = 1"}'], "samples.jsonl:1: unknown task id 'HumanEval/999'"),
        (['{"task_id": "HumanEval/0"}'], "samples.jsonl:1: needs a string 'solution' or 'completion'"),
        ([], "contains no samples"),
    ],
)
def test_check_rejects_bad_samples_with_one_line(tmp_path, lines, message):
    samples = tmp_path / "samples.jsonl"
    if lines is not None:
        samples.write_text("\n".join(lines) + "\n")
    res = iterkd("check", "--benchmark", "humaneval", samples, "--out", tmp_path / "out")
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["check", "s.jsonl", "--benchmark", "apps", "--out", "o"], "unknown benchmark 'apps'"),
        (["check", "s.jsonl", "--benchmark", "mbpp", "--split", "dev", "--out", "o"], "unknown MBPP split 'dev'"),
        (
            ["check", "s.jsonl", "--benchmark", "humaneval", "--out", "o", "--workers", "0"],
            "'--workers': 0 is not in the range x>=1",
        ),
        (["check", "s.jsonl", "--benchmark", "humaneval", "--out", "o", "--frobnicate"], "No such option"),
        (
            ["eval", "--model", "no-such-model-xyz", "--benchmark", "humaneval", "--out", "o", "--backend", "tpu"],
            "eval: unknown backend 'tpu'",
        ),
        (["models", "fetch", "gpt-5"], "gpt-5"),
    ],
)
def test_bad_options_exit_2(tmp_path, args, message):
    res = iterkd(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_light_commands_do_not_import_torch(tmp_path):
    for args in (["--help"], ["models", "list"], ["check", "--help"]):
        res = iterkd(*args, importtime=True)
        assert res.returncode == 0, res.stderr[-500:]
        assert heavy_imports(res.stderr) == set(), args


def test_check_scores_and_stays_light(tmp_path):
    samples = tmp_path / "samples.jsonl"
    good = "def add(x: int, y: int):\n    return x + y\n"
    rows = [
        {"task_id": "HumanEval/53", "solution": good},
        {"task_id": "HumanEval/53", "solution": "def add(x, y):\n    return x - y\n"},
        {"task_id": "HumanEval/53", "completion": "    return x + y\n"},
    ]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = iterkd("check", "--benchmark", "humaneval", samples, "--out", tmp_path / "out", importtime=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert heavy_imports(res.stderr) == set()
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["benchmark"] == "humaneval" and doc["n_tasks"] == 1 and doc["n_samples"] == 3
    assert [s["index"] for s in doc["samples"]] == [0, 1, 2]
    assert [s["passed"] for s in doc["samples"]] == [True, False, True]
    assert [s["status"] for s in doc["samples"]] == ["passed", "failed", "passed"]
    assert doc["pass_at_k"] == {"pass@1": pytest.approx(2 / 3)}
    assert "EXPECTED" in doc["samples"][1]["feedback"]
    assert "pass@1" in res.stdout


@pytest.mark.slow
def test_eval_with_repair_steps_reports_each_step(tmp_path):
    out = tmp_path / "run"
    args = ("eval", "--model", STUDENT, "--benchmark", "mbpp", "--limit", "3", "--repair-steps", "2")
    args += ("--max-tokens", "128", "--out", out, "-q")
    res = iterkd(*args)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    assert [s["step"] for s in doc["repair_steps"]] == [0, 1, 2]
    assert doc["repair_steps"][-1]["pass_at_k"] == doc["pass_at_k"]
    repairs = [json.loads(l) for l in (out / "repairs.jsonl").read_text().splitlines()]
    # every repair answers a sample that failed its seen test, and quotes that test's feedback
    assert all(r["step"] in (1, 2) and r["feedback"] for r in repairs)
    from iterkd.feedback import job_for
    from iterkd.sandbox import Limits, Sandbox
    from iterkd.tasks import load_mbpp

    tasks = {t.task_id: t for t in load_mbpp("test")[:3]}
    step0 = [json.loads(l) for l in (out / "samples.step0.jsonl").read_text().splitlines()]
    with Sandbox(workers=1) as sb:
        seen = sb.map(
            [job_for(tasks[r["task_id"]], r["solution"], Limits(), tests=tasks[r["task_id"]].seen_tests) for r in step0]
        )
    failing_seen = {r["task_id"] for r, v in zip(step0, seen) if not v.passed}
    assert {r["task_id"] for r in repairs if r["step"] == 1} == failing_seen
    final = (out / "samples.jsonl").read_text()
    assert final == (out / "samples.step2.jsonl").read_text()
    # rerunning resumes: no new repair calls
    again = iterkd(*args)
    assert again.returncode == 0
    assert len((out / "repairs.jsonl").read_text().splitlines()) == len(repairs)
    # repairs made with another wording of the refinement prompt are never mixed with this one's
    pin = out / "repair_config.json"
    assert json.loads(pin.read_text()) == {"prompt_version:student-refine": "v1"}
    pin.write_text(json.dumps({"prompt_version:student-refine": "v0"}))
    third = iterkd(*args)
    assert third.returncode == 2 and "prompt_version:student-refine: 'v0' -> 'v1'" in third.stderr, third.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_ctrl_c_or_sigterm_mid_stage_stops_quickly_and_keeps_records(tmp_path, sig, code, word):
    """Ctrl-C (or a scheduler's SIGTERM) while the teacher answers: the command stops within seconds with its own
    exit status and a hint, its llama.cpp server goes with it, and the finished records stay for the rerun."""
    import signal
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "iterkd", "distill", "--method", "stand", f"run_dir={run}", f"seed_tasks={EASY_TASKS}",
           "batch_size=1",
           f"teacher={{served_model: {TEACHER}, temperature: 0.0, max_tokens: 256, server_threads: 1, concurrency: 1, "
           f"cache_path: {tmp_path / 'cache.sqlite'}}}"]  # fmt: skip
    # a shell's background job starts with SIGINT ignored, and Python keeps it so: restore what a terminal gives
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    stage = run / "data" / "teacher_direct.jsonl"  # opened when the teacher's server answers
    deadline = time.monotonic() + 300
    while not stage.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    servers = children(proc.pid)
    assert servers, "the teacher's llama.cpp server should be running"
    started = time.monotonic()
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 20, err
    assert proc.returncode == code, err
    assert f"iterkd: {word} (rerun the same command to resume)" in err and "Traceback" not in err
    records = [json.loads(line) for line in stage.read_text().splitlines()]
    assert len(records) < 6 and all(r["stage"] == "teacher-direct" for r in records)
    assert not (run / "data" / "train.jsonl").exists()
    time.sleep(0.5)
    assert not [pid for pid in servers if Path(f"/proc/{pid}").exists()], "a server outlived the command"
