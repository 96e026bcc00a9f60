"""``iterkd distill --method iterkd --rounds N``: the IterKD cycle, round after round, in one run directory.

    RUN/config.yaml                     the resolved config (the ``iterkd:`` section holds this method's settings)
    RUN/rounds/rK/data/                 stage records: teacher_direct / teacher_faulty (Stage I), student_answers,
                                        judge (Stage II), questions (Stage III), all resumable
    RUN/rounds/rK/pairs.jsonl           the round's preference rows (TRL conversational format, with task ids)
    RUN/rounds/rK/train/                the round's training (final/, final.q8_0.gguf)
    RUN/rounds/rK/new_tasks.jsonl       the questions this round wrote and validated (a task file)
    RUN/rounds/rK/pool.jsonl            the questions of the round (round 1: the seed tasks)
    RUN/rounds/rK/summary.json          what the round did (written last: a round with it is skipped on resume)
    RUN/summary.json                    every round's summary

Each round: Stage I (pairs from the round's pool; from round 2 also the student's own failed answers of the
previous round when ``negatives`` is student or both) -> preference training (skipped when there is no pair) ->
Stage II (the trained student answers the pool: execution, lint, judge; the judge's ROC AUC against execution) ->
Stage III (buckets, new questions) -> the next pool = the new questions (+ the hard seeds). Choices the paper
leaves open are fields of ``IterKDConfig`` (ours, recorded in config.yaml).
"""

from __future__ import annotations

import json
from pathlib import Path

from iterkd.io import (
    atomic_write_json,
    atomic_write_lines,
    atomic_write_text,
    from_portable,
    portable_path,
    read_json,
    read_progress_log,
)
from iterkd.pipeline.iterkd_config import IterKDConfig
from iterkd.pipeline.resume import eval_stages, resume_check
from iterkd.stages import Clock, Plan, Request, StagePin, active, begin, run_stage, verified_records
from iterkd.tasks import write_task_file


