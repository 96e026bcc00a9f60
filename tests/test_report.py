"""`iterkd report` on committed runs: an experiment (persd-mini), an IterKD run (iterkd-smoke), eval directories
with several samples per task; the HTML opened in headless chromium; bad input -> one line, exit 2."""

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


def test_experiment_report_is_complete_and_the_same_on_a_second_run(tmp_path):
    done = build_report([PERSD], tmp_path / "a")
    assert done["rows"] == 14
    assert done["plots"] == ["pass_at_1", "cost_frontier", "funnel", "repair_steps", "paired"]
    md = (tmp_path / "a" / "report.md").read_text()
    # the rows table carries the committed results: base HumanEval 6/164, persd-combine MBPP 45/500
    assert "| base | 3.66 (6/164) [" in md and "| persd-combine | 6.71 (11/164) [" in md
    assert "9.00 (45/500)" in md and "[steps: 6.10 -> 6.71 -> 6.71]" in md
    # paired table: persd-combine vs base on MBPP test, the same counts as experiments/persd-mini/paired.md
    assert "| persd-combine | base | mbpp | 28 | 13 | 17 | 0.03 |" in md
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


def test_eval_directories_with_several_samples_per_task(tmp_path):
    """Two `iterkd eval` directories on the same 164 tasks: 2 samples per task vs 1."""
    a, b = EVALS / "humaneval-t0.2-default", EVALS / "humaneval-t0.2-llamacpp"
    rows, _ = load([a, b])
    assert [len(next(iter(r.results["humaneval"].passed.values()))) for r in rows] == [2, 1]
    out = tmp_path / "r"
    proc = subprocess.run([*CLI, "report", str(a), str(b), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    md = (out / "report.md").read_text()
    assert "| humaneval-t0.2-default | 4.57 (15/328) [" in md
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


def test_load_refuses_a_summary_that_is_no_distill_run(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"rows": 3}))
    with pytest.raises(UserError, match="not the summary of an iterkd distill run"):
        load([tmp_path])
