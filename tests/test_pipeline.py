"""`iterkd distill`: config handling, and one whole method end to end with real parts (llama.cpp-served
teacher, real sandbox, TRL training, evaluation), then a resume that repeats nothing."""

import json
import re
import time
from pathlib import Path

import pytest

from iterkd.errors import UserError
from iterkd.pipeline import load_distill_config

EASY = str(Path(__file__).parent / "data" / "easy_tasks.jsonl")


def test_config_overrides_reach_into_sections(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: persd\nrun_dir: r\nteacher: {temperature: 0.2}\ntrain: {max_steps: 5}\n")
    cfg = load_distill_config(path, ["limit=7", "teacher.served_model=smollm2-135m-instruct", "eval.limit=3"], "inpd")
    assert cfg.method == "inpd" and cfg.limit == 7 and cfg.train == {"max_steps": 5}
    assert cfg.teacher.temperature == 0.2 and cfg.teacher.served_model == "smollm2-135m-instruct"
    assert cfg.teacher.max_tokens == 512  # defaults of a section survive a partial section
    assert cfg.eval["limit"] == 3 and cfg.eval["benchmarks"] == ["humaneval", "mbpp"]
    for bad, msg in (
        (["lmit=3"], r"unknown key 'lmit' \(did you mean limit"),
        (["method.x=1"], "not a section"),
        (["limit=0"], "override 'limit=0': 'limit' must be greater than 0, got 0"),
        (["train.learning_rate=abc"], "train: 'learning_rate' must be a valid number.*'abc'"),
        (["eval.n_samples=0"], "eval: 'n_samples' must be greater than 0"),
        (["teacher.concurrency=0"], "teacher: 'concurrency' must be greater than or equal to 1"),
        (["student_sampling.top_p=2"], "student_sampling: 'top_p' must be less than or equal to 1"),
        (["novalue"], "expected key=value"),
    ):
        with pytest.raises(UserError, match=msg):
            load_distill_config(path, bad)
    with pytest.raises(UserError, match="unknown method"):
        load_distill_config(path, [], "distil")
    with pytest.raises(UserError, match="no such config file"):
        load_distill_config(tmp_path / "missing.yaml", [])


def test_rewording_a_prompt_makes_a_shared_stage_dir_refuse(tmp_path, monkeypatch):
    """Stage records are pinned to every prompt family's version: a reworded teacher prompt never mixes old
    records with new ones."""
    from iterkd.codegen import prompts
    from iterkd.pipeline.distill import _stage_dir

    stages = tmp_path / "stages"
    cfg = load_distill_config(None, [f"run_dir={tmp_path / 'a'}", f"stage_dir={stages}"], "persd")
    assert _stage_dir(cfg, tmp_path / "a") == stages
    pinned = json.loads((stages / "stage_settings.json").read_text())
    assert pinned["prompt_version"] == "v1" and pinned["prompt_version:teacher-repair"] == "v1"
    monkeypatch.setitem(prompts.PROMPT_VERSIONS, "teacher-repair", "v2")
    with pytest.raises(UserError, match="other settings.*prompt_version:teacher-repair: 'v1' -> 'v2'"):
        _stage_dir(cfg, tmp_path / "a")
    # a stage_dir pinned before the families were recorded (student version only) holds v1 records
    monkeypatch.setitem(prompts.PROMPT_VERSIONS, "teacher-repair", "v1")
    (stages / "stage_settings.json").write_text(json.dumps({k: v for k, v in pinned.items() if ":" not in k}))
    assert _stage_dir(cfg, tmp_path / "a") == stages
    monkeypatch.setitem(prompts.PROMPT_VERSIONS, "student-refine", "v2")
    with pytest.raises(UserError, match="prompt_version:student-refine: 'v1' -> 'v2'"):
        _stage_dir(cfg, tmp_path / "a")


def test_the_committed_shared_stage_dirs_still_accept_the_settings_they_were_made_with(tmp_path):
    """experiments/persd-mini's rows share stage directories pinned before per-stage pins and typed sections (a
    teacher's unset keys recorded as null, no prompt family recorded): the experiment's own config still fits."""
    import shutil

    from iterkd.pipeline.distill import _stage_dir

    root = Path(__file__).resolve().parents[1] / "experiments" / "persd-mini"
    for stages, extra in (("stages", []), ("stages-qwen05", ["student=qwen2.5-coder-0.5b-instruct"])):
        copy = tmp_path / stages
        copy.mkdir()
        shutil.copyfile(root / stages / "stage_settings.json", copy / "stage_settings.json")
        for method in ("stand", "persd-combine"):
            cfg = load_distill_config(root / "config.yaml", [f"run_dir={tmp_path / 'r'}", f"stage_dir={copy}", *extra],
                                      method)  # fmt: skip
            assert _stage_dir(cfg, tmp_path / "r") == copy
        with pytest.raises(UserError, match="other settings.*max_tokens"):
            _stage_dir(load_distill_config(root / "config.yaml", [f"run_dir={tmp_path / 'r'}", f"stage_dir={copy}",
                                                                  "teacher.max_tokens=256", *extra]), tmp_path / "r")  # fmt: skip


def test_the_clock_sums_each_step_over_calls_an_interrupted_one_included(tmp_path):
    """A run's wall time survives a resume: each call adds its time to the step's total on disk, and a call
    stopped by Ctrl-C (or SIGTERM, which the CLI raises the same way) still adds the time it spent. A clock that
    starts on a directory which already holds stage records (a run from before the clock) says it is a floor."""
    from iterkd.stages import Clock

    records = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        with Clock(tmp_path / "clock.json", records).step("data"):
            records.mkdir()
            (records / "teacher_direct.jsonl").write_text('{"key": "a"}\n')  # this call's own records
            time.sleep(0.2)
            raise KeyboardInterrupt
    clock = Clock(tmp_path / "clock.json", records)  # the next call reads what the one before spent
    first = clock.totals["data"]
    assert first >= 0.2 and clock.complete
    with clock.step("data"):
        time.sleep(0.2)
    with clock.step("training"):
        pass
    totals = clock.totals
    assert set(totals) == {"data", "training"} and totals["data"] >= first + 0.2 - 1e-9 and clock.complete
    late = Clock(tmp_path / "late.json", records)  # started on records an earlier call wrote
    with late.step("data"):
        pass
    assert not late.complete and set(late.totals) == {"data"}
    assert Clock(tmp_path / "empty.json", tmp_path / "none").complete  # no records yet: from the first call


@pytest.mark.slow
def test_stand_end_to_end_then_resume(tmp_path):
    from iterkd.pipeline import run_distill

    run = tmp_path / "run"
    overrides = [
        f"run_dir={run}",
        f"seed_tasks={EASY}",
        "student=smollm2-135m-instruct",
        f"teacher={{served_model: smollm2-135m-instruct, temperature: 0.0, max_tokens: 160, server_threads: 2, cache_path: {tmp_path / 'cache.sqlite'}}}",
        "train={max_steps: 2, per_device_train_batch_size: 2, gradient_accumulation_steps: 1, max_length: 384, save_steps: 1, logging_steps: 1}",
        f"eval={{benchmarks: [{EASY}], max_tokens: 160, backend: auto, export_gguf: q8_0}}",
    ]
    cfg = load_distill_config(None, overrides, "stand")
    summary = run_distill(cfg, progress=False)
    card = summary["data"]
    assert card["method"] == "stand" and card["seed_tasks"] == 6 and card["teacher_calls"] == 6
    rows = [json.loads(l) for l in (run / "data" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == card["examples"] == card["teacher_passed"] >= 1
    assert all(r["completion"][0]["content"].startswith("```python") for r in rows)
    assert card["teacher"]["usage"]["calls"] == 6
    assert (run / "train" / "final" / "config.json").exists() and (run / "config.yaml").exists()
    # the trained student was exported to GGUF and evaluated through llama.cpp, like the base student
    # paths in the summary and results are relative (to the run, to the eval directory): no machine paths
    assert summary["trained_gguf"] == "train/final.q8_0.gguf" and summary["trained_model"] == "train/final"
    gen = json.loads((run / "eval" / "trained" / "easy_tasks" / "generation_config.json").read_text())
    assert gen["model"] == str(run / summary["trained_gguf"]) and gen["backend"] == "auto"
    results = json.loads((run / "eval" / "trained" / "easy_tasks" / "results.json").read_text())
    assert results["generation"]["settings"]["model"] == "../../../train/final.q8_0.gguf"
    # ... and "before" is the untrained student through the same de-quantise -> export path
    assert summary["base_gguf"] == "base-model/final.q8_0.gguf"
    gen = json.loads((run / "eval" / "base" / "easy_tasks" / "generation_config.json").read_text())
    assert gen["model"] == str(run / summary["base_gguf"])
    for key in ("base", "trained"):
        assert summary[key]["easy_tasks"]["n_tasks"] == 6
        assert 0.0 <= summary[key]["easy_tasks"]["pass_at_k"]["pass@1"] <= 1.0
    assert json.loads((run / "summary.json").read_text())["trained"] == summary["trained"]
    # the wall time per step, over every call (one so far: no more than this call's)
    wall = summary["wall_seconds"]
    assert set(wall) == {"data", "training", "base_eval", "trained_eval"} and min(wall.values()) > 0
    assert summary["wall_seconds_complete"] is True
    assert sum(wall.values()) <= summary["wall_seconds_this_call"] + 0.2
    # `iterkd report` reads the run directory: its base row and its trained row, with the data card
    from iterkd.report import build_report
    from iterkd.report.runs import load

    report_rows, _ = load([run])
    assert [(r.name, r.kind) for r in report_rows] == [("run/base", "base"), ("run", "distill")]
    assert report_rows[1].examples == card["examples"] and report_rows[1].card["method"] == "stand"
    assert len(report_rows[1].results["easy_tasks"].passed) == 6
    assert report_rows[1].wall_seconds == sum(wall.values()) and not report_rows[1].wall_at_least
    assert "funnel" in build_report([run], tmp_path / "report")["plots"]

    again = run_distill(load_distill_config(None, overrides, "stand"), progress=False)
    assert again["train_seconds"] == 0.0 and again["data"] == card and again["trained"] == summary["trained"]
    assert set(again["wall_seconds"]) == set(wall) and all(again["wall_seconds"][k] >= wall[k] for k in wall)
    # the trained student is never reused under another training config (nor the records under another teacher)
    with pytest.raises(UserError, match=r"stage training was made with train.max_steps = 2, not 3"):
        run_distill(load_distill_config(None, [*overrides, "train.max_steps=3"], "stand"), progress=False)
    with pytest.raises(UserError, match=r"stage teacher-direct was made with teacher.temperature = 0.0, not 0.5"):
        run_distill(load_distill_config(None, [*overrides, "teacher.temperature=0.5"], "stand"), progress=False)

    # A "stage finished" file cut by a crash is detected and its stage redone from the stage records (no
    # teacher call, same training set), never crashed on.
    train_set = (run / "data" / "train.jsonl").read_text()
    for name in ("data/data_card.json", "summary.json"):
        text = (run / name).read_text()
        (run / name).write_text(text[: len(text) // 2])
    third = run_distill(load_distill_config(None, overrides, "stand"), progress=False)
    assert third["data"]["examples"] == card["examples"] and third["data"]["teacher"]["usage"]["calls"] == 0
    assert (run / "data" / "train.jsonl").read_text() == train_set and third["trained"] == summary["trained"]
    assert json.loads((run / "summary.json").read_text())["data"] == third["data"]


@pytest.mark.slow
def test_shared_stage_dir_reuses_records_and_refuses_other_settings(tmp_path):
    """Rows of an experiment share stage records: INPD reuses STAND's teacher answers (no new teacher call)."""
    from iterkd.models.llamacpp_source import native_server
    from iterkd.pipeline.distill import build_data

    stages = tmp_path / "stages"
    common = [
        f"seed_tasks={EASY}", f"stage_dir={stages}", "batch_size=3",
        "student_sampling={temperature: 0.3, max_tokens: 8, seed: 0}",  # too short to pass: every task is failed
        f"student_backend={'llama-server' if native_server() else 'auto'}",
        f"teacher={{served_model: smollm2-135m-instruct, temperature: 0.0, max_tokens: 160, server_threads: 2, cache_path: {tmp_path / 'cache.sqlite'}}}",
    ]  # fmt: skip
    stand = load_distill_config(None, common + [f"run_dir={tmp_path / 'a'}"], "stand")
    card = build_data(stand, Path(stand.run_dir), progress=False)
    assert card["teacher"]["usage"]["calls"] == 6 and (stages / "teacher_direct.jsonl").exists()
    (tmp_path / "cache.sqlite").unlink()  # no cache to fall back on: only the stage records can answer
    inpd = load_distill_config(None, common + [f"run_dir={tmp_path / 'b'}"], "inpd")
    card = build_data(inpd, Path(inpd.run_dir), progress=False)
    assert card["teacher"]["usage"]["calls"] == 0 and card["teacher_calls"] == card["failed"] == 6
    assert (stages / "student_attempts.jsonl").exists() and not (
        tmp_path / "b" / "data" / "student_attempts.jsonl"
    ).exists()
    assert (tmp_path / "b" / "data" / "train.jsonl").exists()
    other = load_distill_config(
        None, common + [f"run_dir={tmp_path / 'c'}", "student_sampling.temperature=0.9"], "persd"
    )
    with pytest.raises(UserError, match="other settings.*student_sampling"):
        build_data(other, Path(other.run_dir), progress=False)
    with pytest.raises(UserError, match="unknown backend"):
        load_distill_config(None, common + ["run_dir=x", "student_backend=tgi"], "persd")


def test_every_committed_config_still_loads():
    """The configs of committed runs (resolved config.yaml files) and the shipped ones validate unchanged."""
    root = Path(__file__).resolve().parents[1]
    paths = sorted(root.glob("experiments/**/config.yaml")) + sorted(root.glob("configs/distill/*.yaml"))
    assert len(paths) > 10
    for path in paths:
        load_distill_config(path, ["run_dir=r"])  # the base config of persd-mini leaves run_dir to run.py


ITERKD = [
    f"seed_tasks={EASY}",
    "student=smollm2-135m-instruct",
    "student_sampling={temperature: 0.0, max_tokens: 128}",
    "train={max_steps: 1, per_device_train_batch_size: 2, gradient_accumulation_steps: 1, max_length: 256, save_steps: 1, logging_steps: 1}",
    # short judge verdicts and no question for the hard seeds (most of them, with this student): the judge and the
    # question writer are tested on their own (test_feedback_judge, test_methods_questions); here they only run
    "iterkd={n_faulty: 2, judge_max_tokens: 16, question_max_tokens: 64, per_seed: {easy: 1, medium: 1, hard: 0}}",
]  # fmt: skip


def test_iterkd_section_is_checked_before_any_work(tmp_path):
    for bad, msg in ((["iterkd.loss=kto"], "iterkd: 'loss' must be 'dpo' or 'sft', got 'kto'"),
                     (["iterkd.rondus=2"], "iterkd: unknown setting 'rondus' \\(did you mean rounds"),
                     (["iterkd.per_seed={hrad: 2}"], "iterkd: 'per_seed': key 'hrad' must be 'easy', 'medium' or 'hard'$"),
                     (["iterkd.per_seed={hard: -1}"], "iterkd: 'per_seed.hard' must be greater than or equal to 0, got -1")):  # fmt: skip
        with pytest.raises(UserError, match=msg):
            load_distill_config(None, [*ITERKD, f"run_dir={tmp_path / 'r'}", *bad], "iterkd")
    assert not (tmp_path / "r").exists()


def test_a_budget_stop_reports_what_the_records_hold(tmp_path):
    """Requests sent before the budget check saw the limit (the stage engine overlaps batches) are answered and
    kept: the stop names the tokens the run's records hold, not the smaller count the check saw."""
    from iterkd.pipeline.iterkd import _spent_on_disk
    from iterkd.teacher import BudgetExceeded

    for k, tokens in ((1, (300, 200)), (2, (60, 40))):
        data = tmp_path / "rounds" / f"r{k}" / "data"
        data.mkdir(parents=True)
        rows = [{"key": f"q{i}", "prompt_tokens": t, "completion_tokens": 10} for i, t in enumerate(tokens)]
        (data / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (data / "student_answers.jsonl").write_text(
            json.dumps({"key": "s", "prompt_tokens": 9, "completion_tokens": 9}) + "\n"
        )

    def stop(what, spent):
        return BudgetExceeded(f"{what} teacher-token budget reached: {spent} of 550 tokens", limit="tokens", spent=spent,
                              budget=550, what=what)  # fmt: skip

    run = _spent_on_disk(stop("run", 560), tmp_path)  # rounds 1 + 2: 520 + 120 tokens (the student's excluded)
    tail = "reached at 560 tokens; with the requests already sent then, answered and kept, the run's records hold 640)"
    assert run.spent == 640 and run.what == "run" and str(run).endswith(tail)
    assert _spent_on_disk(stop("round 2", 100), tmp_path).spent == 120  # round 2's records only
    assert _spent_on_disk(stop("run", 640), tmp_path).spent == 640  # nothing in flight: the stop as it was
    assert str(_spent_on_disk(stop("run", 640), tmp_path)) == str(stop("run", 640))


def _cache_rows(path: Path) -> int:
    """Teacher calls stored in a teacher cache file (one row per distinct request)."""
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # minutes on an idle 2-core VM; room for a loaded one
def test_iterkd_stopped_killed_resumed_extended_and_refused(tmp_path, monkeypatch):
    """One IterKD run through what a user's run meets (SmolLM2-135M as teacher, judge and student: it writes few
    pairs and no new question, so the second round's pool is the first round's hard seeds): stopped by its teacher
    budget; killed with kill -9 while the teacher answers a stage, then the same command again (no record lost,
    no request paid twice); raised from one round to two; a round whose summary was lost rebuilt from its stage
    records without starting the teacher; reruns with settings that decide records refused."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from iterkd.pipeline import run_distill
    from iterkd.pipeline.iterkd import round_tokens
    from iterkd.teacher import BudgetExceeded

    run, cache = tmp_path / "run", tmp_path / "c.sqlite"
    teacher = f"teacher={{served_model: smollm2-135m-instruct, temperature: 0.0, max_tokens: 128, server_threads: 2, cache_path: {cache}}}"
    evals = f"eval={{benchmarks: [{EASY}], max_tokens: 128}}"
    args = [*ITERKD, teacher, evals, f"run_dir={run}", "iterkd.rounds=2"]
    # a run budget of 1 token: the first teacher batch is sent, the next one is refused; the run stops cleanly
    with pytest.raises(BudgetExceeded, match="run teacher-token budget reached: [0-9]+ of 1 tokens") as stop:
        run_distill(load_distill_config(None, [*args, "iterkd.budget.run_tokens=1"], "iterkd"), progress=False)
    # what it says it spent is what its records hold (requests sent before the check are answered and counted)
    assert stop.value.spent == round_tokens(run / "rounds" / "r1")["total"] > 0
    stopped = json.loads((run / "summary.json").read_text())
    assert stopped["rounds"] == [] and stopped["stopped"].startswith("run teacher-token budget reached")
    first = (run / "rounds" / "r1" / "data" / "teacher_direct.jsonl").read_text().splitlines()
    faulty = run / "rounds" / "r1" / "data" / "teacher_faulty.jsonl"
    assert len(first) == 6 and (not faulty.exists() or faulty.read_text() == "")  # refused before its first batch

    # `iterkd distill` for one round, killed with kill -9 while the teacher answers r1/teacher-faulty (12 requests,
    # asked 4 at a time, one at a time by the teacher: its llama-server dies with it), then the same run again
    one_round = [*args, "iterkd.rounds=1"]
    src = str(Path(__file__).resolve().parents[1] / "src")
    proc = subprocess.Popen([sys.executable, "-m", "iterkd", "distill", "--method", "iterkd", *one_round,
                             "teacher.concurrency=1", "batch_size=4"], env=dict(os.environ, PYTHONPATH=src),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        if faulty.exists() and faulty.read_text().endswith("\n"):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # still answering the stage
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = faulty.read_text()
    cached_before = _cache_rows(cache)
    one = run_distill(load_distill_config(None, one_round, "iterkd"), progress=False)
    assert faulty.read_text().startswith(before)  # nothing written before the kill was lost or rewritten
    keys = [json.loads(line)["key"] for line in faulty.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 12 == one["rounds"][0]["pairs"]["faulty_asked"]
    # every call the rerun paid for was a new request (a row of the cache)
    assert _cache_rows(cache) == cached_before + one["teacher_this_call"]["usage"]["calls"]
    assert [r["round"] for r in one["rounds"]] == [1] and not (run / "rounds" / "r2").exists()
    # the round's wall time counts the calls before this one: the budget-stopped call answered in Stage I (the
    # killed one lost the time of the step it was in, kill -9 runs no code)
    timed = one["rounds"][0]
    assert set(timed["wall_seconds"]) == set(timed["seconds"])
    assert timed["wall_seconds"]["stage1_pairs"] > timed["seconds"]["stage1_pairs"]
    assert timed["wall_seconds_complete"] is True  # the clock started with the run's first call

    # then raise rounds (a setting that only extends a run): round 2 runs, round 1 is kept; no call is paid for
    # twice (round 2 asks again for the hard seeds of round 1, which the cache answers: every paid call is a new
    # row of the cache)
    cached_before = _cache_rows(cache)
    summary = run_distill(load_distill_config(None, args, "iterkd"), progress=False)
    assert summary["rounds"][0] == one["rounds"][0]
    assert summary["stopped"] is None
    assert _cache_rows(cache) == cached_before + summary["teacher_this_call"]["usage"]["calls"]
    assert (run / "rounds" / "r1" / "data" / "teacher_direct.jsonl").read_text().splitlines() == first
    r1, r2 = summary["rounds"]
    # the per-round curve: the base student, then each round's student, on the eval benchmark
    for doc in (summary["base_eval"], r1["eval"], r2["eval"]):
        assert doc["easy_tasks"]["n_tasks"] == 6 and 0 <= doc["easy_tasks"]["pass_at_k"]["pass@1"] <= 1
    assert (run / "eval" / "base" / "easy_tasks" / "results.json").exists()
    assert (run / "rounds" / "r2" / "eval" / "easy_tasks" / "results.json").exists()
    spent = r1["teacher_tokens"]  # teacher and judge tokens of the round by stage file, from its records
    assert spent["teacher_direct"] + spent["teacher_faulty"] == sum(
        r1["pairs"][f"teacher_{k}_tokens"] for k in ("prompt", "completion")
    )
    assert spent["judge"] > 0 and spent["total"] == sum(v for k, v in spent.items() if k != "total")
    assert (r1["round"], r1["pool"]) == (1, 6) and r1["feedback"]["answers"] == 6
    assert sum(r1["feedback"]["buckets"].values()) == 6 and r1["next_pool"] == r2["pool"]
    auc, ci = r1["feedback"]["judge_roc_auc"], r1["feedback"]["judge_roc_auc_ci"]  # None when one verdict only
    assert (auc is None) == (ci is None) and (ci is None or ci[0] <= auc <= ci[1])
    assert r2["pool"] == r1["questions"]["accepted"] + r1["feedback"]["buckets"]["hard"]
    for k, r in ((1, r1), (2, r2)):
        rows = [json.loads(line) for line in (run / "rounds" / f"r{k}" / "pairs.jsonl").read_text().splitlines()]
        assert len(rows) == r["pairs"]["teacher_pairs"] + r["pairs"]["student_pairs"]
        assert all(set(row) >= {"prompt", "chosen", "rejected", "task_id", "source"} for row in rows)
        assert r["trained"] == bool(rows) and (not rows or (run / r["student"]["generate"]).exists())
        assert not rows or r["student"]["generate"] == f"rounds/r{k}/train/final.q8_0.gguf"  # relative to the run
    assert r1["pairs"]["student_pairs"] == 0  # no earlier answers of the student in round 1
    assert json.loads((run / "summary.json").read_text())["rounds"] == summary["rounds"]
    (run / "rounds" / "r2" / "summary.json").unlink()  # as if killed after round 2's last stage
    again = run_distill(load_distill_config(None, args, "iterkd"), progress=False)
    assert again["teacher_this_call"] is None  # every teacher and judge call was on disk
    assert [r["feedback"] for r in again["rounds"]] == [r1["feedback"], r2["feedback"]]

    # A rerun with a setting that decides records stops before any work, naming the stage, the key, the old and
    # the new value; the run's config.yaml keeps the settings its results were made with.
    config = (run / "config.yaml").read_text()
    for change, says in (
        ("teacher.served_model=qwen2.5-coder-0.5b-instruct", "r1/teacher-direct was made with teacher.served_model = 'smollm2-135m-instruct', not 'qwen2.5-coder-0.5b-instruct'"),
        ("iterkd.n_faulty=3", "r1/teacher-faulty was made with iterkd.n_faulty = 2, not 3"),
        ("iterkd.judge_variant=trace", "r1/judge was made with iterkd.judge_variant = 'plain', not 'trace'"),
        ("train.learning_rate=1e-3", "r1/training was made with train.learning_rate = (unset), not 0.001"),
    ):  # fmt: skip
        with pytest.raises(UserError, match=re.escape(says)):
            run_distill(load_distill_config(None, [*args, change], "iterkd"), progress=False)
        assert (run / "config.yaml").read_text() == config
    from iterkd.codegen import prompts

    monkeypatch.setitem(prompts.PROMPT_VERSIONS, "judge", "v2")
    with pytest.raises(UserError, match="r1/judge was made with prompt_version:judge = 'v1', not 'v2'"):
        run_distill(load_distill_config(None, args, "iterkd"), progress=False)
