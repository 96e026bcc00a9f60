"""``build_report``: rows -> ``DIR/report.md``, ``DIR/report.html`` (one self-contained file: images embedded,
no network) and ``DIR/plots/*.png`` + ``.svg``. The same inputs write the same bytes (no timestamps anywhere)."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from iterkd.io import atomic_write_text
from iterkd.report import plots as P
from iterkd.report.runs import load
from iterkd.report.tables import markdown, paired_table, rows_table

CSS = """body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:left}th{background:#f3f3f3}figure{margin:1.5em 0}img{max-width:100%;height:auto}
figcaption{font-size:13px;color:#444;max-width:900px}code{background:#f3f3f3;padding:0 3px}"""


def _relative(path: Path, out: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), out.resolve())
    except ValueError:
        return str(path)


def _html_table(head: list[str], body: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{rows}</tbody></table>"


def build_report(paths: list[str | Path], out: str | Path, pairs: list[tuple[str, str]] | None = None,
                 title: str = "iterkd report") -> dict:  # fmt: skip
    """Read ``paths`` (run directories, eval directories, experiments), write the report into ``out``; returns
    ``{"rows": n, "plots": [stems], "files": [paths]}``. ``pairs``: (row, other) for the paired table (default:
    every row against the first)."""
    out = Path(out)
    rows, runs = load(paths)
    plot_dir = out / "plots"
    made = [p for p in (P.pass_at_1(rows, plot_dir), P.cost_frontier(rows, plot_dir), P.rounds(runs, plot_dir),
                        P.funnel(rows, runs, plot_dir), P.repair_steps(rows, plot_dir),
                        P.paired_matrix(rows, plot_dir)) if p is not None]  # fmt: skip
    for stale in plot_dir.glob("*.*"):  # a plot an earlier report had and this one has not
        if stale.stem not in {p.stem for p in made}:
            stale.unlink()
    inputs = [_relative(Path(p), out) for p in paths]
    rt, pt = rows_table(rows), paired_table(rows, pairs)
    intro = (f"{len(rows)} rows from {', '.join(inputs)}. pass@1 % with the number of passing samples and a 95% "
             "bootstrap interval over tasks (and samples); the paired table compares rows task by task.")  # fmt: skip
    md = [f"# {title}", "", intro, "", "## Rows", "", markdown(*rt), "", "## Paired comparisons", "",
          markdown(*pt) if pt[1] else "(one row: nothing to pair)", ""]  # fmt: skip
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>", "<h2>Rows</h2>", _html_table(*rt),
            "<h2>Paired comparisons</h2>",
            _html_table(*pt) if pt[1] else "<p>(one row: nothing to pair)</p>"]  # fmt: skip
    md += ["## Plots", ""]
    body.append("<h2>Plots</h2>")
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
    return {"rows": len(rows), "plots": [p.stem for p in made], "files": [str(f) for f in files]}
