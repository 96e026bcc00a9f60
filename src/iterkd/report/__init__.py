"""``iterkd report``: run directories, eval directories and experiments -> Markdown + HTML + plots.

runs.py    read what runs wrote into rows, each with its student (never runs a model)
pairs.py   which rows are compared: each row with its own student's base row, or --pair; the summary line
tables.py  the rows table and the paired table
plots.py   the figures (matplotlib)
build.py   write report.md, report.html (self-contained) and plots/
"""

from iterkd.report.build import build_report

__all__ = ["build_report"]
