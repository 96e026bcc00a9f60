"""The report's plots (matplotlib, Agg): each function draws one figure from rows and returns a ``Plot`` (file
stem, caption, and whether there was anything to draw). Same inputs -> same bytes: fixed fonts, sizes, SVG hash
salt, no dates in the files."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from iterkd.evaluate.stats import paired_counts, sign_test
from iterkd.report.pairs import default_pairs, groups
from iterkd.report.runs import Row, Run, benchmarks

STYLE = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs on every machine
    "font.size": 9,
    "axes.titlesize": 10,
    "svg.hashsalt": "iterkd-report",
    "svg.fonttype": "path",
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


@dataclass
class Plot:
    stem: str
    caption: str


def _save(fig, out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{stem}.png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.08)
    fig.savefig(out / f"{stem}.svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight", pad_inches=0.08)


def _finish(fig, plt, out: Path, stem: str, caption: str) -> Plot:
    _save(fig, out, stem)
    plt.close(fig)
    return Plot(stem, caption)


def _figure(rows: int, cols: int, w: float, h: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    fig, axes = plt.subplots(rows, cols, figsize=(w, h), squeeze=False, layout="constrained")
    return fig, axes, plt


def pass_at_1(rows: list[Row], out: Path) -> Plot | None:
    """Horizontal bars: pass@1 per row, one panel per benchmark, 95% bootstrap CI over tasks (and samples)."""
    benches = benchmarks(rows)
    if not benches:
        return None
    fig, axes, plt = _figure(1, len(benches), 3.2 * len(benches) + 1.5, 0.32 * len(rows) + 1.2)
    names = [r.name for r in rows]
    for ax, bench in zip(axes[0], benches):
        for i, row in enumerate(rows):
            res = row.results.get(bench)
            if res is None:
                continue
            est, lo, hi = res.ci
            ax.barh(i, 100 * est, color=COLORS[0], height=0.6)
            ax.errorbar(100 * est, i, xerr=[[100 * (est - lo)], [100 * (hi - est)]], color="black", capsize=2, lw=1)
        ax.set_yticks(range(len(rows)), names if ax is axes[0][0] else [""] * len(rows))
        ax.invert_yaxis()
        n_tasks = len(next(r.results[bench] for r in rows if bench in r.results).passed)
        ax.set_title(f"{bench} ({n_tasks} tasks)")
        ax.set_xlabel("pass@1 %")
        ax.set_xlim(left=0)
    return _finish(
        fig,
        plt,
        out,
        "pass_at_1",
        "pass@1 of every row on every benchmark; bars are 95% bootstrap intervals over tasks "
        "(and over samples when a task has several). From each row's results.json.",
    )


def cost_frontier(rows: list[Row], out: Path) -> Plot | None:
    """pass@1 against the teacher tokens a row's training data cost: one colour and one frontier per student
    (the row's student; a row of unknown student: its directory's name); untrained rows as dashed reference lines."""
    trained = [r for r in rows if r.teacher_tokens]
    if not trained:
        return None
    benches = [b for b in benchmarks(rows) if any(b in r.results for r in trained)]
    if not benches:  # rows that cost teacher tokens but are not scored (an IterKD run evaluated elsewhere)
        return None
    fig, axes, plt = _figure(1, len(benches), 4.2 * len(benches), 3.4)
    students = sorted({r.student or r.path.name for r in trained})
    for ax, bench in zip(axes[0], benches):
        for r in rows:
            if not r.teacher_tokens and bench in r.results:
                y = 100 * r.results[bench].pass_at_k["pass@1"]
                ax.axhline(y, color="grey", lw=0.8, ls="--")
                ax.annotate(r.name, (0, y), fontsize=6, color="grey", xytext=(2, 2), textcoords="offset points")
        for g, group in enumerate(students):
            pts = sorted(((r.teacher_tokens / 1000, 100 * r.results[bench].pass_at_k["pass@1"], r.name)
                          for r in trained if bench in r.results
                          and (r.student or r.path.name) == group),
                         key=lambda p: (p[0], -p[1], p[2]))  # fmt: skip
            if not pts:
                continue
            color = COLORS[g % len(COLORS)]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=color, s=14, zorder=3, label=group)
            for x, y, name in pts:
                ax.annotate(name, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
            front, best = [], -1.0
            for x, y, _ in pts:  # the rows no cheaper row of the same student beats
                if y > best:
                    front.append((x, y))
                    best = y
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color=color, lw=1)
        ax.set_title(bench)
        ax.set_xlabel("teacher tokens (thousands, prompt + completion)")
        ax.set_ylabel("pass@1 %")
        ax.set_xlim(left=0)
        ax.legend(fontsize=6, loc="best")
    return _finish(
        fig,
        plt,
        out,
        "cost_frontier",
        "pass@1 against the teacher tokens each row's training data cost (data cards; "
        "an IterKD round: all tokens spent up to it), one colour per student; the line joins the rows "
        "that no cheaper row of the same student beats; dashed: rows without a data card (untrained models, "
        "evaluation-only rows).",
    )


def rounds(runs: list[Run], out: Path) -> Plot | None:
    """IterKD runs, per round: pass@1, bucket counts, pairs kept, the judge's ROC AUC against execution."""
    if not runs:
        return None
    fig, axes, plt = _figure(len(runs), 4, 13, 2.8 * len(runs))
    for ax_row, run in zip(axes, runs):
        ks = [r["round"] for r in run.rounds]
        ax = ax_row[0]
        benches = sorted({b for r in run.rounds for b in r.get("eval") or {}})
        if not benches:  # a run whose students were scored elsewhere (their rows are in the rows table)
            ax.text(0.5, 0.5, "no round evaluated in the run", ha="center", va="center", transform=ax.transAxes,
                    fontsize=8, color="grey")  # fmt: skip
        for j, bench in enumerate(benches):
            base = (run.base_eval.get(bench) or {}).get("pass_at_k", {}).get("pass@1")
            xs = ([0] if base is not None else []) + ks
            ys = ([base] if base is not None else []) + [
                (r.get("eval") or {}).get(bench, {}).get("pass_at_k", {}).get("pass@1", math.nan) for r in run.rounds
            ]
            ax.plot(xs, [100 * y for y in ys], marker="o", color=COLORS[j % len(COLORS)], label=bench)
        ax.set_title(f"{run.name}: pass@1 (round 0 = base)")
        ax.set_ylabel("%")
        if benches:
            ax.legend(fontsize=7)
        ax = ax_row[1]
        bottom = [0] * len(ks)
        for j, bucket in enumerate(("easy", "medium", "hard")):
            vals = [((r.get("feedback") or {}).get("buckets") or {}).get(bucket, 0) for r in run.rounds]
            ax.bar(ks, vals, bottom=bottom, color=COLORS[j], label=bucket)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_title("questions per bucket")
        ax.legend(fontsize=7)
        ax = ax_row[2]
        ax.plot(ks, [(r.get("pairs") or {}).get("pairs", 0) for r in run.rounds], marker="o", color=COLORS[0],
                label="pairs kept")  # fmt: skip
        ax.plot(ks, [(r.get("questions") or {}).get("accepted", 0) for r in run.rounds], marker="s",
                color=COLORS[2], label="new questions kept")  # fmt: skip
        ax.set_title("kept per round")
        ax.legend(fontsize=7)
        ax = ax_row[3]
        auc = [(r.get("feedback") or {}).get("judge_roc_auc") for r in run.rounds]
        ax.plot(ks, [math.nan if a is None else a for a in auc], marker="o", color=COLORS[3])
        for k, a, r in zip(ks, auc, run.rounds):  # the 95% interval, where the round recorded one
            ci = (r.get("feedback") or {}).get("judge_roc_auc_ci")
            if a is not None and ci:
                ax.errorbar(k, a, yerr=[[a - ci[0]], [ci[1] - a]], color=COLORS[3], capsize=2, lw=1)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1)
        ax.set_title("judge vs execution (ROC AUC)")
        for a in ax_row:
            a.set_xlabel("round")
            a.set_xticks(sorted(set([0, *ks])) if a is ax_row[0] else ks)
    return _finish(
        fig,
        plt,
        out,
        "rounds",
        "IterKD runs round by round: pass@1 of each round's student (round 0 = the base), the "
        "easy/medium/hard buckets of Stage III, the preference pairs and new questions kept, and the "
        "rubric judge's ROC AUC against execution (0.5 = chance; bars: 95% bootstrap interval over the answers, "
        "where the round recorded one). From RUN/summary.json.",
    )


