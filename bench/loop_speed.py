"""The distillation loop's engines on this CPU, today's path and the candidate one side by side (issue 20).

Built so far: (a) student generation. Today: llama.cpp in-process (`--backend llamacpp`, the registry's Q4_1
GGUF, one sequence at a time). Candidate: llama.cpp's native llama-server with --parallel slots, serving the
student re-exported to q8_0 (`iterkd.train.export.export_untrained`: the weights training sees, as trained
students are served). HumanEval prompts, temperature 0.2, n samples per task, max 512 tokens. Not built yet:
(b) teacher generation, (c) sandbox, (d) training; their ratios are written as null.

    python bench/loop_speed.py [--quick] [--tasks 16] [--n 10] [--parallel 16] [--threads 2]

--quick: 4 samples per task for the candidate and 2 for today's path (the in-process path is slow; tokens/s is
the figure compared). Model loading, server start-up and the one-time q8_0 export are not timed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, table

STUDENT = "smollm2-135m-instruct"


def generate(model: str, backend: str, convs: list, n: int, **kw) -> dict:
    """Tokens, seconds and tokens/s of ``n`` samples per conversation (T 0.2, top_p 0.95, max 512 tokens)."""
    from iterkd.models import SamplingParams, load_generator

    params = SamplingParams(temperature=0.2, top_p=0.95, max_tokens=512, seed=0)
    with load_generator(model, backend=backend, **kw) as gen:
        began = time.perf_counter()
        rows = gen.chat(convs, params, n=n)
        seconds = time.perf_counter() - began
    tokens = sum(c.completion_tokens for row in rows for c in row)
    return {"sequences": len(convs) * n, "tokens": tokens, "seconds": round(seconds, 1),
            "tokens_per_s": round(tokens / seconds, 1)}  # fmt: skip


def student_generation(args) -> dict:
    from iterkd.codegen import build_messages
    from iterkd.models.registry import cache_dir
    from iterkd.tasks import load_tasks
    from iterkd.train.export import export_untrained

    convs = [build_messages(t) for t in load_tasks("humaneval")[: args.tasks]]
    q8 = export_untrained(STUDENT, cache_dir() / "bench" / f"{STUDENT}-untrained", outtype="q8_0")
    n_old, n_new = (2, 4) if args.quick else (args.n, args.n)
    old = generate(STUDENT, "llamacpp", convs, n_old, n_threads=args.threads)
    new = generate(str(q8), "llama-server", convs, n_new, parallel=args.parallel, server_threads=args.threads)
    return {"today": {"path": "llamacpp in-process, registry Q4_1", **old},
            "candidate": {"path": f"llama-server x{args.parallel}, q8_0 re-export", **new},
            "ratio": round(new["tokens_per_s"] / old["tokens_per_s"], 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    student = student_generation(args)
    rows = [["student generation", student["today"]["tokens_per_s"], student["candidate"]["tokens_per_s"],
             f"{student['ratio']:.2f}x", ">= 3x"]]  # fmt: skip
    for name, target in (("teacher generation", ">= 1.5x"), ("sandbox", ">= 4x"), ("training", "report")):
        rows.append([name, "-", "-", "not built", target])
    print(table(["engine", "today tok/s", "candidate tok/s", "ratio", "target"], rows))
    settings = {"tasks": args.tasks, "n": args.n, "quick": args.quick, "parallel": args.parallel,
                "threads": args.threads, "student": STUDENT}  # fmt: skip
    ratios = {"student_generation": student["ratio"], "teacher_generation": None, "sandbox": None, "training": None}
    print(f"wrote {save('loop_speed', {'settings': settings, 'student_generation': student, 'ratios': ratios})}")


if __name__ == "__main__":
    main()
