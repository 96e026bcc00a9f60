"""Issue 31, before the rows: how noisy is the instrument? The untrained student, exported like every trained row
(de-quantised, saved, GGUF q8_0: train.export.export_untrained), scored twice under the protocol with two sets of
sampling seeds; the two scores differ only by sampling noise.

    ITERKD_THREADS=2 python experiments/iterkd-mini/instrument.py [--bench humaneval] [--seeds 0,100] [--limit N]

Protocol (every row of the experiment): HumanEval pass@1 from n = 10 samples per task at temperature 0.2, top_p
0.95, top_k 50 (transformers' default, as PERsD's sampling had), 512 tokens, llama.cpp's native server (16
slots); sample i of a task uses seed + i, so seeds 0 and 100 draw disjoint samples. MBPP test: n = 5, same
settings. Generations resume (runs/iterkd-mini/instrument/, not committed); each finished score copies its
samples (evalplus format) and results into experiments/iterkd-mini/instrument/base-seed<S>/, where
`iterkd report experiments/iterkd-mini/instrument --pair base-seed100:base-seed0` pairs them over tasks.
`--keep` copies an unfinished score's generation log into the row (committed), and a rerun in a new checkout
resumes from it.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUNS = ROOT / "runs" / "iterkd-mini"
OUT = HERE / "instrument"
STUDENT = "smollm2-135m-instruct"
# the protocol's decoding, for every row (iterkd-mini/config.yaml's eval section says the same)
EVAL = {"temperature": 0.2, "top_p": 0.95, "top_k": 50, "max_tokens": 512, "backend": "llama-server",
        "batch_size": 16}  # fmt: skip
SAMPLES = {"humaneval": 10, "mbpp": 5}
SPLIT = {"humaneval": None, "mbpp": "test"}


def base_gguf() -> Path:
    """The untrained student through the trained rows' export path (made once)."""
    from iterkd.train.export import export_untrained

    return export_untrained(STUDENT, RUNS / "base-model", "q8_0")


def keep_generations(bench: str, seed: int, out_root: Path) -> None:
    """Copy an unfinished score's generation log (and its settings, the model named relative to the repository)
    into the committed row, so that a new checkout resumes it (restore_generations) instead of starting over."""
    src, kept = RUNS / "instrument" / f"seed{seed}" / bench, out_root / f"base-seed{seed}" / "generations"
    if not (src / "generations.jsonl").exists():
        return
    kept.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "generations.jsonl", kept / f"{bench}.generations.jsonl")
    settings = json.loads((src / "generation_config.json").read_text())
    settings["model"] = str(Path(settings["model"]).resolve().relative_to(ROOT))
    (kept / f"{bench}.generation_config.json").write_text(json.dumps(settings, indent=1) + "\n")


def restore_generations(bench: str, seed: int, out_root: Path) -> None:
    """A new checkout has no runs/: put a committed generation log back (the untrained student is re-exported
    identically, so its answers can be resumed; generation_config.json pins the settings)."""
    dst, kept = RUNS / "instrument" / f"seed{seed}" / bench, out_root / f"base-seed{seed}" / "generations"
    if (dst / "generation_config.json").exists() or not (kept / f"{bench}.generation_config.json").exists():
        return
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kept / f"{bench}.generations.jsonl", dst / "generations.jsonl")
    settings = json.loads((kept / f"{bench}.generation_config.json").read_text())
    settings["model"] = str(ROOT / settings["model"])  # as run_eval pins it
    (dst / "generation_config.json").write_text(json.dumps(settings, indent=1) + "\n")


def score(bench: str, seed: int, limit: int | None, out_root: Path) -> dict:
    from iterkd.evaluate.run import EvalConfig, run_eval

    restore_generations(bench, seed, out_root)
    cfg = EvalConfig(model=str(base_gguf()), benchmark=bench, split=SPLIT[bench], n_samples=SAMPLES[bench],
                     seed=seed, limit=limit, **EVAL)  # fmt: skip
    results = run_eval(cfg, RUNS / "instrument" / f"seed{seed}" / bench)
    row = out_root / f"base-seed{seed}"
    row.mkdir(parents=True, exist_ok=True)
    src = RUNS / "instrument" / f"seed{seed}" / bench
    shutil.copyfile(src / "samples.jsonl", row / f"{bench}.samples.jsonl")
    shutil.copyfile(src / "results.json", row / f"{bench}.results.json")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="humaneval", choices=sorted(SAMPLES))
    ap.add_argument("--seeds", default="0,100", help="comma-separated sampling seeds (one score per seed)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N tasks (a wiring check)")
    ap.add_argument("--out", type=Path, default=OUT, help="where the rows go (default: beside this script)")
    ap.add_argument("--keep", action="store_true", help="only copy unfinished generation logs into the rows")
    args = ap.parse_args()
    if args.keep:
        for seed in (int(s) for s in args.seeds.split(",")):
            keep_generations(args.bench, seed, args.out)
        return
    for seed in (int(s) for s in args.seeds.split(",")):
        r = score(args.bench, seed, args.limit, args.out)
        print(f"{args.bench} seed {seed}: pass@1 {100 * r['pass_at_k']['pass@1']:.2f}% over {r['n_tasks']} tasks")


if __name__ == "__main__":
    main()