# (label, data card key) in the order data flows; a stage a method does not have is left out
FUNNEL = [("seed tasks", "seed_tasks"), ("after decontamination", "attempted"), ("student failed", "failed"),
          ("teacher asked", "teacher_calls"), ("teacher passed", "teacher_passed"), ("kept", "examples")]  # fmt: skip


def _question_stages(q: dict) -> list[tuple[str, int]]:
    parsed = q.get("parsed", 0)
    validated = parsed - q.get("failed_reference", 0) - q.get("trivial_tests", 0)
    unique = validated - q.get("duplicates", 0)
    return [("asked", q.get("asked", 0)), ("parsed", parsed), ("validated", validated), ("unique", unique),
            ("clean", unique - q.get("contaminated", 0)), ("accepted", q.get("accepted", 0))]  # fmt: skip


def funnel(rows: list[Row], runs: list[Run], out: Path) -> Plot | None:
    """The data funnel of every method: how many tasks survive each stage (PERsD/STAND/INPD data cards; IterKD:
    Stage III's questions, summed over rounds)."""
    series: list[tuple[str, list[tuple[str, int]]]] = []
    for r in rows:
        if r.card:
            stages = [(label, int(r.card[key])) for label, key in FUNNEL if key in r.card]
            # a 0 before a later non-zero stage is a stage this method does not have (STAND: no student attempts)
            stages = [(k, n) for i, (k, n) in enumerate(stages) if n or not any(m for _, m in stages[i + 1 :])]
            if len(stages) >= 2:
                series.append((r.name, stages))
    for run in runs:
        total: dict[str, int] = {}
        order: list[str] = []
        for rd in run.rounds:
            for label, n in _question_stages(rd.get("questions") or {}):
                total[label] = total.get(label, 0) + n
                order += [label] if label not in order else []
        if order:
            series.append((f"{run.name} (new questions)", [(k, total[k]) for k in order]))
    if not series:
        return None
    cols = min(4, len(series))
    nrows = math.ceil(len(series) / cols)
    fig, axes, plt = _figure(nrows, cols, 3.3 * cols, 2.3 * nrows)
    for i, ax in enumerate(a for row in axes for a in row):
        if i >= len(series):
            ax.axis("off")
            continue
        name, stages = series[i]
        ax.barh(range(len(stages)), [n for _, n in stages], color=COLORS[2])
        ax.set_yticks(range(len(stages)), [label for label, _ in stages])
        ax.invert_yaxis()
        for y, (_, n) in enumerate(stages):
            ax.annotate(str(n), (n, y), fontsize=7, xytext=(2, -3), textcoords="offset points")
        ax.set_title(name, fontsize=8)
    return _finish(
        fig,
        plt,
        out,
        "funnel",
        "The data funnel of each row: seed tasks -> after decontamination -> student failed -> "
        "teacher asked -> teacher passed -> training examples kept (data_card.json); for IterKD, Stage "
        "III's questions asked -> parsed -> validated by execution -> unique -> clean -> accepted, summed "
        "over rounds (summary.json).",
    )


