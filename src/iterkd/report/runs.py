"""Read what runs wrote into rows for the report: an ``iterkd eval`` directory, an ``iterkd distill`` run
directory (IterKD: one row per round), or an experiment directory whose sub-directories are rows. Reads only files
(results.json, summary.json, data cards); never runs a model.

    eval directory        DIR/results.json (+ samples.jsonl)                       -> one row
    distill run           DIR/summary.json, DIR/eval/{base,trained}/<bench>/results.json, DIR/data/data_card.json
                                                                                   -> base row + trained row
    IterKD run            DIR/summary.json (method iterkd), DIR/rounds/rK/eval/<bench>/results.json
                                                                                   -> base row + one row per round
    experiment row        DIR/<bench>.results.json (+ data_card.json, wall.json)   -> one row
    experiment directory  sub-directories that are any of the above                -> their rows, in name order
                          (a sub-directory whose results.json or summary.json another tool wrote is skipped)

Each row's student (the model it is, or was trained from) comes from its data card or run config; an eval row
that names a registry model or hub id is that model, untrained (a base row); a row whose results name another
row's model (under that row's ``run_dir``) has that row's student; an untrained export (a ``base-model``
directory, as ``iterkd distill`` and experiments write them) that names no student has the student of the
trained rows named like it (``PREFIXbase`` is the base of ``PREFIX*``), when their data cards agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from iterkd.errors import UserError
from iterkd.evaluate.check import RESULTS_FORMAT
from iterkd.evaluate.stats import bootstrap_ci
from iterkd.io import read_json


@dataclass
class BenchResult:
    """One row's verdicts on one benchmark: task id -> pass/fail of each sample."""

    benchmark: str
    path: Path
    passed: dict[str, list[bool]]
    pass_at_k: dict[str, float]
    steps: list[float] = field(default_factory=list)  # multi-step repair: pass@1 after each step (0 = first answer)
    model: str | None = None  # what generated the samples (results.json generation.settings.model)

    @cached_property
    def ci(self) -> tuple[float, float, float]:
        """pass@1 and its 95% bootstrap interval (over tasks, and samples within a task), computed once."""
        return bootstrap_ci(list(self.passed.values()))

    @property
    def n_samples(self) -> int:
        return sum(len(v) for v in self.passed.values())

    @property
    def n_passed(self) -> int:
        return sum(sum(v) for v in self.passed.values())


@dataclass
class Row:
    name: str
    path: Path
    kind: str  # "eval", "distill", "iterkd round", "base", "experiment row"
    results: dict[str, BenchResult]
    card: dict | None = None  # the data card of the row's training set (distill runs, experiment rows)
    teacher_tokens: int | None = None  # prompt + completion tokens the row's data cost
    examples: int | None = None  # training examples
    wall_seconds: float | None = None
    wall_at_least: bool = False  # wall_seconds is a floor (records from before the clock: the run spent more)
    round: dict | None = None  # IterKD: the round's summary
    student: str | None = None  # the student model (a registry name where one matches), None when unknown
    untrained: bool = False  # a base row: the student before any training
    student_note: str | None = None  # how the student was found, when no data card or config names it
    run_dir: str | None = None  # summary.json's run_dir: how other rows' results name this row's model

    @property
    def model(self) -> str | None:
        return next((r.model for r in self.results.values() if r.model), None)


@dataclass
class Run:
    """An IterKD run: its rows (base, r1, r2, ...) and the round summaries for the per-round curves."""

    name: str
    path: Path
    rounds: list[dict]
    base_eval: dict = field(default_factory=dict)


def _json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not readable as JSON ({e})") from e
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object")
    return doc


