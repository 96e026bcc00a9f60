"""A run directory holds one set of settings: every stage pins the settings its records were made with, and a
rerun with other settings stops before any work, naming the stage, the key, the old and the new value.

These tests need no model: the refusals come before any work, on a copy of the committed IterKD smoke run (a
run directory written before pins existed, so it is pinned by its own config.yaml)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iterkd.codegen import prompts
from iterkd.errors import UserError
from iterkd.pipeline import load_distill_config
from iterkd.pipeline.resume import resume_check
from iterkd.stages import Plan, StagePin, active, begin

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "iterkd-smoke" / "run"


@pytest.fixture
def smoke_copy(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(SMOKE, run)
    return run


@pytest.fixture
def smoke(smoke_copy, monkeypatch):
    """A copy of the smoke run, checked by today's code with the prompt wordings it was made with (every family at
    v1; the question prompt is v2 since issue 31)."""
    from iterkd.codegen import prompts

    for family in prompts.PROMPT_VERSIONS:
        monkeypatch.setitem(prompts.PROMPT_VERSIONS, family, "v1")
    return smoke_copy


OLD_DEDUP = "iterkd.dedup=minhash"  # what the smoke run was made with (its config.yaml predates the key)


def _check(run: Path, *overrides: str):
    from iterkd.pipeline.iterkd import RECORDED_BEFORE, plan

    cfg = load_distill_config(run / "config.yaml", [f"run_dir={run}", *overrides])
    resume_check(cfg, plan, RECORDED_BEFORE)
    return cfg


@pytest.mark.parametrize(
    "override, stage, line",
    [
        (
            "teacher.served_model=qwen2.5-coder-0.5b-instruct",
            "r1/teacher-direct",
            "teacher.served_model = 'qwen2.5-coder-1.5b-instruct', not 'qwen2.5-coder-0.5b-instruct'",
        ),
        ("iterkd.n_faulty=3", "r1/teacher-faulty", "iterkd.n_faulty = 2, not 3"),
        ("iterkd.judge_variant=trace", "r1/judge", "iterkd.judge_variant = 'plain', not 'trace'"),
        ("train.learning_rate=1e-5", "r1/training", "train.learning_rate = 5e-06, not 1e-05"),
        ("iterkd.easy_min=4", "r1/questions", "iterkd.easy_min = 5.0, not 4.0"),
        ("limit=20", "r1/teacher-direct", "limit = 30, not 20"),
        ("student_sampling.max_tokens=256", "r1/student-answers", "student_sampling.max_tokens = 384, not 256"),
        ("eval.max_tokens=256", "eval/base/humaneval", "max_tokens = 384, not 256"),
    ],
)
def test_a_changed_setting_is_refused_before_any_work_naming_stage_key_and_values(smoke, override, stage, line):
    config = (smoke / "config.yaml").read_text()
    files = sorted(str(p.relative_to(smoke)) for p in smoke.rglob("*") if "settings" not in p.name)
    with pytest.raises(UserError) as err:
        _check(smoke, override)
    msg = str(err.value)
    assert f"run_dir {smoke}: stage {stage} was made with {line}" in msg and "use another run_dir" in msg
    assert "\n" not in msg and "to redo it" in msg
    assert (smoke / "config.yaml").read_text() == config  # never rewritten to settings its results lack
    assert sorted(str(p.relative_to(smoke)) for p in smoke.rglob("*") if "settings" not in p.name) == files


def test_a_reworded_prompt_family_is_refused(smoke, monkeypatch):
    from iterkd.codegen import prompts

    _check(smoke, OLD_DEDUP)  # the committed run pins itself (v1 wordings) and passes
    monkeypatch.setitem(prompts.PROMPT_VERSIONS, "teacher-faulty", "v2")
    with pytest.raises(
        UserError, match="stage r1/teacher-faulty was made with prompt_version:teacher-faulty = 'v1', not 'v2'"
    ):
        _check(smoke, OLD_DEDUP)


def test_settings_that_only_extend_a_run_or_move_it_may_change(smoke):
    """rounds, budgets, evaluation benchmarks, batch sizes and locations; the saved config.yaml follows."""
    extend = ["iterkd.rounds=6", "iterkd.budget.run_tokens=900000", "batch_size=4", "teacher.concurrency=2",
              f"teacher.cache_path={smoke / 'other.sqlite'}", "eval.benchmarks=[humaneval, mbpp]", "eval.batch_size=4",
              OLD_DEDUP]  # fmt: skip
    _check(smoke, *extend)
    saved = load_distill_config(smoke / "config.yaml", [])
    assert saved.iterkd.rounds == 6 and saved.iterkd.budget.run_tokens == 900000 and saved.eval["batch_size"] == 4
    # and the pins did not move: the same refusal as before
    with pytest.raises(UserError, match="iterkd.n_faulty = 2, not 3"):
        _check(smoke, "iterkd.n_faulty=3")


def test_pins_are_written_and_then_decide_over_config_yaml(smoke):
    """Once a stage is pinned, its pin file decides, whatever config.yaml says (edited by hand here)."""
    _check(smoke, OLD_DEDUP)
    pin = smoke / "rounds" / "r1" / "data" / "teacher_faulty.jsonl.settings.json"
    assert json.loads(pin.read_text())["iterkd.n_faulty"] == 2
    text = (smoke / "config.yaml").read_text().replace("n_faulty: 2", "n_faulty: 3")
    (smoke / "config.yaml").write_text(text)
    with pytest.raises(UserError, match="r1/teacher-faulty was made with iterkd.n_faulty = 2, not 3"):
        _check(smoke)


def test_a_setting_added_later_keeps_the_meaning_it_had_for_older_runs(smoke):
    """iterkd.dedup came after the smoke run: its config.yaml (and a pin file without the key) means minhash, the
    only de-duplication then, not today's default; resuming it with the new default is refused, naming the key."""
    assert load_distill_config(smoke / "config.yaml", [f"run_dir={smoke}"]).iterkd.dedup == "words2"
    with pytest.raises(UserError, match="stage r1/questions was made with iterkd.dedup = 'minhash', not 'words2'"):
        _check(smoke)
    _check(smoke, OLD_DEDUP)  # the same run, told what it was made with: accepted, and pinned so
    pin = smoke / "rounds" / "r1" / "data" / "questions.jsonl.settings.json"
    assert json.loads(pin.read_text())["iterkd.dedup"] == "minhash"
    assert load_distill_config(smoke / "config.yaml", [f"run_dir={smoke}"]).iterkd.dedup == "minhash"


