"""A random sample of the new questions one round of the IterKD run accepted, beside their parents, for hand labels.

    python experiments/iterkd-mini/read_questions.py 1 [--n 20] [--run runs/iterkd-mini/iterkd]

Writes experiments/iterkd-mini/questions/r<K>-sample.md (drawn with seed 0); the labels (same domain,
same task type, a reworded parent) go beside it by hand in questions/r<K>-labels.json, as stage3/labels.json.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("round", type=int)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--run", type=Path, default=HERE.parents[1] / "runs" / "iterkd-mini" / "iterkd")
    args = ap.parse_args()
    rdir = args.run / "rounds" / f"r{args.round}"
    if not (rdir / "new_tasks.jsonl").is_file():
        raise SystemExit(f"{rdir}/new_tasks.jsonl: no such file (has round {args.round}'s Stage III finished?)")
    load = lambda p: [json.loads(line) for line in p.read_text().splitlines() if line.strip()]  # noqa: E731
    pool = {t["task_id"]: t for t in load(rdir / "pool.jsonl")}
    new = load(rdir / "new_tasks.jsonl")
    sample = random.Random(0).sample(new, min(args.n, len(new)))
    lines = [f"# Round {args.round}: {len(sample)} of its {len(new)} accepted new questions and their parents, drawn at "
             "random (seed 0): label same domain / same task type / reworded parent\n"]  # fmt: skip
    for i, t in enumerate(sample):
        parent = pool[t["task_id"].split("/", 2)[2].rsplit("/", 1)[0]]  # r<K>/<bucket>/<parent id>/<j>
        lines += [f"## {i + 1}. {t['task_id']}", f"- parent ({parent['task_id']}): {' '.join(parent['prompt'].split())}",
                  f"- new: {' '.join(t['prompt'].split())}", f"- new reference:\n```python\n{t['canonical_solution'].rstrip()}\n```", ""]  # fmt: skip
    out = HERE / "questions" / f"r{args.round}-sample.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