def repair_steps(rows: list[Row], out: Path) -> Plot | None:
    """pass@1 after each multi-step repair step, for rows evaluated with repair steps."""
    lines = [(r.name, b, res.steps) for r in rows for b, res in r.results.items() if len(res.steps) > 1]
    if not lines:
        return None
    fig, axes, plt = _figure(1, 1, 4.5, 3.0)
    ax = axes[0][0]
    for j, (name, bench, steps) in enumerate(lines):
        ax.plot(range(len(steps)), [100 * s for s in steps], marker="o", color=COLORS[j % len(COLORS)],
                label=f"{name} {bench}")  # fmt: skip
    ax.set_xlabel("repair step (0 = first answer)")
    ax.set_ylabel("pass@1 %")
    ax.set_xticks(range(max(len(s) for *_, s in lines)))
    ax.legend(fontsize=7)
    return _finish(
        fig,
        plt,
        out,
        "repair_steps",
        "pass@1 after each step of multi-step repair at test time (step 0 = the first "
        "answer), from the repair_steps of each results.json.",
    )


def _matrix_panel(ax, have: list[Row], bench: str, label: str) -> None:
    first = {r.name: {t: v[0] for t, v in r.results[bench].passed.items()} for r in have}
    n = len(have)
    grid = [[0.0] * n for _ in range(n)]
    cells = {}
    for i, a in enumerate(have):
        for j, b in enumerate(have):
            if i != j:
                w, lo, _, _ = paired_counts(first[a.name], first[b.name])
                grid[i][j], cells[i, j] = w - lo, (w, lo, sign_test(w, lo))
    lim = max(1, max(abs(v) for r in grid for v in r))
    ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim)
    for (i, j), (w, lo, p) in sorted(cells.items()):
        ax.text(j, i, f"+{w}/-{lo}\np{'<0.01' if p < 0.01 else f'={p:.2f}'}", ha="center", va="center",
                fontsize=5.5, fontweight="bold" if p < 0.05 else "normal",
                color="white" if abs(grid[i][j]) > 0.6 * lim else "black")  # fmt: skip
    names = [r.name for r in have]
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=6)
    ax.set_yticks(range(n), names, fontsize=6)
    ax.set_title(f"{bench}, {label}:\nrow vs column (first sample)", fontsize=8)