class Round:
    """One IterKD round in ``rdir`` (see the module docstring); ``run()`` does it and returns its summary."""

    def __init__(self, cfg, ic: IterKDConfig, k: int, rdir: Path, student: dict, pool: list, prev: Path | None,
                 progress: bool = True):  # fmt: skip
        """``student``: {"train": model to train from, "generate": model to answer with}; ``prev``: the previous
        round's directory (its student answers are this round's student negatives)."""
        self.cfg, self.ic, self.k, self.rdir, self.student, self.pool, self.prev = cfg, ic, k, rdir, student, pool, prev
        self.progress = progress
        self.data = rdir / "data"
        self.clock = Clock(rdir / "clock.json", self.data)  # the round's wall time: this call's, every call's
        self.attempts: dict[str, tuple[str, str]] = {}  # the student's failing answers (Stage II), for Stage III

    def _timed(self, name: str, fn):
        with self.clock.step(name):
            return fn()

    def pairs(self, teacher, teacher_params, sandbox, limits) -> tuple[list, dict]:
        from dataclasses import asdict

        from iterkd.methods.pairs import collect_pairs, student_pairs

        n_faulty = 0 if self.ic.negatives == "student" else self.ic.n_faulty  # only the correct answers needed
        pairs, stats = collect_pairs(self.pool, teacher, teacher_params, sandbox, limits, self.data,
                                     n_faulty=n_faulty, reveal=self.ic.reveal, progress=self.progress,
                                     fault_prompt=self.ic.fault_prompt)  # fmt: skip
        own = []
        if self.ic.negatives in ("student", "both") and self.prev is not None:
            correct = read_progress_log(self.data / "teacher_direct.jsonl", lambda r: r["task_id"])
            attempts = read_progress_log(self.prev / "data" / "student_answers.jsonl", lambda r: r["task_id"])
            own = student_pairs(self.pool, correct, attempts)
        atomic_write_lines(self.rdir / "pairs.jsonl", pairs + own)
        return pairs + own, {**asdict(stats), "teacher_pairs": len(pairs), "student_pairs": len(own)}

    def train(self, n_pairs: int) -> dict:
        """The round's student: trained on the pairs (the same student when there are none); its GGUF answers."""
        from iterkd.train.export import export_gguf
        from iterkd.train.launch import run_training

        train_file = self.rdir / "pairs.jsonl"
        if self.ic.train_from == "base":  # the base student, trained on every round's pairs so far
            earlier = [self.rdir.parent / f"r{j}" / "pairs.jsonl" for j in range(1, self.k)]
            rows = [line for f in [*earlier, train_file] for line in f.read_text(encoding="utf-8").splitlines()]
            n_pairs, train_file = len(rows), self.rdir / "train_pairs.jsonl"
            atomic_write_text(train_file, "".join(line + "\n" for line in rows))
        if n_pairs == 0:
            return dict(self.student)
        tcfg = train_config(self.cfg, self.ic, self.rdir, self.student["train"], train_file)
        final = tcfg.final_dir
        if not (final / "config.json").exists():
            begin(tcfg.output_path)
            # in this process, or under `accelerate launch` (several processes / GPUs) when train_launcher is set
            run_training(tcfg, self.cfg.train_launcher)
        return {"train": str(final), "generate": str(export_gguf(final, outtype="q8_0"))}

    def feedback(self, student: dict, teacher, sandbox, limits) -> tuple[dict, dict]:
        """Stage II on the pool: the student's answers, scored by every view (execution, lint, judge); buckets
        by task id."""
        from iterkd.codegen.prompts import direct_messages
        from iterkd.feedback.views import score_answers
        from iterkd.methods.questions import bucket
        from iterkd.models import load_generator
        from iterkd.models.base import LazyGenerator

        model = LazyGenerator(lambda: load_generator(student["generate"], backend=self.cfg.student_backend))
        try:
            answers = run_stage("student-answers", model, [Request(t.task_id, t, direct_messages(t)) for t in self.pool],
                                self.cfg.student_sampling, self.data / "student_answers.jsonl",
                                verified_records("student-answers", sandbox, limits), progress=self.progress)  # fmt: skip
        finally:
            model.close()
        self.attempts = {r["task_id"]: (r["code"], r["feedback"]) for r in answers.values() if not r["passed"]}
        scores, doc = score_answers(views_for(self.ic, teacher, self.data, self.progress), self.pool, answers)
        ranked = self.ic.judge and self.ic.judge_in_buckets  # the judge is measured every round, used when asked
        buckets = {k: bucket(s if ranked else {**s, "judge": None}, self.ic.easy_min, self.ic.hard_max)
                   for k, s in scores.items()}  # fmt: skip
        if not self.ic.judge:  # the summary keeps its judge keys: nothing judged
            doc.update(judge_parsed=0, judge_roc_auc=None, judge_roc_auc_ci=None, judge_fail_scored_5_plus=0)
        doc["buckets"] = {b: sum(v == b for v in buckets.values()) for b in ("easy", "medium", "hard")}
        doc["buckets_from"] = (
            "execution + static + judge" if ranked
            else "execution + static (the judge is measured, not used: judge_in_buckets false)" if self.ic.judge
            else "execution + static (no judge)"
        )  # fmt: skip
        return buckets, doc

    def questions(self, buckets: dict, teacher, sandbox, limits, pool_texts: list[str]) -> tuple[list, dict]:
        from dataclasses import asdict

        from iterkd.methods.questions import QuestionWriter
        from iterkd.models import SamplingParams

        by_id = {t.task_id: t for t in self.pool}
        seeds = {b: [by_id[k] for k, v in buckets.items() if v == b] for b in ("easy", "medium", "hard")}
        params = SamplingParams(temperature=self.ic.question_temperature, max_tokens=self.ic.question_max_tokens)
        write = QuestionWriter(teacher, params, sandbox, limits, self.data, round_=self.k,
                               dedup=self.ic.dedup, dedup_threshold=self.ic.dedup_threshold, progress=self.progress,
                               tasks_file=self.rdir / "new_tasks.jsonl")  # fmt: skip
        new, stats = write({b: s for b, s in seeds.items() if s}, self.ic.per_seed, pool_texts, self.attempts)
        nxt = new + (seeds["hard"] if self.ic.keep_hard_seeds else [])
        return nxt, asdict(stats)

    def run(self, teacher, teacher_params, sandbox, limits, pool_texts: list[str]) -> dict:
        """The four steps (+ the evaluation when ``eval.benchmarks`` is set), then ``next_pool.jsonl`` and
        ``summary.json`` (last: it marks the round finished)."""
        write_task_file(self.rdir / "pool.jsonl", self.pool)
        pairs, pair_stats = self._timed("stage1_pairs", lambda: self.pairs(teacher, teacher_params, sandbox, limits))
        student = self._timed("training", lambda: self.train(len(pairs)))
        buckets, feedback = self._timed("stage2_feedback", lambda: self.feedback(student, teacher, sandbox, limits))
        nxt, questions = self._timed(
            "stage3_questions", lambda: self.questions(buckets, teacher, sandbox, limits, pool_texts)
        )
        write_task_file(self.rdir / "next_pool.jsonl", nxt)
        scores = self._timed("evaluation", lambda: evaluate_student(self.cfg, student["generate"], self.rdir / "eval",
                                                                    self.progress))  # fmt: skip
        run = self.rdir.parent.parent
        summary = {"round": self.k, "pool": len(self.pool), "pairs": pair_stats,
                   "trained": student["train"] != self.student["train"],
                   "student": {k: portable_path(v, run) for k, v in student.items()}, "feedback": feedback,
                   "questions": questions, "next_pool": len(nxt), "eval": scores,
                   "teacher_tokens": round_tokens(self.rdir), "seconds": self.clock.this_call,
                   "wall_seconds": self.clock.totals, "wall_seconds_complete": self.clock.complete}  # fmt: skip
        atomic_write_json(self.rdir / "summary.json", summary)
        return summary


