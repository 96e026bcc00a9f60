"""The one resumable stage engine: requests -> model -> records, appended to a JSONL log batch by batch.

Every stage that asks a model something uses it: evaluation generation (``iterkd.evaluate.generate``),
multi-step repair (``iterkd.evaluate.repair``) and the distillation stages (``iterkd.methods``: student
attempts, teacher answers and repairs). What a stage does with an answer is its ``records`` function: a code
stage sanitises and runs it in the sandbox (``verified_records``), evaluation keeps the raw text, a judge
keeps text.

Contract: a request's ``key`` is unique in its stage and equals ``key(row)`` of the record it produced. A rerun
reads the log, skips the keys already there and asks only for the rest, so a crash or Ctrl-C loses at most
one batch (a cut last line is skipped and redone; the teacher's cache makes even that free).
Requests go to the generator ``queue_size(generator, batch_size)`` at a time, consecutive requests with the
same sampling parameters together (a server client takes mixed ones, and gets the next batch while this one is
recorded); the generator is touched only when something is left to do (so a ``LazyGenerator`` whose stage is
complete loads no model and starts no server).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from iterkd.feedback import execution_feedback, job_for
from iterkd.io import ProgressLog, atomic_write_json, read_json, read_progress_log
from iterkd.tasks import Task


@dataclass
class Request:
    key: Hashable  # unique within the stage, e.g. "Mbpp/601#0" or ("HumanEval/0", 3)
    task: Task | None
    messages: list[dict]
    meta: dict = field(default_factory=dict)  # copied into the record
    params: object = None  # SamplingParams for this request; None = the stage's


def follow_up(request: Request, answer: str, text: str) -> Request:
    """The same request one turn later: its conversation, the model's ``answer``, then ``text`` from the user
    (a format reminder, the reason an answer was rejected)."""
    turns = [{"role": "assistant", "content": answer}, {"role": "user", "content": text}]
    return Request(request.key, request.task, [*request.messages, *turns], request.meta, request.params)


@dataclass
class StageStats:
    """What one ``run_stage`` call generated now (not what was already in the log)."""

    generated_now: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


# records(batch of requests, one completion each, seconds the call took) -> one JSON-able record per request
Records = Callable[[list[Request], list, float], list[dict]]


def _batches(todo: list[Request], size: int, mixed: bool = False):
    """Consecutive runs of at most ``size`` requests that share one SamplingParams object (``params``), or any
    ``size`` consecutive requests when the generator takes one SamplingParams per conversation (``mixed``)."""
    batch: list[Request] = []
    for r in todo:
        if batch and (len(batch) == size or (not mixed and r.params is not batch[0].params)):
            yield batch
            batch = []
        batch.append(r)
    if batch:
        yield batch


def run_stage(
    name: str,
    generator,
    requests: list[Request],
    params,
    path: Path,
    records: Records,
    key: Callable[[dict], Hashable] = lambda row: row["key"],
    batch_size: int = 8,
    progress: bool = True,
    stats: StageStats | None = None,
) -> dict:
    """Answer every request not yet in ``path``; return the records of ``requests`` by key."""
    from tqdm import tqdm

    from iterkd.models.base import queue_size

    begin(path)
    done = read_progress_log(path, key)
    todo = [r for r in requests if r.key not in done]
    stats = stats if stats is not None else StageStats()
    if todo:
        chunk = queue_size(generator, batch_size)
        # a server client takes one SamplingParams per conversation: requests that differ only in their seed (the
        # samples of an evaluation) share a batch instead of each sample index waiting for its slowest answer
        mixed = bool(getattr(generator, "mixed_params", False))
        with ProgressLog(path) as log, tqdm(total=len(todo), desc=name, unit="request", disable=not progress) as bar:
            for batch, completions, spent in _answered(generator, _batches(todo, chunk, mixed), params, mixed):
                rows = records(batch, completions, spent)
                log.append(rows)
                done.update((r.key, row) for r, row in zip(batch, rows))
                stats.generated_now += len(batch)
                stats.seconds += spent
                stats.prompt_tokens += sum(c.prompt_tokens for c in completions)
                stats.completion_tokens += sum(c.completion_tokens for c in completions)
                bar.update(len(batch))
    return {r.key: done[r.key] for r in requests}


def _answered(generator, batches, params, mixed: bool):
    """(batch, one completion per request, seconds) per batch, in order. A server client (``mixed``) is given
    the next batch while the caller records this one (runs its answers in the sandbox, say), so its slots never
    wait for a batch's slowest answer or for the sandbox; seconds are then each batch's share of the wall time
    (from the later of its start and the previous batch's end), so that they add up to the time spent."""
    import concurrent.futures as cf

    def ask(batch):
        began = time.perf_counter()
        how = [r.params or params for r in batch] if mixed else batch[0].params or params
        outs = generator.chat([r.messages for r in batch], how, n=1)
        return began, [o[0] for o in outs], time.perf_counter()

    if not mixed:
        for batch in batches:
            began, completions, ended = ask(batch)
            yield batch, completions, ended - began
        return
    last_end = 0.0
    pool = cf.ThreadPoolExecutor(2, thread_name_prefix="iterkd-stage")  # two chat calls in flight at most
    ahead: list = []  # (batch, future) asked and not yet handed back

    def oldest():
        nonlocal last_end
        batch0, fut = ahead.pop(0)
        began, completions, ended = fut.result()
        spent, last_end = ended - max(began, last_end), ended
        return batch0, completions, spent

    try:
        for batch in batches:
            ahead.append((batch, pool.submit(ask, batch)))
            if len(ahead) == 2:
                yield oldest()
        while ahead:
            yield oldest()
    finally:  # an error or Ctrl-C: drop the requests not yet sent (answers in flight finish, as without overlap)
        if not all(fut.done() for _, fut in ahead):
            getattr(generator, "cancel_pending", lambda: None)()
        pool.shutdown(wait=False, cancel_futures=True)


def verified_records(name: str, sandbox, limits) -> Records:
    """Records of a code stage: each answer sanitised and judged on its task's tests in the sandbox."""
    from iterkd.codegen import sanitize

    def records(batch: list[Request], completions: list, seconds: float) -> list[dict]:
        codes = [sanitize(c.text, r.task) for r, c in zip(batch, completions)]
        verdicts = sandbox.map([job_for(r.task, code, limits) for r, code in zip(batch, codes)])
        return [
            {
                "key": r.key,
                "task_id": r.task.task_id,
                "stage": name,
                **r.meta,
                "raw": c.text,
                "code": code,
                "status": v.status,
                "passed": v.passed,
                "feedback": execution_feedback(v),
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
            }
            for r, c, code, v in zip(batch, completions, codes, verdicts)
        ]

    return records


# --- pinned settings -------------------------------------------------------------------------------------------
# Every stage remembers the settings that determine its records (model, sampling, prompt family versions, the
# method's fields, the training config) in a pin file next to them, written when the stage starts. A run checks
# every stage it holds before any work (``Plan.check``) and refuses a rerun whose settings differ: records are
# keyed by task id only, so mixing settings would go unnoticed. ``run_stage`` and the other stages (training,
# datasets) call ``begin(path)``, which writes the pin of the stage producing ``path`` under the active plan.


@dataclass(frozen=True)
class StagePin:
    """One stage of a run: its name (as messages show it), what it writes (``outputs``: files or directories;
    any of them existing means the stage has begun), the settings that determine those outputs, and its pin file
    (default: ``<first output>.settings.json``, or ``DIR/stage_settings.json`` for a directory)."""

    name: str
    outputs: tuple[Path, ...]
    settings: dict
    file: Path | None = None
    assumed: dict = field(default_factory=dict)  # values of keys that pin files older than the key did not record
    redo: str = ""  # how to redo the stage (the way out in the refusal), e.g. "delete RUN/rounds/r2 and later"
    partial: bool = False  # the pin file holds more keys than ``settings`` (another writer's): compare these only

    @property
    def pin_file(self) -> Path:
        if self.file is not None:
            return self.file
        first = self.outputs[0]
        return first / "stage_settings.json" if not first.suffix else first.with_name(first.name + ".settings.json")

    def started(self) -> bool:
        return self.pin_file.exists() or any(p.exists() for p in self.outputs)

    def pinned(self) -> dict | None:
        from iterkd.io import read_json

        doc = read_json(self.pin_file)
        return None if doc is None else {**_as_json(self.assumed), **doc}

    def write(self) -> None:
        from iterkd.io import atomic_write_json

        atomic_write_json(self.pin_file, _as_json(self.settings))


def _as_json(obj):
    import json

    return json.loads(json.dumps(obj))  # as it reads back (tuples -> lists, keys -> str)


def settings_diff(old: dict, new: dict) -> list[tuple[str, object, object]]:
    """(key, old value, new value) for every key whose value differs, in the new dict's key order."""
    keys = list(new) + [k for k in old if k not in new]
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


class Plan:
    """The stages of one run (``holder``: e.g. "run_dir runs/x"), in the order they run."""

    hint = "use another run_dir"  # the way out a refusal names first

    def __init__(self, holder: str, stages: list[StagePin]) -> None:
        self.holder, self.stages = holder, stages
        self._by_output = {Path(p).resolve(): s for s in stages for p in s.outputs}

    def check(self, legacy: Callable[[], Plan | None] = lambda: None) -> None:
        """Refuse (UserError, one line) when a stage that has begun was made with other settings. Stages run in
        plan order, so a stage has begun when its outputs exist or a later stage's do. A begun stage without a
        pin file (a run from before pins) is pinned by ``legacy()``: the same stages computed from the settings
        the run directory recorded (its config.yaml)."""
        from iterkd.errors import UserError

        old, begun, later = None, [], False
        for stage in reversed(self.stages):
            later = later or stage.started()
            begun.append(later)
        for stage, started in zip(self.stages, reversed(begun)):
            if not started:
                continue
            pinned = stage.pinned()
            if pinned is None:
                if old is None:
                    before = legacy()
                    old = {s.name: s for s in before.stages} if before is not None else {}
                if stage.name not in old:
                    continue
                was = _as_recorded(old[stage.name])
                if was.pin_file.parent.is_dir() and not was.partial:  # keep it (never a directory made for it)
                    was.write()
                pinned = {**_as_json(was.assumed), **_as_json(was.settings)}
            diff = settings_diff({k: pinned.get(k) for k in stage.settings} if stage.partial else pinned,
                                 _as_json(stage.settings))  # fmt: skip
            if diff:
                key, was, now = diff[0]
                more = f" (and {len(diff) - 1} more: {', '.join(d[0] for d in diff[1:])})" if len(diff) > 1 else ""
                way = f"{self.hint}, or {stage.redo} to redo it" if stage.redo else self.hint
                raise UserError(
                    f"{self.holder}: stage {stage.name} was made with {key} = {_show(was)}, not {_show(now)}{more}; "
                    f"{way}"
                )

    def begin(self, path: Path) -> None:
        """The stage writing ``path`` starts: pin its settings (once)."""
        stage = self._by_output.get(Path(path).resolve())
        if stage is not None and not stage.partial and not stage.pin_file.exists():
            stage.write()


def _as_recorded(stage: StagePin) -> StagePin:
    """A stage of a run from before pins, as it was made: every prompt family still had its v1 wording then (the
    settings computed from its config.yaml carry today's versions)."""
    import dataclasses

    v1 = {k: "v1" for k in stage.settings if k.startswith("prompt_version:")}
    return dataclasses.replace(stage, settings={**stage.settings, **v1})


def _show(value) -> str:
    import json

    return "(unset)" if value is None else json.dumps(value) if not isinstance(value, str) else repr(value)


_ACTIVE: list[Plan] = []


@contextmanager
def active(plan: Plan):
    """Run a block under ``plan``: stages that start in it (``begin``) pin their settings."""
    _ACTIVE.append(plan)
    try:
        yield plan
    finally:
        _ACTIVE.remove(plan)


def begin(path: Path) -> None:
    """Called by a stage before it writes ``path`` (a stage record file, a training directory, a dataset)."""
    for plan in _ACTIVE:
        plan.begin(path)


class Clock:
    """The wall seconds each step of a run took, summed over every call that worked on it (a resumed run adds
    what it spends to what the calls before it spent), kept in a JSON file beside the step's records. A step's
    time is added when it returns or raises (Ctrl-C and SIGTERM unwind, so they count); only a call killed
    outright (kill -9) loses the time of the step it was in. ``complete`` is False when the clock started on a
    directory that already held stage records (``records/*.jsonl``: a run begun before the clock existed): its
    totals are then a floor."""

    def __init__(self, path: Path, records: Path):
        self.path = Path(path)
        self.this_call: dict[str, float] = {}  # this call's seconds per step
        doc = read_json(self.path)  # read once: one process works on a run directory (its lock)
        if doc is None:  # the first call on this directory, or one from before the clock
            started = any(f.stat().st_size for f in Path(records).glob("*.jsonl"))  # a stage's records
            doc = {"steps": {}, "complete": not started}
            atomic_write_json(self.path, doc)
        self.totals: dict[str, float] = dict(doc.get("steps") or {})
        self.complete = bool(doc.get("complete", False))

    @contextmanager
    def step(self, name: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - began
            self.this_call[name] = round(spent, 1)
            self.totals[name] = round(self.totals.get(name, 0.0) + spent, 1)
            atomic_write_json(self.path, {"steps": self.totals, "complete": self.complete})
