"""The miniature PERsD experiment (issue 4): every row, resumable, then results.md.

    python experiments/persd-mini/run.py [--rows stand,persd] [--collect-only] [--data-only]
    python experiments/persd-mini/run.py --tune lr2e-4 --set train.learning_rate=2e-4 --rows stand,persd-combine
    python experiments/persd-mini/run.py --smoke /tmp/smoke   # a few tasks per row, into /tmp (checks the wiring)

Each row runs into runs/persd-mini/<row>/ (models and checkpoints: not committed) and copies what anyone needs
to check it into experiments/persd-mini/<row>/: the samples files (evalplus format, re-score with
`iterkd check`), results, the training set, its data card, the resolved config and the row's wall time.
Rerunning skips finished work (stage records, teacher cache, checkpoints, generations); wall.json adds up the
time of every call that did work for the row.

Rows: base (the untrained student, exported like the trained ones), stand, inpd, persd, persd-refine,
persd-combine, persd-combine-third (PERsD-combine on the first third of the seed tasks: a third of STAND's
teacher calls), persd-combine-repair2 (the persd-combine student with 2 steps of multi-step repair at test time),
persd-combine-ref (PERsD-combine whose teacher sees the task's reference solution while repairing, as in the PD
code; same student attempts, its own repairs in stages-ref/); qwen05-base, qwen05-stand, qwen05-inpd,
qwen05-persd-combine and qwen05-persd (Qwen2.5-Coder-0.5B-Instruct as the student: its own attempts and repairs
in stages-qwen05/).

Every row is also scored on the MBPP validation split (ids 511-600, 90 tasks): hyper-parameters are chosen there,
never on the test sets. `--tune NAME --set key=value ...` trains rows with other settings into
runs/persd-mini/tune/NAME/ and scores them on the validation split only (table: experiments/persd-mini/tune/NAME/).

`--data-only` builds only the training sets (student attempts, teacher answers and repairs: the expensive,
irreplaceable part, committed as stage records and teacher cache) so that they land before any training starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUNS = ROOT / "runs" / "persd-mini"
OUT = HERE
SET: list[str] = []  # overrides for every row (--smoke)
TUNE_SET: list[str] = []  # --tune's --set: applied last, over a row's own overrides
CONFIG = HERE / "config.yaml"
BENCHES = ("humaneval", "mbpp")  # test sets (MBPP: ids 11-510)
VALIDATION = "mbpp-validation"  # MBPP ids 511-600: for choosing hyper-parameters
TUNING = False  # --tune: validation only

QWEN05 = "qwen2.5-coder-0.5b-instruct"
# its own attempts and repairs; the teacher's direct answers come from the committed teacher cache (same prompts)
# lr 1e-5: at the SmolLM2 rows' 5e-5 every trained 0.5B row collapsed (results.md, "The Qwen2.5-Coder-0.5B
# student, trained"); chosen on the validation split (tune/q-lr1e-5, tune/q-lora)
QWEN05_SET = [f"student={QWEN05}", "stage_dir=experiments/persd-mini/stages-qwen05", "train.learning_rate=1e-5"]
# row -> (method, config overrides); the base rows and the repair row are evaluations, not trainings
ROWS: dict[str, tuple[str, list[str]]] = {
    "base": ("", []),
    "stand": ("stand", []),
    "inpd": ("inpd", []),
    "persd": ("persd", []),
    "persd-refine": ("persd-refine", []),
    "persd-combine": ("persd-combine", []),
    "persd-combine-third": ("persd-combine", ["limit=125"]),
    "persd-combine-repair2": ("", []),
    "persd-combine-ref": ("persd-combine", ["teacher_sees_reference=true"]),
    # a stronger student (issue 4: "if time allows"): its own attempts and repairs, same teacher, same protocol
    "qwen05-base": ("", [f"student={QWEN05}"]),
    "qwen05-stand": ("stand", QWEN05_SET),
    "qwen05-inpd": ("inpd", QWEN05_SET),
    "qwen05-persd-combine": ("persd-combine", QWEN05_SET),
    "qwen05-persd": ("persd", QWEN05_SET),  # persd-combine without its refine half: does the refine half teach copying?
}
BASE_ROWS = ("base", "qwen05-base")  # untrained students, exported like the trained ones
REF_SUFFIX = "-ref"  # teacher_sees_reference rows keep their repairs in <stage_dir>-ref, beside the shared ones


def _config(method: str, row: str, extra: list[str]):
    from iterkd.pipeline import load_distill_config

    overrides = [f"run_dir={RUNS / row}", *SET, *extra, *TUNE_SET]
    cfg = load_distill_config(CONFIG, overrides, method or "persd-combine")
    if not (cfg.teacher_sees_reference and cfg.stage_dir):  # without a shared stage_dir: RUN/data already
        return cfg
    shared = Path(cfg.stage_dir)  # same student attempts (copied in), repairs made with the reference in view
    cfg = load_distill_config(CONFIG, [*overrides, f"stage_dir={shared}{REF_SUFFIX}"], method)
    attempts = Path(cfg.stage_dir) / "student_attempts.jsonl"
    if (shared / "student_attempts.jsonl").exists() and not attempts.exists():
        attempts.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared / "student_attempts.jsonl", attempts)
    return cfg


def _timed(row: str, fn):
    """Run fn, adding its wall time to <row>/wall.json (only calls that did work count: a finished row's rerun
    takes seconds)."""
    began = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - began
    path = OUT / row / "wall.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(path.read_text()) if path.exists() else {"calls": []}
    if seconds > 30:
        doc["calls"].append({"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(seconds, 1)})
    doc["seconds"] = round(sum(c["seconds"] for c in doc["calls"]), 1)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return result


def _evaluate(cfg, model: str, out: Path, repair_steps: int = 0, validation_only: bool = False) -> None:
    """Score ``model`` on the test sets (not when tuning) and on the MBPP validation split, into out/<name>/."""
    from iterkd.evaluate.run import EvalConfig, run_eval

    settings = {k: v for k, v in cfg.eval.items() if k not in ("benchmarks", "export_gguf", "split")}
    sets = [(VALIDATION, "mbpp", "validation")]
    if not (TUNING or validation_only):
        sets = [(b, b, None) for b in BENCHES] + sets
    for name, bench, split in sets:
        run_eval(EvalConfig(model=model, benchmark=bench, split=split, repair_steps=repair_steps, **settings),
                 out / name)


def _generation_logs(row: str):
    """(runs/ file, committed copy) for each evaluation's generation log and settings of ``row``."""
    for name in (*BENCHES, VALIDATION):
        for f in ("generations.jsonl", "generation_config.json"):
            yield RUNS / row / "eval" / "trained" / name / f, OUT / row / "generations" / f"{name}.{f}"


