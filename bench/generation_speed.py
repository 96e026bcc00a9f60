"""Generation speed on this CPU: llama.cpp in-process (one request at a time) against llama.cpp's native
llama-server with parallel slots (`iterkd eval --backend llama-server`), greedy, on the first N HumanEval
prompts; also how many greedy answers the two ways agree on exactly.

    python bench/generation_speed.py [--models a,b] [--tasks 16] [--parallel 8] [--threads 2]

Model loading and server start-up are not timed; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, table

MODELS = ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]


def timed_chat(gen, convs, params) -> tuple[list, float]:
    began = time.perf_counter()
    out = gen.chat(convs, params)
    return [row[0] for row in out], time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from iterkd.codegen import build_messages
    from iterkd.models import SamplingParams, load_generator
    from iterkd.tasks import load_tasks

    convs = [build_messages(t) for t in load_tasks("humaneval")[: args.tasks]]
    params = SamplingParams(temperature=0.0, max_tokens=512, seed=0)
    cells, rows = [], []
    for model in args.models.split(","):
        with load_generator(model, backend="llamacpp", n_threads=args.threads) as gen:
            single, t_single = timed_chat(gen, convs, params)
        with load_generator(model, backend="llama-server", parallel=args.parallel, server_threads=args.threads) as gen:
            batched, t_batched = timed_chat(gen, convs, params)
        tok_single = sum(c.completion_tokens for c in single)
        tok_batched = sum(c.completion_tokens for c in batched)
        same = sum(a.text == b.text for a, b in zip(single, batched))
        cell = {
            "model": model, "tasks": len(convs),
            "in_process": {"tokens": tok_single, "seconds": round(t_single, 1), "tokens_per_s": round(tok_single / t_single, 1)},
            "llama_server": {"parallel": args.parallel, "tokens": tok_batched, "seconds": round(t_batched, 1),
                             "tokens_per_s": round(tok_batched / t_batched, 1)},
            "identical_answers": same,
        }  # fmt: skip
        cells.append(cell)
        rows.append([model, cell["in_process"]["tokens_per_s"], cell["llama_server"]["tokens_per_s"],
                     f"{cell['llama_server']['tokens_per_s'] / cell['in_process']['tokens_per_s']:.1f}x",
                     f"{same}/{len(convs)}"])  # fmt: skip
        print(table(["model", "in-process tok/s", f"llama-server x{args.parallel} tok/s", "speed-up", "identical"], rows[-1:]),
              flush=True)  # fmt: skip
    print(table(["model", "in-process tok/s", f"llama-server x{args.parallel} tok/s", "speed-up", "identical"], rows))
    settings = f"greedy, max_tokens 512, first {args.tasks} HumanEval prompts, {args.threads} threads"
    print(f"wrote {save('generation_speed', {'settings': settings, 'cells': cells})}")


if __name__ == "__main__":
    main()