def paired_matrix(rows: list[Row], out: Path, pairs: list[tuple[str, str]] | None = None) -> Plot | None:
    """For each benchmark and each group of compared rows (``pairs.groups``: one student's rows, joined by the
    pairs), every pair of rows: tasks the row solves that the column does not, minus the reverse (colour), with
    the wins/losses and the sign test's p in each cell."""
    compared = groups(rows, default_pairs(rows) if pairs is None else pairs)
    panels = {b: [g2 for g in compared if len(g2 := [r for r in g if b in r.results]) >= 2] for b in benchmarks(rows)}
    panels = {b: gs for b, gs in panels.items() if gs}
    if not panels:
        return None
    cols = max(len(gs) for gs in panels.values())
    widths = [0.55 * max((len(gs[c]) for gs in panels.values() if c < len(gs)), default=0) + 2.2 for c in range(cols)]
    fig, axes, plt = _figure(len(panels), cols, sum(widths), max(widths) * len(panels))
    for ax_row, (bench, gs) in zip(axes, panels.items()):
        for c, ax in enumerate(ax_row):
            if c >= len(gs):
                ax.axis("off")
                continue
            label = " + ".join(dict.fromkeys(r.student or f"{r.name} (student unknown)" for r in gs[c]))
            _matrix_panel(ax, gs[c], bench, label)
    return _finish(
        fig,
        plt,
        out,
        "paired",
        "Paired wins and losses, task by task, among the rows of one student (and rows a --pair joins to "
        "them): cell (row, column) = tasks only the row solves (+) and only the column solves (-), with the "
        "two-sided exact sign test's p (bold below 0.05); blue = the row is ahead. From the samples in each "
        "results.json (the first sample of each task).",
    )
