"""Which rows the report compares. By default each row is paired with the untrained row (base row) of its own
student (the first one, in row order); a base row, a row whose student has no base row and a row whose student is
unknown have no pair. ``--pair A:B`` names the pairs instead. Also the report's first line: what was read."""

from __future__ import annotations

from collections import Counter

from iterkd.errors import UserError
from iterkd.report.runs import Row

# a row's kind as the summary line counts it (untrained rows are counted as base rows)
KINDS = {"distill": "distill row", "iterkd round": "IterKD round", "experiment row": "experiment row",
         "eval": "eval row", "base": "base row"}  # fmt: skip


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def base_rows(rows: list[Row]) -> dict[str, Row]:
    """Student -> the first untrained row of that student."""
    bases: dict[str, Row] = {}
    for r in rows:
        if r.untrained and r.student:
            bases.setdefault(r.student, r)
    return bases


def default_pairs(rows: list[Row]) -> list[tuple[str, str]]:
    """(row, base row of its student) for every row that has one, in row order."""
    bases = base_rows(rows)
    return [(r.name, bases[r.student].name) for r in rows if r.student in bases and bases[r.student] is not r]


def check_pair_syntax(pairs: list[str | tuple[str, str]] | None) -> None:
    """``A:B`` with two non-empty names (before anything is read)."""
    for p in pairs or []:
        if isinstance(p, str) and not any(p[:i] and p[i + 1 :] for i, c in enumerate(p) if c == ":"):
            raise UserError(f"--pair {p!r}: give ROW:OTHER, two row names (e.g. --pair stand:base)")


def resolve_pairs(rows: list[Row], pairs: list[str | tuple[str, str]]) -> list[tuple[str, str]]:
    """``A:B`` strings (or tuples) -> (row, other) for rows that exist; UserError listing the rows otherwise."""
    check_pair_syntax(pairs)
    names = [r.name for r in rows]
    out = []
    for p in pairs:
        if isinstance(p, str):  # a row name may hold ':': split where both halves are rows, if anywhere
            splits = [(p[:i], p[i + 1 :]) for i, c in enumerate(p) if c == ":"]
            a, b = next((s for s in splits if s[0] in names and s[1] in names), splits[0])
        else:
            a, b = p
        for name in (a, b):
            if name not in names:
                raise UserError(f"--pair {a}:{b}: no row named {name!r}; the rows are {', '.join(names)}")
        if a == b:
            raise UserError(f"--pair {a}:{b} pairs a row with itself")
        out.append((a, b))
    return out


def paired_with(rows: list[Row], pairs: list[tuple[str, str]], explicit: bool) -> dict[str, str]:
    """Row name -> the rows table's "paired with" cell: the rows it is compared with, or why there are none."""
    vs: dict[str, list[str]] = {}
    for a, b in pairs:
        vs.setdefault(a, []).append(b)
    bases = base_rows(rows)
    cells = {}
    for r in rows:
        if r.name in vs:
            cells[r.name] = ", ".join(vs[r.name])
        elif explicit:
            cells[r.name] = "-"
        elif r.student is None:
            cells[r.name] = "- (student unknown)"
        elif bases.get(r.student) is r:
            cells[r.name] = "- (base row)"
        else:
            cells[r.name] = f"- (no base row for student {r.student})"
    return cells


def groups(rows: list[Row], pairs: list[tuple[str, str]]) -> list[list[Row]]:
    """Rows that are compared with each other in the paired matrix: the rows of one student, joined with any
    other rows a pair links them to; in row order, only groups of two or more rows."""
    parent = {r.name: r.name for r in rows}

    def root(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    first_of: dict[str, str] = {}
    for r in rows:
        if r.student is not None:
            parent[root(r.name)] = root(first_of.setdefault(r.student, r.name))
    for a, b in pairs:
        if a in parent and b in parent:
            parent[root(a)] = root(b)
    by_root: dict[str, list[Row]] = {}
    for r in rows:
        by_root.setdefault(root(r.name), []).append(r)
    return [g for g in by_root.values() if len(g) >= 2]


def summary_line(rows: list[Row], inputs: list[str]) -> str:
    """What the report read, e.g. ``14 rows from experiments/persd-mini: 12 experiment rows, 2 base rows;
    students: smollm2-135m-instruct (9 rows), qwen2.5-coder-0.5b-instruct (5 rows)``."""
    kinds = Counter("base row" if r.untrained else KINDS.get(r.kind, "row") for r in rows)
    order = [k for k in KINDS.values() if k != "base row"] + ["row", "base row"]
    students = Counter(r.student or "" for r in rows)  # first appearance order
    parts = [f"{s} ({_count(n, 'row')})" for s, n in students.items() if s]
    if "" in students:
        parts.append(f"student unknown ({_count(students[''], 'row')})")
    label = "student" if len(parts) == 1 and "" not in students else "students"
    return (f"{_count(len(rows), 'row')} from {', '.join(inputs)}: "
            + ", ".join(_count(kinds[k], k) for k in order if kinds[k])
            + (f"; {label}: " if students.keys() - {""} else "; ") + ", ".join(parts))  # fmt: skip
