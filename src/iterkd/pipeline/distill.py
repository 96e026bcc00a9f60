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
from iterkd.io import atomic_write_json, portable_path, read_json, run_lock
from iterkd.pipeline.config import DistillConfig
from iterkd.pipeline.resume import eval_stages, resume_check
from iterkd.stages import Clock, Plan, active, begin

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
    wanted["student_sampling"] = cfg.student_sampling.model_dump(exclude_unset=True)
    teacher = cfg.teacher.model_dump(exclude_unset=True)  # as the dict section was pinned: unset keys are None
    wanted["teacher"] = {k: teacher.get(k) for k in _TEACHER_KEYS}
    wanted["prompt_version"] = PROMPT_VERSIONS["student"]  # the key older stage directories were pinned with
    # the families whose records a shared stage directory of the PERsD family holds (IterKD's are pinned per stage)
    families = {f"prompt_version:{family}": PROMPT_VERSIONS[family] for family in ("student-refine", "teacher-repair")}
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


def plan(cfg: DistillConfig) -> Plan:
    """Every stage of a PERsD-family run (STAND, INPD, PERsD and its variants) with the settings it is pinned by."""
    from iterkd.codegen.prompts import PROMPT_VERSIONS
    from iterkd.methods.persd import REGISTRY, TEACHER_STAGES
    from iterkd.stages import StagePin

    run, spec = Path(cfg.run_dir), REGISTRY[cfg.method]
    data, stage_dir = run / "data", Path(cfg.stage_dir) if cfg.stage_dir else run / "data"
    seeds, student, teacher = cfg.seed_settings(), cfg.student_settings(), cfg.teacher_settings()
    stages = []
    if spec.only_failed:
        stages.append(StagePin("student-attempts", (stage_dir / "student_attempts.jsonl",), {**student, "seed_tasks": seeds["seed_tasks"], "seed_split": seeds["seed_split"]}))  # fmt: skip
    file, _ = TEACHER_STAGES[spec.teacher_stage]
    family = "teacher-repair" if spec.teacher_stage == "teacher-repair" else "student"
    asked = {**teacher, f"prompt_version:{family}": PROMPT_VERSIONS[family], "sandbox_timeout": cfg.sandbox_timeout,
             "teacher_sees_reference": cfg.teacher_sees_reference, "seed_tasks": seeds["seed_tasks"],
             "seed_split": seeds["seed_split"]}  # fmt: skip
    stages.append(StagePin(spec.teacher_stage, (stage_dir / file,), asked))
    stages.append(StagePin("dataset", (data / "train.jsonl", data / "data_card.json"), {"method": cfg.method, **seeds},
                           file=data / "dataset.settings.json", redo=f"delete {data / 'data_card.json'}"))  # fmt: skip
    tcfg = cfg.train_config()
    stages.append(
        StagePin("training", (tcfg.output_path,), cfg.train_settings(tcfg), redo=f"delete {tcfg.output_path}")
    )
    export = cfg.eval.get("export_gguf")
    if cfg.eval_base:
        base = str(run / "base-model" / f"final.{export}.gguf") if export else cfg.student
        stages += eval_stages(cfg, base, run / "eval" / "base", "eval/base")
    trained = tcfg.final_dir.parent / f"final.{export}.gguf" if export else tcfg.final_dir
    return Plan(f"run_dir {run}", [*stages, *eval_stages(cfg, str(trained), run / "eval" / "trained", "eval/trained")])


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
    limits = Limits(timeout_s=cfg.sandbox_timeout)
    began = time.perf_counter()
    stage_dir = _stage_dir(cfg, run)
    student = None
    if cfg.method != "stand":
        student = LazyGenerator(student_loader(cfg.student, cfg.student_backend, cfg.batch_size)[1])
    teacher = load_teacher(cfg.teacher)
    shared = run_lock(stage_dir, "stage_dir") if cfg.stage_dir else contextlib.nullcontext()
    try:
        with shared, Sandbox(limits=limits) as sandbox:
            examples, stats = collect(
                cfg.method,
                tasks,
                student,
                teacher,
                cfg.student_sampling,
                cfg.teacher.sampling(),
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
    begin(run / "data" / "train.jsonl")
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
    tcfg = cfg.train_config()
    begin(tcfg.output_path)
    path = run_training(tcfg, cfg.train_launcher)
    return path, time.perf_counter() - began


def evaluate(cfg: DistillConfig, model: str, out: Path, progress: bool) -> dict:
    from iterkd.evaluate.run import benchmark_name, run_eval

    results = {}
    for ecfg in cfg.eval_configs():
        name = benchmark_name(ecfg.benchmark)
        doc = run_eval(ecfg.model_copy(update={"model": model}), out / name, progress=progress)
        results[name] = {
            "pass_at_k": doc["pass_at_k"],
            "n_tasks": doc["n_tasks"],
            **({"repair_steps": doc["repair_steps"]} if "repair_steps" in doc else {}),
        }
    return results


def run_distill(cfg: DistillConfig, progress: bool = True) -> dict:
    """Run (or resume) ``cfg.method`` end to end with its pipeline (``pipeline.registry``); return the summary
    written to RUN/summary.json. The run directory is locked for the whole run: a second process on it stops at
    once with a UserError."""
    from iterkd.pipeline.registry import pipeline

    return pipeline(cfg.method).load().run(cfg, progress)


def run(cfg: DistillConfig, progress: bool = True) -> dict:
    """The PERsD family's pipeline (see ``pipeline.registry``)."""
    with run_lock(cfg.run_dir):
        return _run_locked(cfg, Path(cfg.run_dir), progress)


def _run_locked(cfg: DistillConfig, run: Path, progress: bool) -> dict:
    resume_check(cfg, plan)
    with active(plan(cfg)):
        return _stages(cfg, run, progress)


def _stages(cfg: DistillConfig, run: Path, progress: bool) -> dict:
    began, clock = time.perf_counter(), Clock(run / "clock.json", run / "data")  # it sums every call's steps
    with clock.step("data"):
        card = build_data(cfg, run, progress)
    with clock.step("training"):
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
        with clock.step("base_eval"):
            if outtype:  # the untrained student through the same de-quantise -> export path as the trained one
                from iterkd.train.export import export_untrained

                base = str(export_untrained(cfg.student, run / "base-model", outtype))
                summary["base_gguf"] = rel(base)
            summary["base"] = evaluate(cfg, base, run / "eval" / "base", progress)
    trained = str(final)
    with clock.step("trained_eval"):
        if outtype:
            from iterkd.train.export import export_gguf

            trained = str(export_gguf(final, outtype=outtype))
            summary["trained_gguf"] = rel(trained)
        summary["trained"] = evaluate(cfg, trained, run / "eval" / "trained", progress)
    summary["wall_seconds_this_call"] = round(time.perf_counter() - began, 1)
    summary["wall_seconds"] = clock.totals  # per step, over every call that worked on the run
    summary["wall_seconds_complete"] = clock.complete  # False: the clock started on a run begun before it
    atomic_write_json(run / "summary.json", summary)
    return summary


def format_summary(summary: dict) -> str:
    """The table ``iterkd distill`` prints, by the pipeline of the summary's method."""
    from iterkd.pipeline.registry import pipeline

    return pipeline(summary["method"]).load().format_table(summary)


def format_table(summary: dict) -> str:
    """A PERsD-family run: its data funnel and pass@1 before and after training."""
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
