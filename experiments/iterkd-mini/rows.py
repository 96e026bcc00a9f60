"""Issue 31: make and score the rows of the IterKD miniature, one command per row (resumable).

    ITERKD_THREADS=2 python experiments/iterkd-mini/rows.py ROW [ROW ...] [--bench humaneval,mbpp] [--train-only]

Rows (experiments/iterkd-mini/ROW/ gets the samples, results, training set and data card):
- base: the untrained student through the trained rows' export path (instrument.py's model); its HumanEval score
  is the instrument's seed-0 score (instrument/base-seed0), copied rather than drawn again.
- stand, persd-combine: the student retrained on the PERsD miniature's committed training sets
  (experiments/persd-mini/ROW/train.jsonl) with that experiment's training settings (TRAIN, seed 0).
- iterkd-r1, iterkd-r2, iterkd-r3: the IterKD run's student after each round (run.py runs it).
- iterkd-all, iterkd-all-sft, iterkd-all-teacher-neg, stand-all: the students ablations.py trained.

Each row is scored by score.py under the protocol; a trained row's checkpoint stays in runs/iterkd-mini/train/ROW.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from score import ROOT, RUNS, SAMPLES, score  # noqa: E402

STUDENT = "smollm2-135m-instruct"
PERSD = ROOT / "experiments" / "persd-mini"
# experiments/persd-mini/config.yaml's train section: the settings the PERsD rows were trained with
TRAIN = ["num_train_epochs=3", "learning_rate=5.0e-5", "per_device_train_batch_size=1",
         "gradient_accumulation_steps=8", "lr_scheduler_type=cosine", "warmup_steps=0.03", "max_length=1024",
         "long_examples=drop", "save_steps=25", "save_total_limit=1", "logging_steps=5", "seed=0"]  # fmt: skip
RETRAINED = ("stand", "persd-combine")
ABLATIONS = ("iterkd-all", "iterkd-all-sft", "iterkd-all-teacher-neg", "stand-all")  # trained by ablations.py
ITERKD_RUN = RUNS / "iterkd"


def base_model() -> Path:
    from iterkd.train.export import export_untrained

    return export_untrained(STUDENT, RUNS / "base-model", "q8_0")


def retrained(row: str) -> Path:
    """Train the student on the PERsD miniature's training set of ``row`` (resumes from a checkpoint)."""
    out = RUNS / "train" / row
    if not (out / "final" / "config.json").exists():
        cmd = [sys.executable, "-m", "iterkd", "train", f"model={STUDENT}", f"train_file={PERSD / row / 'train.jsonl'}",
               *TRAIN, "--out", str(out)]  # fmt: skip
        subprocess.run(cmd, cwd=ROOT, check=True)
    dst = HERE / row
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("train.jsonl", "data_card.json"):
        shutil.copyfile(PERSD / row / name, dst / name)
    shutil.copyfile(out / "train_summary.json", dst / "train_summary.json")
    return out / "final"


def iterkd_round(row: str) -> Path:
    k = row.removeprefix("iterkd-r")
    gguf = ITERKD_RUN / "rounds" / f"r{k}" / "train" / "final.q8_0.gguf"
    if not gguf.exists():
        raise SystemExit(f"{row}: round {k} of the IterKD run has no trained student yet ({gguf})")
    write_iterkd_card(int(k), HERE / row)
    return gguf


def run_spent(run: Path, k: int) -> tuple[int, int, dict[str, int]]:
    """(prompt, completion, total by round) of the teacher and judge tokens the IterKD run ``run`` (its directory or
    committed copy) spent in rounds 1..k, from its records (``pipeline.iterkd.round_usage``; a round the budget
    stopped counts what its records hold)."""
    from iterkd.pipeline.iterkd import round_usage

    usage = {f"r{r}": list(round_usage(run / "rounds" / f"r{r}").values()) for r in range(1, k + 1)}
    prompt = sum(p for u in usage.values() for p, _ in u)
    completion = sum(c for u in usage.values() for _, c in u)
    return prompt, completion, {r: sum(p + c for p, c in u) for r, u in usage.items()}


def write_iterkd_card(k: int, dst: Path) -> None:
    """The data card of round k's student: the student, the pairs it trained on, and the teacher and judge tokens
    the run spent up to the end of round k (as ``iterkd report`` counts an IterKD round)."""
    import json

    prompt, completion, by_round = run_spent(HERE / "iterkd-run", k)
    train = json.loads((ITERKD_RUN / "rounds" / f"r{k}" / "train" / "train_summary.json").read_text())
    card = {"method": "iterkd", "student": STUDENT, "round": k, "examples": train["pairs"],
            "teacher_prompt_tokens": prompt, "teacher_completion_tokens": completion,
            "teacher_tokens_by_round": by_round, "run": "experiments/iterkd-mini/iterkd-run",
            "tokens_note": "teacher and judge tokens of the run up to the end of this round, from its records"}  # fmt: skip
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "data_card.json").write_text(json.dumps(card, indent=1) + "\n")
    rdir = HERE / "iterkd-run" / "rounds" / f"r{k}"
    # the pairs this round's student trained on (train_from previous: it started from the previous round's student)
    shutil.copyfile(rdir / "pairs.jsonl", dst / "train.jsonl")
    if (rdir / "summary.json").exists():  # a round the budget stopped has none (round_state.py reads its records)
        shutil.copyfile(rdir / "summary.json", dst / "round_summary.json")


def model_of(row: str) -> Path:
    if row == "base":
        return base_model()
    if row in RETRAINED:
        return retrained(row)
    if row.startswith("iterkd-r") and row.removeprefix("iterkd-r").isdigit():
        return iterkd_round(row)
    if row in ABLATIONS:
        final = RUNS / "train" / row / "final"
        if not (final / "config.json").exists():
            raise SystemExit(f"{row}: not trained yet (python experiments/iterkd-mini/ablations.py {row})")
        shutil.copyfile(final.parent / "train_summary.json", HERE / row / "train_summary.json")
        return final
    raise SystemExit(f"unknown row {row!r}: base, {', '.join(RETRAINED)}, iterkd-r1 ..., {', '.join(ABLATIONS)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+")
    ap.add_argument("--bench", default="humaneval,mbpp", help="comma-separated: humaneval, mbpp (default both)")
    ap.add_argument("--train-only", action="store_true", help="make the rows' students, score nothing")
    args = ap.parse_args()
    benches = [b.strip() for b in args.bench.split(",") if b.strip()]
    if bad := [b for b in benches if b not in SAMPLES]:
        ap.error(f"unknown benchmark {bad[0]!r}; choose from {', '.join(SAMPLES)}")
    for row in args.rows:
        model = model_of(row)
        if args.train_only:
            continue
        for bench in benches:
            if row == "base" and bench == "humaneval":  # the instrument's seed-0 score is this row's score
                for name in ("samples.jsonl", "results.json"):
                    src = HERE / "instrument" / "base-seed0" / f"humaneval.{name}"
                    (HERE / "base").mkdir(exist_ok=True)
                    shutil.copyfile(src, HERE / "base" / f"humaneval.{name}")
                continue
            r = score(model, bench, 0, HERE / row, RUNS / "score" / row / bench)
            print(f"{row} {bench}: pass@1 {100 * r['pass_at_k']['pass@1']:.2f}% over {r['n_tasks']} tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
