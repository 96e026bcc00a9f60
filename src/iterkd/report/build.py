"""``build_report``: rows -> ``DIR/report.md``, ``DIR/report.html`` (one self-contained file: images embedded,
no network) and ``DIR/plots/*.png`` + ``.svg``. The same inputs write the same bytes (no timestamps anywhere)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from iterkd.errors import UserError
from iterkd.io import atomic_write_text, ensure_out_dir
from iterkd.report import plots as P
from iterkd.report.pairs import check_pair_syntax, default_pairs, paired_with, resolve_pairs, summary_line
from iterkd.report.runs import Row, Run, check_paths, load
from iterkd.report.tables import markdown, paired_table, rows_table

CSS = """body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:left}th{background:#f3f3f3}figure{margin:1.5em 0}img{max-width:100%;height:auto}
figcaption{font-size:13px;color:#444;max-width:900px}code{background:#f3f3f3;padding:0 3px}"""


def _shown(path: str | Path) -> str:
    """A path as the report names it: relative to the working directory when it lies under it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _first_missing(path: Path) -> Path | None:
    """The outermost directory of ``path`` that does not exist yet (what creating it creates), or None."""
    top = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        top = p
    return top


def _remove_created(out: Path, top: Path | None) -> None:
    """Undo ``ensure_out_dir``: remove the (still empty) directories it made, from ``out`` up to ``top``."""
    p = out
    while top is not None:
        try:
            p.rmdir()
        except OSError:
            return
        if p == top:
            return
        p = p.parent


def _read(paths: list[str | Path], out: Path, pairs) -> tuple[list[Row], list[Run], list[tuple[str, str]]]:
    """Check the pairs' syntax, the inputs and the output directory before reading anything; then read the rows and
    resolve the pairs. A user error leaves no directory this call created."""
    check_pair_syntax(pairs)
    check_paths(paths)
    top = _first_missing(out)
    ensure_out_dir(out, "report directory")
    try:
        rows, runs = load(paths)
        return rows, runs, default_pairs(rows) if pairs is None else resolve_pairs(rows, pairs)
    except UserError:
        _remove_created(out, top)
        raise


def _html_table(head: list[str], body: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{rows}</tbody></table>"


def _text(rows: list[Row], pairs: list[tuple[str, str]], explicit: bool, summary: str) -> dict[str, list]:
    """The report's sections before the plots, as Markdown lines and HTML fragments."""
    rt, pt = rows_table(rows, paired_with(rows, pairs, explicit)), paired_table(rows, pairs)
    intro = (f"{summary}. pass@1 % with the number of passing samples and a 95% bootstrap interval over tasks (and "
             "samples); the paired table compares rows task by task.")  # fmt: skip
    if any(r.wall_at_least for r in rows):
        intro += (" Wall time ≥: a floor, from records made before every call's time was summed (the last call's "
                  "time, or the calls' since); the run spent more.")  # fmt: skip
    notes = [r.student_note for r in rows if r.student_note]
    how = ("The pairs asked for (--pair)." if explicit else "Each row against the untrained row (base row) of its own "
           "student: the column paired with in the rows table says which, or why a row has none.")  # fmt: skip
    empty = "(nothing to pair)"
    md = [intro, "", "## Rows", "", markdown(*rt), ""]
    body = [f"<p>{html.escape(intro)}</p>", "<h2>Rows</h2>", _html_table(*rt)]
    if notes:
        md += ["Students not named by a data card or run config:", "", *(f"- {n}" for n in notes), ""]
        body.append("<p>Students not named by a data card or run config:</p><ul>"
                    + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")  # fmt: skip
    md += ["## Paired comparisons", "", how, "", markdown(*pt) if pt[1] else empty, ""]
    body += ["<h2>Paired comparisons</h2>", f"<p>{html.escape(how)}</p>",
             _html_table(*pt) if pt[1] else f"<p>{empty}</p>"]  # fmt: skip
    return {"md": md, "html": body}


def build_report(paths: list[str | Path], out: str | Path, pairs: list[str | tuple[str, str]] | None = None,
                 title: str = "iterkd report") -> dict:  # fmt: skip
    """Read ``paths`` (run directories, eval directories, experiments), write the report into ``out``; returns
    ``{"rows": n, "summary": first line, "plots": [stems], "files": [paths]}``. ``pairs``: ``"row:other"`` or
    (row, other) for the paired table and matrix (default: each row against its own student's base row).
    UserError before anything is read for an output directory that cannot be made or a malformed pair, and
    before anything is written for an unknown row in a pair."""
    out = Path(out)
    rows, runs, chosen = _read(paths, out, pairs)
    plot_dir = out / "plots"
    made = [p for p in (P.pass_at_1(rows, plot_dir), P.cost_frontier(rows, plot_dir), P.rounds(runs, plot_dir),
                        P.funnel(rows, runs, plot_dir), P.repair_steps(rows, plot_dir),
                        P.paired_matrix(rows, plot_dir, chosen)) if p is not None]  # fmt: skip
    for stale in plot_dir.glob("*.*"):  # a plot an earlier report had and this one has not
        if stale.stem not in {p.stem for p in made}:
            stale.unlink()
    summary = summary_line(rows, [_shown(p) for p in paths])
    text = _text(rows, chosen, pairs is not None, summary)
    md = [f"# {title}", "", *text["md"], "## Plots", ""]
    body = [f"<h1>{html.escape(title)}</h1>", *text["html"], "<h2>Plots</h2>"]
    for p in made:
        md += [f"![{p.stem}](plots/{p.stem}.png)", "", f"*{p.caption}* ([svg](plots/{p.stem}.svg))", ""]
        data = base64.b64encode((plot_dir / f"{p.stem}.png").read_bytes()).decode()
        body.append(f'<figure><img alt="{p.stem}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(p.caption)}</figcaption></figure>")  # fmt: skip
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")  # fmt: skip
    files = [atomic_write_text(out / "report.md", "\n".join(md)), atomic_write_text(out / "report.html", page)]
    files += sorted(plot_dir.glob("*.*"))
    return {"rows": len(rows), "summary": summary, "plots": [p.stem for p in made], "files": [str(f) for f in files]}