def test_a_run_from_before_pins_was_made_with_the_v1_wordings(smoke_copy):
    """The smoke run's question records were written by the v1 question prompt: today's wording is refused at that
    stage, though the run recorded no prompt version at all (its config.yaml stays as it was)."""
    config = (smoke_copy / "config.yaml").read_text()
    today = prompts.PROMPT_VERSIONS["question"]
    with pytest.raises(
        UserError, match=f"stage r1/questions was made with prompt_version:question = 'v1', not '{today}'"
    ):
        _check(smoke_copy, OLD_DEDUP)
    assert (smoke_copy / "config.yaml").read_text() == config


def test_stage_engine_pins_a_stage_when_it_begins(tmp_path):
    records = tmp_path / "data" / "answers.jsonl"
    plan = Plan("run_dir x", [StagePin("answers", (records,), {"teacher.temperature": 0.0})])
    plan.check()  # nothing begun: nothing to compare
    with active(plan):
        begin(records)
    assert json.loads((tmp_path / "data" / "answers.jsonl.settings.json").read_text()) == {"teacher.temperature": 0.0}
    records.write_text("")
    Plan("run_dir x", [StagePin("answers", (records,), {"teacher.temperature": 0.0})]).check()
    with pytest.raises(UserError, match=r"stage answers was made with teacher.temperature = 0.0, not 0.7"):
        Plan("run_dir x", [StagePin("answers", (records,), {"teacher.temperature": 0.7})]).check()


def test_a_later_stage_that_began_means_the_earlier_ones_did(tmp_path):
    """Training leaves no file in a committed run (its checkpoints are not committed), but the stages after it
    did: its settings are pinned all the same."""
    first, second = tmp_path / "train", tmp_path / "answers.jsonl"
    second.write_text("{}\n")
    legacy = Plan(
        "x", [StagePin("training", (first,), {"train.learning_rate": 5e-6}), StagePin("answers", (second,), {})]
    )
    now = Plan("x", [StagePin("training", (first,), {"train.learning_rate": 1e-5}), StagePin("answers", (second,), {})])
    with pytest.raises(UserError, match="stage training was made with train.learning_rate = 5e-06, not 1e-05"):
        now.check(lambda: legacy)
    assert not first.exists()  # no directory is made for a pin


def test_cli_refusal_is_one_line_exit_2(smoke):
    proc = subprocess.run(
        [sys.executable, "-m", "iterkd", "distill", "--config", str(smoke / "config.yaml"), f"run_dir={smoke}",
         "iterkd.n_faulty=3"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iterkd: error: run_dir") and "r1/teacher-faulty" in lines[0]
