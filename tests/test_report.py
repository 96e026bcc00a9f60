"""`iterkd report` on committed runs: an experiment (persd-mini), an IterKD run (iterkd-smoke), eval directories
with several samples per task; each row paired with its own student's base row, or the pairs given with --pair
(small synthetic experiments); the HTML opened in headless chromium; bad input -> one line, exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from browser import CHROMIUM, png_is_blank, probe_images, screenshot
from iterkd.errors import UserError
from iterkd.report import build_report
from iterkd.report.pairs import default_pairs
from iterkd.report.runs import load

ROOT = Path(__file__).resolve().parents[1]
PERSD = ROOT / "experiments" / "persd-mini"
SMOKE = ROOT / "experiments" / "iterkd-smoke" / "run"
EVALS = ROOT / "bench" / "results" / "loop_speed"
CLI = [sys.executable, "-m", "iterkd"]


def _need_browser():
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing (make system installs it)")
        pytest.skip("chromium is not installed (make system)")


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_experiment_report_is_complete_and_the_same_on_a_second_run(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the report names its inputs relative to the working directory
    done = build_report([PERSD], tmp_path / "a")
    assert done["rows"] == 14
    assert done["summary"] == (
        "14 rows from experiments/persd-mini: 12 experiment rows, 2 base rows; students: smollm2-135m-instruct "
        "(9 rows), qwen2.5-coder-0.5b-instruct (5 rows)"
    )
    assert done["plots"] == ["pass_at_1", "cost_frontier", "funnel", "repair_steps", "paired"]
    md = (tmp_path / "a" / "report.md").read_text()
    # the rows table carries the committed results: base HumanEval 6/164, persd-combine MBPP 45/500
    assert "| base | smollm2-135m-instruct | - (base row) | 3.66 (6/164) [" in md
    assert "| persd-combine | smollm2-135m-instruct | base | 6.71 (11/164) [" in md
    assert "9.00 (45/500)" in md and "[steps: 6.10 -> 6.71 -> 6.71]" in md
    # paired table: persd-combine vs base on MBPP test, the same counts as experiments/persd-mini/paired.md
    assert "| persd-combine | base | mbpp | 28 | 13 | 17 | 0.03 |" in md
    # each student against its own base: the same counts as paired.md, and no SmolLM2-vs-Qwen pair
    assert "| qwen05-persd | qwen05-base | humaneval | 11 | 30 | 65 | 0.00 |" in md
    assert "| qwen05-base | base |" not in md and "| qwen05-inpd | base |" not in md
    assert md.splitlines()[2].startswith(done["summary"] + ". ")  # the line under the title
    assert "| qwen05-base | qwen2.5-coder-0.5b-instruct | - (base row) |" in md
    for stem in done["plots"]:
        for ext in ("png", "svg"):
            assert (tmp_path / "a" / "plots" / f"{stem}.{ext}").stat().st_size > 1000
        assert not png_is_blank(tmp_path / "a" / "plots" / f"{stem}.png")
        assert f"](plots/{stem}.png)" in md
    build_report([PERSD], tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_report_html_renders_every_image_in_a_headless_browser(tmp_path):
    _need_browser()
    done = build_report([PERSD], tmp_path)
    html = tmp_path / "report.html"
    assert "http://" not in html.read_text() and "https://" not in html.read_text()  # nothing to fetch
    images = probe_images(html)
    assert [i["alt"] for i in images] == done["plots"]
    for img in images:
        assert img["complete"] and img["src_prefix"].startswith("data:image/png;base64,")
        assert img["naturalWidth"] > 200 and img["naturalHeight"] > 100 and img["width"] > 0 and img["height"] > 0
    assert not png_is_blank(screenshot(html, tmp_path / "page.png"))


def test_iterkd_run_gives_a_row_per_round_and_the_round_curves(tmp_path):
    rows, runs = load([SMOKE])
    assert [r.name for r in rows] == ["run/base", "run/r1", "run/r2", "run/r3", "run/r4"]
    assert [len(r.results["humaneval"].passed) for r in rows] == [40] * 5
    summary = json.loads((SMOKE / "summary.json").read_text())
    assert [r.round["round"] for r in rows[1:]] == [rd["round"] for rd in summary["rounds"]]
    # teacher tokens are cumulative over rounds
    totals = [rd["teacher_tokens"]["total"] for rd in summary["rounds"]]
    assert [r.teacher_tokens for r in rows[1:]] == [sum(totals[: k + 1]) for k in range(len(totals))]
    done = build_report([SMOKE], tmp_path)
    assert "rounds" in done["plots"] and "funnel" in done["plots"]
    assert not png_is_blank(tmp_path / "plots" / "rounds.png")
    # the smoke run's summaries are from before the clock: each round's wall time is its last call's, a floor
    assert [(r.wall_seconds, r.wall_at_least) for r in rows[1:]] == [
        (sum(rd["seconds"].values()), True) for rd in summary["rounds"]
    ]
    md = (tmp_path / "report.md").read_text()
    assert f"| ≥ {rows[1].wall_seconds / 60:.0f} min |" in md and "Wall time ≥: a floor" in md
    # summaries with the clock's steps: their sum over every call, a floor where the clock started on a round
    # begun before it
    run = tmp_path / "run"
    shutil.copytree(SMOKE, run)
    for i, rd in enumerate(summary["rounds"]):
        rd.update(wall_seconds={"stage1_pairs": 60.0 * (i + 1), "training": 30.0}, wall_seconds_complete=i > 0)
    (run / "summary.json").write_text(json.dumps(summary))
    timed, _ = load([run])
    assert [(r.wall_seconds, r.wall_at_least) for r in timed[1:]] == [
        (90.0, True),
        (150.0, False),
        (210.0, False),
        (270.0, False),
    ]


def test_an_iterkd_run_scored_elsewhere_reports_its_rounds_beside_the_scored_rows(tmp_path):
    """issue 31's layout: the IterKD run's copy has no evaluation of its own (rows are scored by a script into
    sibling directories); the report still has its rounds, and no cost frontier without a score to put on it."""
    exp = tmp_path / "exp"
    shutil.copytree(SMOKE, exp / "iterkd-run", ignore=shutil.ignore_patterns("eval"))
    shutil.copytree(SMOKE / "eval" / "base" / "humaneval", exp / "base")
    # a measurement script's own results.json and summary.json (issue 31's dedup/) are not rows
    (exp / "dedup").mkdir()
    (exp / "dedup" / "results.json").write_text(json.dumps({"items": 65, "measures": {}}))
    (exp / "notes").mkdir()
    (exp / "notes" / "summary.json").write_text(json.dumps({"rows": 3}))
    done = build_report([exp], tmp_path / "report")
    assert done["rows"] == 5 and "rounds" in done["plots"] and "cost_frontier" not in done["plots"]  # 4 rounds, base
    assert "pass_at_1" in done["plots"]
    (exp / "dedup" / "results.json").write_text("{not json")  # a broken file is named, not skipped
    with pytest.raises(UserError, match="dedup/results.json: not readable as JSON"):
        load([exp])


def test_eval_directories_with_several_samples_per_task(tmp_path):
    """Two `iterkd eval` directories on the same 164 tasks: 2 samples per task vs 1."""
    a, b = EVALS / "humaneval-t0.2-default", EVALS / "humaneval-t0.2-llamacpp"
    rows, _ = load([a, b])
    assert [len(next(iter(r.results["humaneval"].passed.values()))) for r in rows] == [2, 1]
    out = tmp_path / "r"
    proc = subprocess.run([*CLI, "report", str(a), str(b), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    md = (out / "report.md").read_text()
    # both evaluate the registry's SmolLM2, untrained: the second is paired with the first, its student's base row
    assert "| humaneval-t0.2-default | smollm2-135m-instruct | - (base row) | 4.57 (15/328) [" in md
    assert "| humaneval-t0.2-llamacpp | humaneval-t0.2-default | humaneval |" in md  # the paired row


def _cli_error(*args: str) -> str:
    proc = subprocess.run([*CLI, "report", *args], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("iterkd: error: "), proc.stderr
    return lines[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    assert "not a run directory" in _cli_error(str(ROOT / "src"), "--out", str(tmp_path / "o"))
    assert "no such directory" in _cli_error(str(tmp_path / "missing"))
    assert not (tmp_path / "missing").exists()  # its default output directory is not made
    # a results file another version wrote
    other = tmp_path / "future"
    shutil.copytree(EVALS / "humaneval-t0.2-llamacpp", other)
    doc = json.loads((other / "results.json").read_text())
    (other / "results.json").write_text(json.dumps({**doc, "format": 99}))
    assert "results format 99" in _cli_error(str(other))
    # rows evaluated on different HumanEval tasks (40 vs 164) cannot be paired
    assert "different humaneval tasks (40 vs 164)" in _cli_error(str(SMOKE), str(PERSD / "base"), "-o", str(tmp_path))
    assert "give --out" in _cli_error(str(PERSD / "base"), str(PERSD / "stand"))
    # a file that is not JSON where a results file should be
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    assert "not readable as JSON" in _cli_error(str(broken))


def test_each_committed_row_is_paired_with_its_own_students_base():
    rows, _ = load([PERSD])
    students = {r.name: r.student for r in rows}
    assert students["base"] == students["persd-combine-repair2"] == "smollm2-135m-instruct"
    assert students["qwen05-base"] == "qwen2.5-coder-0.5b-instruct"
    assert {r.name for r in rows if r.untrained} == {"base", "qwen05-base"}
    pairs = dict(default_pairs(rows))
    assert pairs["qwen05-persd"] == pairs["qwen05-stand"] == "qwen05-base"
    assert pairs["stand"] == pairs["persd-combine-repair2"] == "base"
    assert "base" not in pairs and "qwen05-base" not in pairs and len(pairs) == 12


def _results(path: Path, model: str, passed: list[bool]) -> None:
    """A minimal results.json of `iterkd eval` / `iterkd check` (format 1) on tasks t0, t1, ..."""
    samples = [{"task_id": f"t{i}", "passed": ok} for i, ok in enumerate(passed)]
    doc = {"format": 1, "benchmark": "humaneval", "pass_at_k": {"pass@1": sum(passed) / len(passed)},
           "samples": samples, "generation": {"settings": {"model": model}}}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _experiment(root: Path, rows: dict[str, tuple[str, str | None, list[bool]]]) -> Path:
    """Experiment rows name -> (model in the results, student in the data card or None, verdicts)."""
    for name, (model, student, passed) in rows.items():
        _results(root / name / "humaneval.results.json", model, passed)
        if student:
            (root / name / "data_card.json").write_text(json.dumps({"student": student, "examples": 3}))
    return root


QWEN = "qwen2.5-coder-0.5b-instruct"
SMOL = "smollm2-135m-instruct"


def _two_students(tmp_path: Path) -> Path:
    """Rows in name order: the Qwen base first (named by its hub id), then the SmolLM2 base (registry name), a
    row of each student, and a row of a student without a base row."""
    return _experiment(tmp_path / "exp", {
        "a-qwen-base": ("Qwen/Qwen2.5-Coder-0.5B-Instruct", None, [True, True, True, False]),
        "b-smol-base": (SMOL, None, [False, False, True, False]),
        "c-smol-sft": ("runs/c/train/final.q8_0.gguf", SMOL, [True, True, False, False]),
        "d-qwen-sft": ("runs/d/train/final.q8_0.gguf", QWEN, [True, False, True, True]),
        "e-other": ("runs/e/train/final.q8_0.gguf", "someone/other-model", [False, True, False, False]),
    })  # fmt: skip


def test_rows_pair_with_their_own_students_base_not_the_first_row(tmp_path):
    exp = _two_students(tmp_path)
    rows, _ = load([exp])
    assert [(r.name, r.student, r.untrained) for r in rows] == [
        ("a-qwen-base", QWEN, True), ("b-smol-base", SMOL, True), ("c-smol-sft", SMOL, False),
        ("d-qwen-sft", QWEN, False), ("e-other", "someone/other-model", False)]  # fmt: skip
    assert default_pairs(rows) == [("c-smol-sft", "b-smol-base"), ("d-qwen-sft", "a-qwen-base")]
    done = build_report([exp], tmp_path / "out")
    assert done["summary"] == (
        f"5 rows from {exp}: 3 experiment rows, 2 base rows; students: {QWEN} (2 rows), {SMOL} (2 rows), "
        "someone/other-model (1 row)"
    )
    md = (tmp_path / "out" / "report.md").read_text()
    # c vs b: t0 and t1 only c, t2 only b -> 2 wins, 1 loss
    assert "| c-smol-sft | b-smol-base | humaneval | 2 | 1 | 0 |" in md
    assert "| d-qwen-sft | a-qwen-base | humaneval | 1 | 1 | 2 |" in md
    assert "| e-other | someone/other-model | - (no base row for student someone/other-model) |" in md
    assert "| b-smol-base | a-qwen-base |" not in md and "| e-other | a-qwen-base |" not in md


def test_an_exported_base_row_takes_the_student_of_the_rows_named_like_it(tmp_path):
    """`PREFIXbase` with only a base-model file in its results is the base of `PREFIX*` (as in persd-mini)."""
    exp = _experiment(tmp_path / "exp", {
        "base": ("runs/x/base/base-model/final.q8_0.gguf", None, [False, True]),
        "q-base": ("runs/x/q-base/base-model/final.q8_0.gguf", None, [True, True]),
        "q-sft": ("runs/x/q-sft/train/final.q8_0.gguf", QWEN, [True, False]),
        "sft": ("runs/x/sft/train/final.q8_0.gguf", SMOL, [True, False]),
        "z-base": ("runs/x/z-base/base-model/final.q8_0.gguf", None, [True, False]),
    })  # fmt: skip
    rows, _ = load([exp])
    assert {r.name: r.student for r in rows} == {"base": SMOL, "q-base": QWEN, "q-sft": QWEN, "sft": SMOL,
                                                 "z-base": None}  # fmt: skip
    assert default_pairs(rows) == [("q-sft", "q-base"), ("sft", "base")]
    assert "student unknown" in next(r.student_note for r in rows if r.name == "z-base")


def test_pair_option_names_the_pairs(tmp_path):
    exp, out = _two_students(tmp_path), tmp_path / "out"
    proc = subprocess.run([*CLI, "report", str(exp), "--out", str(out), "--pair", "d-qwen-sft:c-smol-sft",
                           "--pair", "e-other:b-smol-base"], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith(f"5 rows from {exp}: 3 experiment rows, 2 base rows; ")
    md = (out / "report.md").read_text()
    assert "| d-qwen-sft | c-smol-sft | humaneval | 2 | 1 | 1 |" in md
    assert "| e-other | b-smol-base | humaneval |" in md
    assert "| c-smol-sft | b-smol-base |" not in md  # only the pairs asked for
    assert "| d-qwen-sft | qwen2.5-coder-0.5b-instruct | c-smol-sft |" in md


def test_an_unknown_pair_row_is_one_line_and_writes_nothing(tmp_path):
    exp, out = _two_students(tmp_path), tmp_path / "out"
    line = _cli_error(str(exp), "--out", str(out), "--pair", "c-smol-sft:nosuch")
    assert "no row named 'nosuch'" in line
    assert "a-qwen-base, b-smol-base, c-smol-sft, d-qwen-sft, e-other" in line
    assert not out.exists()
    assert "ROW:OTHER" in _cli_error(str(exp), "--out", str(out), "--pair", "c-smol-sft")
    assert not out.exists()


def test_an_output_location_that_is_a_file_stops_before_reading(tmp_path):
    broken = tmp_path / "broken"  # an input that would fail when read: the output is checked first
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    line = _cli_error(str(broken), "--out", str(taken))
    assert str(taken) in line and "is a file" in line
    assert taken.read_text() == "keep me"
    line = _cli_error(str(broken), "--out", str(taken / "sub"))  # under a file: cannot be created
    assert "cannot be created" in line and str(taken / "sub") in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "taken"]


def test_load_refuses_a_summary_that_is_no_distill_run(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"rows": 3}))
    with pytest.raises(UserError, match="not the summary of an iterkd distill run"):
        load([tmp_path])
