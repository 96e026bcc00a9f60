"""Count differing answers between the compare.sh runs in OUTDIR."""

import json
import sys
from itertools import combinations
from pathlib import Path

out = Path(sys.argv[1])
runs = {p.name: {r["task_id"]: r["solution"] for r in map(json.loads, (p / "samples.jsonl").open())}
        for p in sorted(out.glob("ev-*")) if (p / "samples.jsonl").exists()}
for a, b in combinations(runs, 2):
    x, y = runs[a], runs[b]
    print(f"{a} vs {b}: {sum(x[k] != y[k] for k in x)}/{len(x)} answers differ")
