"""File I/O shared by every stage: atomic writes, append-only progress logs, pinned settings, run locks.

Contracts:

* ``atomic_write_text`` / ``atomic_write_json`` / ``atomic_write_lines``: the file is written next to its
  target and renamed over it, so a reader sees the old file or the new one, never half of one.
* ``write_with_tool``: the same for a file an external tool writes (a converter, a quantizer); a failing tool
  is a ``UserError`` carrying the tail of its stderr.
* ``read_json``: a "stage finished" marker (data card, summary, results). A missing file *or one that does not
  parse* (cut by a crash before these writes were atomic, or truncated by hand) reads as ``None``: the stage is
  redone, never crashed on.
* ``read_progress_log``: an append-only JSONL log; a line cut by a crash is skipped (its work is redone).
* ``pin_settings``: a resumable output remembers the settings that made it and refuses to mix others in.
* ``run_lock``: one process at a time per run directory (``filelock``); a second gets a ``UserError`` naming
  the holder (pid, host, command) and exits 2.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from iterkd.errors import UserError


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def atomic_write_json(path: str | Path, obj, indent: int | None = 1) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_write_lines(path: str | Path, rows: Iterable[dict]) -> Path:
    """A JSONL file (one object per line), atomically."""
    return atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def write_with_tool(out: str | Path, command: Callable[[Path], list[str]], what: str, env: dict | None = None) -> Path:
    """Run the tool ``command(tmp)`` that writes the file ``tmp`` (next to ``out``), then rename it to ``out``.
    A non-zero exit or no file: ``UserError("<what> failed: <stderr tail>")``, nothing left behind."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    proc = subprocess.run(command(tmp), capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise UserError(f"{what} failed: {proc.stderr.strip()[-600:]}")
    os.replace(tmp, out)
    return out


def portable_path(model: str, base: str | Path) -> str:
    """A model given as an existing path, relative to ``base`` (a run or eval directory), so that summaries and
    results name no machine's paths; a registry name or hub id as is."""
    path = Path(model).expanduser()
    if not path.exists():
        return model
    return os.path.relpath(path.resolve(), Path(base).resolve())


def from_portable(model: str, base: str | Path) -> str:
    """The inverse of ``portable_path``: a path relative to ``base`` made usable again."""
    return str(Path(base) / model) if (Path(base) / model).exists() else model


def read_json(path: str | Path) -> dict | None:
    """The JSON object in ``path``, or None when the file is missing or not a whole JSON object."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def read_jsonl(path: Path, opener=open) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a user error names the file and line."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    rows = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append((lineno, row))
    return rows


def read_progress_log(path: Path, key) -> dict:
    """Rows of an append-only progress log (generations, stage records) by ``key(row)``. A line cut by a
    crash is skipped, so its work is simply done again; a missing file is an empty log."""
    done: dict = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                done[key(row)] = row
    return done


class ProgressLog:
    """An append-only JSONL log: ``append(rows)`` writes and flushes one batch. A crash mid-line leaves a cut
    line that ``read_progress_log`` skips; the next append starts on a fresh line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut = False
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open("rb") as fh:  # does the last line end?
                fh.seek(-1, os.SEEK_END)
                cut = fh.read(1) != b"\n"
        self._fh = self.path.open("a", encoding="utf-8")
        if cut:
            self._fh.write("\n")

    def append(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ProgressLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pin_settings(path: Path, wanted: dict, holder: str, hint: str, assumed: dict | None = None) -> None:
    """Resumable outputs remember the settings that made them: write ``wanted`` to ``path`` (JSON) the first time,
    and later refuse (UserError naming what changed) to add to ``holder`` under other settings. ``assumed``: the
    value a key had when older pin files did not record it yet (e.g. a prompt family's version). Keys the pin file
    holds beyond ``wanted`` (settings of outputs this caller does not make) are not compared."""
    wanted = json.loads(json.dumps(wanted))  # as it reads back (tuples -> lists)
    previous = read_json(path) if path.exists() else None
    if previous is not None:
        previous = {k: v for k, v in {**json.loads(json.dumps(assumed or {})), **previous}.items() if k in wanted}
        if previous != wanted:
            keys = list(wanted) + [k for k in previous if k not in wanted]
            diff = ", ".join(
                f"{k}: {previous.get(k)!r} -> {wanted.get(k)!r}" for k in keys if previous.get(k) != wanted.get(k)
            )
            raise UserError(f"{holder} holds outputs made with other settings ({diff}); {hint}")
    else:  # missing, or cut by a crash before it was whole: the settings are those of this run
        atomic_write_json(path, wanted)


def _holder(lock_path: Path) -> str:
    info = read_json(lock_path.with_name(lock_path.name + ".holder"))
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')})"


@contextmanager
def run_lock(directory: str | Path, what: str = "run directory") -> Iterator[Path]:
    """Hold ``DIRECTORY/.lock`` while the block runs; a second process gets one UserError naming the holder.
    The lock is an OS file lock: it is released when its process dies, even by kill -9."""
    from filelock import FileLock, Timeout

    directory = ensure_out_dir(directory, what)
    path = directory / ".lock"
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(
            f"{what} {directory} is in use by {_holder(path)}; wait for it or use another directory"
        ) from None
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300]}
        atomic_write_json(path.with_name(path.name + ".holder"), info)
        yield directory
    finally:
        lock.release()


def ensure_out_dir(path: str | Path, what: str) -> Path:
    """The output directory ``path``, created (with its parents) if missing; a ``UserError`` naming ``what``,
    the path and why when it cannot hold outputs: it is a file (or another non-directory), it cannot be created
    (the OS error), or it is not writable. Commands call it before any work, so a bad location costs nothing."""
    path = Path(path).expanduser()
    if path.is_file():
        raise UserError(f"{what} {path} is a file; give a directory")
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{what} {path} cannot be created: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path} is not writable")
    return path