def restore_generations(row: str) -> None:
    """A new checkout has no runs/: put a base row's committed generation logs back so its evaluations resume.
    Only the base rows (BASE_ROWS): their model is re-exported identically; a trained row's model is retrained, and answers of
    two trainings must not be mixed in one evaluation."""
    if row not in BASE_ROWS:
        return
    for run_file, kept in _generation_logs(row):
        if run_file.name != "generation_config.json" or not kept.exists() or run_file.exists():
            continue
        settings = json.loads(kept.read_text())
        model = ROOT / settings["model"]  # committed copies name the model relative to the repository root
        if not str(model).startswith(str(RUNS)):
            continue
        log, kept_log = run_file.with_name("generations.jsonl"), kept.with_name(kept.name.replace("generation_config.json", "generations.jsonl"))
        run_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kept_log, log)
        run_file.write_text(json.dumps({**settings, "model": str(model)}, indent=1) + "\n")  # as run_eval pins it


def run_row(row: str, data_only: bool = False) -> None:
    method, extra = ROWS[row]
    cfg = _config(method, row, extra)
    restore_generations(row)
    if data_only:
        if method:
            from iterkd.pipeline.distill import build_data

            run = RUNS / row
            run.mkdir(parents=True, exist_ok=True)
            _timed(row, lambda: build_data(cfg, run, progress=True))
            collect_row(row)
        return
    if row in BASE_ROWS:
        from iterkd.train.export import export_untrained

        def base():
            gguf = export_untrained(cfg.student, RUNS / row / "base-model", cfg.eval["export_gguf"])
            _evaluate(cfg, str(gguf), RUNS / row / "eval" / "trained")

        _timed(row, base)
    elif row == "persd-combine-repair2":
        gguf = RUNS / "persd-combine" / "train" / f"final.{cfg.eval['export_gguf']}.gguf"
        if not gguf.exists():
            print(f"{row}: needs the persd-combine row first", file=sys.stderr)
            return
        _timed(row, lambda: _evaluate(cfg, str(gguf), RUNS / row / "eval" / "trained", repair_steps=2))
    else:
        from iterkd.pipeline import run_distill

        def distill():
            summary = run_distill(cfg)
            model = str(Path(cfg.run_dir) / (summary.get("trained_gguf") or summary["trained_model"]))
            _evaluate(cfg, model, RUNS / row / "eval" / "trained", validation_only=True)  # tests: run_distill

        _timed(row, distill)
    collect_row(row)


