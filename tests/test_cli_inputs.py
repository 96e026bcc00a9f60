"""Bad input at the command line, as a new user types it: one line, exit 2, before any work (no torch, no model,
no sandbox) and without touching the output location, so the corrected command starts clean (issue 30)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EASY = Path(__file__).parent / "data" / "easy_tasks.jsonl"
HEAVY = ("torch", "transformers", "llama_cpp")


def iterkd(*args, cwd=None, env=None, importtime=False):
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "iterkd", *map(str, args)]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TERMINAL_WIDTH": "400", "COLUMNS": "400", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=full_env)


def error_line(res) -> str:
    """The one line a mistake prints (exit 2, no traceback); returns it."""
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if not line.startswith("import time:")]
    assert len(lines) == 1 and lines[0].startswith("iterkd: error: "), res.stderr[-2000:]
    return lines[0]


def heavy_imports(stderr: str) -> set[str]:
    names = {
        line.rsplit("|", 1)[-1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")
    }
    return names & set(HEAVY)


def snapshot(path: Path) -> dict:
    """What a location holds (files with contents and mtimes): equal snapshots = nothing was written."""
    if not path.exists():
        return {}
    if path.is_file():
        return {".": (path.read_bytes(), path.stat().st_mtime_ns)}
    return {str(p.relative_to(path)): (p.is_file() and p.read_bytes(), p.stat().st_mtime_ns) for p in path.rglob("*")}


def two_tasks(tmp_path: Path) -> Path:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(EASY.read_text().splitlines(keepends=True)[:2]))
    return path


def samples_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"task_id": "easy/add", "solution": "def add(a, b):\n    return a + b\n"}) + "\n")
    return path


# ------------------------------------------------------------------------------------------ output locations


@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_eval_output_location_not_a_directory(tmp_path, where):
    existing = tmp_path / "existing"
    existing.write_text("keep me\n")
    out = existing if where == "file" else existing / "sub"
    res = iterkd("eval", "-m", "smollm2-135m-instruct", "-b", two_tasks(tmp_path), "-o", out, importtime=True)
    line = error_line(res)
    assert str(out) in line
    assert heavy_imports(res.stderr) == set()
    assert existing.read_text() == "keep me\n"


@pytest.mark.parametrize("where", ["file", "below-a-file"])
def test_check_output_location_not_a_directory_stops_before_the_sandbox(tmp_path, where):
    existing = tmp_path / "existing"
    existing.write_text("keep me\n")
    out = existing if where == "file" else existing / "sub"
    began = time.perf_counter()
    res = iterkd("check", "-b", two_tasks(tmp_path), samples_file(tmp_path), "-o", out)
    line = error_line(res)
    assert str(out) in line
    assert existing.read_text() == "keep me\n"
    assert time.perf_counter() - began < 30


@pytest.mark.parametrize("how", ["key", "option", "below-a-file"])
def test_train_output_dir_not_a_directory_stops_before_torch(tmp_path, how):
    existing = tmp_path / "existing"
    existing.write_text("keep me\n")
    train_file = tmp_path / "train.jsonl"
    train_file.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    args = ["train", "model=smollm2-135m-instruct", f"train_file={train_file}"]
    args += {
        "key": [f"output_dir={existing}"],
        "option": ["--out", existing],
        "below-a-file": [f"output_dir={existing / 'sub'}"],
    }[how]
    res = iterkd(*args, importtime=True)
    line = error_line(res)
    assert str(existing) in line
    assert heavy_imports(res.stderr) == set()
    assert existing.read_text() == "keep me\n"


@pytest.mark.parametrize(
    "command, key",
    [(["train", "model=m", "train_file=t.jsonl"], "output_dir"), (["distill", "--method", "stand"], "run_dir")],
)
def test_out_option_and_key_naming_different_directories(tmp_path, command, key):
    res = iterkd(*command, "--out", "a", f"{key}=b", cwd=tmp_path)
    line = error_line(res)
    assert "--out a" in line and f"'{key}=b'" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_out_option_is_the_key():
    from iterkd.cli import _out_override

    assert _out_override(None, ["x=1"], "run_dir") == ["x=1"]
    assert _out_override(Path("runs/a"), ["x=1"], "run_dir") == ["x=1", "run_dir=runs/a"]
    # the same directory twice is no conflict; other keys are not looked at
    assert _out_override(Path("runs/a"), ["run_dir=./runs/a/"], "run_dir")[-1] == "run_dir=runs/a"
    assert _out_override(Path("o"), ["output-dir=o", "train.output_dir=x"], "output_dir")[-1] == "output_dir=o"


# ----------------------------------------------------------------------- eval: model and benchmark come first


@pytest.mark.parametrize(
    "model, env, message",
    [
        ("no-such-model", {}, "unknown model 'no-such-model'"),
        ("./no/such/dir", {}, "./no/such/dir: no such file or directory"),
        ("no-such-org/no-such-model", {"HF_HUB_OFFLINE": "1"}, "no-such-org/no-such-model: "),
    ],
)
def test_eval_mistyped_model_writes_nothing(tmp_path, model, env, message):
    out = tmp_path / "out"
    res = iterkd("eval", "-m", model, "-b", two_tasks(tmp_path), "-o", out, env=env, importtime=True)
    assert message in error_line(res)
    assert heavy_imports(res.stderr) == set()
    assert not out.exists()


def test_eval_bad_model_leaves_an_existing_directory_as_it_was(tmp_path):
    out = tmp_path / "out"
    (out / "old").mkdir(parents=True)
    (out / "old" / "notes.txt").write_text("mine\n")
    before = snapshot(out)
    error_line(iterkd("eval", "-m", "no-such-model", "-b", two_tasks(tmp_path), "-o", out))
    assert snapshot(out) == before


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text(""), "t.jsonl: contains no tasks"),
        (lambda p: p.write_text("\n\n"), "t.jsonl: contains no tasks"),
        (lambda p: None, "t.jsonl: no such file"),
        (lambda p: p.mkdir(), "t.jsonl: is a directory"),
        (lambda p: p.write_text('{"task_id": "x"}\n'), "t.jsonl:1: missing field 'prompt'"),
    ],
)
def test_eval_bad_benchmark_writes_nothing(tmp_path, make, message):
    tasks = tmp_path / "t.jsonl"
    make(tasks)
    out = tmp_path / "out"
    res = iterkd("eval", "-m", "smollm2-135m-instruct", "-b", tasks, "-o", out)
    assert message in error_line(res)
    assert not out.exists()


@pytest.mark.slow
def test_eval_after_a_mistyped_model_the_corrected_command_runs(tmp_path):
    tasks, out = two_tasks(tmp_path), tmp_path / "out"
    error_line(iterkd("eval", "-m", "no-such-model", "-b", tasks, "-o", out))
    res = iterkd(
        "eval", "-m", "smollm2-135m-instruct", "-b", tasks, "-o", out, "--limit", "1", "--max-tokens", "64", "-q"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["n_tasks"] == 1 and doc["generation"]["settings"]["model"] == "smollm2-135m-instruct"


# ---------------------------------------------------------------------------------------------------- check


@pytest.mark.parametrize("inside", [False, True])
def test_check_samples_given_as_a_directory(tmp_path, inside):
    run = tmp_path / "run"
    run.mkdir()
    if inside:
        (run / "samples.jsonl").write_text(samples_file(tmp_path).read_text())
    out = tmp_path / "out"
    line = error_line(iterkd("check", "-b", "humaneval", run, "-o", out))
    assert f"{run}: is a directory, expected a samples JSONL file" in line
    assert str(run / "samples.jsonl") in line
    assert ("did you mean" in line) == inside
    assert not out.exists()


def test_check_bad_samples_leave_no_output_directory(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text("")
    out = tmp_path / "out"
    assert "contains no samples" in error_line(iterkd("check", "-b", two_tasks(tmp_path), samples, "-o", out))
    assert not out.exists()


# ----------------------------------------------------------------------------------------- the command line


def test_mistyped_command_suggests_once():
    res = iterkd("distil")
    assert res.returncode == 2
    assert res.stderr.count("distill") == 1, res.stderr


def test_version():
    from importlib.metadata import version

    res = iterkd("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"iterkd {version('iterkd')}"


def flat(text: str) -> str:
    """Help text with rich's box and line wrapping taken out."""
    return " ".join(text.replace("│", " ").split())


def test_help_shows_rows_overrides_backends_and_out():
    from iterkd.models.load import NAMES

    train = flat(iterkd("train", "--help").stdout)
    assert '"chosen": assistant messages, "rejected": assistant messages}' in train
    assert "each value read as YAML" in train and "'lora_target_modules=[q_proj,v_proj]'" in train
    assert "--out" in train and "output_dir=DIR" in train
    distill = flat(iterkd("distill", "--help").stdout)
    assert "dotted keys reach into" in distill and "'eval.benchmarks=[humaneval,mbpp]'" in distill
    assert "--out" in distill and "run_dir=DIR" in distill
    backends = flat(iterkd("eval", "--help").stdout)
    assert "{backends}" not in backends
    assert all(name in backends for name in NAMES) and "vllm" in backends
