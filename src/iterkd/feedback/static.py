"""Static view (IterKD Stage II): a real linter over each answer, its findings counted per category.

Linter: ruff (one process lints a whole batch of answers, JSON output, the rules of pyflakes and more; it is
already a dependency of this project). Categories and the ruff rules behind them:

    syntax-error      ruff's parse errors (code "invalid-syntax", or null, in its JSON)
    undefined-name    F821, F822
    unused-variable   F841
    unused-import     F401
    redefined         F811
    unreachable-code  our AST pass (ruff 0.17 has no such rule): statements after return / raise / break /
                      continue in the same block, and after a ``while True:`` loop that never breaks

``lint(codes)`` returns one ``StaticReport`` per code: counts per category and the findings as text lines
(``line N: message``), which is what a teacher or the student is shown.
"""

from __future__ import annotations

import ast
import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

RULES = {"F821": "undefined-name", "F822": "undefined-name", "F841": "unused-variable", "F401": "unused-import",
         "F811": "redefined"}  # fmt: skip
CATEGORIES = ("syntax-error", "undefined-name", "unused-variable", "unused-import", "redefined", "unreachable-code")


@dataclass
class StaticReport:
    counts: dict = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    findings: list = field(default_factory=list)  # "line N: [category] message"

    def add(self, category: str, line: int, message: str) -> None:
        self.counts[category] += 1
        self.findings.append(f"line {line}: [{category}] {message}")

    @property
    def clean(self) -> bool:
        return not any(self.counts.values())


def _ruff() -> str:
    from ruff.__main__ import find_ruff_bin

    return str(find_ruff_bin())


def _run_ruff(directory: Path) -> list[dict]:
    cmd = [_ruff(), "check", "--no-cache", "--isolated", "--exit-zero", "--output-format", "json",
           "--select", ",".join(RULES), str(directory)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout or "[]")


def _ends_flow(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.Return, ast.Raise, ast.Break, ast.Continue)):
        return True
    forever = isinstance(stmt, ast.While) and isinstance(stmt.test, ast.Constant) and stmt.test.value is True
    return forever and not any(isinstance(n, ast.Break) for n in ast.walk(stmt))


def unreachable(code: str) -> list[int]:
    """Line numbers of the first unreachable statement of each block (no lines if the code does not parse)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    lines = []
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if not isinstance(block, list):
                continue
            for stmt, nxt in zip(block, block[1:]):
                if isinstance(stmt, ast.stmt) and _ends_flow(stmt):
                    lines.append(nxt.lineno)
                    break
    return sorted(lines)


def lint(codes: list[str]) -> list[StaticReport]:
    """One report per code (same order), from one ruff process for the whole batch."""
    reports = [StaticReport() for _ in codes]
    with tempfile.TemporaryDirectory(prefix="iterkd-lint-") as tmp:
        for i, code in enumerate(codes):
            (Path(tmp) / f"a{i}.py").write_text(code, encoding="utf-8")
        for d in _run_ruff(Path(tmp)):
            i = int(Path(d["filename"]).stem[1:])
            syntax = d["code"] in (None, "invalid-syntax")  # ruff's parse errors (null code in --preview)
            category = "syntax-error" if syntax else RULES.get(d["code"])
            if category is not None:
                reports[i].add(category, d["location"]["row"], d["message"])
    for report, code in zip(reports, codes):
        for line in unreachable(code):
            report.add("unreachable-code", line, "statement can never run")
    return reports
