"""The report's tables as (header, rows of cells): the rows table (pass@1 per benchmark with its interval,
training examples, teacher tokens, wall time; in the report also each row's student and what it is paired with)
and the paired table (tasks gained and lost, sign test, the difference's interval). ``markdown`` renders one."""

from __future__ import annotations

from iterkd.evaluate.stats import paired_counts, paired_diff_ci, sign_test
from iterkd.report.pairs import default_pairs
from iterkd.report.runs import Row, benchmarks

TITLES = {"humaneval": "HumanEval", "mbpp": "MBPP test", "mbpp-validation": "MBPP validation (tuning)"}


def title(bench: str) -> str:
    return TITLES.get(bench, bench)


def _pass_cell(row: Row, bench: str) -> str:
    res = row.results.get(bench)
    if res is None:
        return "-"
    _, lo, hi = res.ci
    text = f"{100 * res.pass_at_k['pass@1']:.2f} ({res.n_passed}/{res.n_samples}) [{100 * lo:.1f}, {100 * hi:.1f}]"
    if res.steps:
        text += " [steps: " + " -> ".join(f"{100 * s:.2f}" for s in res.steps) + "]"
    return text


def _tokens_cell(row: Row) -> str:
    card = row.card or {}
    if "teacher_prompt_tokens" in card:
        return f"{card['teacher_prompt_tokens']:,} + {card.get('teacher_completion_tokens', 0):,}"
    return f"{row.teacher_tokens:,} (all stages)" if row.teacher_tokens else "-"


def rows_table(rows: list[Row], paired: dict[str, str] | None = None) -> tuple[list[str], list[list[str]]]:
    """One line per row. ``paired`` (row name -> "paired with" cell, ``pairs.paired_with``): also the columns
    student and paired with."""
    benches = benchmarks(rows)
    who = ["student", "paired with"] if paired is not None else []
    head = ["row", *who, *(f"{title(b)} pass@1 % (passed) [95% CI]" for b in benches), "training examples",
            "teacher tokens (prompt + completion)", "wall time"]  # fmt: skip
    body = []
    for r in rows:
        wall = f"{'≥ ' if r.wall_at_least else ''}{r.wall_seconds / 60:.0f} min" if r.wall_seconds else "-"
        examples = str(r.examples) if r.examples is not None else "-"
        cells = [r.student or "unknown", paired.get(r.name, "-")] if paired is not None else []
        body.append([r.name, *cells, *(_pass_cell(r, b) for b in benches), examples, _tokens_cell(r), wall])
    return head, body


def paired_table(rows: list[Row], pairs: list[tuple[str, str]] | None = None) -> tuple[list[str], list[list[str]]]:
    """Each pair on each benchmark both rows have: tasks only the row solves, only the other, both, the exact sign
    test's p and the pass@1 difference with its paired bootstrap interval (first sample of each task for the
    counts; every sample for the difference). Default pairs: each row against its own student's base row."""
    by_name = {r.name: r for r in rows}
    head = ["row", "vs", "benchmark", "only row", "only vs", "both", "p (sign test)", "difference, points [95% CI]"]
    body = []
    for a_name, b_name in pairs if pairs is not None else default_pairs(rows):
        a, b = by_name.get(a_name), by_name.get(b_name)
        if a is None or b is None:
            continue
        for bench in benchmarks(rows):
            if bench not in a.results or bench not in b.results:
                continue
            pa, pb = a.results[bench].passed, b.results[bench].passed
            wins, losses, both, _ = paired_counts({t: v[0] for t, v in pa.items()}, {t: v[0] for t, v in pb.items()})
            d, lo, hi = paired_diff_ci(pa, pb)
            body.append([a_name, b_name, bench, str(wins), str(losses), str(both), f"{sign_test(wins, losses):.2f}",
                         f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"])  # fmt: skip
    return head, body


def markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)
