"""Issue 31, before the rows: how noisy is the instrument? The untrained student, exported like every trained row
(de-quantised, saved, GGUF q8_0: train.export.export_untrained), scored twice under the protocol with two sets of
sampling seeds; the two scores differ only by sampling noise.

    ITERKD_THREADS=2 python experiments/iterkd-mini/instrument.py [--bench humaneval] [--seeds 0,100] [--limit N]

Protocol (every row of the experiment: score.py's PROTOCOL, which scores every row the same way): HumanEval
pass@1 from n = 10 samples per task at temperature 0.2, top_p 0.95, top_k 50, 512 tokens, llama.cpp's native
server (16 slots); sample i of a task uses seed + i, so seeds 0 and 100 draw disjoint samples. (MBPP test is
scored greedily: no sampling noise to measure there.) Generations resume (runs/iterkd-mini/instrument/, not
committed); each finished score copies its
samples (evalplus format) and results into experiments/iterkd-mini/instrument/base-seed<S>/, where
`iterkd report experiments/iterkd-mini/instrument --pair base-seed100:base-seed0` pairs them over tasks.
`--keep` copies an unfinished score's generation log into the row (committed), and a rerun in a new checkout
resumes from it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from score import RUNS, SAMPLES, keep_generations, score  # noqa: E402  (the rows' scorer: the same protocol)

OUT = HERE / "instrument"
STUDENT = "smollm2-135m-instruct"


def base_gguf() -> Path:
    """The untrained student through the trained rows' export path (made once)."""
    from iterkd.train.export import export_untrained

    return export_untrained(STUDENT, RUNS / "base-model", "q8_0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="humaneval", choices=[b for b, n in SAMPLES.items() if n > 1])
    ap.add_argument("--seeds", default="0,100", help="comma-separated sampling seeds (one score per seed)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N tasks (a wiring check)")
    ap.add_argument("--out", type=Path, default=OUT, help="where the rows go (default: beside this script)")
    ap.add_argument("--keep", action="store_true", help="only copy unfinished generation logs into the rows")
    args = ap.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        row, work = args.out / f"base-seed{seed}", RUNS / "instrument" / f"seed{seed}" / args.bench
        if args.keep:
            keep_generations(work, row, args.bench)
            continue
        r = score(base_gguf(), args.bench, seed, row, work, args.limit)
        print(f"{args.bench} seed {seed}: pass@1 {100 * r['pass_at_k']['pass@1']:.2f}% over {r['n_tasks']} tasks")


if __name__ == "__main__":
    main()