def views_for(ic: IterKDConfig, teacher, data: Path, progress: bool = True) -> list:
    """Stage II's views of the student's answers (``feedback.views``), as the config asks."""
    from iterkd.feedback.views import ExecutionView, JudgeView, StaticView
    from iterkd.models import SamplingParams

    views = [ExecutionView(), StaticView()]
    if ic.judge:
        params = SamplingParams(temperature=0.0, max_tokens=ic.judge_max_tokens)
        views.append(JudgeView(teacher, params, data / "judge.jsonl", ic.judge_variant, progress))
    return views


def train_config(cfg, ic: IterKDConfig, rdir: Path, model: str, train_file: Path):
    """A round's preference training: the ``train:`` section with IterKD's loss (DPO + NLL, or NLL alone)."""
    loss = (["sigmoid", "sft"], [1.0, ic.nll_weight]) if ic.loss == "dpo" else (["sft"], [1.0])
    return cfg.train_config("preference", model=model, train_file=str(train_file), output_dir=str(rdir / "train"),
                            beta=ic.beta, loss_type=loss[0], loss_weights=loss[1])  # fmt: skip


LOSS_KEYS = ("train.beta", "train.loss_type", "train.loss_weights")  # set from iterkd.{beta,loss,nll_weight}


# settings added after runs were recorded: what a config.yaml or a pin file without them meant
RECORDED_BEFORE = {"iterkd.dedup": "minhash"}


def plan(cfg) -> Plan:
    """Every stage of an IterKD run, round by round, with the settings it is pinned by (``rounds`` and the
    budgets only extend a run: they are not pinned)."""
    run = Path(cfg.run_dir)
    base_eval = eval_stages(cfg, cfg.student, run / "eval" / "base", "eval/base", cfg.student_backend)
    stages = base_eval if cfg.eval_base else []
    for k in range(1, cfg.iterkd.rounds + 1):
        stages += _round_stages(cfg, k, run / "rounds" / f"r{k}")
    return Plan(f"run_dir {run}", stages)