def read_results(path: Path, label: str | None = None) -> BenchResult:
    """A results.json of ``iterkd eval`` / ``iterkd check``; UserError for another format or version."""
    doc = _json(path)
    fmt = doc.get("format", 1)
    if fmt != RESULTS_FORMAT:
        raise UserError(f"{path}: results format {fmt!r}, this iterkd reads format {RESULTS_FORMAT}; "
                        "re-score the samples with this version (iterkd check)")  # fmt: skip
    samples = doc.get("samples")
    if not isinstance(samples, list) or "benchmark" not in doc or "pass_at_k" not in doc:
        raise UserError(f"{path}: not an iterkd results file (needs benchmark, pass_at_k and samples)")
    passed: dict[str, list[bool]] = {}
    for s in samples:
        if not isinstance(s, dict) or "task_id" not in s or "passed" not in s:
            raise UserError(f"{path}: a sample without task_id/passed: not an iterkd results file")
        passed.setdefault(s["task_id"], []).append(bool(s["passed"]))
    if label is None:
        split = ((doc.get("generation") or {}).get("settings") or {}).get("split")
        label = doc["benchmark"] + (f"-{split}" if split and split != "test" else "")
    steps = [float(s["pass_at_k"]["pass@1"]) for s in doc.get("repair_steps") or []]
    model = ((doc.get("generation") or {}).get("settings") or {}).get("model")
    return BenchResult(label, path, passed, dict(doc["pass_at_k"]), steps, str(model) if model else None)


def _eval_dirs(parent: Path) -> dict[str, BenchResult]:
    """``parent/<bench>/results.json`` for every benchmark directory under ``parent``."""
    out = {}
    for f in sorted(parent.glob("*/results.json")):
        r = read_results(f)
        out[r.benchmark] = r
    return out


def _tokens(card: dict | None) -> int | None:
    if not card or "teacher_prompt_tokens" not in card:
        return None
    return int(card["teacher_prompt_tokens"]) + int(card.get("teacher_completion_tokens", 0))


def _config_student(path: Path) -> str | None:
    """The ``student`` of the run config ``path/config.yaml``, if it names one."""
    import yaml

    try:
        doc = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    student = doc.get("student") if isinstance(doc, dict) else None
    return _student_name(student) if isinstance(student, str) and student.strip() else None


def _registry_name(model: str | None) -> str | None:
    """A model named by its registry name or Hugging Face id -> its registry name (an unregistered hub id as
    is); a path (a file or directory some run wrote) -> None."""
    from iterkd.models.registry import _HUB_ID, MODELS

    text = (model or "").strip()
    spec = MODELS.get(text.lower()) or next(
        (m for m in MODELS.values() if (m.hf_id or "").lower() == text.lower()), None
    )
    if spec is not None:
        return spec.name
    if text.lower().endswith(".gguf") or text.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(text):
        return None
    return text


def _student_name(student: str | None) -> str | None:
    return (_registry_name(student) or student) if student else None


def _distill_rows(path: Path, summary: dict) -> list[Row]:
    name = path.name
    rows = []
    student = _config_student(path)
    base = _eval_dirs(path / "eval" / "base")
    if base:
        rows.append(Row(f"{name}/base", path, "base", base, student=student, untrained=True))
    if _has_rounds(summary):
        spent = 0
        for r in summary.get("rounds") or []:
            k = r["round"]
            spent += int((r.get("teacher_tokens") or {}).get("total", 0))
            res = _eval_dirs(path / "rounds" / f"r{k}" / "eval")
            wall, floor = _wall(r, sum((r.get("seconds") or {}).values()))
            rows.append(Row(f"{name}/r{k}", path, "iterkd round", res, teacher_tokens=spent,
                            examples=(r.get("pairs") or {}).get("pairs"), wall_seconds=wall, wall_at_least=floor,
                            round=r, student=student, run_dir=summary.get("run_dir")))  # fmt: skip
        return rows
    card_path = path / "data" / "data_card.json"
    card = _json(card_path) if card_path.exists() else summary.get("data")
    wall, floor = _wall(summary, summary.get("wall_seconds_this_call"))
    rows.append(Row(name, path, "distill", _eval_dirs(path / "eval" / "trained"), card=card,
                    teacher_tokens=_tokens(card), examples=(card or {}).get("examples"),
                    wall_seconds=wall, wall_at_least=floor,
                    student=_student_name((card or {}).get("student")) or student,
                    run_dir=summary.get("run_dir")))  # fmt: skip
    return rows


