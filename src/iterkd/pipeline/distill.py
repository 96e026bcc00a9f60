"""``iterkd distill``: one method end to end in a run directory, resumable at every point.

    RUN/config.yaml                  the resolved config
    RUN/data/*.jsonl                 stage records (student attempts, teacher answers/repairs), appended per batch
                                     (or in ``stage_dir``, shared by runs with the same student/teacher settings)
    RUN/data/train.jsonl             the training set (TRL conversational prompt-completion) + data_card.json
    RUN/train/                       TRL checkpoints, train_config.yaml, final/ (the trained student), and
                                     final.q8_0.gguf when eval.export_gguf is set (evaluated with llama.cpp)
    RUN/base-model/                  with eval.export_gguf: the untrained student saved and exported the same way,
                                     so "before" and "after" are measured in one format on one path
    RUN/eval/{base,trained}/BENCH/   iterkd eval directories (samples.jsonl, results.json)
    RUN/summary.json                 before/after pass@1, data counts, teacher tokens and cost, wall times

A stage whose output exists is skipped; a stage cut short continues where it stopped (stage JSONL files, the
teacher's SQLite cache, TRL checkpoints, eval generations).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from iterkd.errors import UserError
from iterkd.io import atomic_write_json, atomic_write_text, portable_path, read_json, run_lock
from iterkd.pipeline.config import DistillConfig

# Settings that decide what a stage record holds: runs may share a stage_dir only when these agree.
_STAGE_KEYS = ("seed_tasks", "seed_split", "student", "student_sampling", "sandbox_timeout", "teacher_sees_reference")
_TEACHER_KEYS = (
    "served_model",
    "base_url",
    "model",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "top_k",
    "extra_body",
)


def _stage_dir(cfg: DistillConfig, run: Path) -> Path:
    """Where the stage records live (RUN/data, or a stage_dir shared by runs, e.g. the rows of an experiment);
    a shared directory remembers the settings that made its records and refuses others."""
    from iterkd.codegen.prompts import PROMPT_VERSIONS
    from iterkd.io import pin_settings

    if not cfg.stage_dir:
        return run / "data"
    path = Path(cfg.stage_dir)
    wanted = {k: getattr(cfg, k) for k in _STAGE_KEYS}
    wanted["teacher"] = {k: cfg.teacher.get(k) for k in _TEACHER_KEYS}
    wanted["prompt_version"] = PROMPT_VERSIONS["student"]  # the key older stage directories were pinned with
    families = {f"prompt_version:{family}": v for family, v in PROMPT_VERSIONS.items() if family != "student"}
    wanted.update(families)
    # pin files written before the families were recorded held records of their v1 wordings
    pin_settings(
        path / "stage_settings.json",
        wanted,
        f"stage_dir {path}",
        "use another stage_dir",
        assumed={k: "v1" for k in families},
    )
    return path


def build_data(cfg: DistillConfig, run: Path, progress: bool) -> dict:
    """Student attempts -> feedback -> teacher -> training set; returns the data card."""
    from iterkd.methods import collect, write_dataset
    from iterkd.models.base import LazyGenerator
    from iterkd.models.load import student_loader
    from iterkd.sandbox import Limits, Sandbox
    from iterkd.tasks import load_tasks
    from iterkd.teacher import load_teacher

    card = read_json(run / "data" / "data_card.json")  # None when missing or cut by a crash: rebuild
    if card is not None:
        return card
    split = cfg.seed_split if cfg.seed_tasks == "mbpp" else None
    tasks = load_tasks(cfg.seed_tasks, split)
    tasks = [t for t in tasks if t.tests][: cfg.limit] if cfg.limit else [t for t in tasks if t.tests]
    student_params, teacher_cfg, _, _ = cfg.sections()
    limits = Limits(timeout_s=cfg.sandbox_timeout)
    began = time.perf_counter()
    stage_dir = _stage_dir(cfg, run)
    student = None
    if cfg.method != "stand":
        student = LazyGenerator(student_loader(cfg.student, cfg.student_backend, cfg.batch_size)[1])
    teacher = load_teacher(teacher_cfg)
    shared = run_lock(stage_dir, "stage_dir") if cfg.stage_dir else contextlib.nullcontext()
    try:
        with shared, Sandbox(limits=limits) as sandbox:
            examples, stats = collect(
                cfg.method,
                tasks,
                student,
                teacher,
                student_params,
                teacher_cfg.sampling(),
                sandbox,
                limits,
                stage_dir,
                batch_size=cfg.batch_size,
                progress=progress,
                teacher_sees_reference=cfg.teacher_sees_reference,
            )
        usage = teacher.as_dict()
    finally:
        teacher.close()
        if student is not None:
            student.close()
    if not examples:
        raise UserError(
            f"{cfg.method}: the teacher produced no passing examples for {len(tasks)} seed tasks; "
            "nothing to train on (see RUN/data/*.jsonl)"
        )
    extra = {
        "teacher": usage,
        "seed_source": cfg.seed_tasks,
        "seed_split": split,
        "student": cfg.student,
        "data_seconds": round(time.perf_counter() - began, 1),
    }
    write_dataset(examples, stats, run / "data", extra, parquet=cfg.parquet)
    return read_json(run / "data" / "data_card.json")


def train_student(cfg: DistillConfig, run: Path) -> tuple[Path, float]:
    from iterkd.train.launch import run_training

    final = run / "train" / "final"
    if (final / "config.json").exists():
        return final, 0.0
    began = time.perf_counter()
    path = run_training(cfg.sections()[2], cfg.train_launcher)
    return path, time.perf_counter() - began


def evaluate(cfg: DistillConfig, model: str, out: Path, progress: bool) -> dict:
    from iterkd.evaluate.run import benchmark_name, run_eval

    results = {}
    for ecfg in cfg.sections()[3]:
        name = benchmark_name(ecfg.benchmark)
        doc = run_eval(ecfg.model_copy(update={"model": model}), out / name, progress=progress)
        results[name] = {
            "pass_at_k": doc["pass_at_k"],
            "n_tasks": doc["n_tasks"],
            **({"repair_steps": doc["repair_steps"]} if "repair_steps" in doc else {}),
        }
    return results


def run_distill(cfg: DistillConfig, progress: bool = True) -> dict:
    """Run (or resume) ``cfg.method`` end to end; return the summary written to RUN/summary.json. The run
    directory is locked for the whole run: a second process on it stops at once with a UserError."""
    if cfg.method == "iterkd":
        from iterkd.pipeline.iterkd import run_iterkd

        return run_iterkd(cfg, progress)
    with run_lock(cfg.run_dir):
        return _run_locked(cfg, Path(cfg.run_dir), progress)


def _run_locked(cfg: DistillConfig, run: Path, progress: bool) -> dict:
    import yaml

    atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    began = time.perf_counter()
    card = build_data(cfg, run, progress)
    final, train_seconds = train_student(cfg, run)
    # model paths are relative to the run directory: a run (or its committed copy) does not name this machine
    rel = lambda path: portable_path(path, run)  # noqa: E731
    summary = {
        "method": cfg.method,
        "run_dir": cfg.run_dir,
        "data": card,
        "train_seconds": round(train_seconds, 1),
        "trained_model": rel(final),
    }
    outtype = cfg.eval.get("export_gguf")  # e.g. q8_0: evaluate through llama.cpp, several times faster on a CPU
    if cfg.eval_base:
        base = cfg.student
        if outtype:  # the untrained student through the same de-quantise -> export path as the trained one
            from iterkd.train.export import export_untrained

            base = str(export_untrained(cfg.student, run / "base-model", outtype))
            summary["base_gguf"] = rel(base)
        summary["base"] = evaluate(cfg, base, run / "eval" / "base", progress)
    trained = str(final)
    if outtype:
        from iterkd.train.export import export_gguf

        trained = str(export_gguf(final, outtype=outtype))
        summary["trained_gguf"] = rel(trained)
    summary["trained"] = evaluate(cfg, trained, run / "eval" / "trained", progress)
    summary["wall_seconds_this_call"] = round(time.perf_counter() - began, 1)
    atomic_write_json(run / "summary.json", summary)
    return summary


def format_summary(summary: dict) -> str:
    if summary["method"] == "iterkd":
        from iterkd.pipeline.iterkd import format_rounds

        return format_rounds(summary)
    data = summary["data"]
    lines = [
        f"method     {summary['method']}   run {summary['run_dir']}",
        f"data       {data['seed_tasks']} seed tasks ({data.get('seed_source')}): {data.get('attempted', 0)} attempted, {data.get('failed', 0)} failed, "
        f"{data.get('teacher_calls', 0)} teacher calls, {data.get('teacher_passed', 0)} passing, {data['examples']} examples",
        f"teacher    {data.get('teacher_prompt_tokens', 0)} prompt + {data.get('teacher_completion_tokens', 0)} completion tokens",
        f"{'benchmark':<10} {'before':>8} {'after':>8}",
    ]
    for bench, after in summary["trained"].items():
        before = summary.get("base", {}).get(bench, {}).get("pass_at_k", {}).get("pass@1")
        b = f"{100 * before:7.2f}%" if before is not None else "       -"
        lines.append(f"{bench:<10} {b} {100 * after['pass_at_k']['pass@1']:7.2f}%")
    return "\n".join(lines)