def _round_stages(cfg, k: int, rdir: Path) -> list[StagePin]:
    """Round ``k``'s stages in the order they run: Stage I's teacher answers, training, Stage II (answers, judge),
    Stage III (questions), the round's evaluation."""
    from iterkd.codegen.prompts import PROMPT_VERSIONS as V

    ic, data, redo = cfg.iterkd, rdir / "data", f"delete {rdir} and the rounds after it"
    teacher, box, seeds = cfg.teacher_settings(), {"sandbox_timeout": cfg.sandbox_timeout}, cfg.seed_settings()
    own = lambda *fields: {f"iterkd.{f}": getattr(ic, f) for f in fields}  # noqa: E731
    pin = lambda stage, outputs, settings: StagePin(f"r{k}/{stage}", outputs, settings, redo=redo)  # noqa: E731
    pool = seeds if k == 1 else {}  # later pools come from the rounds before
    n_faulty = {"iterkd.n_faulty": 0 if ic.negatives == "student" else ic.n_faulty}
    family = "teacher-mutate" if ic.fault_prompt == "mutate" else "teacher-faulty"
    tcfg = train_config(cfg, ic, rdir, cfg.student, rdir / "pairs.jsonl")  # train.model: the base student
    trained = {key: v for key, v in cfg.train_settings(tcfg).items() if key not in LOSS_KEYS}  # named by iterkd.* here
    stages = [
        pin("teacher-direct", (data / "teacher_direct.jsonl",), {**teacher, "prompt_version:student": V["student"], **box, **pool}),
        StagePin(f"r{k}/teacher-faulty", (data / "teacher_faulty.jsonl",), {**teacher, **n_faulty, **own("fault_prompt"), f"prompt_version:{family}": V[family], **box, **pool},
                 redo=redo, assumed={"iterkd.fault_prompt": "ask"}),  # pins from before fault_prompt asked from scratch
        pin("training", (rdir / "train",), {**trained, **own("reveal", "negatives", "loss", "beta", "nll_weight", "train_from")}),
        pin("student-answers", (data / "student_answers.jsonl",), {**cfg.student_settings(), **box}),
    ]  # fmt: skip
    if ic.judge:
        judged = {**teacher, **own("judge_variant", "judge_max_tokens"), "prompt_version:judge": V["judge"]}
        stages.append(pin("judge", (data / "judge.jsonl", data / "judge.retry.jsonl"), judged))
    asked = own("easy_min", "hard_max", "judge", "judge_in_buckets", "per_seed", "question_temperature",
                "question_max_tokens", "dedup", "dedup_threshold", "keep_hard_seeds")  # fmt: skip
    questions = {**teacher, **asked, "prompt_version:question": V["question"], **box}
    stages.append(StagePin(f"r{k}/questions", (data / "questions.jsonl", data / "questions.retry.jsonl"), questions,
                           redo=redo, assumed=RECORDED_BEFORE))  # fmt: skip
    for stage in eval_stages(cfg, "", rdir / "eval", f"r{k}/eval", cfg.student_backend):
        # the round's student is pinned by its training; its path is checked by the eval directory itself
        settings = {key: v for key, v in stage.settings.items() if key != "model"}
        stages.append(StagePin(stage.name, stage.outputs, settings, stage.file, stage.assumed, redo, partial=True))
    return stages


def evaluate_student(cfg, model: str, out: Path, progress: bool) -> dict:
    """pass@k of ``model`` on each ``eval.benchmarks`` entry in ``out/BENCH`` (resumable), generated with the
    backend the student answers with in Stage II (``student_backend``); {} when no benchmark is set."""
    from iterkd.evaluate.run import benchmark_name, run_eval

    results = {}
    for ecfg in cfg.eval_configs():
        name = benchmark_name(ecfg.benchmark)
        doc = run_eval(ecfg.model_copy(update={"model": model, "backend": cfg.student_backend}), out / name,
                       progress=progress)  # fmt: skip
        results[name] = {"pass_at_k": doc["pass_at_k"], "n_tasks": doc["n_tasks"]}
    return results