def _wall(summary: dict, this_call) -> tuple[float | None, bool]:
    """A run's (or round's) wall time and whether it is only a floor: its clock's steps summed over every call
    (``stages.Clock``; a floor when the clock started on a run begun before it), or, in a summary from before the
    clock, the last call's seconds (a floor: a resumed run spent more)."""
    steps = summary.get("wall_seconds")
    if isinstance(steps, dict):
        return sum(steps.values()) or None, not summary.get("wall_seconds_complete", False)
    return this_call or None, bool(this_call)


def _has_rounds(summary: dict) -> bool:
    """The run directory of this summary's method holds rounds (``pipeline.registry``)."""
    from iterkd.pipeline.registry import pipeline

    return pipeline(str(summary.get("method"))).rounds


def _experiment_row(path: Path) -> Row:
    results = {}
    for f in sorted(path.glob("*.results.json")):
        r = read_results(f, label=f.name[: -len(".results.json")])
        results[r.benchmark] = r
    card = _json(path / "data_card.json") if (path / "data_card.json").exists() else None
    wall = _json(path / "wall.json").get("seconds") if (path / "wall.json").exists() else None
    student = _student_name((card or {}).get("student")) or _config_student(path)
    run_dir = (read_json(path / "summary.json") or {}).get("run_dir")  # a copy of the run's summary
    return Row(path.name, path, "experiment row", results, card=card, teacher_tokens=_tokens(card),
               examples=(card or {}).get("examples"), wall_seconds=wall, student=student,
               run_dir=run_dir if isinstance(run_dir, str) else None)  # fmt: skip


def _is_row_dir(path: Path) -> bool:
    return (path / "results.json").is_file() or (path / "summary.json").is_file() or any(path.glob("*.results.json"))