def collect_row(row: str) -> None:
    """Copy the row's checkable artifacts from runs/ into experiments/persd-mini/<row>/."""
    run, dest = RUNS / row, OUT / row
    dest.mkdir(parents=True, exist_ok=True)
    copies = {f"eval/trained/{b}/samples.jsonl": f"{b}.samples.jsonl" for b in (*BENCHES, VALIDATION)}
    copies.update({f"eval/trained/{b}/results.json": f"{b}.results.json" for b in (*BENCHES, VALIDATION)})
    copies.update({"data/train.jsonl": "train.jsonl", "data/data_card.json": "data_card.json",
                   "summary.json": "summary.json", "config.yaml": "config.yaml",
                   "train/train_summary.json": "train_summary.json"})  # fmt: skip
    for src, name in copies.items():
        if (run / src).exists():
            shutil.copy2(run / src, dest / name)
    for run_file, kept in _generation_logs(row):  # finished or not (the base row resumes from them)
        if run_file.exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run_file, kept)
    for kept in dest.rglob("*"):  # committed files name paths relative to the repository root, not this machine's
        if kept.suffix in (".json", ".yaml") and str(ROOT) in (text := kept.read_text()):
            kept.write_text(text.replace(str(ROOT) + "/", ""))


def _rows():
    """The rows of this experiment that exist under OUT, in ROWS order, read by the report library."""
    from iterkd.report.runs import load

    return load([OUT / row for row in ROWS if (OUT / row).is_dir()])[0]


def results_table() -> str:
    from iterkd.report.tables import markdown, rows_table

    return markdown(*rows_table(_rows()))


# (row, compared with): the paper's claims, each tested task by task on the same tasks
PAIRS = [("stand", "base"), ("persd-combine", "base"), ("persd-combine", "stand"), ("persd-combine-third", "stand"),
         ("persd", "inpd"), ("persd-combine", "persd"), ("persd-combine", "persd-refine"),
         ("persd-combine-repair2", "persd-combine"), ("persd-combine-ref", "persd-combine"),
         ("qwen05-stand", "qwen05-base"), ("qwen05-inpd", "qwen05-base"), ("qwen05-persd-combine", "qwen05-base"),
         ("qwen05-persd-combine", "qwen05-stand"), ("qwen05-persd-combine", "qwen05-inpd"),
         ("qwen05-persd", "qwen05-base"), ("qwen05-persd-combine", "qwen05-persd"), ("qwen05-inpd", "qwen05-stand")]  # fmt: skip


def paired_table() -> str:
    """Each pair in PAIRS on each test set: tasks only the first row solves, only the second, both, the sign test
    and the difference with its paired bootstrap interval (iterkd.report.tables)."""
    from iterkd.report.tables import markdown
    from iterkd.report.tables import paired_table as pairs_table

    return markdown(*pairs_table(_rows(), PAIRS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows (default: all, in order)")
    parser.add_argument("--collect-only", action="store_true", help="only copy artifacts and print the table")
    parser.add_argument("--data-only", action="store_true", help="only build the rows' training sets (teacher work)")
    parser.add_argument("--smoke", metavar="DIR", help="tiny run of every row into DIR (runs, stages, cache, table)")
    parser.add_argument("--tune", metavar="NAME", help="a tuning run: rows trained with --set into tune/NAME/, "
                        "validation split only")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (with --tune)")
    args = parser.parse_args()
    os.chdir(ROOT)  # the config's paths are relative to the repository
    global RUNS, OUT, TUNING
    if args.set and not args.tune:
        sys.exit("--set changes a row's settings: use it with --tune NAME (the rows' own results stay as they are)")
    if args.smoke:
        smoke = Path(args.smoke).resolve()
        RUNS, OUT = smoke / "runs", smoke / "out"
        SET.extend([f"stage_dir={smoke / 'stages'}", f"teacher.cache_path={smoke / 'cache.sqlite'}", "limit=6",
                    "train.max_steps=2", "eval.limit=3", "eval.max_tokens=128", "student_sampling.max_tokens=128",
                    "teacher.max_tokens=256", "teacher.served_model=qwen2.5-coder-0.5b-instruct"])  # fmt: skip
        ROWS["persd-combine-third"] = ("persd-combine", ["limit=2"])
    if args.tune:
        TUNING = True
        RUNS, OUT = RUNS / "tune" / args.tune, OUT / "tune" / args.tune
        TUNE_SET.extend([*args.set, "eval.benchmarks=[]"])  # run_distill exports the model; run.py validates it
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        sys.exit(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    for row in rows:
        if args.collect_only:
            collect_row(row)
        else:
            from iterkd.errors import UserError

            print(f"== {row}", flush=True)
            try:
                run_row(row, data_only=args.data_only)
            except UserError as e:  # e.g. no passing teacher repairs: report it, go on with the other rows
                print(f"{row}: {e}", file=sys.stderr)
    table = results_table()
    (OUT / "table.md").write_text(table + "\n")
    print(table)
    if not TUNING:
        paired = paired_table()
        (OUT / "paired.md").write_text(paired + "\n")
        print(paired)
        from iterkd.report import build_report

        build_report([OUT], OUT / "report")  # what `iterkd report experiments/persd-mini` writes
        print(f"report: {OUT / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