def round_usage(rdir: Path) -> dict[str, tuple[int, int]]:
    """Teacher and judge tokens (prompt, completion) by stage-record file of a round on disk (the student's own
    answers excluded)."""
    usage = {}
    for f in sorted((rdir / "data").glob("*.jsonl")):
        if f.name != "student_answers.jsonl":
            rows = read_progress_log(f, lambda r: json.dumps(r.get("key"))).values()
            usage[f.stem] = (
                sum(r.get("prompt_tokens", 0) for r in rows),
                sum(r.get("completion_tokens", 0) for r in rows),
            )
    return usage


def round_tokens(rdir: Path) -> dict:
    """Teacher and judge tokens (prompt + completion) by stage-record file of a round on disk (round_usage) and their
    ``total``: what the round has spent, the same before and after a resume."""
    spent = {stem: p + c for stem, (p, c) in round_usage(rdir).items()}
    return {**{k: v for k, v in spent.items() if v}, "total": sum(spent.values())}


def _spent_on_disk(exc, run: Path):
    """The budget stop with what the run's records say it spent: batches already sent when the budget was reached
    (the stage engine overlaps them) are answered and kept, so the run spends a little more than the count the
    check saw."""
    from iterkd.teacher import BudgetExceeded

    rounds = [r for r in (run / "rounds").glob("r*") if r.is_dir()]
    if exc.what.startswith("round "):
        rounds = [r for r in rounds if r.name == f"r{exc.what.removeprefix('round ')}"]
    elif exc.what != "run":
        return exc
    total = sum(round_tokens(r)["total"] for r in rounds)
    if total <= exc.spent:
        return exc
    message = (f"{exc} (reached at {exc.spent} tokens; with the requests already sent then, answered and kept, "
               f"{'the run' if exc.what == 'run' else exc.what}'s records hold {total})")  # fmt: skip
    return BudgetExceeded(message, limit=exc.limit, spent=total, budget=exc.budget, what=exc.what)


def _seed_pool(cfg) -> list:
    from iterkd.methods.decontam import is_contaminated
    from iterkd.tasks import load_tasks

    tasks = [t for t in load_tasks(cfg.seed_tasks, cfg.seed_split if cfg.seed_tasks == "mbpp" else None) if t.tests]
    tasks = tasks[: cfg.limit] if cfg.limit else tasks
    return [t for t in tasks if not is_contaminated(t.prompt, t.canonical_solution or "")]


def run_iterkd(cfg, progress: bool = True) -> dict:
    """Run (or resume) ``iterkd.rounds`` rounds; return the run's summary (RUN/summary.json)."""
    from iterkd.io import run_lock

    with run_lock(cfg.run_dir):
        return _run(cfg, Path(cfg.run_dir), progress)


def _run(cfg, run: Path, progress: bool) -> dict:
    ic, teacher_cfg = cfg.iterkd, cfg.teacher
    resume_check(cfg, plan, RECORDED_BEFORE)
    with active(plan(cfg)):
        return _rounds(cfg, ic, teacher_cfg, run, progress)