def _holds_rows(path: Path) -> bool:
    """A sub-directory of an experiment that iterkd wrote: a row directory whose results.json is an iterkd results
    file (not another tool's JSON of that name, such as a measurement script's) and whose summary.json is a run's.
    A file iterkd cannot read as JSON still counts, so that loading it names the broken file."""
    if not _is_row_dir(path):
        return False
    if any(path.glob("*.results.json")):  # an experiment row
        return True
    for name, keys in (("results.json", ("benchmark", "pass_at_k")), ("summary.json", ("method",))):
        if (path / name).is_file():
            try:
                doc = json.loads((path / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return True
            return not isinstance(doc, dict) or all(k in doc for k in keys)
    return True


def _rows_of(path: Path) -> tuple[list[Row], Run | None]:
    if (path / "results.json").is_file():
        r = read_results(path / "results.json")
        return [Row(path.name, path, "eval", {r.benchmark: r})], None
    if any(path.glob("*.results.json")):  # an experiment's row (its summary.json, if any, is a copy)
        return [_experiment_row(path)], None
    summary = _json(path / "summary.json")
    if "method" not in summary:
        raise UserError(f"{path}/summary.json: not the summary of an iterkd distill run (no method)")
    rows = _distill_rows(path, summary)
    if not _has_rounds(summary):
        return rows, None
    return rows, Run(path.name, path, summary.get("rounds") or [], summary.get("base_eval") or {})
    raise UserError(f"{path}: not a run directory (no results.json, summary.json or *.results.json)")


def check_paths(paths: list[str | Path]) -> None:
    """Every path is a directory (UserError otherwise); reads nothing."""
    for p in map(Path, paths):
        if not p.is_dir():
            raise UserError(f"{p}: no such directory (give an eval directory, a distill run or an experiment)")


def load(paths: list[str | Path]) -> tuple[list[Row], list[Run]]:
    """Every row (and IterKD run) of ``paths``, in the order given (an experiment's rows in name order).
    UserError for a path that is no run, a results file of another version, or rows whose results for one
    benchmark cover different tasks (they cannot be compared task by task)."""
    check_paths(paths)
    rows: list[Row] = []
    runs: list[Run] = []
    for p in map(Path, paths):
        if _is_row_dir(p):
            found, run = _rows_of(p)
            rows += found
            runs += [run] if run else []
            continue
        subs = sorted(d for d in p.iterdir() if d.is_dir() and _holds_rows(d))
        if not subs:
            raise UserError(f"{p}: not a run directory or an experiment (no sub-directory holds results)")
        for d in subs:
            found, run = _rows_of(d)
            rows += found
            runs += [run] if run else []
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise UserError(f"two rows are named {dup[0]!r}: give directories with different names")
    if not any(r.results for r in rows):
        raise UserError("no row has evaluation results: nothing to report")
    check_comparable(rows)
    identify_students(rows)
    return rows, runs


def identify_students(rows: list[Row]) -> None:
    """Fill in the student of rows whose data card or run config names none (see the module's docstring), and
    mark the untrained rows (base rows)."""
    owners = {r.run_dir.rstrip("/"): r for r in rows if r.run_dir and r.student}
    for r in rows:
        if r.student is not None:
            continue
        model = r.model or ""
        owner = next((o for d, o in owners.items() if o is not r and (model == d or model.startswith(d + "/"))), None)
        if owner is not None:
            r.student = owner.student
            r.student_note = f"{r.name}: {owner.student}, the student of {owner.name} (it evaluates {model})"
        elif not r.card and (name := _registry_name(model)) is not None:
            r.student, r.untrained = name, True
        elif not r.card and "base-model" in Path(model).parts:
            r.untrained = True
    _students_by_name(rows)
    for r in rows:
        if r.student is None and r.student_note is None:
            r.student_note = (
                f"{r.name}: student unknown (no data card or run config names it; its results name {r.model})"
            )


def _students_by_name(rows: list[Row]) -> None:
    """An untrained row ``PREFIXbase`` that names no student has the student of the trained rows whose names
    start with PREFIX (and with no longer base row's prefix), when they all have one."""
    prefixes = [r.name[: -len("base")] for r in rows if r.untrained and r.name.endswith("base")]

    def claim(name: str) -> str | None:
        return max((p for p in prefixes if name.startswith(p)), key=len, default=None)

    for b in rows:
        if not b.untrained or b.student is not None or not b.name.endswith("base"):
            continue
        prefix = b.name[: -len("base")]
        kin = [r for r in rows if not r.untrained and r.student and claim(r.name) == prefix]
        students = sorted({r.student for r in kin})
        if len(students) == 1:
            b.student = students[0]
            b.student_note = (f"{b.name}: {b.student}, inferred: its results name only the exported model {b.model}; "
                              f"by name it is the base row of {', '.join(r.name for r in kin)}, whose student "
                              f"is {b.student}")  # fmt: skip
        elif students:
            b.student_note = (f"{b.name}: student unknown: its results name only {b.model}, and the rows named "
                              f"like it have several students ({', '.join(students)})")  # fmt: skip


def check_comparable(rows: list[Row]) -> None:
    """Rows evaluated on one benchmark must cover the same tasks (paired comparisons, one x axis)."""
    seen: dict[str, Row] = {}
    for row in rows:
        for bench, res in row.results.items():
            first = seen.setdefault(bench, row)
            tasks = first.results[bench].passed.keys()
            if res.passed.keys() != tasks:
                raise UserError(
                    f"rows {first.name} and {row.name} were evaluated on different {bench} tasks "
                    f"({len(tasks)} vs {len(res.passed)}): report them separately"
                )


def benchmarks(rows: list[Row]) -> list[str]:
    """The benchmarks of ``rows`` in a fixed order: humaneval, mbpp, then the others by name."""
    names = {b for r in rows for b in r.results}
    first = [b for b in ("humaneval", "mbpp", "mbpp-validation") if b in names]
    return first + sorted(names - set(first))
