"""Reading TRL-ready training files: JSONL rows ``{"prompt": ..., "completion": ..., ...metadata}``.

Two formats, one per file:

- prompt-completion text: ``prompt`` and ``completion`` are strings (the completion is trained, EOS appended by
  TRL);
- conversational prompt-completion (TRL's format for chat models): ``prompt`` is a list of messages
  ``{"role": "system" | "user" | "assistant", "content": str}`` and ``completion`` a list of assistant messages;
  the student's chat template renders them.

Every other key (task_id, method, round, ...) is metadata and is dropped. Mistakes raise UserError naming
``file:line``. This module imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path

from iterkd.errors import UserError
from iterkd.io import read_jsonl

TEXT = "text"
CHAT = "chat"
_ROLES = ("system", "user", "assistant", "tool")


def _messages(value, where: str, key: str, completion: bool) -> list[dict]:
    if not value:
        raise UserError(f"{where}: '{key}' is an empty message list")
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
            raise UserError(f'{where}: \'{key}\'[{i}] must be a message {{"role": str, "content": str}}')
        if msg["role"] not in _ROLES:
            raise UserError(f"{where}: '{key}'[{i}] has unknown role {msg['role']!r} (use {', '.join(_ROLES)})")
        if completion and msg["role"] != "assistant":
            raise UserError(f"{where}: '{key}'[{i}] has role {msg['role']!r}; completion messages must be 'assistant'")
        out.append({"role": msg["role"], "content": msg["content"]})
    if completion and not any(m["content"].strip() for m in out):
        raise UserError(f"{where}: 'completion' is empty")
    return out


def read_rows(path: str | Path, what: str = "train_file") -> tuple[list[dict], str]:
    """The rows of a training JSONL file as ``[{"prompt", "completion"}]`` plus its format (``"text"``/``"chat"``).

    Blank lines are skipped. UserError for a missing or empty file, invalid JSON, a row that is not an object,
    lacks ``prompt``/``completion``, has the wrong types, or mixes the two formats within one file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{path}: no such {what.replace('_', ' ')}")
    rows: list[dict] = []
    fmt: str | None = None
    first_line = 0
    try:
        numbered = read_jsonl(p)  # blank lines skipped; invalid JSON or a non-object names file:line
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason})") from None
    for lineno, obj in numbered:
        where = f"{path}:{lineno}"
        missing = [k for k in ("prompt", "completion") if k not in obj]
        if missing:
            raise UserError(f"{where}: missing {' and '.join(repr(k) for k in missing)}")
        prompt, completion = obj["prompt"], obj["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            kind = TEXT
            if not completion.strip():
                raise UserError(f"{where}: 'completion' is empty")
            row = {"prompt": prompt, "completion": completion}
        elif isinstance(prompt, list) and isinstance(completion, list):
            kind = CHAT
            row = {
                "prompt": _messages(prompt, where, "prompt", completion=False),
                "completion": _messages(completion, where, "completion", completion=True),
            }
        else:
            raise UserError(
                f"{where}: 'prompt' and 'completion' must both be strings or both be lists of chat messages"
            )
        if fmt is None:
            fmt, first_line = kind, lineno
        elif kind != fmt:
            raise UserError(
                f"{where}: a {'conversational' if kind == CHAT else 'plain-text'} row, but line {first_line} "
                f"is {'conversational' if fmt == CHAT else 'plain-text'}; use one format per file"
            )
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: contains no training rows")
    return rows, fmt or TEXT