def _rounds(cfg, ic: IterKDConfig, teacher_cfg, run: Path, progress: bool) -> dict:
    from iterkd.models.base import LazyGenerator
    from iterkd.sandbox import Limits, Sandbox
    from iterkd.tasks import load_task_file
    from iterkd.teacher import Budget, BudgetExceeded, load_teacher

    base = {"train": cfg.student, "generate": cfg.student}
    student, pool, prev, rounds, stopped = dict(base), _seed_pool(cfg), None, [], None
    pool_texts = [t.prompt for t in pool]
    limits = Limits(timeout_s=cfg.sandbox_timeout)
    teacher = LazyGenerator(lambda: load_teacher(teacher_cfg))  # started only if a call is not on disk yet
    base_eval = evaluate_student(cfg, cfg.student, run / "eval" / "base", progress) if cfg.eval_base else {}
    try:
        with Sandbox(limits=limits) as sandbox:
            for k in range(1, ic.rounds + 1):
                rdir = run / "rounds" / f"r{k}"
                done = read_json(rdir / "summary.json")
                if done is None:
                    if not pool:
                        break  # nothing left to ask: the previous round wrote no question and kept no seed
                    here = round_tokens(rdir)["total"]
                    earlier = sum(round_tokens(rdir.parent / f"r{j}")["total"] for j in range(1, k))
                    run_budget = Budget(teacher, tokens=ic.budget.run_tokens, spent_tokens=earlier + here, what="run")
                    budgeted = Budget(run_budget, tokens=ic.budget.round_tokens, spent_tokens=here, what=f"round {k}")
                    r = Round(cfg, ic, k, rdir, student, pool, prev, progress)
                    done = r.run(budgeted, teacher_cfg.sampling(), sandbox, limits, pool_texts)
                rounds.append(done)
                student = {k: from_portable(v, run) for k, v in done["student"].items()}
                student = student if ic.train_from == "previous" else dict(base)
                pool, prev = load_task_file(rdir / "next_pool.jsonl"), rdir
                pool_texts += [t.prompt for t in pool]
    except BudgetExceeded as exc:
        stopped = _spent_on_disk(exc, run) if exc.limit == "tokens" else exc
    finally:
        usage = teacher.as_dict() if teacher.loaded else None
        teacher.close()
    summary = {"method": "iterkd", "run_dir": cfg.run_dir, "iterkd": ic.to_dict(), "base_eval": base_eval,
               "rounds": rounds, "stopped": str(stopped) if stopped else None, "teacher_this_call": usage}  # fmt: skip
    atomic_write_json(run / "summary.json", summary)
    if stopped is not None:
        raise stopped
    return summary


def format_rounds(summary: dict) -> str:
    """The run as a table: a line per round (and the base student's pass@1 when evaluated)."""
    benches = list(summary.get("base_eval") or (summary["rounds"][0].get("eval", {}) if summary["rounds"] else {}))
    head = "".join(f" {b[:10]:>10}" for b in benches)
    lines = [f"method     iterkd   run {summary['run_dir']}   rounds {len(summary['rounds'])}",
             f"{'round':<6} {'pool':>5} {'pairs':>6} {'passed':>7} {'easy/med/hard':>14} {'new q':>6} {'judge AUC':>10} "
             f"{'tokens':>8}{head}"]  # fmt: skip
    pct = lambda doc, b: f" {100 * doc[b]['pass_at_k']['pass@1']:9.1f}%" if b in doc else f" {'-':>10}"  # noqa: E731
    if summary.get("base_eval"):
        lines.append(f"{'base':<6} {'':>5} {'':>6} {'':>7} {'':>14} {'':>6} {'':>10} {'':>8}"
                     + "".join(pct(summary["base_eval"], b) for b in benches))  # fmt: skip
    for r in summary["rounds"]:
        b, f = r["feedback"]["buckets"], r["feedback"]
        auc = f"{f['judge_roc_auc']:.2f}" if f.get("judge_roc_auc") is not None else "-"
        tokens = r.get("teacher_tokens", {}).get("total", "-")
        lines.append(f"{r['round']:<6} {r['pool']:>5} {r['pairs']['teacher_pairs'] + r['pairs']['student_pairs']:>6} "
                     f"{f['passed']:>3}/{f['answers']:<3} {b['easy']:>4}/{b['medium']}/{b['hard']:<5} "
                     f"{r['questions']['accepted']:>6} {auc:>10} {tokens:>8}"
                     + "".join(pct(r.get("eval", {}), x) for x in benches))  # fmt: skip
    if summary.get("stopped"):
        lines.append(f"stopped: {summary['stopped']}")
    return "\n".join(lines)


run, format_table = run_iterkd, format_rounds  # the pipeline's interface (see pipeline.registry)
