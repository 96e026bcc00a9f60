"""Baseline table: the three built-in small models, greedy pass@1 on HumanEval and MBPP (test split).

Each cell is one `iterkd eval` run under bench/results/baselines/<model>/<benchmark>/ (committed: samples.jsonl
for anyone to re-score with `iterkd check`, results.json, and generations.jsonl, which makes the run resumable
across sessions: rerun this script and finished generations are kept).

    python bench/baselines.py [--models a,b] [--benchmarks humaneval,mbpp] [--limit N] [--backend B]

--backend llama-server (llama.cpp's native server, 8 requests decoded together; `iterkd models build-server`)
is about 2.5x faster on a CPU than the default in-process llama.cpp, but its greedy answers can differ in a few
tokens from one-at-a-time decoding; each cell's generation_config.json records the backend it used.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, save, table

MODELS = ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--benchmarks", default="humaneval,mbpp")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--backend", default="auto", help="iterkd eval --backend for cells run now")
    parser.add_argument("--runs", default=str(RESULTS / "baselines"))
    parser.add_argument("--collect-only", action="store_true", help="Only tabulate finished runs.")
    args = parser.parse_args()

    iterkd = str(Path(sys.executable).parent / "iterkd")
    rows, cells = [], []
    for bench in args.benchmarks.split(","):
        for model in args.models.split(","):
            out = Path(args.runs) / model / bench
            if not args.collect_only:
                cmd = [
                    iterkd,
                    "eval",
                    "--model",
                    model,
                    "--benchmark",
                    bench,
                    "--out",
                    str(out),
                    "--seed",
                    "0",
                    "--backend",
                    args.backend,
                ]
                if args.limit:
                    cmd += ["--limit", str(args.limit)]
                print("$", " ".join(cmd), flush=True)
                subprocess.run(cmd, check=True)
            results_path = out / "results.json"
            if not results_path.exists():
                continue
            res = json.loads(results_path.read_text())
            gen = res.get("generation", {})
            backend = json.loads((out / "generation_config.json").read_text()).get("backend", "auto")
            backend = "llama.cpp (in-process)" if backend == "auto" else backend
            dest = out / "samples.jsonl"
            cell = {
                "model": model,
                "benchmark": bench,
                "n_tasks": res["n_tasks"],
                "pass@1": res["pass_at_k"]["pass@1"],
                "generation_s": gen.get("total_seconds"),  # all sessions together (None: timing not recorded)
                "completion_tokens": gen.get("total_completion_tokens"),
                "tokens_per_s": gen.get("total_tokens_per_second"),
                "backend": backend,
                "samples": str(dest.relative_to(ROOT)),
            }
            cells.append(cell)
            rows.append(
                [
                    model,
                    bench,
                    res["n_tasks"],
                    f"{100 * cell['pass@1']:.1f}",
                    cell["generation_s"],
                    cell["tokens_per_s"],
                    backend,
                ]
            )
    print(table(["model", "benchmark", "tasks", "pass@1 %", "gen s", "tokens/s", "backend"], rows))
    settings = "greedy (temperature 0), seed 0, max_tokens 512, 1 sample/task, prompt v1; backend per cell"
    print(f"wrote {save('baselines', {'settings': settings, 'cells': cells})}")


if __name__ == "__main__":
    main()
