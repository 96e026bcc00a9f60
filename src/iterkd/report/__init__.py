"""``iterkd report``: run directories, eval directories and experiments -> Markdown + HTML + plots.

runs.py    read what runs wrote into rows (never runs a model)
tables.py  the rows table and the paired table
plots.py   the figures (matplotlib)
build.py   write report.md, report.html (self-contained) and plots/
"""

from iterkd.report.build import build_report

__all__ = ["build_report"]
