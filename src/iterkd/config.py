"""Typed configs, one way for all of them: pydantic v2 models with ``extra="forbid"``.

Every config (``TeacherConfig``, ``TrainConfig``, ``DistillConfig``, ``EvalConfig``, ``SamplingParams``)
derives from ``ConfigModel``. A bad value never reaches the work: ``ConfigModel.from_dict(data, where)``
turns pydantic's errors into one ``UserError`` line (exit 2 at the command line), e.g.

    train: 'learning_rate' must be a valid number, got 'abc'
    teacher: unknown setting 'temprature' (did you mean temperature?)

YAML helpers live here too: ``load_yaml`` (a file -> a mapping) and ``parse_override`` (``key=value`` -> the
value read as YAML, strings kept exactly as typed).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from iterkd.errors import UserError


class ConfigModel(BaseModel):
    """A validated config: unknown keys, wrong types and out-of-range values are errors."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, protected_namespaces=(), coerce_numbers_to_str=True
    )
    where: ClassVar[str] = ""  # how error messages name this config (e.g. "teacher")

    def __init__(self, **data) -> None:
        """Keyword arguments only (a field's name says what a value means)."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(exc, type(self)) from None

    @classmethod
    def from_dict(cls, data: Any, where: str = ""):
        """Validate ``data`` (a mapping); UserError naming the first bad key."""
        where = where or cls.where or cls.__name__
        if not isinstance(data, dict):
            raise UserError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
        try:
            return cls(**{str(k): v for k, v in data.items()})
        except ConfigError as exc:
            if exc.cls is not cls:  # a section's own error (already named by its section)
                raise
            raise exc.at(where) from None

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    @classmethod
    def field_names(cls) -> list[str]:
        return list(cls.model_fields)


def suggest(key: str, known: list[str]) -> str:
    """The hint after an unknown name: the closest known names, else all of them."""
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else f"; known: {', '.join(known)}"


class ConfigError(UserError):
    """A config that does not validate: the first of pydantic's errors, as one line. ``key``: the setting at
    fault ("" for a rule across settings); ``at(where)``: the same error named by where the value came from."""

    def __init__(self, exc: ValidationError, cls: type[ConfigModel], where: str | None = None) -> None:
        self.exc, self.cls = exc, cls
        err = exc.errors()[0]
        self.key = str(err["loc"][0]) if err["loc"] else ""
        super().__init__(self._line(err, where or cls.where or cls.__name__))

    def at(self, where: str) -> ConfigError:
        return ConfigError(self.exc, self.cls, where)

    def _line(self, err: dict, where: str) -> str:
        parts = [str(p) for p in err["loc"]]
        loc = ".".join(parts)
        msg = err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        if parts[-1:] == ["[key]"]:  # a key of a mapping setting (pydantic's loc: setting, key, "[key]")
            return f"{where}: {'.'.join(parts[:-2])!r}: key {parts[-2]!r} {msg}"
        if err["type"] == "extra_forbidden":
            return f"{where}: unknown setting {loc!r}{suggest(self.key, self.cls.field_names())}"
        if not loc or err["type"] == "value_error" and not msg.startswith("must"):
            return f"{where}: {msg}"
        return f"{where}: {loc!r} {msg}, got {err.get('input')!r}"


def validate_with_origin(cls: type[ConfigModel], values: dict, origin: dict[str, str], where: str):
    """Validate ``values``; an error is reported where its key was set (``origin``: key -> file or override)."""
    try:
        return cls(**values)
    except ConfigError as exc:
        if exc.cls is not cls:
            raise
        raise exc.at(origin.get(exc.key, where)) from None


def load_yaml(path: str | Path) -> dict:
    """A YAML file's top-level mapping (empty file: {}); UserError for a missing file or bad YAML."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UserError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value). The value is read as YAML (``[a, b]``, ``{k: v}``, ``null``, numbers,
    booleans, a quoted string: ``"cosine"`` is cosine); anything else stays the string as typed (YAML would rewrite
    e.g. dates)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {text!r}: expected key=value (e.g. max_steps=100)")
    raw = raw.strip()
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw  # an unquoted string YAML cannot read: keep it verbatim
    quoted = isinstance(value, str) and len(raw) > 1 and raw[0] == raw[-1] in "'\""
    if not (value is None or quoted or isinstance(value, (dict, list, bool, int, float))):
        value = raw
    return key.strip(), value
