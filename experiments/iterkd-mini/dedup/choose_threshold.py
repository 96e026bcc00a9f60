"""Issue 31: the near-duplicate threshold of Stage III, chosen on hand-labelled pairs.

    python experiments/iterkd-mini/dedup/choose_threshold.py

Reads items.jsonl (the 65 exercises of the IterKD smoke run: 28 seeds, 37 new questions) and labels.json (groups
of near-duplicates, read by hand; every other pair is not one), scores every pair (2,080) with

    minhash-text   the first de-duplication: Jaccard of word 5-grams of the statement (MinHash estimates it)
    words          methods.dedup.similarity: content words of the normalised statement (code_weight 0, the default)
    words+code     the same with code_weight 0.5: 0.5 words + 0.25 calls + 0.25 AST shape of the reference solution

and prints, per measure, precision / recall / F1 at each threshold and the repeats found among the 37 new
questions (an item that duplicates an earlier one; 12 by the labels). The chosen threshold (highest F1, the
highest threshold among ties) goes to results.json. Caveat: methods.dedup's synonym list was written after reading
these exercises, so the numbers here are in-sample; the Stage III measurement on MBPP validation labels its own
pairs as a check.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

from iterkd.methods.dedup import Features, similarity

HERE = Path(__file__).resolve().parent
THRESHOLDS = [round(0.05 * i, 2) for i in range(4, 20)]


def grams(text: str) -> frozenset[str]:
    words = re.findall(r"\w+", text.lower())
    return frozenset(" ".join(words[i : i + 5]) for i in range(max(1, len(words) - 4)))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def main() -> None:
    items = [json.loads(line) for line in (HERE / "items.jsonl").read_text().splitlines()]
    groups = json.loads((HERE / "labels.json").read_text())["groups"].values()
    dup = {frozenset(p) for g in groups for p in itertools.combinations(g, 2)}
    feats = [Features.of(it["statement"], it["solution"]) for it in items]
    measures = {
        "minhash-text": lambda i, j: jaccard(grams(items[i]["statement"]), grams(items[j]["statement"])),
        "words": lambda i, j: similarity(feats[i], feats[j]),
        "words+code": lambda i, j: similarity(feats[i], feats[j], code_weight=0.5),
    }
    pairs = list(itertools.combinations(range(len(items)), 2))
    new = [i for i, it in enumerate(items) if it["kind"] == "new"]
    out = {"items": len(items), "pairs": len(pairs), "duplicate_pairs": len(dup), "measures": {}}
    print(f"{len(items)} exercises, {len(pairs)} pairs, {len(dup)} labelled near-duplicates\n")
    print("| measure | threshold | precision | recall | F1 | repeats found (of 12) | false repeats |")
    print("|---|---|---|---|---|---|---|")
    for name, measure in measures.items():
        scores = {frozenset(p): measure(*p) for p in pairs}
        rows = []
        for t in THRESHOLDS:
            hit = {p for p, s in scores.items() if s >= t}
            tp = len(hit & dup)
            precision = tp / len(hit) if hit else 1.0
            recall = tp / len(dup)
            f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
            # a new question is a repeat when it duplicates an item listed before it (seeds come first)
            flagged = {j for j in new if any(frozenset((i, j)) in hit for i in range(j))}
            truly = {j for j in new if any(frozenset((i, j)) in dup for i in range(j))}
            rows.append({"threshold": t, "precision": round(precision, 3), "recall": round(recall, 3),
                         "f1": round(f1, 3), "repeats_found": len(flagged & truly),
                         "false_repeats": len(flagged - truly)})  # fmt: skip
        best = max(rows, key=lambda r: (r["f1"], r["threshold"]))
        out["measures"][name] = {"chosen": best, "by_threshold": rows}
        for r in rows:
            mark = " **chosen**" if r is best else ""
            print(f"| {name} | {r['threshold']}{mark} | {r['precision']} | {r['recall']} | {r['f1']} | "
                  f"{r['repeats_found']} | {r['false_repeats']} |")  # fmt: skip
    (HERE / "results.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
