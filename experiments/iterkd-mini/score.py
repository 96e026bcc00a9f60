"""Issue 31: score one row of the IterKD miniature under the protocol, the same way for every row.

    ITERKD_THREADS=2 python experiments/iterkd-mini/score.py ROW MODEL [--bench humaneval,mbpp] [--seed 0]
    ITERKD_THREADS=2 python experiments/iterkd-mini/score.py ROW --keep      # before a session ends

MODEL: the row's student, a GGUF file (a trained row's q8_0 export) or a transformers model directory (exported to
q8_0 beside it first, as the pipeline does). Protocol (PROTOCOL): HumanEval pass@1 from n = 10 samples per task at
temperature 0.2, top_p 0.95, top_k 50 (transformers' default, as PERsD's sampling had); MBPP test (500 tasks)
greedy, one answer per task: n = 5 would take ~63 minutes a row on the 2-core VM (2,500 answers at the ~120
tokens/s HumanEval ran at), too long for the 10+ rows, and the issue's rule is then greedy for every row. 512
tokens, llama.cpp's native server (16 slots); sample i of a task uses seed + i.

Generation resumes from runs/iterkd-mini/score/ROW/BENCH/ (not committed). A finished score copies its samples
(evalplus format, every sample of every task) and results into experiments/iterkd-mini/ROW/BENCH.samples.jsonl and
BENCH.results.json, which `iterkd report experiments/iterkd-mini` reads. `--keep` copies an unfinished score's
generation log into ROW/generations/ (committed), and a run in a new checkout resumes from it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUNS = ROOT / "runs" / "iterkd-mini"
SERVE = {"max_tokens": 512, "backend": "llama-server", "batch_size": 16}
PROTOCOL = {"humaneval": {"split": None, "n_samples": 10, "temperature": 0.2, "top_p": 0.95, "top_k": 50},
            "mbpp": {"split": "test", "n_samples": 1, "temperature": 0.0}}  # fmt: skip
SAMPLES = {bench: p["n_samples"] for bench, p in PROTOCOL.items()}


def keep_generations(work: Path, row: Path, bench: str) -> None:
    """Copy an unfinished score's generation log (its settings with the model named relative to the repository)
    into the committed row, so that a new checkout resumes it (restore_generations) instead of starting over."""
    kept = row / "generations"
    if not (work / "generations.jsonl").exists():
        return
    kept.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "generations.jsonl", kept / f"{bench}.generations.jsonl")
    settings = json.loads((work / "generation_config.json").read_text())
    settings["model"] = str(Path(settings["model"]).resolve().relative_to(ROOT))
    (kept / f"{bench}.generation_config.json").write_text(json.dumps(settings, indent=1) + "\n")


def restore_generations(work: Path, row: Path, bench: str) -> None:
    """A new checkout has no runs/: put a committed generation log back (generation_config.json pins the
    settings, so a log made by another model or decoding is refused by the generation step itself)."""
    kept = row / "generations"
    if (work / "generation_config.json").exists() or not (kept / f"{bench}.generation_config.json").exists():
        return
    work.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kept / f"{bench}.generations.jsonl", work / "generations.jsonl")
    settings = json.loads((kept / f"{bench}.generation_config.json").read_text())
    settings["model"] = str(ROOT / settings["model"])  # as run_eval pins it
    (work / "generation_config.json").write_text(json.dumps(settings, indent=1) + "\n")


def gguf_of(model: Path) -> Path:
    """The GGUF every row is scored from: the file itself, or a model directory's q8_0 export."""
    if model.suffix == ".gguf":
        return model
    from iterkd.train.export import export_gguf

    return export_gguf(model, outtype="q8_0")


def score(model: Path, bench: str, seed: int, row: Path, work: Path, limit: int | None = None) -> dict:
    """Score ``model`` on ``bench`` under the protocol in ``work`` (resumable); copy samples and results into
    ``row``; return the results."""
    from iterkd.evaluate.run import EvalConfig, run_eval

    restore_generations(work, row, bench)
    cfg = EvalConfig(model=str(gguf_of(model)), benchmark=bench, seed=seed, limit=limit, **SERVE, **PROTOCOL[bench])
    results = run_eval(cfg, work)
    row.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "samples.jsonl", row / f"{bench}.samples.jsonl")
    shutil.copyfile(work / "results.json", row / f"{bench}.results.json")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("row", help="the row's name: experiments/iterkd-mini/ROW/")
    ap.add_argument("model", nargs="?", type=Path, help="the row's student: a .gguf file or a model directory")
    ap.add_argument("--bench", default="humaneval,mbpp", help="comma-separated: humaneval, mbpp (default both)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (sample i of a task uses seed + i)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N tasks (a wiring check)")
    ap.add_argument("--keep", action="store_true", help="only copy unfinished generation logs into the row")
    args = ap.parse_args()
    benches = [b.strip() for b in args.bench.split(",") if b.strip()]
    if bad := [b for b in benches if b not in SAMPLES]:
        ap.error(f"unknown benchmark {bad[0]!r}; choose from {', '.join(SAMPLES)}")
    row = HERE / args.row
    work = RUNS / "score" / args.row
    if args.keep:
        for bench in benches:
            keep_generations(work / bench, row, bench)
        return 0
    if args.model is None or not args.model.exists():
        ap.error(f"the row's model is needed and must exist: {args.model}")
    for bench in benches:
        r = score(args.model, bench, args.seed, row, work / bench, args.limit)
        print(f"{args.row} {bench}: pass@1 {100 * r['pass_at_k']['pass@1']:.2f}% over {r['n_tasks']} tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
